#include "report/analysis_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model_limits.h"
#include "io/json_file.h"
#include "report/svg.h"

namespace attnsparse::report {

namespace {

using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Bounds on the counts that size this page's memory and loops (json_int refuses a
// tampered file past them): layers and heads as core/model_limits.h; the analysis has far
// fewer clusters and histogram bins.
constexpr int64_t kMaxClusters = 4096, kMaxClusterFeatures = 1024, kMaxBins = 100000;

double number(const json& j) { return j.is_number() ? j.get<double>() : kNaN; }

// j[a][b]... with missing keys or nulls as NaN.
double at(const json& j, std::initializer_list<const char*> path) {
  const json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) return kNaN;
    p = &(*p)[k];
  }
  return number(*p);
}

std::string text_of(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "n/a";
  if (j.is_number_float()) return format_number(j.get<double>(), 4);
  return j.dump();
}

const char* verdict_label(const std::string& v) {
  return v == "supported" ? "supported" : v == "partial" ? "partial" : "not supported";
}

// One series per layer: x = layer, y = per_layer[l].metrics[name].mean with its interval.
Series layer_series(json& report, const std::string& metric, const std::string& label) {
  Series s;
  s.name = label;
  for (json& l : report["per_layer"]) {
    json& m = l["metrics"][metric];
    s.x.push_back(number(l["layer"]));
    s.y.push_back(number(m["mean"]));
    s.low.push_back(number(m["low"]));
    s.high.push_back(number(m["high"]));
  }
  return s;
}

// Native windows per layer (per_layer[].attention.window; 0 or missing = global).
std::vector<int64_t> layer_windows(json& report) {
  std::vector<int64_t> w;
  for (json& l : report["per_layer"]) {
    const json* a = l.is_object() && l.contains("attention") ? &l["attention"] : nullptr;
    const bool has = a && a->is_object() && a->contains("window") && (*a)["window"].is_number();
    w.push_back(has ? json_int((*a)["window"], fmt::format("per_layer[{}].attention.window", w.size()), kJsonIntMin,
                               kJsonIntMax)
                    : 0);
  }
  return w;
}

bool any_windowed(json& report) {
  for (int64_t w : layer_windows(report))
    if (w > 0) return true;
  return false;
}

std::string layer_kind_text(int64_t window) { return window > 0 ? fmt::format("window {}", window) : "global"; }

// Rings around the points of windowed layers, in each series' colour: added to a
// per-layer chart only when some layer is windowed.
void ring_windowed(json& report, std::vector<Series>& series, ChartSpec& spec) {
  const std::vector<int64_t> windows = layer_windows(report);
  if (!any_windowed(report)) return;
  const size_t n = series.size();
  for (size_t i = 0; i < n; ++i) {
    Series ring;
    ring.name = i == 0 ? "windowed layer" : "";
    ring.color = series[i].color.empty() ? palette(i) : series[i].color;
    ring.line = false;
    ring.marker = Marker::Ring;
    for (size_t k = 0; k < series[i].x.size(); ++k) {
      const double l = series[i].x[k];
      if (l >= 0 && l < double(windows.size()) && windows[size_t(l)] > 0)
        ring.x.push_back(l), ring.y.push_back(series[i].y[k]);
    }
    series.push_back(ring);
  }
  spec.note += std::string(spec.note.empty() ? "" : " ") + "Rings: sliding-window layers.";
}

int64_t conjecture_id(const json& c, size_t i) {
  return json_int(c.is_object() && c.contains("id") ? c["id"] : json(), fmt::format("conjectures[{}].id", i), 0, 1000);
}

