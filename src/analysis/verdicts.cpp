#include "analysis/verdicts.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace attnsparse::analysis {

const char* verdict_name(Verdict v) {
  return v == Verdict::Supported ? "supported" : v == Verdict::Partial ? "partial" : "not_supported";
}

// ---- bootstrap ----

DocumentBootstrap::DocumentBootstrap(size_t n_docs, const VerdictParams& v, uint64_t seed)
    : alpha_(v.alpha), samples_(bootstrap_indices(n_docs, v.bootstrap_resamples, seed)) {}

Estimate DocumentBootstrap::estimate(const std::vector<double>& numer, const std::vector<double>& denom) const {
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
    stats.push_back(b > 0 ? a / b : kNoValue);
  }
  const Interval iv = percentile_interval(std::move(stats), alpha_);
  e.low = iv.low;
  e.high = iv.high;
  return e;
}

DocumentBootstrap report_bootstrap(const Accumulator& acc, const AnalysisParams& params) {
  return DocumentBootstrap(acc.documents.size(), params.verdict, params.sampling.seed ^ 0xb007);
}

// ---- per layer ----

LayerEstimates per_layer_estimates(const Accumulator& acc, const DocumentBootstrap& boot) {
  const size_t D = acc.documents.size();
  LayerEstimates t;
  t.metrics.resize(acc.n_layers);
  t.rows.resize(acc.n_layers);
  std::vector<double> numer(D), denom(D);
  t.sink_rows.resize(acc.n_layers);
  for (int l = 0; l < acc.n_layers; ++l) {
    for (size_t d = 0; d < D; ++d) t.rows[l] += acc.doc_layer[d][l].rows;
    for (size_t d = 0; d < D; ++d) t.sink_rows[l] += acc.doc_layer[d][l].sink_rows;
    for (int m = 0; m < kNumMetrics; ++m) {
      for (size_t d = 0; d < D; ++d) {
        numer[d] = acc.doc_layer[d][l].sum[m];
        denom[d] = double(acc.doc_layer[d][l].rows_of(m));
      }
      t.metrics[l][m] = boot.estimate(numer, denom);
    }
  }
  return t;
}

// ---- persistence ----

std::vector<PersistenceEstimate> persistence_estimates(const Accumulator& acc, const DocumentBootstrap& boot) {
  const size_t D = acc.documents.size();
  const int L = acc.n_layers;
  std::vector<PersistenceEstimate> out;
  std::vector<double> numer(D), denom(D);
  for (size_t g = 0; g < kPersistenceGaps.size(); ++g) {
    PersistenceEstimate pe;
    pe.gap = kPersistenceGaps[g];
    for (size_t d = 0; d < D; ++d)
      for (int l = 0; l < L; ++l) pe.pairs += acc.doc_persistence[d][l].pairs[g];
    for (size_t k = 0; k < kTopK.size(); ++k) {
      for (int form = 0; form < 2; ++form) {
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
          pe.layers[k][form].push_back(boot.estimate(ln, ld));
        }
        pe.all[k][form] = boot.estimate(numer, denom);
      }
    }
    out.push_back(std::move(pe));
  }
  return out;
}

// ---- heads and clusters ----

const char* const kFeatureNames[kNumFeatures] = {"width_norm_p90", "sink_mass", "recent_32", "entropy_norm",
                                                 "persistence_overlap_k32"};

namespace {

size_t gap_index(int gap) {
  return size_t(std::find(kPersistenceGaps.begin(), kPersistenceGaps.end(), gap) - kPersistenceGaps.begin());
}
size_t k_index(int k) { return size_t(std::find(kTopK.begin(), kTopK.end(), k) - kTopK.begin()); }

double coefficient_of_variation(const std::vector<double>& v) {
  if (v.size() < 2) return kNoValue;
  double mean = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  return mean != 0 ? std::sqrt(var / double(v.size())) / mean : kNoValue;
}

// Columns that are finite for every head with rows; heads with all of them.
void usable(const Matrix& f, HeadClusters& c) {
  std::vector<size_t> with_rows;
  for (size_t i = 0; i < f.size(); ++i)
    if (std::isfinite(f[i][0])) with_rows.push_back(i);
  for (int col = 0; col < kNumFeatures; ++col) {
    bool ok = !with_rows.empty();
    for (size_t i : with_rows) ok = ok && std::isfinite(f[i][col]);
    if (ok) c.feature_columns.push_back(col);
  }
  c.heads = with_rows;
}

Matrix select(const Matrix& f, const HeadClusters& c) {
  Matrix x;
  for (size_t i : c.heads) {
    std::vector<double> row;
    for (int col : c.feature_columns) row.push_back(f[i][col]);
    x.push_back(row);
  }
  return x;
}

}  // namespace

