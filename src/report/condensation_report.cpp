#include "report/condensation_report.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "report/svg.h"

namespace attnsparse::report {

namespace {

using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double number(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : kNaN;
}

std::string text(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "n/a";
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return format_number(v.get<double>(), 4);
  return v.dump();
}

std::string pct(double v, double base) {
  if (!std::isfinite(v) || !std::isfinite(base) || base == 0) return "n/a";
  return fmt::format("{:+.1f}%", 100.0 * (v / base - 1.0));
}

// A series over the runs (x = run number) with the run names as point labels.
Series per_run(const json& runs, const char* key, const std::string& name, size_t color, bool labels) {
  Series s;
  s.name = name;
  s.color = palette(color);
  s.line = false;
  for (size_t i = 0; i < runs.size(); ++i) {
    s.x.push_back(double(i));
    s.y.push_back(number(runs[i], key));
    s.labels.push_back(labels ? text(runs[i], "name") : "");
  }
  return s;
}

}  // namespace

bool is_condensation_results(const json& j) {
  return j.is_object() && j.contains("setup") && j["setup"].is_object() && j.contains("runs") && j["runs"].is_array();
}

std::string condensation_html(const json& j) {
  static const json kNone = json::array();
  const json& runs = is_condensation_results(j) ? j["runs"] : kNone;
  const json& setup = j.contains("setup") ? j["setup"] : kNone;
  const std::string k = text(setup, "k");
  Axis runs_axis = linear_axis("run # (see the table)");
  runs_axis.integer_ticks = true;
  runs_axis.min = -0.5;
  runs_axis.max = double(runs.size()) - 0.5;

  ChartSpec ppl;
  ppl.title = "Perplexity on the held-out documents";
  ppl.x = runs_axis;
  ppl.y = linear_axis("perplexity");
  ppl.width = 580;
  ppl.height = 380;
  ppl.note = "Same model, data, seed and steps; only the regulariser differs.";
  const std::string ppl_chart = chart(ppl, {per_run(runs, "dense_ppl", "dense attention", 0, true),
                                            per_run(runs, "topk_ppl", "oracle top-" + k + " only", 1, false),
                                            per_run(runs, "dyntopk_ppl", "oracle dynamic top-k", 2, false),
                                            per_run(runs, "val_ppl", "validation (trainer)", 3, false)});
  ChartSpec mass;
  mass.title = "Attention mass in the top " + k;
  mass.x = runs_axis;
  mass.y = linear_axis("share");
  mass.y.min = 0;
  mass.width = 580;
  mass.height = 380;
  mass.note = "Trainer's held-out windows: mean top-k mass M_k and the share of (eps, k)-sparse rows.";
  const std::string mass_chart = chart(mass, {per_run(runs, "mean_topk_mass", "mean M_" + k, 0, true),
                                              per_run(runs, "sparse_share", "share of (" + text(setup, "eps") + ", " + k +
                                                                                 ")-sparse rows",
                                                      1, false),
                                              per_run(runs, "topk_kept", "kept fraction, top-" + k, 2, false),
                                              per_run(runs, "dyntopk_kept", "kept fraction, dynamic top-k", 3, false)});
  std::vector<Series> width;
  for (size_t i = 0; i < runs.size(); ++i) {
    Series s;
    s.name = text(runs[i], "name");
    s.color = palette(i);
    if (runs[i].contains("width_p90_per_layer") && runs[i]["width_p90_per_layer"].is_array()) {
      const json& w = runs[i]["width_p90_per_layer"];
      for (size_t l = 0; l < w.size(); ++l) {
        s.x.push_back(double(l));
        s.y.push_back(w[l].is_number() ? w[l].get<double>() : kNaN);
      }
    }
    width.push_back(std::move(s));
  }
  ChartSpec wspec;
  wspec.title = "Attention width W_0.9 per layer";
  wspec.x = linear_axis("layer");
  wspec.x.integer_ticks = true;
  wspec.y = log_axis("mean W_0.9 (keys)");
  wspec.width = 580;
  wspec.height = 380;
  wspec.note = "attnsparse analyze on the held-out documents: keys needed for 90% of a row's mass.";
  const std::string width_chart = chart(wspec, width);

  std::vector<std::vector<std::string>> rows, classes;
  for (size_t i = 0; i < runs.size(); ++i) {
    const json& r = runs[i];
    std::string widths;
    if (r.contains("width_p90_per_layer") && r["width_p90_per_layer"].is_array())
      for (const json& w : r["width_p90_per_layer"])
        widths += (widths.empty() ? "" : " / ") + (w.is_number() ? fmt::format("{:.1f}", w.get<double>()) : "n/a");
    const double dense = number(r, "dense_ppl");
    rows.push_back({std::to_string(i), text(r, "name"), text(r, "reg"), text(r, "val_ppl"), text(r, "mean_topk_mass"),
                    text(r, "sparse_share"), widths, text(r, "dense_ppl"),
                    fmt::format("{} ({}; kept {})", text(r, "topk_ppl"), pct(number(r, "topk_ppl"), dense),
                                text(r, "topk_kept")),
                    fmt::format("{} ({}; kept {})", text(r, "dyntopk_ppl"), pct(number(r, "dyntopk_ppl"), dense),
                                text(r, "dyntopk_kept"))});
    classes.push_back({"", "l", "l mono", "", "", "", "l", "", "", ""});
  }
  std::vector<std::vector<std::string>> params;
  if (setup.is_object())
    for (const auto& [key, v] : setup.items()) params.push_back({key, v.is_string() ? v.get<std::string>() : v.dump()});
  const std::vector<std::vector<std::string>> param_classes(params.size(), {"", "l"});

  std::vector<Section> sections;
  sections.push_back({"Perplexity and sparsity", grid({ppl_chart, mass_chart}), "ppl"});
  sections.push_back({"Width per layer", width_chart, "width"});
  sections.push_back({"Runs",
                      table({"#", "run", "regulariser", "val ppl", "mean M_k", "sparse rows", "W_0.9 per layer",
                             "dense ppl", "top-k ppl (vs dense; kept)", "dyn top-k ppl (vs dense; kept)"},
                            rows, classes),
                      "runs"});
  sections.push_back({"Setup", table({"parameter", "value"}, params, param_classes), "setup"});
  size_t svgs = 0;
  for (const Section& s : sections) svgs += count_svgs(s.html);
  sections.back().html += loaded_marker_script(svgs);
  const std::string intro = "<p>" + html_escape(fmt::format(
      "The attention-condensation experiment: {} {} trained {} steps, {} runs; k = {}, eps = {}.", text(setup, "arch"),
      text(setup, "preset"), text(setup, "steps"), runs.size(), k, text(setup, "eps"))) + "</p>";
  return html_page("attnsparse condensation experiment", sections, intro);
}

}  // namespace attnsparse::report