std::string verdict_section(json& report) {
  std::vector<std::vector<std::string>> rows, classes;
  for (json& c : report["conjectures"]) {
    const std::string v = c["verdict"].get<std::string>();
    std::string evidence = c["detail"].get<std::string>();
    if (c.value("insufficient_data", false)) evidence += " (insufficient data)";
    const int64_t id = conjecture_id(c, rows.size());
    rows.push_back({fmt::format("C{}", id), c["name"].get<std::string>(), verdict_label(v), evidence});
    classes.push_back({"", "l", v == "supported" ? "good" : v == "not_supported" ? "bad" : "", "l"});
  }
  return table({"#", "conjecture", "verdict", "evidence"}, rows, classes) +
         note("Rules (docs/methods.md §7, parameters below): C1 Spearman rho(layer, mean w_0.9) <= -0.5 with "
              "p < 0.01 supports, a widest layer in the middle third whose interval lies above the first "
              "and last layers' refutes; C2 silhouette and adjusted Rand index of k-means head clusters; "
              "C3/C4 per-layer median ratio to the uniform baseline >= 5 with Holm-adjusted one-sided "
              "Wilcoxon p < 0.01 in >= 90% of layers; C5 mean top-32 overlap at gap 128 >= 0.8 (>= 0.4 partial).") +
         (any_windowed(report)
              ? note("This model has layers with a native sliding window: C1 is judged over its global layers "
                     "(the windowed ones are listed apart in report.json); the other statistics of a windowed "
                     "layer are taken over the keys it lets a query see.")
              : std::string());
}

std::string width_charts(json& report) {
  ChartSpec spec;
  spec.title = "Normalised width w_p = W_p / (t+1) per layer";
  spec.x = linear_axis("layer");
  spec.x.integer_ticks = true;
  spec.y = linear_axis("mean w_p (share of keys)");
  spec.y.min = 0;
  spec.note = "Bands: 95% bootstrap intervals over documents.";
  std::vector<Series> s = {layer_series(report, "width_norm_p50", "p = 0.5"),
                           layer_series(report, "width_norm_p90", "p = 0.9"),
                           layer_series(report, "width_norm_p99", "p = 0.99")};
  ChartSpec abs = spec;
  abs.title = "Width W_p (keys holding mass p) per layer";
  abs.y = log_axis("mean W_p (keys)");
  std::vector<Series> a = {layer_series(report, "width_p50", "p = 0.5"),
                           layer_series(report, "width_p90", "p = 0.9"),
                           layer_series(report, "width_p99", "p = 0.99")};
  ChartSpec ent = spec;
  ent.title = "Entropy per layer (normalised by ln(t+1))";
  ent.y = linear_axis("mean H / ln(t+1)");
  ent.y.min = 0;
  ent.y.max = 1;
  std::vector<Series> e = {layer_series(report, "entropy_norm", "H / ln(t+1)")};
  if (any_windowed(report)) {
    spec.title = "Normalised width w_p = W_p / visible keys per layer";
    ent.title = "Entropy per layer (normalised by ln of the visible keys)";
  }
  ring_windowed(report, s, spec);
  ring_windowed(report, a, abs);
  ring_windowed(report, e, ent);
  return grid({chart(spec, s), chart(abs, a), chart(ent, e)});
}

std::string sink_recency_charts(json& report) {
  ChartSpec mass;
  mass.title = "Sink and recency mass per layer";
  mass.x = linear_axis("layer");
  mass.x.integer_ticks = true;
  mass.y = linear_axis("mean attention mass");
  mass.y.min = 0;
  mass.y.max = 1;
  mass.note = "a_0: mass on the first token; R_w: mass on the last w keys. Bands: 95% bootstrap intervals.";
  std::vector<Series> ms = {layer_series(report, "sink_mass", "sink a_0"),
                            layer_series(report, "recent_1", "R_1"),
                            layer_series(report, "recent_8", "R_8"),
                            layer_series(report, "recent_32", "R_32"),
                            layer_series(report, "recent_128", "R_128")};
  ChartSpec share = mass;
  share.title = "First token as arg-max / in the top 5";
  share.y = linear_axis("share of rows");
  share.note = "";
  std::vector<Series> ss = {layer_series(report, "sink_argmax", "key 0 is arg-max"),
                            layer_series(report, "sink_top5", "key 0 in top 5")};
  if (any_windowed(report)) {
    mass.note = "a_0: first token; R_w: last w keys. Bands: 95% bootstrap intervals.";
    share.title = "First token as arg-max / in the top 5 (rows that see it)";
  }
  ring_windowed(report, ms, mass);
  ring_windowed(report, ss, share);
  // Median ratios to the uniform baseline, from the C3 / C4 statistics.
  ChartSpec ratio;
  ratio.title = "Median ratio to the uniform baseline per layer";
  ratio.x = linear_axis("layer");
  ratio.x.integer_ticks = true;
  ratio.y = log_axis("median ratio");
  ratio.y_rules = {{5.0, "verdict threshold"}, {1.0, "uniform"}};
  std::vector<Series> rs;
  size_t ci = 0;
  for (json& c : report["conjectures"]) {
    const size_t i = ci++;
    const int64_t id = conjecture_id(c, i);
    if (id != 3 && id != 4) continue;
    Series s;
    s.name = id == 3 ? fmt::format("R_{} / baseline (C3)",
                                   json_int_or(c["statistics"], "window", fmt::format("conjectures[{}].statistics.window", i),
                                               32, kJsonIntMin, kJsonIntMax))
                     : "a_0 (t+1) (C4)";
    for (json& l : c["statistics"]["per_layer"]) {
      s.x.push_back(number(l["layer"]));
      s.y.push_back(number(l["median_ratio"]));
    }
    rs.push_back(s);
  }
  ring_windowed(report, rs, ratio);
  return grid({chart(mass, ms), chart(share, ss), chart(ratio, rs)});
}