Matrix head_features(const Accumulator& acc, int group, const AnalysisParams& params) {
  const size_t gi = gap_index(params.persistence.feature_gap), ki = k_index(32);
  Matrix f(size_t(acc.n_layers) * acc.n_heads, std::vector<double>(kNumFeatures, kNoValue));
  for (size_t i = 0; i < f.size(); ++i) {
    const MetricSums& s = acc.group_head[group][i];
    const PersistenceSums& p = acc.group_head_persistence[group][i];
    if (s.rows > 0) {
      const double n = double(s.rows);
      f[i][0] = s.sum[kWidthNorm90] / n;
      f[i][1] = s.sink_rows > 0 ? s.sum[kSinkMass] / double(s.sink_rows) : kNoValue;
      f[i][2] = s.sum[kRecent32] / n;
      f[i][3] = s.sum[kEntropyNorm] / n;
    }
    if (p.pairs[gi] > 0) f[i][4] = p.overlap[gi][ki] / double(p.pairs[gi]);
  }
  return f;
}

HeadClusters cluster_heads(const Accumulator& acc, const AnalysisParams& params) {
  const VerdictParams& v = params.verdict;
  HeadClusters c;
  c.features = head_features(acc, 0, params);
  usable(c.features, c);
  const Matrix x = standardise(select(c.features, c));
  c.points = x.size();
  std::vector<int> labels;
  const int max_k = std::min<int>(v.kmeans_max_k, int(x.size()) - 1);
  for (int k = v.kmeans_min_k; k <= max_k && !c.feature_columns.empty(); ++k) {
    const KMeansResult r = kmeans(x, k, params.sampling.seed, v.kmeans_restarts);
    const double sil = silhouette(x, r.labels);
    c.candidates.push_back({k, sil, r.inertia});
    if (std::isfinite(sil) && (!std::isfinite(c.silhouette) || sil > c.silhouette)) {
      c.silhouette = sil;
      c.best_k = k;
      labels = r.labels;
    }
  }
  c.label_of.assign(size_t(acc.n_layers) * acc.n_heads, -1);
  for (size_t i = 0; i < c.heads.size() && !labels.empty(); ++i) c.label_of[c.heads[i]] = labels[i];

  // Stability: the same clustering on each dataset's (or each half's) features.
  std::vector<int> basis_groups;
  for (size_t g = 0; g < acc.group_names.size(); ++g)
    if (acc.group_names[g].starts_with("dataset:")) basis_groups.push_back(int(g));
  if (basis_groups.size() >= 2) {
    c.basis = "datasets";
  } else {
    basis_groups.clear();
    for (size_t g = 0; g < acc.group_names.size(); ++g)
      if (acc.group_names[g].starts_with("half:")) basis_groups.push_back(int(g));
    c.basis = basis_groups.size() >= 2 ? "document halves (even / odd)" : "";
  }
  if (c.best_k > 0 && basis_groups.size() >= 2) {
    std::vector<std::vector<int>> group_labels;
    std::vector<std::string> names;
    for (int g : basis_groups) {
      const Matrix gf = head_features(acc, g, params);
      bool ok = true;
      Matrix gx;
      for (size_t i : c.heads) {
        std::vector<double> row;
        for (int col : c.feature_columns) {
          ok = ok && std::isfinite(gf[i][col]);
          row.push_back(gf[i][col]);
        }
        gx.push_back(row);
      }
      if (!ok) continue;  // this group lacks rows (or pairs) for some head
      group_labels.push_back(kmeans(standardise(gx), c.best_k, params.sampling.seed, v.kmeans_restarts).labels);
      names.push_back(acc.group_names[g]);
    }
    double sum = 0;
    int n = 0;
    for (size_t a = 0; a < group_labels.size(); ++a)
      for (size_t b = a + 1; b < group_labels.size(); ++b) {
        const double r = adjusted_rand_index(group_labels[a], group_labels[b]);
        c.pairs.push_back({names[a], names[b], r});
        if (std::isfinite(r)) sum += r, ++n;
      }
    if (n > 0) c.ari = sum / n;
    c.groups = names;
  }
  return c;
}

