#include "analysis/report_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "analysis/verdicts.h"
#include "core/error.h"

namespace attnsparse::analysis {

namespace {

using json = nlohmann::json;

// NaN and infinities become null in the report.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json estimate_json(const Estimate& e) { return json{{"mean", num(e.mean)}, {"low", num(e.low)}, {"high", num(e.high)}}; }

json test_json(const TestResult& t, const char* statistic) {
  return json{{statistic, num(t.statistic)}, {"p", num(t.p_value)}, {"n", t.n}};
}

json conjecture(int id, const char* name, const VerdictBase& v, json stats) {
  json c{{"id", id}, {"name", name}, {"verdict", verdict_name(v.verdict)}, {"detail", v.detail},
         {"statistics", std::move(stats)}};
  if (v.insufficient_data) c["insufficient_data"] = true;
  return c;
}

json documents_json(const Accumulator& acc) {
  json docs = json::array();
  for (const DocumentInfo& d : acc.documents)
    docs.push_back({{"id", d.id}, {"source", d.source}, {"dataset", d.dataset}, {"tokens", d.tokens},
                    {"original_tokens", d.original_tokens}, {"rows", d.prefill_rows + d.decode_rows}});
  return docs;
}

json counts_json(const Accumulator& acc, int n_kv) {
  int64_t tokens = 0, prefill = 0, decode = 0;
  std::map<std::string, int64_t> datasets;
  for (const DocumentInfo& d : acc.documents) {
    tokens += d.tokens;
    prefill += d.prefill_rows;
    decode += d.decode_rows;
    ++datasets[d.dataset];
  }
  return {{"documents", acc.documents.size()}, {"datasets", datasets.size()}, {"tokens", tokens},
          {"rows", prefill + decode}, {"prefill_rows", prefill}, {"decode_rows", decode},
          {"layers", acc.n_layers}, {"heads", acc.n_heads}, {"kv_heads", n_kv}};
}

json attention_json(const LayerKind& k) {
  return {{"kind", k.windowed() ? "windowed" : "global"}, {"window", k.window}, {"rope_base", num(k.rope_base)}};
}

json per_layer_json(const LayerEstimates& layers, const std::vector<LayerKind>& kinds) {
  json per_layer = json::array();
  for (size_t l = 0; l < layers.metrics.size(); ++l) {
    json metrics;
    for (int m = 0; m < kNumMetrics; ++m) metrics[metric_name(m)] = estimate_json(layers.metrics[l][m]);
    per_layer.push_back({{"layer", l}, {"attention", attention_json(l < kinds.size() ? kinds[l] : LayerKind{})},
                         {"rows", layers.rows[l]}, {"sink_rows", layers.sink_rows[l]}, {"metrics", metrics}});
  }
  return per_layer;
}

json persistence_json(const std::vector<PersistenceEstimate>& table) {
  json persistence = json::array();
  for (const PersistenceEstimate& pe : table) {
    json entry{{"gap", pe.gap}, {"pairs", pe.pairs}};
    for (size_t k = 0; k < kTopK.size(); ++k)
      for (int form = 0; form < 2; ++form) {
        const std::string name = fmt::format("{}_k{}", form == 0 ? "overlap" : "h2o", kTopK[k]);
        json by_layer = json::array();
        for (const Estimate& e : pe.layers[k][form]) by_layer.push_back(estimate_json(e));
        entry[name] = estimate_json(pe.all[k][form]);
        entry["per_layer"][name] = by_layer;
      }
    persistence.push_back(entry);
  }
  return persistence;
}

json clusters_json(const HeadClusters& cl) {
  json clusters{{"features", json::array()}, {"points", cl.points}};
  for (int c : cl.feature_columns) clusters["features"].push_back(kFeatureNames[c]);
  json candidates = json::array();
  for (const ClusterCandidate& c : cl.candidates)
    candidates.push_back({{"k", c.k}, {"silhouette", num(c.silhouette)}, {"inertia", num(c.inertia)}});
  clusters["candidates"] = candidates;
  clusters["best_k"] = cl.best_k > 0 ? json(cl.best_k) : json(nullptr);
  clusters["silhouette"] = num(cl.silhouette);
  json stability{{"basis", cl.basis.empty() ? json(nullptr) : json(cl.basis)}, {"pairs", json::array()}};
  for (const StabilityPair& p : cl.pairs) stability["pairs"].push_back({{"a", p.a}, {"b", p.b}, {"ari", num(p.ari)}});
  if (cl.groups) stability["groups"] = *cl.groups;
  stability["ari"] = num(cl.ari);
  clusters["stability"] = stability;
  return clusters;
}

json per_head_json(const Accumulator& acc, const HeadClusters& cl, int group_size) {
  const int L = acc.n_layers, H = acc.n_heads;
  const size_t k32 = size_t(std::find(kTopK.begin(), kTopK.end(), 32) - kTopK.begin());
  json per_head = json::array();
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      const size_t i = size_t(l) * H + h;
      const MetricSums& s = acc.group_head[0][i];
      const PersistenceSums& p = acc.group_head_persistence[0][i];
      json f, m, pers;
      for (int c = 0; c < kNumFeatures; ++c) f[kFeatureNames[c]] = num(cl.features[i][c]);
      for (int k = 0; k < kNumMetrics; ++k)
        m[metric_name(k)] = num(s.rows_of(k) ? s.sum[k] / double(s.rows_of(k)) : kNoValue);
      for (size_t g = 0; g < kPersistenceGaps.size(); ++g) {
        const double n = double(p.pairs[g]);
        pers[std::to_string(kPersistenceGaps[g])] = {{"pairs", p.pairs[g]},
                                                     {"overlap_k32", num(n > 0 ? p.overlap[g][k32] / n : kNoValue)},
                                                     {"h2o_k32", num(n > 0 ? p.h2o[g][k32] / n : kNoValue)}};
      }
      per_head.push_back({{"layer", l}, {"head", h}, {"kv_group", h / group_size}, {"rows", s.rows},
                          {"features", f}, {"metrics", m}, {"persistence", pers},
                          {"cluster", cl.label_of[i] >= 0 ? json(cl.label_of[i]) : json(nullptr)}});
    }
  }
  return per_head;
}