std::string head_section(json& report) {
  const int L = int(json_int(report["counts"]["layers"], "counts.layers", 1, kMaxLayers));
  const int H = int(json_int(report["counts"]["heads"], "counts.heads", 1, kMaxHeads));
  if (int64_t{L} * H > kMaxLayerHeads)
    throw FormatError(fmt::format("counts.layers x counts.heads = {} x {} is more than {} heads", L, H, kMaxLayerHeads));
  std::vector<std::vector<int>> labels(L, std::vector<int>(H, -1));
  std::vector<std::vector<std::string>> tips(L, std::vector<std::string>(H));
  HeatmapSpec width, sink;
  width.title = "Mean w_0.9 per head";
  sink.title = "Mean sink mass a_0 per head";
  for (HeatmapSpec* h : {&width, &sink}) {
    h->row_label = "layer";
    h->col_label = "head";
    h->values.assign(L, std::vector<double>(H, kNaN));
    h->max_width = 520;
  }
  width.lo = 0;
  sink.lo = 0;
  sink.hi = 1;
  if (any_windowed(report)) {  // row labels "3 (w 32)" for windowed layers
    const std::vector<int64_t> windows = layer_windows(report);
    for (HeatmapSpec* h : {&width, &sink})
      for (int l = 0; l < L; ++l)
        h->row_names.push_back(size_t(l) < windows.size() && windows[size_t(l)] > 0
                                   ? fmt::format("{} (w {})", l, windows[size_t(l)])
                                   : std::to_string(l));
  }
  // The cluster of every per_head entry, in file order (-1: none).
  std::vector<int> cluster_of;
  for (json& h : report["per_head"]) {
    const size_t i = cluster_of.size();
    cluster_of.push_back(h["cluster"].is_number()
                             ? int(json_int(h["cluster"], fmt::format("per_head[{}].cluster", i), 0, kMaxClusters - 1))
                             : -1);
    const int64_t l = json_int(h["layer"], fmt::format("per_head[{}].layer", i), 0, kMaxLayers - 1);
    const int64_t k = json_int(h["head"], fmt::format("per_head[{}].head", i), 0, kMaxHeads - 1);
    if (l >= L || k >= H) continue;
    labels[l][k] = cluster_of[i];
    width.values[l][k] = at(h, {"features", "width_norm_p90"});
    sink.values[l][k] = at(h, {"features", "sink_mass"});
    tips[l][k] = fmt::format("layer {} head {}: cluster {}, w_0.9 {}, sink {}, R_32 {}, H/ln(t+1) {}, overlap@16 {}", l, k,
                             labels[l][k] >= 0 ? std::to_string(labels[l][k]) : "none",
                             format_number(width.values[l][k]), format_number(sink.values[l][k]),
                             format_number(at(h, {"features", "recent_32"})),
                             format_number(at(h, {"features", "entropy_norm"})),
                             format_number(at(h, {"features", "persistence_overlap_k32"})));
  }
  json& cl = report["clusters"];
  const int64_t best_k = cl["best_k"].is_number() ? json_int(cl["best_k"], "clusters.best_k", 1, kMaxClusters) : 0;
  const std::string title = best_k > 0 ? fmt::format("Head clusters (k = {}, silhouette {})", best_k,
                                                     format_number(number(cl["silhouette"])))
                                       : std::string("Head clusters (none)");
  std::string html = grid({cluster_grid_svg(labels, tips, title), heatmap(width), heatmap(sink)});
  // Cluster centres in feature units: the mean of each feature over the cluster's heads.
  if (best_k > 0) {
    const int k = int(best_k);
    std::vector<std::string> header = {"cluster", "heads"};
    if (cl["features"].size() > size_t(kMaxClusterFeatures))
      throw FormatError(fmt::format("clusters.features holds {} names, more than {}", cl["features"].size(),
                                    kMaxClusterFeatures));
    std::vector<std::string> features;
    for (json& f : cl["features"]) features.push_back(f.get<std::string>());
    header.insert(header.end(), features.begin(), features.end());
    // One pass over the heads: counts and feature sums per cluster.
    std::vector<int64_t> count(size_t(k), 0);
    std::vector<std::vector<double>> sum(size_t(k), std::vector<double>(features.size(), 0.0));
    size_t i = 0;
    for (json& h : report["per_head"]) {
      const int c = cluster_of[i++];
      if (c < 0 || c >= k) continue;
      ++count[size_t(c)];
      for (size_t f = 0; f < features.size(); ++f) sum[size_t(c)][f] += number(h["features"][features[f]]);
    }
    std::vector<std::vector<std::string>> rows;
    for (int c = 0; c < k; ++c) {
      std::vector<std::string> row = {std::to_string(c), std::to_string(count[size_t(c)])};
      for (double s : sum[size_t(c)]) row.push_back(format_number(count[size_t(c)] ? s / double(count[size_t(c)]) : kNaN));
      rows.push_back(row);
    }
    html += table(header, rows);
  }
  std::vector<std::vector<std::string>> cand;
  for (json& c : cl["candidates"])
    cand.push_back({text_of(c["k"]), text_of(c["silhouette"]), text_of(c["inertia"])});
  html += table({"k", "silhouette", "inertia"}, cand);
  json& st = cl["stability"];
  std::vector<std::vector<std::string>> pairs;
  for (json& p : st["pairs"]) {
    if (pairs.size() >= 30) break;
    pairs.push_back({p["a"].get<std::string>(), p["b"].get<std::string>(), text_of(p["ari"])});
  }
  html += note(st["basis"].is_string()
                   ? fmt::format("Stability: adjusted Rand index of the clusterings of {} = {} (mean over pairs).",
                                 st["basis"].get<std::string>(), text_of(st["ari"]))
                   : std::string("Stability: not measurable (one dataset and fewer than two documents)."));
  if (!pairs.empty()) html += table({"group a", "group b", "ARI"}, pairs);
  return html;
}

