#include "report/policy_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "report/svg.h"

namespace attnsparse::report {

namespace {

using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double number(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return kNaN;
  return j[key].get<double>();
}

std::string string_of(const json& j, const char* key, const std::string& fallback = "") {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : fallback;
}

// One evaluated policy, as the charts need it.
struct Point {
  std::string policy, family, label;
  double kept, kv, ratio, delta, top1, tau, rel_l2, wall, speedup;  // ratio: ppl / dense ppl
  const json* row;
};

struct Family {
  std::string name;
  std::vector<size_t> points;  // into the points, sorted by kept fraction
};

// "h2o=budget:64,recent:16" -> "h2o"; maps (with ';') are their own family.
std::string family_of(const json& row) {
  if (row.contains("sweep") && row["sweep"].is_object()) return string_of(row["sweep"], "spec", "sweep");
  const std::string spec = string_of(row, "policy", "?");
  if (spec.find(';') != std::string::npos) return spec;
  const std::string name = spec.substr(0, spec.find('='));
  return name == "sink" ? "sink+window" : name;
}

std::string label_of(const json& row) {
  if (row.contains("sweep") && row["sweep"].is_object() && row["sweep"].contains("value")) {
    const json& v = row["sweep"]["value"];
    return v.is_string() ? v.get<std::string>() : v.is_number() ? format_number(v.get<double>(), 4) : v.dump();
  }
  const std::string spec = string_of(row, "policy");
  const size_t eq = spec.find('=');
  if (spec.find(';') != std::string::npos || eq == std::string::npos) return "";
  const std::string params = spec.substr(eq + 1);
  return params.size() <= 18 ? params : "";
}

struct Data {
  std::string model;
  double dense_ppl = kNaN;
  std::vector<Point> points;
  std::vector<Family> families;
};

Data read(const json& report) {
  Data d;
  d.model = string_of(report, "model", "model");
  d.dense_ppl = report.contains("dense") ? number(report["dense"], "ppl") : kNaN;
  std::map<std::string, size_t> family_index;
  static const json kNone = json::array();
  const json& rows = report.contains("policies") && report["policies"].is_array() ? report["policies"] : kNone;
  for (const json& row : rows) {
    if (!row.is_object()) continue;
    Point p;
    p.policy = string_of(row, "policy", "?");
    p.family = family_of(row);
    p.label = label_of(row);
    p.kept = number(row, "kept_fraction");
    p.kv = number(row, "kv_bytes_relative");
    const double ppl = number(row, "ppl");
    p.ratio = ppl / d.dense_ppl;
    p.delta = number(row, "delta_ppl");
    p.top1 = number(row, "top1_agreement");
    p.tau = number(row, "tau_mean");
    p.rel_l2 = number(row, "rel_l2_mean");
    p.wall = number(row, "wall_s");
    const double rel = number(row, "wall_relative");
    p.speedup = rel > 0 ? 1.0 / rel : kNaN;
    p.row = &row;
    auto [it, fresh] = family_index.try_emplace(p.family, d.families.size());
    if (fresh) d.families.push_back({p.family, {}});
    d.families[it->second].points.push_back(d.points.size());
    d.points.push_back(std::move(p));
  }
  for (Family& f : d.families)
    std::stable_sort(f.points.begin(), f.points.end(),
                     [&](size_t a, size_t b) { return d.points[a].kept < d.points[b].kept; });
  return d;
}

// One frontier chart: y(point) against x(point), a line per family, dense, the
// Pareto-optimal points (over all policies and dense) ringed.
std::string frontier_chart(const Data& d, const std::string& title, Axis x_axis, Axis y_axis, double Point::*x,
                           double Point::*y, double dense_y, bool lower_is_better, const std::string& note_text) {
  std::vector<Series> series;
  for (size_t f = 0; f < d.families.size(); ++f) {
    Series s;
    s.name = d.families[f].name;
    s.color = palette(f);
    for (size_t i : d.families[f].points) {
      s.x.push_back(d.points[i].*x);
      s.y.push_back(d.points[i].*y);
      s.labels.push_back(d.points[i].label);
    }
    series.push_back(std::move(s));
  }
  Series dense;
  dense.name = "dense";
  dense.color = "#000000";
  dense.line = false;
  dense.marker = Marker::Diamond;
  dense.x = {1.0};
  dense.y = {dense_y};
  series.push_back(dense);
  std::vector<double> xs, ys;
  for (const Point& p : d.points) xs.push_back(p.*x), ys.push_back(p.*y);
  xs.push_back(1.0);
  ys.push_back(dense_y);
  const std::vector<bool> best = pareto_optimal(xs, ys, lower_is_better);
  Series front;
  front.name = "Pareto-optimal";
  front.color = "#444444";
  front.marker = Marker::Ring;
  front.dashed = true;
  std::vector<size_t> order;
  for (size_t i = 0; i < best.size(); ++i)
    if (best[i]) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return xs[a] < xs[b]; });
  for (size_t i : order) front.x.push_back(xs[i]), front.y.push_back(ys[i]);
  series.push_back(front);
  ChartSpec spec;
  spec.title = title;
  spec.x = std::move(x_axis);
  spec.y = std::move(y_axis);
  spec.width = 580;
  spec.height = 380;
  spec.note = note_text;
  return chart(spec, series);
}