json distributions_json(const Accumulator& acc) {
  json dists;
  for (int k = 0; k < kNumHistograms; ++k) {
    if (acc.n_layers == 0) break;
    Histogram all = acc.histograms[0][k];
    json by_layer = json::array();
    for (int l = 0; l < acc.n_layers; ++l) {
      if (l > 0) all.merge(acc.histograms[l][k]);
      by_layer.push_back(acc.histograms[l][k].counts);
    }
    dists[histogram_name(k)] = {{"lo", all.lo}, {"hi", all.hi}, {"log10", all.log10}, {"bins", all.bins()},
                                {"counts", all.counts}, {"per_layer", by_layer}, {"median", num(all.quantile(0.5))}};
  }
  return dists;
}

json c1_json(const C1Verdict& c) {
  auto series_of = [](const std::vector<LayerPoint>& points, bool with_window) {
    json series = json::array();
    for (const LayerPoint& p : points) {
      series.push_back({{"layer", p.layer}, {"mean", num(p.estimate.mean)}, {"low", num(p.estimate.low)},
                        {"high", num(p.estimate.high)}});
      if (with_window) series.back()["window"] = p.window;
    }
    return series;
  };
  json stats{{"metric", "width_norm_p90"}, {"per_layer", series_of(c.per_layer, false)},
             {"layers", c.all_windowed ? "all (every layer windowed)" : "global"},
             {"windowed_layers", series_of(c.windowed_layers, true)},
             {"spearman", test_json(c.spearman, "rho")}, {"kruskal_wallis", test_json(c.kruskal_wallis, "h")},
             {"peak_layer", c.peak_layer >= 0 ? json(c.peak_layer) : json(nullptr)},
             {"peak_in_middle_third", c.peak_in_middle_third}, {"peak_above_first", c.peak_above_first},
             {"peak_above_last", c.peak_above_last}};
  if (c.few_documents) stats["caveat"] = "fewer than 2 documents: the bootstrap intervals are degenerate";
  return conjecture(1, "attention width decreases with depth", c, stats);
}

json c2_json(const C2Verdict& c) {
  return conjecture(2, "heads form behavioural clusters", c,
                    {{"best_k", c.best_k > 0 ? json(c.best_k) : json(nullptr)}, {"silhouette", num(c.silhouette)},
                     {"ari", num(c.ari)}, {"ari_basis", c.basis.empty() ? json(nullptr) : json(c.basis)},
                     {"points", c.points}});
}

json ratio_stats(const RatioVerdict& c) {
  json per = json::array();
  for (const RatioLayer& r : c.per_layer)
    per.push_back({{"layer", r.layer}, {"median_ratio", num(r.median_ratio)},
                   {"wilcoxon_t_plus", num(r.wilcoxon.statistic)}, {"n", r.wilcoxon.n},
                   {"p", num(r.wilcoxon.p_value)}, {"p_holm", num(r.p_holm)}, {"pass", r.pass}});
  return {{"median_ratio_all_rows", num(c.median_ratio_all_rows)}, {"layers_passing", c.layers_passing},
          {"layers_tested", c.layers_tested}, {"share_passing", c.share_passing}, {"per_layer", per}};
}