std::string persistence_chart(json& report) {
  ChartSpec spec;
  spec.title = "Persistence against the gap";
  spec.x = log_axis("gap (tokens)", true);
  spec.y = linear_axis("overlap / mass");
  spec.y.min = 0;
  spec.y.max = 1;
  spec.note = "overlap_k: |top-k(a_t) ∩ top-k(a_t' restricted to keys <= t)| / k; h2o_k: share of a_t' (restricted) on "
              "the k keys with the most attention accumulated over queries <= t. Bands: 95% bootstrap intervals.";
  std::vector<Series> series;
  for (const char* name : {"overlap_k8", "overlap_k32", "h2o_k8", "h2o_k32"}) {
    Series s;
    s.name = name;
    s.dashed = std::string(name).starts_with("h2o");
    for (json& g : report["persistence"]) {
      s.x.push_back(number(g["gap"]));
      s.y.push_back(at(g, {name, "mean"}));
      s.low.push_back(at(g, {name, "low"}));
      s.high.push_back(at(g, {name, "high"}));
    }
    series.push_back(s);
  }
  ChartSpec layer_spec;
  layer_spec.title = "Top-32 overlap per layer";
  layer_spec.x = linear_axis("layer");
  layer_spec.x.integer_ticks = true;
  layer_spec.y = linear_axis("mean overlap_k32");
  layer_spec.y.min = 0;
  layer_spec.y.max = 1;
  std::vector<Series> per_layer;
  for (json& g : report["persistence"]) {
    Series s;
    s.name = fmt::format("gap {}", json_int(g["gap"], fmt::format("persistence[{}].gap", per_layer.size()), kJsonIntMin,
                                            kJsonIntMax));
    json& v = g["per_layer"]["overlap_k32"];
    for (size_t l = 0; l < v.size(); ++l) {
      s.x.push_back(double(l));
      s.y.push_back(at(v[l], {"mean"}));
    }
    per_layer.push_back(s);
  }
  return grid({chart(spec, series), chart(layer_spec, per_layer)});
}