std::string frontier_section(const Data& d) {
  Axis kept = linear_axis("kept fraction of the causal keys");
  kept.min = 0;
  Axis kv = linear_axis("KV-cache bytes at the peak / dense");
  kv.min = 0;
  Axis ratio = log_axis("perplexity / dense perplexity (log scale)");
  Axis top1 = linear_axis("top-1 agreement with dense");
  top1.max = 1;
  const std::string ppl_note = "Lower is better (1.01 = +1%); labels: the swept value. Rings: Pareto-optimal.";
  const std::string top1_note = "Higher is better; labels: the swept value. Rings: Pareto-optimal.";
  return grid({frontier_chart(d, "Perplexity vs kept keys", kept, ratio, &Point::kept, &Point::ratio, 1.0, true, ppl_note),
               frontier_chart(d, "Top-1 agreement vs kept keys", kept, top1, &Point::kept, &Point::top1, 1.0, false,
                              top1_note),
               frontier_chart(d, "Perplexity vs KV-cache bytes", kv, ratio, &Point::kv, &Point::ratio, 1.0, true, ppl_note),
               frontier_chart(d, "Top-1 agreement vs KV-cache bytes", kv, top1, &Point::kv, &Point::top1, 1.0, false,
                              top1_note)}) +
         note("Perplexity with the policy through the whole model (evicting policies: exactly token-by-token decoding "
              "with eviction) over the dense perplexity on the same tokens. Kept fraction: keys in the policy's sets "
              "over causal keys (all layers, heads and rows). KV bytes: the most the policy needs to hold when "
              "decoding token by token; content policies (topk, dyntopk, topp) and quest keep the whole cache (1).");
}

std::string layer_section(const Data& d) {
  HeatmapSpec h;
  h.title = "||O - O_G|| / ||O|| per layer";
  h.row_label = "policy";
  h.col_label = "layer";
  size_t layers = 0;
  for (const Point& p : d.points) {
    std::vector<double> row;
    if (p.row->contains("layers") && (*p.row)["layers"].is_array())
      for (const json& l : (*p.row)["layers"]) row.push_back(number(l, "rel_l2"));
    layers = std::max(layers, row.size());
    h.values.push_back(std::move(row));
    h.row_names.push_back(p.policy);
  }
  for (auto& row : h.values) row.resize(layers, kNaN);
  h.lo = 0;
  h.decimals = 3;
  h.max_width = 760;
  h.note = "Oracle mode: dense q/k/v.";
  if (h.values.empty() || layers == 0) return note("No per-layer values in this report.");
  return heatmap(h) + note("Relative error of each layer's attention output with the policy's key sets against "
                           "dense, on the same q/k/v (the model runs dense: oracle mode); darker = larger.");
}

