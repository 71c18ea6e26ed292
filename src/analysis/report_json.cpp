#include "analysis/report_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "analysis/clustering.h"
#include "analysis/stats.h"

namespace attnsparse::analysis {

namespace {

using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// NaN and infinities become null in the report.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

struct Estimate {
  double mean = kNaN, low = kNaN, high = kNaN;
  json to_json() const { return json{{"mean", num(mean)}, {"low", num(low)}, {"high", num(high)}}; }
};

// Ratio-of-sums estimates with percentile bootstrap intervals over documents, many
// statistics sharing the same resamples. num[s][d] / den[s][d] per statistic s, document d.
class DocumentBootstrap {
 public:
  DocumentBootstrap(size_t n_docs, const VerdictParams& v, uint64_t seed)
      : alpha_(v.alpha), samples_(bootstrap_indices(n_docs, v.bootstrap_resamples, seed)) {}

  Estimate estimate(const std::vector<double>& numer, const std::vector<double>& denom) const {
    Estimate e;
    double sn = 0, sd = 0;
    for (size_t d = 0; d < numer.size(); ++d) sn += numer[d], sd += denom[d];
    if (!(sd > 0)) return e;
    e.mean = sn / sd;
    std::vector<double> stats;
    stats.reserve(samples_.size());
    for (const auto& sample : samples_) {
      double a = 0, b = 0;
      for (uint32_t d : sample) a += numer[d], b += denom[d];
      stats.push_back(b > 0 ? a / b : kNaN);
    }
    const Interval iv = percentile_interval(std::move(stats), alpha_);
    e.low = iv.low;
    e.high = iv.high;
    return e;
  }