std::string distribution_charts(json& report) {
  struct Kind {
    const char* key;
    const char* title;
    const char* x;
  };
  const Kind kinds[] = {{"width_norm_p90", "Distribution of w_0.9", "w_0.9"},
                        {"entropy_norm", "Distribution of H / ln(t+1)", "H / ln(t+1)"},
                        {"sink_mass", "Distribution of the sink mass a_0", "a_0"},
                        {"recent_ratio", "Distribution of R_w / baseline (C3 window)", "R_w / baseline"},
                        {"sink_ratio", "Distribution of a_0 (t+1)", "a_0 (t+1)"}};
  std::vector<std::string> charts;
  json& d = report["distributions"];
  for (const Kind& k : kinds) {
    if (!d.contains(k.key)) continue;
    json& h = d[k.key];
    const bool log10 = h["log10"].get<bool>();
    const double lo = h["lo"].get<double>(), hi = h["hi"].get<double>();
    const std::string where = fmt::format("distributions.{}", k.key);
    const int bins = int(json_int(h["bins"], where + ".bins", 1, kMaxBins));
    // counts: [below the axis, bins..., above the axis], per layer likewise.
    const auto check_counts = [&](const json& counts, const std::string& name) {
      if (!counts.is_array() || counts.size() != size_t(bins) + 2)
        throw FormatError(fmt::format("field '{}' must be an array of bins + 2 = {} counts, got {}", name, bins + 2,
                                      counts.is_array() ? fmt::format("{} values", counts.size()) : json_kind_of(counts)));
    };
    check_counts(h["counts"], where + ".counts");
    ChartSpec spec;
    spec.title = k.title;
    spec.x = log10 ? log_axis(k.x) : linear_axis(k.x);
    spec.y = linear_axis("share of rows per bin (%)");
    spec.y.min = 0;
    auto series_of = [&](json& counts, const std::string& name) {
      Series s;
      s.name = name;
      s.markers = false;
      double total = 0;
      for (json& c : counts) total += c.get<double>();
      for (int i = 1; i <= bins; ++i) {
        const double x = lo + (hi - lo) * (i - 0.5) / bins;
        s.x.push_back(log10 ? std::pow(10.0, x) : x);
        s.y.push_back(total > 0 ? 100.0 * counts[i].get<double>() / total : kNaN);
      }
      return s;
    };
    std::vector<Series> series = {series_of(h["counts"], "all layers")};
    json& per = h["per_layer"];
    const size_t L = per.size();
    if (L >= 3) {
      for (size_t l : {size_t(0), L / 2, L - 1}) check_counts(per[l], fmt::format("{}.per_layer[{}]", where, l));
      series.push_back(series_of(per[0], "first layer"));
      series.push_back(series_of(per[L / 2], fmt::format("layer {}", L / 2)));
      series.push_back(series_of(per[L - 1], "last layer"));
      for (size_t i = 1; i < series.size(); ++i) series[i].dashed = true;
    }
    const double total = [&] {
      double t = 0;
      for (json& c : h["counts"]) t += c.get<double>();
      return t;
    }();
    const double under = h["counts"][0].get<double>(), over = h["counts"][bins + 1].get<double>();
    if (total > 0 && (under > 0 || over > 0))
      spec.note = fmt::format("Outside the axis: {:.2g}% below, {:.2g}% above.", 100 * under / total, 100 * over / total);
    charts.push_back(chart(spec, series));
  }
  return grid(charts);
}