// ---- C1 ----

C1Verdict judge_c1(const Accumulator& acc, const LayerEstimates& layers, const VerdictParams& v,
                   const std::vector<LayerKind>& kinds) {
  const int L = acc.n_layers;
  auto window_of = [&](int l) { return size_t(l) < kinds.size() ? kinds[size_t(l)].window : int64_t(0); };
  C1Verdict c;
  // The layers judged: the global ones (all of them when every layer is windowed).
  std::vector<int> judged;
  for (int l = 0; l < L; ++l)
    if (window_of(l) == 0) judged.push_back(l);
  c.all_windowed = judged.empty() && L > 0;
  if (c.all_windowed)
    for (int l = 0; l < L; ++l) judged.push_back(l);
  const bool mixed = int(judged.size()) < L;
  const int n_judged = int(judged.size());
  for (int l = 0; l < L; ++l)
    if (mixed && window_of(l) > 0) c.windowed_layers.push_back({l, layers.metrics[l][kWidthNorm90], window_of(l)});
  std::vector<double> xs, ys;
  int peak = -1, peak_at = -1;  // the widest judged layer and its place among them
  for (int i = 0; i < n_judged; ++i) {
    const int l = judged[size_t(i)];
    const Estimate& e = layers.metrics[l][kWidthNorm90];
    c.per_layer.push_back({l, e, window_of(l)});
    if (!std::isfinite(e.mean)) continue;
    xs.push_back(l);
    ys.push_back(e.mean);
    if (peak < 0 || e.mean > layers.metrics[peak][kWidthNorm90].mean) peak = l, peak_at = i;
  }
  const TestResult rho = spearman(xs, ys);
  std::vector<std::vector<double>> groups;
  for (int l : judged) {
    groups.emplace_back();
    for (const SampledRow& r : acc.reservoirs[l].rows) groups.back().push_back(r.width90);
  }
  std::erase_if(groups, [](const auto& g) { return g.empty(); });
  c.spearman = rho;
  c.kruskal_wallis = groups.size() >= 2 ? kruskal_wallis(groups) : TestResult{};
  if (peak >= 0) {
    c.peak_in_middle_third = double(n_judged) / 3 <= peak_at + 0.5 && peak_at + 0.5 < 2.0 * n_judged / 3;
    const Estimate& pk = layers.metrics[peak][kWidthNorm90];
    c.peak_above_first = pk.low > layers.metrics[judged.front()][kWidthNorm90].high;
    c.peak_above_last = pk.low > layers.metrics[judged.back()][kWidthNorm90].high;
  }
  c.peak_layer = peak;
  c.verdict = Verdict::Partial;
  const std::string of_layers = mixed ? fmt::format("{} global layers", n_judged) : fmt::format("{}", n_judged);
  const bool significant = rho.p_value < v.c1_p;
  if (rho.statistic <= v.c1_rho && significant) {
    c.verdict = Verdict::Supported;
    c.detail = fmt::format("width falls with depth (Spearman rho = {:.2f}, p = {:.2g})", rho.statistic, rho.p_value);
  } else if (c.peak_in_middle_third && c.peak_above_first && c.peak_above_last) {
    c.verdict = Verdict::NotSupported;
    c.detail = fmt::format("mid-layer peak: layer {} of {} is widest, its interval above the first and last layers'",
                           peak, of_layers);
  } else if (rho.statistic >= -v.c1_rho && significant) {
    c.verdict = Verdict::NotSupported;
    c.detail = fmt::format("width rises with depth (Spearman rho = {:.2f}, p = {:.2g})", rho.statistic, rho.p_value);
  } else {
    const bool strong = std::fabs(rho.statistic) >= -v.c1_rho;
    c.detail = fmt::format("{} (Spearman rho = {:.2f}, p = {:.2g}{})",
                           strong ? "trend not significant" : "no clear trend", rho.statistic, rho.p_value,
                           strong && rho.exact ? fmt::format("; {} layers are too few", of_layers) : "");
  }
  if (mixed) {
    double lo = kNoValue, hi = kNoValue;
    for (const LayerPoint& p : c.windowed_layers)
      if (std::isfinite(p.estimate.mean)) {
        lo = std::isfinite(lo) ? std::min(lo, p.estimate.mean) : p.estimate.mean;
        hi = std::isfinite(hi) ? std::max(hi, p.estimate.mean) : p.estimate.mean;
      }
    const size_t nw = c.windowed_layers.size();
    c.detail += nw == 1 ? fmt::format("; over the global layers, 1 windowed layer apart (w_0.9 {:.2f} of its window)", lo)
                        : fmt::format("; over the global layers, {} windowed layers apart (w_0.9 {:.2f}..{:.2f} of their "
                                      "window)", nw, lo, hi);
  } else if (c.all_windowed) {
    c.detail += "; every layer is windowed: widths are shares of the visible keys";
  }
  c.few_documents = acc.documents.size() < 2;
  c.insufficient_data = xs.size() < 3;
  return c;
}