std::string speed_section(const Data& d, const json& report) {
  std::vector<Series> series;
  double min_kept = 1;
  for (size_t f = 0; f < d.families.size(); ++f) {
    Series s;
    s.name = d.families[f].name;
    s.color = palette(f);
    for (size_t i : d.families[f].points) {
      s.x.push_back(d.points[i].kept);
      s.y.push_back(d.points[i].speedup);
      s.labels.push_back(d.points[i].label);
      if (std::isfinite(d.points[i].kept) && d.points[i].kept > 0) min_kept = std::min(min_kept, d.points[i].kept);
    }
    series.push_back(std::move(s));
  }
  Series ideal;
  ideal.name = "ideal 1 / kept";
  ideal.color = "#000000";
  ideal.dashed = true;
  ideal.markers = false;
  for (int i = 0; i <= 40; ++i) {
    const double k = min_kept * std::pow(1.0 / min_kept, i / 40.0);
    ideal.x.push_back(k);
    ideal.y.push_back(1.0 / k);
  }
  series.push_back(ideal);
  ChartSpec spec;
  spec.title = "Speed-up of the policy's forward passes vs kept keys";
  spec.x = log_axis("kept fraction of the causal keys");
  spec.y = log_axis("dense wall time / policy wall time");
  spec.width = 580;
  spec.height = 380;
  spec.y_rules = {{1.0, "dense"}};
  spec.note = "Content policies select from a dense pass first and evicting ones are simulated here: not faster by design.";
  std::vector<std::string> charts = {chart(spec, series)};
  // Real decoding, when the report has it.
  const double dense_ms = report.contains("dense") && report["dense"].contains("real_decode")
                              ? number(report["dense"]["real_decode"], "ms_per_token")
                              : kNaN;
  if (std::isfinite(dense_ms)) {
    std::vector<Series> dec;
    for (size_t f = 0; f < d.families.size(); ++f) {
      Series s;
      s.name = d.families[f].name;
      s.color = palette(f);
      for (size_t i : d.families[f].points) {
        const json& r = *d.points[i].row;
        const double ms = r.contains("real_decode") ? number(r["real_decode"], "ms_per_token") : kNaN;
        s.x.push_back(d.points[i].kv);
        s.y.push_back(dense_ms / ms);
        s.labels.push_back(d.points[i].label);
      }
      dec.push_back(std::move(s));
    }
    ChartSpec ds;
    ds.title = "Real decoding: speed-up per token vs KV-cache bytes";
    ds.x = linear_axis("KV-cache bytes at the peak / dense");
    ds.x.min = 0;
    ds.y = log_axis("dense ms/token / policy ms/token");
    ds.width = 580;
    ds.height = 380;
    ds.y_rules = {{1.0, "dense"}};
    ds.note = "The prompt prefilled, then the last tokens decoded one by one with real eviction.";
    charts.push_back(chart(ds, dec));
  }
  return grid(charts) + note("Wall times come from one run on a possibly shared machine; bench-attention measures "
                             "the attention core alone.");
}

std::string fmt_fixed(double v, int digits) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "n/a"; }