json c3_json(const C3Verdict& c) {
  json stats = ratio_stats(c);
  stats["window"] = c.window;
  stats["ratio"] = "R_w / (min(w, t+1) / (t+1))";
  return conjecture(3, "recent tokens get high attention", c, stats);
}

json c4_json(const C4Verdict& c) {
  json stats = ratio_stats(c);
  json per_layer_share = json::array();
  for (double s : c.argmax_share_per_layer) per_layer_share.push_back(num(s));
  stats["ratio"] = "a_0 (t+1)";
  stats["argmax_share"] = num(c.argmax_share);
  stats["argmax_share_per_layer"] = per_layer_share;
  stats["cv_sink_mass_across_heads"] = num(c.cv_sink_mass_across_heads);
  stats["cv_argmax_share_across_heads"] = num(c.cv_argmax_share_across_heads);
  stats["cv_sink_mass_across_layers"] = num(c.cv_sink_mass_across_layers);
  return conjecture(4, "the first token keeps consistent focus", c, stats);
}

json c5_json(const C5Verdict& c) {
  return conjecture(5, "important tokens persistently attract attention", c,
                    {{"gap", c.gap}, {"k", c.k}, {"pairs", c.pairs}, {"overlap", estimate_json(c.overlap)},
                     {"h2o_mass", estimate_json(c.h2o_mass)}});
}


// The layers' kinds as meta.model.layers gives them ([{kind, window, rope_base}], as
// `attnsparse info --json` writes them); empty when it does not (or not for every layer).
std::vector<LayerKind> kinds_from_meta(const json& meta, int n_layers) {
  std::vector<LayerKind> kinds;
  if (!meta.is_object() || !meta.contains("model") || !meta["model"].is_object() || !meta["model"].contains("layers"))
    return kinds;
  const json& layers = meta["model"]["layers"];
  if (!layers.is_array() || int(layers.size()) != n_layers) return kinds;
  for (const json& l : layers) {
    LayerKind k;
    if (l.is_object() && l.contains("window") && l["window"].is_number_integer()) k.window = l["window"].get<int64_t>();
    if (l.is_object() && l.contains("rope_base") && l["rope_base"].is_number()) k.rope_base = l["rope_base"].get<double>();
    kinds.push_back(k);
  }
  return kinds;
}

}  // namespace

json build_report(const Accumulator& acc, const AnalysisParams& params, const json& meta,
                  const std::vector<LayerKind>& given) {
  if (!given.empty() && int(given.size()) != acc.n_layers)
    fail("internal: build_report got {} layer kinds for {} layers", given.size(), acc.n_layers);
  const std::vector<LayerKind> kinds = given.empty() ? kinds_from_meta(meta, acc.n_layers) : given;
  const int H = acc.n_heads;
  const int n_kv = meta.contains("model") && meta["model"].contains("n_kv_heads")
                       ? meta["model"]["n_kv_heads"].get<int>()
                       : H;
  const int group_size = n_kv > 0 && H % n_kv == 0 ? H / n_kv : 1;
  const DocumentBootstrap boot = report_bootstrap(acc, params);
  const LayerEstimates layers = per_layer_estimates(acc, boot);
  const HeadClusters clusters = cluster_heads(acc, params);

  json report;
  report["schema"] = kReportSchema;
  for (const char* key : {"model", "data", "run"})
    if (meta.contains(key)) report[key] = meta[key];
  report["documents"] = documents_json(acc);
  report["counts"] = counts_json(acc, n_kv);
  report["parameters"] = to_json(params);
  report["per_layer"] = per_layer_json(layers, kinds);
  report["persistence"] = persistence_json(persistence_estimates(acc, boot));
  report["clusters"] = clusters_json(clusters);
  report["per_head"] = per_head_json(acc, clusters, group_size);
  report["distributions"] = distributions_json(acc);
  report["conjectures"] = json::array({c1_json(judge_c1(acc, layers, params.verdict, kinds)),
                                       c2_json(judge_c2(clusters, params.verdict)),
                                       c3_json(judge_c3(acc, layers, params.verdict)),
                                       c4_json(judge_c4(acc, layers, params.verdict)),
                                       c5_json(judge_c5(acc, boot, params))});
  return report;
}

}  // namespace attnsparse::analysis