 private:
  double alpha_;
  std::vector<std::vector<uint32_t>> samples_;
};

double coefficient_of_variation(const std::vector<double>& v) {
  if (v.size() < 2) return kNaN;
  double mean = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  return mean != 0 ? std::sqrt(var / double(v.size())) / mean : kNaN;
}

const char* verdict_name(int v) {
  return v == 2 ? "supported" : v == 1 ? "partial" : "not_supported";
}

json conjecture(int id, const char* name, int verdict, const std::string& detail, json stats,
                bool insufficient = false) {
  json c{{"id", id}, {"name", name}, {"verdict", verdict_name(verdict)}, {"detail", detail},
         {"statistics", std::move(stats)}};
  if (insufficient) c["insufficient_data"] = true;
  return c;
}

// ---- per layer ----

struct LayerTables {
  std::vector<std::array<Estimate, kNumMetrics>> metrics;  // [layer]
  std::vector<int64_t> rows;
};

LayerTables per_layer_estimates(const Accumulator& acc, const DocumentBootstrap& boot) {
  const size_t D = acc.documents.size();
  LayerTables t;
  t.metrics.resize(acc.n_layers);
  t.rows.resize(acc.n_layers);
  std::vector<double> numer(D), denom(D);
  for (int l = 0; l < acc.n_layers; ++l) {
    for (size_t d = 0; d < D; ++d) t.rows[l] += acc.doc_layer[d][l].rows;
    for (size_t d = 0; d < D; ++d) denom[d] = double(acc.doc_layer[d][l].rows);
    for (int m = 0; m < kNumMetrics; ++m) {
      for (size_t d = 0; d < D; ++d) numer[d] = acc.doc_layer[d][l].sum[m];
      t.metrics[l][m] = boot.estimate(numer, denom);
    }
  }
  return t;
}

// ---- heads and clusters ----

constexpr const char* kFeatureNames[] = {"width_norm_p90", "sink_mass", "recent_32", "entropy_norm",
                                         "persistence_overlap_k32"};
constexpr int kNumFeatures = 5;

size_t gap_index(int gap) {
  return size_t(std::find(kPersistenceGaps.begin(), kPersistenceGaps.end(), gap) - kPersistenceGaps.begin());
}
size_t k_index(int k) { return size_t(std::find(kTopK.begin(), kTopK.end(), k) - kTopK.begin()); }

// Features of every head from one group's sums; NaN where the head has no rows / pairs.
Matrix head_features(const Accumulator& acc, int group, const AnalysisParams& params) {
  const size_t gi = gap_index(params.persistence.feature_gap), ki = k_index(32);
  Matrix f(size_t(acc.n_layers) * acc.n_heads, std::vector<double>(kNumFeatures, kNaN));
  for (size_t i = 0; i < f.size(); ++i) {
    const MetricSums& s = acc.group_head[group][i];
    const PersistenceSums& p = acc.group_head_persistence[group][i];
    if (s.rows > 0) {
      const double n = double(s.rows);
      f[i][0] = s.sum[kWidthNorm90] / n;
      f[i][1] = s.sum[kSinkMass] / n;
      f[i][2] = s.sum[kRecent32] / n;
      f[i][3] = s.sum[kEntropyNorm] / n;
    }
    if (p.pairs[gi] > 0) f[i][4] = p.overlap[gi][ki] / double(p.pairs[gi]);
  }
  return f;
}

struct ClusterInput {
  std::vector<int> features;  // columns used
  std::vector<size_t> heads;  // rows (layer * n_heads + head) used
};

// Columns that are finite for every head with rows; heads with all of them.
ClusterInput usable(const Matrix& f) {
  ClusterInput in;
  std::vector<size_t> with_rows;
  for (size_t i = 0; i < f.size(); ++i)
    if (std::isfinite(f[i][0])) with_rows.push_back(i);
  for (int c = 0; c < kNumFeatures; ++c) {
    bool ok = !with_rows.empty();
    for (size_t i : with_rows) ok = ok && std::isfinite(f[i][c]);
    if (ok) in.features.push_back(c);
  }
  in.heads = with_rows;
  return in;
}

Matrix select(const Matrix& f, const ClusterInput& in) {
  Matrix x;
  for (size_t i : in.heads) {
    std::vector<double> row;
    for (int c : in.features) row.push_back(f[i][c]);
    x.push_back(row);
  }
  return x;
}

}  // namespace

json build_report(const Accumulator& acc, const AnalysisParams& params, const json& meta) {
  const VerdictParams& v = params.verdict;
  const int L = acc.n_layers, H = acc.n_heads;
  const size_t D = acc.documents.size();
  const int n_kv = meta.contains("model") && meta["model"].contains("n_kv_heads")
                       ? meta["model"]["n_kv_heads"].get<int>()
                       : H;
  const int group_size = n_kv > 0 && H % n_kv == 0 ? H / n_kv : 1;
  const DocumentBootstrap boot(D, v, params.sampling.seed ^ 0xb007);

  json report;
  report["schema"] = kReportSchema;
  for (const char* key : {"model", "data", "run"})
    if (meta.contains(key)) report[key] = meta[key];

  // ---- counts and documents ----
  int64_t tokens = 0, prefill = 0, decode = 0;
  std::map<std::string, int64_t> datasets;
  json docs = json::array();
  for (const DocumentInfo& d : acc.documents) {
    tokens += d.tokens;
    prefill += d.prefill_rows;
    decode += d.decode_rows;
    ++datasets[d.dataset];
    docs.push_back({{"id", d.id}, {"source", d.source}, {"dataset", d.dataset}, {"tokens", d.tokens},
                    {"original_tokens", d.original_tokens}, {"rows", d.prefill_rows + d.decode_rows}});
  }
  report["documents"] = docs;
  report["counts"] = {{"documents", D}, {"datasets", datasets.size()}, {"tokens", tokens},
                      {"rows", prefill + decode}, {"prefill_rows", prefill}, {"decode_rows", decode},
                      {"layers", L}, {"heads", H}, {"kv_heads", n_kv}};
  report["parameters"] = to_json(params);

  // ---- per layer ----
  const LayerTables layers = per_layer_estimates(acc, boot);
  json per_layer = json::array();
  for (int l = 0; l < L; ++l) {
    json metrics;
    for (int m = 0; m < kNumMetrics; ++m) metrics[metric_name(m)] = layers.metrics[l][m].to_json();
    per_layer.push_back({{"layer", l}, {"rows", layers.rows[l]}, {"metrics", metrics}});
  }
  report["per_layer"] = per_layer;

  // ---- persistence ----
  json persistence = json::array();
  std::vector<double> numer(D), denom(D);
  for (size_t g = 0; g < kPersistenceGaps.size(); ++g) {
    json entry{{"gap", kPersistenceGaps[g]}};
    int64_t pairs = 0;
    for (size_t d = 0; d < D; ++d)
      for (int l = 0; l < L; ++l) pairs += acc.doc_persistence[d][l].pairs[g];
    entry["pairs"] = pairs;
    for (size_t k = 0; k < kTopK.size(); ++k) {
      for (int form = 0; form < 2; ++form) {
        const std::string name = fmt::format("{}_k{}", form == 0 ? "overlap" : "h2o", kTopK[k]);
        json by_layer = json::array();
        std::fill(numer.begin(), numer.end(), 0.0);
        std::fill(denom.begin(), denom.end(), 0.0);
        for (int l = 0; l < L; ++l) {
          std::vector<double> ln(D), ld(D);
          for (size_t d = 0; d < D; ++d) {
            const PersistenceSums& p = acc.doc_persistence[d][l];
            ln[d] = form == 0 ? p.overlap[g][k] : p.h2o[g][k];
            ld[d] = double(p.pairs[g]);
            numer[d] += ln[d];
            denom[d] += ld[d];
          }
          by_layer.push_back(boot.estimate(ln, ld).to_json());
        }
        entry[name] = boot.estimate(numer, denom).to_json();
        entry["per_layer"][name] = by_layer;
      }
    }
    persistence.push_back(entry);
  }
  report["persistence"] = persistence;

  // ---- heads, features, clusters ----
  const Matrix features = head_features(acc, 0, params);
  const ClusterInput cin = usable(features);
  const Matrix x = standardise(select(features, cin));
  json clusters{{"features", json::array()}, {"points", x.size()}};
  for (int c : cin.features) clusters["features"].push_back(kFeatureNames[c]);
  std::vector<int> labels;
  int best_k = 0;
  double best_sil = kNaN;
  json candidates = json::array();
  const int max_k = std::min<int>(v.kmeans_max_k, int(x.size()) - 1);
  for (int k = v.kmeans_min_k; k <= max_k && !cin.features.empty(); ++k) {
    const KMeansResult r = kmeans(x, k, params.sampling.seed, v.kmeans_restarts);
    const double sil = silhouette(x, r.labels);
    candidates.push_back({{"k", k}, {"silhouette", num(sil)}, {"inertia", num(r.inertia)}});
    if (std::isfinite(sil) && (!std::isfinite(best_sil) || sil > best_sil)) {
      best_sil = sil;
      best_k = k;
      labels = r.labels;
    }
  }
  clusters["candidates"] = candidates;
  clusters["best_k"] = best_k > 0 ? json(best_k) : json(nullptr);
  clusters["silhouette"] = num(best_sil);

  // Stability: the same clustering on each dataset's (or each half's) features.
  std::vector<int> basis_groups;
  std::string basis;
  for (size_t g = 0; g < acc.group_names.size(); ++g)
    if (acc.group_names[g].starts_with("dataset:")) basis_groups.push_back(int(g));
  if (basis_groups.size() >= 2) {
    basis = "datasets";
  } else {
    basis_groups.clear();
    for (size_t g = 0; g < acc.group_names.size(); ++g)
      if (acc.group_names[g].starts_with("half:")) basis_groups.push_back(int(g));
    basis = basis_groups.size() >= 2 ? "document halves (even / odd)" : "";
  }
  double ari = kNaN;
  json stability{{"basis", basis.empty() ? json(nullptr) : json(basis)}, {"pairs", json::array()}};
  if (best_k > 0 && basis_groups.size() >= 2) {
    std::vector<std::vector<int>> group_labels;
    std::vector<std::string> names;
    for (int g : basis_groups) {
      const Matrix gf = head_features(acc, g, params);
      bool ok = true;
      Matrix gx;
      for (size_t i : cin.heads) {
        std::vector<double> row;
        for (int c : cin.features) {
          ok = ok && std::isfinite(gf[i][c]);
          row.push_back(gf[i][c]);
        }
        gx.push_back(row);
      }
      if (!ok) continue;  // this group lacks rows (or pairs) for some head
      group_labels.push_back(kmeans(standardise(gx), best_k, params.sampling.seed, v.kmeans_restarts).labels);
      names.push_back(acc.group_names[g]);
    }
    double sum = 0;
    int n = 0;
    for (size_t a = 0; a < group_labels.size(); ++a)
      for (size_t b = a + 1; b < group_labels.size(); ++b) {
        const double r = adjusted_rand_index(group_labels[a], group_labels[b]);
        stability["pairs"].push_back({{"a", names[a]}, {"b", names[b]}, {"ari", num(r)}});
        if (std::isfinite(r)) sum += r, ++n;
      }
    if (n > 0) ari = sum / n;
    stability["groups"] = names;
  }
  stability["ari"] = num(ari);
  clusters["stability"] = stability;
  report["clusters"] = clusters;

  json per_head = json::array();
  std::vector<int> label_of(size_t(L) * H, -1);
  for (size_t i = 0; i < cin.heads.size() && !labels.empty(); ++i) label_of[cin.heads[i]] = labels[i];
  std::vector<double> head_sink, head_argmax;
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      const size_t i = size_t(l) * H + h;
      const MetricSums& s = acc.group_head[0][i];
      const PersistenceSums& p = acc.group_head_persistence[0][i];
      json f, m, pers;
      for (int c = 0; c < kNumFeatures; ++c) f[kFeatureNames[c]] = num(features[i][c]);
      for (int k = 0; k < kNumMetrics; ++k) m[metric_name(k)] = num(s.rows ? s.sum[k] / double(s.rows) : kNaN);
      for (size_t g = 0; g < kPersistenceGaps.size(); ++g) {
        const double n = double(p.pairs[g]);
        pers[std::to_string(kPersistenceGaps[g])] = {
            {"pairs", p.pairs[g]},
            {"overlap_k32", num(n > 0 ? p.overlap[g][k_index(32)] / n : kNaN)},
            {"h2o_k32", num(n > 0 ? p.h2o[g][k_index(32)] / n : kNaN)}};
      }
      if (s.rows > 0) {
        head_sink.push_back(s.sum[kSinkMass] / double(s.rows));
        head_argmax.push_back(s.sum[kSinkArgmax] / double(s.rows));
      }
      per_head.push_back({{"layer", l}, {"head", h}, {"kv_group", h / group_size}, {"rows", s.rows},
                          {"features", f}, {"metrics", m}, {"persistence", pers},
                          {"cluster", label_of[i] >= 0 ? json(label_of[i]) : json(nullptr)}});
    }
  }
  report["per_head"] = per_head;

  // ---- distributions ----
  json dists;
  for (int k = 0; k < kNumHistograms; ++k) {
    if (L == 0) break;
    Histogram all = acc.histograms[0][k];
    json by_layer = json::array();
    for (int l = 0; l < L; ++l) {
      if (l > 0) all.merge(acc.histograms[l][k]);
      by_layer.push_back(acc.histograms[l][k].counts);
    }
    dists[histogram_name(k)] = {{"lo", all.lo}, {"hi", all.hi}, {"log10", all.log10},
                                {"bins", all.bins()}, {"counts", all.counts},
                                {"per_layer", by_layer},
                                {"median", num(all.quantile(0.5))}};
  }
  report["distributions"] = dists;

  // ---- conjectures ----
  json conj = json::array();

  // C1: width vs depth.
  {
    std::vector<double> xs, ys;
    json series = json::array();
    int peak = -1;
    for (int l = 0; l < L; ++l) {
      const Estimate& e = layers.metrics[l][kWidthNorm90];
      series.push_back({{"layer", l}, {"mean", num(e.mean)}, {"low", num(e.low)}, {"high", num(e.high)}});
      if (!std::isfinite(e.mean)) continue;
      xs.push_back(l);
      ys.push_back(e.mean);
      if (peak < 0 || e.mean > layers.metrics[peak][kWidthNorm90].mean) peak = l;
    }
    const TestResult rho = spearman(xs, ys);
    std::vector<std::vector<double>> groups(L);
    for (int l = 0; l < L; ++l)
      for (const SampledRow& r : acc.reservoirs[l].rows) groups[l].push_back(r.width90);
    std::erase_if(groups, [](const auto& g) { return g.empty(); });
    const TestResult kw = groups.size() >= 2 ? kruskal_wallis(groups) : TestResult{};
    bool middle = false, above_first = false, above_last = false;
    if (peak >= 0) {
      middle = double(L) / 3 <= peak + 0.5 && peak + 0.5 < 2.0 * L / 3;
      const auto& pk = layers.metrics[peak][kWidthNorm90];
      above_first = pk.low > layers.metrics[0][kWidthNorm90].high;
      above_last = pk.low > layers.metrics[L - 1][kWidthNorm90].high;
    }
    int verdict = 1;
    std::string detail;
    const bool significant = rho.p_value < v.c1_p;
    if (rho.statistic <= v.c1_rho && significant) {
      verdict = 2;
      detail = fmt::format("width falls with depth (Spearman rho = {:.2f}, p = {:.2g})", rho.statistic, rho.p_value);
    } else if (middle && above_first && above_last) {
      verdict = 0;
      detail = fmt::format("mid-layer peak: layer {} of {} is widest, its interval above the first and last layers'", peak, L);
    } else if (rho.statistic >= -v.c1_rho && significant) {
      verdict = 0;
      detail = fmt::format("width rises with depth (Spearman rho = {:.2f}, p = {:.2g})", rho.statistic, rho.p_value);
    } else {
      const bool strong = std::fabs(rho.statistic) >= -v.c1_rho;
      detail = fmt::format("{} (Spearman rho = {:.2f}, p = {:.2g}{})",
                           strong ? "trend not significant" : "no clear trend", rho.statistic,
                           rho.p_value,
                           strong && rho.exact ? fmt::format("; {} layers are too few", L) : "");
    }
    json stats{{"metric", "width_norm_p90"}, {"per_layer", series},
               {"spearman", {{"rho", num(rho.statistic)}, {"p", num(rho.p_value)}, {"n", rho.n}}},
               {"kruskal_wallis", {{"h", num(kw.statistic)}, {"p", num(kw.p_value)}, {"n", kw.n}}},
               {"peak_layer", peak >= 0 ? json(peak) : json(nullptr)}, {"peak_in_middle_third", middle},
               {"peak_above_first", above_first}, {"peak_above_last", above_last}};
    if (D < 2) stats["caveat"] = "fewer than 2 documents: the bootstrap intervals are degenerate";
    conj.push_back(conjecture(1, "attention width decreases with depth", verdict, detail, stats, xs.size() < 3));
  }

  // C2: head clusters.
  {
    int verdict = 0;
    std::string detail;
    if (best_k == 0) {
      detail = "too few heads with rows to cluster";
    } else if (best_sil >= v.c2_silhouette_supported && std::isfinite(ari) && ari >= v.c2_ari_supported) {
      verdict = 2;
      detail = fmt::format("{} clusters, silhouette {:.2f}, ARI {:.2f} across {}", best_k, best_sil, ari, basis);
    } else if (best_sil >= v.c2_silhouette_partial) {
      verdict = 1;
      detail = std::isfinite(ari)
                   ? fmt::format("{} clusters, silhouette {:.2f}, ARI {:.2f} across {}", best_k, best_sil, ari, basis)
                   : fmt::format("{} clusters, silhouette {:.2f}; stability unknown (one dataset and document)", best_k, best_sil);
    } else {
      detail = fmt::format("best silhouette {:.2f} (k = {})", best_sil, best_k);
    }
    conj.push_back(conjecture(2, "heads form behavioural clusters", verdict, detail,
                              {{"best_k", best_k > 0 ? json(best_k) : json(nullptr)}, {"silhouette", num(best_sil)},
                               {"ari", num(ari)}, {"ari_basis", basis.empty() ? json(nullptr) : json(basis)},
                               {"points", x.size()}},
                              best_k == 0));
  }

  // C3 and C4: per-layer median ratio against the uniform baseline + one-sided Wilcoxon.
  auto ratio_conjecture = [&](int id, const char* name, int hist, bool sink, json extra) {
    std::vector<double> p(L, kNaN), median(L, kNaN);
    std::vector<TestResult> tests(L);
    std::vector<double> valid_p;
    std::vector<int> valid_layers;
    for (int l = 0; l < L; ++l) {
      if (layers.rows[l] == 0) continue;
      std::vector<double> d;
      for (const SampledRow& r : acc.reservoirs[l].rows) d.push_back(sink ? r.sink_diff : r.recent_diff);
      tests[l] = wilcoxon_signed_rank_greater(d);
      median[l] = acc.histograms[l][hist].quantile(0.5);
      valid_p.push_back(tests[l].p_value);
      valid_layers.push_back(l);
    }
    const std::vector<double> adjusted = holm_adjust(valid_p);
    json per = json::array();
    int passing = 0;
    for (size_t i = 0; i < valid_layers.size(); ++i) {
      const int l = valid_layers[i];
      const bool pass = median[l] >= v.c34_ratio && adjusted[i] < v.c34_p;
      passing += pass;
      per.push_back({{"layer", l}, {"median_ratio", num(median[l])}, {"wilcoxon_t_plus", num(tests[l].statistic)},
                     {"n", tests[l].n}, {"p", num(tests[l].p_value)}, {"p_holm", num(adjusted[i])}, {"pass", pass}});
    }
    Histogram all = acc.histograms.empty() ? Histogram() : acc.histograms[0][hist];
    for (int l = 1; l < L; ++l) all.merge(acc.histograms[l][hist]);
    const double share = valid_layers.empty() ? 0.0 : double(passing) / double(valid_layers.size());
    const int verdict = valid_layers.empty() ? 0 : share >= v.c34_supported_share ? 2 : share >= v.c34_partial_share ? 1 : 0;
    json stats{{"median_ratio_all_rows", num(all.quantile(0.5))}, {"layers_passing", passing},
               {"layers_tested", valid_layers.size()}, {"share_passing", share}, {"per_layer", per}};
    for (auto& [k, val] : extra.items()) stats[k] = val;
    const std::string detail =
        fmt::format("median ratio {} overall; {} of {} layers have median >= {} and Holm p < {}",
                    fmt::format("{:.3g}", all.quantile(0.5)), passing, valid_layers.size(), v.c34_ratio, v.c34_p);
    conj.push_back(conjecture(id, name, verdict, detail, stats, valid_layers.empty()));
  };
  ratio_conjecture(3, "recent tokens get high attention", kHistRecentRatio, false,
                   {{"window", v.recency_window}, {"ratio", "R_w / (min(w, t+1) / (t+1))"}});
  {
    double argmax = 0, rows = 0;
    json per_layer_share = json::array();
    std::vector<double> layer_sink;
    for (int l = 0; l < L; ++l) {
      double a = 0, r = 0, s = 0;
      for (size_t d = 0; d < D; ++d) {
        a += acc.doc_layer[d][l].sum[kSinkArgmax];
        s += acc.doc_layer[d][l].sum[kSinkMass];
        r += double(acc.doc_layer[d][l].rows);
      }
      argmax += a;
      rows += r;
      per_layer_share.push_back(num(r > 0 ? a / r : kNaN));
      if (r > 0) layer_sink.push_back(s / r);
    }
    ratio_conjecture(4, "the first token keeps consistent focus", kHistSinkRatio, true,
                     {{"ratio", "a_0 (t+1)"},
                      {"argmax_share", num(rows > 0 ? argmax / rows : kNaN)},
                      {"argmax_share_per_layer", per_layer_share},
                      {"cv_sink_mass_across_heads", num(coefficient_of_variation(head_sink))},
                      {"cv_argmax_share_across_heads", num(coefficient_of_variation(head_argmax))},
                      {"cv_sink_mass_across_layers", num(coefficient_of_variation(layer_sink))}});
  }

  // C5: persistence.
  {
    const size_t g = gap_index(v.c5_gap), k = k_index(v.c5_k);
    std::fill(numer.begin(), numer.end(), 0.0);
    std::fill(denom.begin(), denom.end(), 0.0);
    std::vector<double> h2o(D, 0.0);
    for (size_t d = 0; d < D; ++d)
      for (int l = 0; l < L; ++l) {
        numer[d] += acc.doc_persistence[d][l].overlap[g][k];
        h2o[d] += acc.doc_persistence[d][l].h2o[g][k];
        denom[d] += double(acc.doc_persistence[d][l].pairs[g]);
      }
    const Estimate overlap = boot.estimate(numer, denom);
    const Estimate heavy = boot.estimate(h2o, denom);
    const bool none = !std::isfinite(overlap.mean);
    const int verdict = none ? 0 : overlap.mean >= v.c5_supported ? 2 : overlap.mean >= v.c5_partial ? 1 : 0;
    const std::string detail =
        none ? fmt::format("no pairs at gap {}: documents are too short (need more than {} tokens)", v.c5_gap,
                           params.persistence.min_anchor + v.c5_gap + 1)
             : fmt::format("mean top-{} overlap at gap {} = {:.2f} [{:.2f}, {:.2f}]; H2O mass {:.2f}", v.c5_k,
                           v.c5_gap, overlap.mean, overlap.low, overlap.high, heavy.mean);
    double pairs = 0;
    for (double x : denom) pairs += x;
    conj.push_back(conjecture(5, "important tokens persistently attract attention", verdict, detail,
                              {{"gap", v.c5_gap}, {"k", v.c5_k}, {"pairs", int64_t(pairs)},
                               {"overlap", overlap.to_json()}, {"h2o_mass", heavy.to_json()}},
                              none));
  }
  report["conjectures"] = conj;
  return report;
}

}  // namespace attnsparse::analysis
