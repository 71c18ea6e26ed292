// Output of the theory verbs: JSON, a human-readable table, and a self-contained HTML
// page with inline SVG plots (no scripts, no external resources).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "theory/simulate.h"

namespace attnsparse::theory {

nlohmann::json simulation_json(const SimOptions& opt, const std::vector<SettingResult>& res);
std::string simulation_table(const SimOptions& opt, const std::vector<SettingResult>& res);
std::string simulation_html(const SimOptions& opt, const std::vector<SettingResult>& res);

// --- small SVG helpers (shared by the simulate and fit pages) ---
struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  std::vector<double> y_lo, y_hi;  // optional error bars (same size as y)
  std::string color;
  bool dashed = false;
  bool markers = true;
};
struct PlotSpec {
  std::string title, x_label, y_label;
  bool log_x = true, log_y = true;
  bool x_pow2 = true;  // label log-x ticks as 2^k
  int width = 560, height = 360;
};
std::string svg_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series);
// Heatmap of values[row][col] (NaN = no data), colour scale from lo to hi.
std::string svg_heatmap(const std::string& title, const std::string& row_label,
                        const std::string& col_label, const std::vector<std::vector<double>>& values,
                        double lo, double hi, const std::string& note);
std::string html_escape(const std::string& s);
std::string html_page(const std::string& title, const std::string& body);
const char* palette(size_t i);

}  // namespace attnsparse::theory
