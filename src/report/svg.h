// Self-contained HTML reports with inline SVG charts (no scripts, no fonts, no network):
// line / scatter charts on linear or log axes with legends and interval bands, heatmaps
// with a colour bar, tables, and one page wrapper with inline CSS.
//
// Shared by the theory and analysis reports. The API only grows (additive changes).
//
// Typical use:
//   report::ChartSpec spec;
//   spec.title = "k_eps vs n";
//   spec.x = report::log_axis("n", /*pow2_ticks=*/true);
//   spec.y = report::log_axis("k_eps");
//   report::Series s;
//   s.name = "eps = 0.05"; s.x = ns; s.y = ks; s.low = p10; s.high = p90;
//   std::string svg = report::chart(spec, {s});
//   std::string page = report::html_page("Title", {{"Section", svg}});
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace attnsparse::report {

// Text for HTML element content or attribute values: escapes & < > " '.
std::string html_escape(std::string_view text);

// Colour i (cycled) of a 10-colour categorical palette, as "#rrggbb".
const char* palette(size_t i);

// Compact number text for labels and tables: integers as they are, otherwise `digits`
// significant digits, exponent form for very large / small magnitudes; NaN as "n/a".
std::string format_number(double value, int digits = 3);

// ---------------------------------------------------------------------------------------
// Charts

enum class Scale { Linear, Log };

struct Axis {
  std::string label;
  Scale scale = Scale::Linear;
  bool pow2_ticks = false;     // log axes: ticks at powers of two, labelled 2^k
  bool integer_ticks = false;  // linear axes of counts (layers, heads): whole-number ticks only
  std::optional<double> min;   // fixed range (data units); default: the data's range
  std::optional<double> max;
};

// Shorthands (avoid aggregate-initialiser warnings): linear_axis("n"), log_axis("k", true).
Axis linear_axis(std::string label);
Axis log_axis(std::string label, bool pow2_ticks = false);

// How Series::low / Series::high are drawn.
enum class IntervalStyle { Band, Bars };

// Point markers: a filled dot, a hollow ring around the point (to mark points of other
// series, e.g. the Pareto-optimal ones), a filled diamond (a reference point).
enum class Marker { Dot, Ring, Diamond };

struct Series {
  std::string name;              // legend entry; "" = not in the legend
  std::vector<double> x, y;      // points; non-finite values (or <= 0 on a log axis) are skipped
  std::vector<double> low, high; // optional interval per point (both empty or both size y)
  std::string color;             // "" = palette(index of the series)
  bool line = true;              // connect the points (false: a scatter)
  bool markers = true;           // draw a dot per point
  bool dashed = false;
  IntervalStyle interval = IntervalStyle::Band;
  Marker marker = Marker::Dot;
  std::vector<std::string> labels;  // optional text beside each point ("" = none)
};

struct ChartSpec {
  std::string title;
  Axis x, y;
  int width = 560;   // pixels; the legend below the plot adds height
  int height = 360;  // plot area + axes, without the legend
  std::string note;  // small caption under the chart ("" = none)
  // Horizontal reference lines (e.g. y = 0.05): value and label.
  std::vector<std::pair<double, std::string>> y_rules;
};

// A line or scatter chart: one <svg> element.
std::string chart(const ChartSpec& spec, const std::vector<Series>& series);

// ---------------------------------------------------------------------------------------
// Heatmaps

enum class ColorMap {
  Sequential,  // white -> dark blue over [lo, hi]
  Diverging,   // blue -> white (at `center`) -> red
};

struct HeatmapSpec {
  std::string title;
  std::string row_label, col_label;              // axis titles
  std::vector<std::string> row_names, col_names; // tick labels; empty = 0, 1, 2, ...
  std::vector<std::vector<double>> values;       // values[row][col]; NaN = no data (grey)
  std::optional<double> lo, hi;                  // colour range; default: the data's range
  ColorMap colors = ColorMap::Sequential;
  double center = 0;                             // Diverging: the white point
  int decimals = 2;                              // digits printed in cells large enough
  double max_width = 640;                        // the grid is scaled to fit this width
  std::string note;                              // caption under the chart
};

// A grid of coloured cells with a colour bar; each cell has a tooltip with its value.
std::string heatmap(const HeatmapSpec& spec);

// ---------------------------------------------------------------------------------------
// Page building blocks

// A table; every cell is text (escaped). The first column is left-aligned, the others
// right-aligned. `cell_classes` (optional, same shape as rows) adds a CSS class per cell,
// e.g. "good" / "bad" (see html_page's style sheet).
std::string table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows,
                  const std::vector<std::vector<std::string>>& cell_classes = {});

// <p class="note">text</p> with the text escaped.
std::string note(std::string_view text);

// Items (charts) side by side, wrapping: <div class="grid">...</div>.
std::string grid(const std::vector<std::string>& items);

// One section of a page: an <h2> heading (escaped) and raw HTML content.
struct Section {
  std::string heading;
  std::string html;
  std::string id;  // optional anchor; sections with an id are listed in a contents line
};

// A complete, self-contained HTML page (inline CSS). `intro_html` (raw) follows the <h1>.
// CSS classes available to content: note, grid, good, bad, l (left-aligned cell), mono.
std::string html_page(const std::string& title, const std::vector<Section>& sections,
                      const std::string& intro_html = "");

// A script that marks the page once it has loaded: <body data-report-ok="N"> and a
// title suffix " [ok]" when exactly `expected_svgs` SVG elements parsed, each with
// content, and no script error occurred; else <body data-report-error="...">. Lets a
// headless browser check the page (tests/report).
std::string loaded_marker_script(size_t expected_svgs);

// Number of "<svg" elements in an HTML text.
size_t count_svgs(const std::string& html);

// The same page around one raw body (kept for callers that build their own layout).
std::string html_page(const std::string& title, const std::string& body_html);

}  // namespace attnsparse::report