// ---- C2 ----

C2Verdict judge_c2(const HeadClusters& cl, const VerdictParams& v) {
  C2Verdict c;
  c.best_k = cl.best_k;
  c.silhouette = cl.silhouette;
  c.ari = cl.ari;
  c.basis = cl.basis;
  c.points = cl.points;
  const double best_sil = cl.silhouette, ari = cl.ari;
  if (cl.best_k == 0) {
    c.detail = "too few heads with rows to cluster";
  } else if (best_sil >= v.c2_silhouette_supported && std::isfinite(ari) && ari >= v.c2_ari_supported) {
    c.verdict = Verdict::Supported;
    c.detail = fmt::format("{} clusters, silhouette {:.2f}, ARI {:.2f} across {}", cl.best_k, best_sil, ari, cl.basis);
  } else if (best_sil >= v.c2_silhouette_partial) {
    c.verdict = Verdict::Partial;
    c.detail = std::isfinite(ari)
                   ? fmt::format("{} clusters, silhouette {:.2f}, ARI {:.2f} across {}", cl.best_k, best_sil, ari,
                                 cl.basis)
                   : fmt::format("{} clusters, silhouette {:.2f}; stability unknown (one dataset and document)",
                                 cl.best_k, best_sil);
  } else {
    c.detail = fmt::format("best silhouette {:.2f} (k = {})", best_sil, cl.best_k);
  }
  c.insufficient_data = cl.best_k == 0;
  return c;
}

// ---- C3 and C4 ----

namespace {

// Per-layer median ratio against the uniform baseline + one-sided Wilcoxon on the
// sampled rows, Holm-adjusted over the layers with rows.
void judge_ratio(const Accumulator& acc, const LayerEstimates& layers, const VerdictParams& v, int hist, bool sink,
                 RatioVerdict& c) {
  const int L = acc.n_layers;
  std::vector<double> median(L, kNoValue);
  std::vector<TestResult> tests(L);
  std::vector<double> valid_p;
  std::vector<int> valid_layers;
  for (int l = 0; l < L; ++l) {
    if ((sink ? layers.sink_rows[l] : layers.rows[l]) == 0) continue;
    std::vector<double> d;
    for (const SampledRow& r : acc.reservoirs[l].rows)
      if (!sink) d.push_back(r.recent_diff);
      else if (r.sink_visible) d.push_back(r.sink_diff);
    tests[l] = wilcoxon_signed_rank_greater(d);
    median[l] = acc.histograms[l][hist].quantile(0.5);
    valid_p.push_back(tests[l].p_value);
    valid_layers.push_back(l);
  }
  const std::vector<double> adjusted = holm_adjust(valid_p);
  int passing = 0;
  for (size_t i = 0; i < valid_layers.size(); ++i) {
    const int l = valid_layers[i];
    const bool pass = median[l] >= v.c34_ratio && adjusted[i] < v.c34_p;
    passing += pass;
    c.per_layer.push_back({l, median[l], tests[l], adjusted[i], pass});
  }
  Histogram all = acc.histograms.empty() ? Histogram() : acc.histograms[0][hist];
  for (int l = 1; l < L; ++l) all.merge(acc.histograms[l][hist]);
  const double share = valid_layers.empty() ? 0.0 : double(passing) / double(valid_layers.size());
  c.verdict = valid_layers.empty()                ? Verdict::NotSupported
              : share >= v.c34_supported_share ? Verdict::Supported
              : share >= v.c34_partial_share   ? Verdict::Partial
                                               : Verdict::NotSupported;
  c.median_ratio_all_rows = all.quantile(0.5);
  c.layers_passing = passing;
  c.layers_tested = valid_layers.size();
  c.share_passing = share;
  c.detail = fmt::format("median ratio {} overall; {} of {} layers have median >= {} and Holm p < {}",
                         fmt::format("{:.3g}", all.quantile(0.5)), passing, valid_layers.size(), v.c34_ratio, v.c34_p);
  c.insufficient_data = valid_layers.empty();
}

}  // namespace