std::string layer_table(json& report) {
  std::vector<std::vector<std::string>> rows;
  const std::vector<int64_t> windows = layer_windows(report);
  for (json& l : report["per_layer"]) {
    auto mean = [&](const char* m) { return format_number(at(l, {"metrics", m, "mean"})); };
    const size_t i = rows.size();
    rows.push_back({text_of(l["layer"]), layer_kind_text(i < windows.size() ? windows[i] : 0), text_of(l["rows"]),
                    mean("width_norm_p50"), mean("width_norm_p90"), mean("width_p90"), mean("entropy"),
                    mean("entropy_norm"), mean("sink_mass"), mean("sink_argmax"), mean("recent_1"),
                    mean("recent_32"), mean("recent_ratio_32")});
  }
  std::string html = table({"layer", "attention", "rows", "w_0.5", "w_0.9", "W_0.9", "H", "H/ln(t+1)", "a_0",
                            "a_0 argmax", "R_1", "R_32", "R_32/base"},
                           rows);
  if (any_windowed(report))
    html += note("Windowed layers: widths and entropy are normalised by the keys the layer lets the query see "
                 "(min(t+1, window)), recency baselines are over those keys, and the sink columns average only the "
                 "rows whose window still holds key 0.");
  return html;
}

void flatten(json& j, const std::string& prefix, std::vector<std::vector<std::string>>& rows) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), rows);
  } else {
    rows.push_back({prefix, j.is_string() ? j.get<std::string>() : j.dump()});
  }
}

std::string documents_table(json& report) {
  std::vector<std::vector<std::string>> rows;
  json& docs = report["documents"];
  for (size_t i = 0; i < docs.size() && i < 200; ++i) {
    json& d = docs[i];
    rows.push_back({std::to_string(i), d["id"].get<std::string>(), d["dataset"].get<std::string>(),
                    text_of(d["tokens"]), text_of(d["original_tokens"]), text_of(d["rows"])});
  }
  std::string html = table({"doc", "id", "dataset", "tokens", "before truncation", "rows"}, rows);
  if (docs.size() > 200) html += note(fmt::format("... and {} more (see report.json).", docs.size() - 200));
  return html;
}

}  // namespace

std::string cluster_grid_svg(const std::vector<std::vector<int>>& labels,
                             const std::vector<std::vector<std::string>>& tooltips, const std::string& title) {
  const size_t L = labels.size();
  size_t H = 0;
  int k = 0;
  for (const auto& row : labels) {
    H = std::max(H, row.size());
    for (int c : row) k = std::max(k, c + 1);
  }
  const double cell = std::clamp(440.0 / std::max<size_t>(1, H), 6.0, 28.0);
  const double left = 48, top = 34;
  const double text_px = 0.58 * 11;  // rough width of one 11px character
  const double width = std::max({left + cell * double(H) + 16, left + 0.6 * 13 * double(title.size()) + 8, 260.0});
  // Legend entries wrap into rows that fit the width.
  std::vector<std::pair<double, double>> legend_at;  // x, y offset per entry
  double lx = left, ly = 0;
  for (int c = 0; c < std::max(k, 1); ++c) {
    const double w = 24 + text_px * double(fmt::format("cluster {}", c).size());
    if (lx + w > width && lx > left) lx = left, ly += 16;
    legend_at.push_back({lx, ly});
    lx += w;
  }
  const double grid_bottom = top + cell * double(L);
  const double height = grid_bottom + 30 + ly + 18;
  std::string svg = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0:.0f}" height="{1:.0f}" viewBox="0 0 {0:.0f} {1:.0f}" font-family="sans-serif" font-size="11">)",
      width, height);
  svg += fmt::format(R"(<text x="{:.1f}" y="16" font-size="13" font-weight="bold">{}</text>)", left, html_escape(title));
  for (size_t l = 0; l < L; ++l) {
    if (L <= 40 || l % ((L + 39) / 40) == 0)
      svg += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" text-anchor="end" dominant-baseline="middle">{}</text>)",
                         left - 4, top + cell * (double(l) + 0.5), l);
    for (size_t h = 0; h < labels[l].size(); ++h) {
      const int c = labels[l][h];
      const std::string color = c >= 0 ? palette(size_t(c)) : "#dddddd";
      const std::string tip = l < tooltips.size() && h < tooltips[l].size() ? tooltips[l][h] : "";
      svg += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}" stroke="#ffffff" stroke-width="0.5"><title>{}</title></rect>)",
                         left + cell * double(h), top + cell * double(l), cell, cell, color, html_escape(tip));
    }
  }
  svg += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" text-anchor="middle">head</text>)", left + cell * double(H) / 2,
                     grid_bottom + 14);
  svg += fmt::format(R"~(<text x="12" y="{:.1f}" transform="rotate(-90 12 {:.1f})" text-anchor="middle">layer</text>)~",
                     top + cell * double(L) / 2, top + cell * double(L) / 2);
  for (int c = 0; c < std::max(k, 1); ++c) {
    const auto [x, dy] = legend_at[size_t(c)];
    const double y = grid_bottom + 24 + dy;
    svg += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="10" height="10" fill="{}"/>)", x, y,
                       k > 0 ? palette(size_t(c)) : "#dddddd");
    svg += fmt::format(R"(<text x="{:.1f}" y="{:.1f}">{}</text>)", x + 14, y + 9,
                       k > 0 ? fmt::format("cluster {}", c) : std::string("no clusters"));
  }
  svg += "</svg>";
  return svg;
}