std::string table_section(const Data& d, const json& report) {
  std::vector<double> kept, kv, ratio;
  for (const Point& p : d.points) kept.push_back(p.kept), kv.push_back(p.kv), ratio.push_back(p.ratio);
  // Dense competes too (it is optimal at x = 1 unless something is at least as good).
  kept.push_back(1), kv.push_back(1), ratio.push_back(1);
  const std::vector<bool> by_kept = pareto_optimal(kept, ratio, true), by_kv = pareto_optimal(kv, ratio, true);
  std::vector<std::vector<std::string>> rows, classes;
  rows.push_back({"dense", "1.0000", "1.0000", "0.00000", "0", fmt_fixed(d.dense_ppl, 4), "+0.0000", "1.0000",
                  fmt_fixed(report.contains("dense") ? number(report["dense"], "wall_s") : kNaN, 2), "1.00",
                  by_kept.back() ? "yes" : "", by_kv.back() ? "yes" : ""});
  classes.push_back({"", "", "", "", "", "", "", "", "", "", by_kept.back() ? "good" : "", by_kv.back() ? "good" : ""});
  for (size_t i = 0; i < d.points.size(); ++i) {
    const Point& p = d.points[i];
    rows.push_back({p.policy, fmt_fixed(p.kept, 4), fmt_fixed(p.kv, 4),
                    fmt_fixed(p.tau, 5), format_number(p.rel_l2, 3),
                    fmt_fixed(p.ratio * d.dense_ppl, 4),
                    std::isfinite(p.delta) ? fmt::format("{:+.4f}", p.delta) : "n/a", fmt_fixed(p.top1, 4),
                    fmt_fixed(p.wall, 2), fmt_fixed(p.speedup, 2), by_kept[i] ? "yes" : "", by_kv[i] ? "yes" : ""});
    classes.push_back({"", "", "", "", "", "", p.delta > 0 ? "bad" : "", "", "", "", by_kept[i] ? "good" : "",
                       by_kv[i] ? "good" : ""});
  }
  return table({"policy", "kept", "kv", "tau", "rel_l2", "ppl", "d_ppl", "top1", "time_s", "speed-up",
                "Pareto (kept)", "Pareto (kv)"},
               rows, classes) +
         note("Pareto: no other policy (or dense) has at most this kept fraction (KV bytes) and at most this "
              "perplexity, with one of them smaller.");
}

std::string definitions_section(const json& report) {
  std::vector<std::vector<std::string>> rows;
  if (report.contains("definitions") && report["definitions"].is_object())
    for (const auto& [k, v] : report["definitions"].items())
      rows.push_back({k, v.is_string() ? v.get<std::string>() : v.dump()});
  const std::vector<std::vector<std::string>> classes(rows.size(), {"", "l"});
  return table({"field", "definition"}, rows, classes);
}

}  // namespace

std::vector<bool> pareto_optimal(const std::vector<double>& x, const std::vector<double>& y, bool lower_is_better) {
  const size_t n = std::min(x.size(), y.size());
  std::vector<bool> out(n, false);
  auto better_or_equal = [&](double a, double b) { return lower_is_better ? a <= b : a >= b; };
  auto strictly_better = [&](double a, double b) { return lower_is_better ? a < b : a > b; };
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) continue;
    bool dominated = false;
    for (size_t j = 0; j < n && !dominated; ++j) {
      if (j == i || !std::isfinite(x[j]) || !std::isfinite(y[j])) continue;
      dominated = x[j] <= x[i] && better_or_equal(y[j], y[i]) && (x[j] < x[i] || strictly_better(y[j], y[i]));
    }
    out[i] = !dominated;
  }
  return out;
}

bool is_policy_report(const json& report) {
  return report.is_object() && report.contains("policies") && report["policies"].is_array() &&
         report.contains("dense") && report["dense"].is_object() && report["dense"].contains("ppl");
}

std::string policy_html(const json& report) {
  const Data d = read(report);
  std::string intro = "<p>";
  intro += html_escape(fmt::format(
      "{} — {} documents, {} tokens ({} predicted), at most {} tokens per document; dense perplexity {}; {} "
      "policies in {} families.",
      d.model, report.value("documents", json(nullptr)).dump(), report.value("tokens", json(nullptr)).dump(),
      report.value("predicted_tokens", json(nullptr)).dump(), report.value("max_tokens", json(nullptr)).dump(),
      format_number(d.dense_ppl, 5), d.points.size(), d.families.size()));
  intro += "</p>";
  std::vector<Section> sections;
  sections.push_back({"Quality vs memory", frontier_section(d), "frontier"});
  sections.push_back({"Output error per layer", layer_section(d), "layers"});
  sections.push_back({"Time", speed_section(d, report), "time"});
  sections.push_back({"Table", table_section(d, report), "table"});
  sections.push_back({"Definitions", definitions_section(report), "definitions"});
  size_t svgs = 0;
  for (const Section& s : sections) svgs += count_svgs(s.html);
  sections.back().html += loaded_marker_script(svgs);
  return html_page("attnsparse eval-policy: " + d.model, sections, intro);
}

}  // namespace attnsparse::report