C3Verdict judge_c3(const Accumulator& acc, const LayerEstimates& layers, const VerdictParams& v) {
  C3Verdict c;
  judge_ratio(acc, layers, v, kHistRecentRatio, false, c);
  c.window = v.recency_window;
  return c;
}

C4Verdict judge_c4(const Accumulator& acc, const LayerEstimates& layers, const VerdictParams& v) {
  const int L = acc.n_layers, H = acc.n_heads;
  const size_t D = acc.documents.size();
  C4Verdict c;
  judge_ratio(acc, layers, v, kHistSinkRatio, true, c);
  double argmax = 0, rows = 0;
  std::vector<double> layer_sink;
  for (int l = 0; l < L; ++l) {
    double a = 0, r = 0, s = 0;
    for (size_t d = 0; d < D; ++d) {
      a += acc.doc_layer[d][l].sum[kSinkArgmax];
      s += acc.doc_layer[d][l].sum[kSinkMass];
      r += double(acc.doc_layer[d][l].sink_rows);
    }
    argmax += a;
    rows += r;
    c.argmax_share_per_layer.push_back(r > 0 ? a / r : kNoValue);
    if (r > 0) layer_sink.push_back(s / r);
  }
  std::vector<double> head_sink, head_argmax;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      const MetricSums& s = acc.group_head[0][size_t(l) * H + h];
      if (s.sink_rows > 0) {
        head_sink.push_back(s.sum[kSinkMass] / double(s.sink_rows));
        head_argmax.push_back(s.sum[kSinkArgmax] / double(s.sink_rows));
      }
    }
  c.argmax_share = rows > 0 ? argmax / rows : kNoValue;
  c.cv_sink_mass_across_heads = coefficient_of_variation(head_sink);
  c.cv_argmax_share_across_heads = coefficient_of_variation(head_argmax);
  c.cv_sink_mass_across_layers = coefficient_of_variation(layer_sink);
  return c;
}

// ---- C5 ----

C5Verdict judge_c5(const Accumulator& acc, const DocumentBootstrap& boot, const AnalysisParams& params) {
  const VerdictParams& v = params.verdict;
  const int L = acc.n_layers;
  const size_t D = acc.documents.size();
  const size_t g = gap_index(v.c5_gap), k = k_index(v.c5_k);
  std::vector<double> numer(D, 0.0), denom(D, 0.0), h2o(D, 0.0);
  for (size_t d = 0; d < D; ++d)
    for (int l = 0; l < L; ++l) {
      numer[d] += acc.doc_persistence[d][l].overlap[g][k];
      h2o[d] += acc.doc_persistence[d][l].h2o[g][k];
      denom[d] += double(acc.doc_persistence[d][l].pairs[g]);
    }
  C5Verdict c;
  c.gap = v.c5_gap;
  c.k = v.c5_k;
  c.overlap = boot.estimate(numer, denom);
  c.h2o_mass = boot.estimate(h2o, denom);
  const bool none = !std::isfinite(c.overlap.mean);
  c.verdict = none                                ? Verdict::NotSupported
              : c.overlap.mean >= v.c5_supported ? Verdict::Supported
              : c.overlap.mean >= v.c5_partial   ? Verdict::Partial
                                                 : Verdict::NotSupported;
  c.detail = none ? fmt::format("no pairs at gap {}: documents are too short (need more than {} tokens)", v.c5_gap,
                                params.persistence.min_anchor + v.c5_gap + 1)
                  : fmt::format("mean top-{} overlap at gap {} = {:.2f} [{:.2f}, {:.2f}]; H2O mass {:.2f}", v.c5_k,
                                v.c5_gap, c.overlap.mean, c.overlap.low, c.overlap.high, c.h2o_mass.mean);
  double pairs = 0;
  for (double x : denom) pairs += x;
  c.pairs = int64_t(pairs);
  c.insufficient_data = none;
  return c;
}

}  // namespace attnsparse::analysis