// The renderers read the report through non-const access: a missing key reads as null
// (and a null where a value is needed throws json::exception) instead of the undefined
// behaviour of const operator[] on a file that lacks a field (attnsparse report).
std::string analysis_html(const json& original) {
  json report = original;
  json& counts = report["counts"];
  const std::string model = report.contains("model") ? report["model"].value("name", report["model"].value("path", "model")) : "model";
  std::string intro = "<p>";
  intro += html_escape(fmt::format(
      "{} — {} documents ({} datasets), {} tokens, {} attention rows ({} prefill, {} decode), {} layers x {} heads "
      "({} KV heads).",
      model, text_of(counts["documents"]), text_of(counts["datasets"]), text_of(counts["tokens"]), text_of(counts["rows"]),
      text_of(counts["prefill_rows"]), text_of(counts["decode_rows"]), text_of(counts["layers"]), text_of(counts["heads"]),
      text_of(counts["kv_heads"])));
  intro += "</p>";
  std::vector<Section> sections;
  sections.push_back({"Verdicts", verdict_section(report), "verdicts"});
  sections.push_back({"Width per layer", width_charts(report), "width"});
  sections.push_back({"Sink and recency per layer", sink_recency_charts(report), "sink"});
  sections.push_back({"Heads and clusters", head_section(report), "heads"});
  sections.push_back({"Persistence", persistence_chart(report), "persistence"});
  sections.push_back({"Distributions", distribution_charts(report), "distributions"});
  sections.push_back({"Per-layer means", layer_table(report), "layers"});
  std::vector<std::vector<std::string>> params;
  flatten(report["parameters"], "", params);
  if (report.contains("run")) flatten(report["run"], "run", params);
  sections.push_back({"Parameters", table({"parameter", "value"}, params), "parameters"});
  sections.push_back({"Documents", documents_table(report), "documents"});
  size_t svgs = 0;
  for (const Section& s : sections) svgs += count_svgs(s.html);
  sections.back().html += loaded_marker_script(svgs);
  return html_page("attnsparse analysis: " + model, sections, intro);
}

std::string verdict_table_text(const json& original) {
  json report = original;
  std::string out;
  json& c = report["counts"];
  out += fmt::format("{} documents, {} tokens, {} rows, {} layers x {} heads\n", text_of(c["documents"]),
                     text_of(c["tokens"]), text_of(c["rows"]), text_of(c["layers"]), text_of(c["heads"]));
  out += fmt::format("{:<3} {:<48} {:<14} {}\n", "#", "conjecture", "verdict", "evidence");
  size_t ci = 0;
  for (json& k : report["conjectures"]) {
    std::string evidence = k["detail"].get<std::string>();
    if (k.value("insufficient_data", false)) evidence += " (insufficient data)";
    out += fmt::format("C{:<2} {:<48} {:<14} {}\n", conjecture_id(k, ci++), k["name"].get<std::string>(),
                       verdict_label(k["verdict"].get<std::string>()), evidence);
  }
  return out;
}

}  // namespace attnsparse::report
