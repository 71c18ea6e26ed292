// From accumulated statistics to estimates and verdicts (docs/analysis.md "Verdict
// rules"): per-layer means with bootstrap intervals, persistence per gap, head features
// and clusters, and one function per conjecture returning a typed verdict with the
// numbers it rests on. report_json.cpp turns these into report.json; nothing here knows
// about JSON.
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "analysis/accumulator.h"
#include "analysis/clustering.h"
#include "analysis/layer_kind.h"
#include "analysis/params.h"
#include "analysis/stats.h"

namespace attnsparse::analysis {

enum class Verdict { NotSupported = 0, Partial = 1, Supported = 2 };
const char* verdict_name(Verdict v);  // "supported", "partial", "not_supported"

inline constexpr double kNoValue = std::numeric_limits<double>::quiet_NaN();

// A ratio-of-sums mean over documents with its percentile bootstrap interval; NaN when
// there is nothing to average.
struct Estimate {
  double mean = kNoValue, low = kNoValue, high = kNoValue;
};

// Ratio-of-sums estimates with percentile bootstrap intervals over documents, every
// statistic sharing the same resamples (paired). numer[d] / denom[d] per document d.
class DocumentBootstrap {
 public:
  DocumentBootstrap(size_t n_docs, const VerdictParams& v, uint64_t seed);
  Estimate estimate(const std::vector<double>& numer, const std::vector<double>& denom) const;

 private:
  double alpha_;
  std::vector<std::vector<uint32_t>> samples_;
};
// The bootstrap of a report: the run's documents, the seed derived from the sampling seed.
DocumentBootstrap report_bootstrap(const Accumulator& acc, const AnalysisParams& params);

// ---- estimates the verdicts and the report share ----

struct LayerEstimates {
  std::vector<std::array<Estimate, kNumMetrics>> metrics;  // [layer][metric]
  std::vector<int64_t> rows;                               // [layer]
  std::vector<int64_t> sink_rows;                          // [layer]: rows whose key 0 is visible
};
LayerEstimates per_layer_estimates(const Accumulator& acc, const DocumentBootstrap& boot);

// Persistence at one gap: overlap and H2O mass (form 0 / 1) for each k of kTopK, over all
// layers and per layer.
struct PersistenceEstimate {
  int gap = 0;
  int64_t pairs = 0;
  std::array<std::array<Estimate, 2>, kTopK.size()> all;                 // [k][form]
  std::array<std::array<std::vector<Estimate>, 2>, kTopK.size()> layers;  // [k][form][layer]
};
std::vector<PersistenceEstimate> persistence_estimates(const Accumulator& acc, const DocumentBootstrap& boot);

// Head features (the clustering input) and the k-means clusters of the heads.
inline constexpr int kNumFeatures = 5;
extern const char* const kFeatureNames[kNumFeatures];

struct ClusterCandidate {
  int k = 0;
  double silhouette = kNoValue, inertia = kNoValue;
};
struct StabilityPair {
  std::string a, b;
  double ari = kNoValue;
};
struct HeadClusters {
  Matrix features;                  // [layer * n_heads + head][feature], NaN where missing
  std::vector<int> feature_columns; // features used (finite for every head with rows)
  std::vector<size_t> heads;        // heads clustered (layer * n_heads + head)
  size_t points = 0;
  std::vector<ClusterCandidate> candidates;
  int best_k = 0;                   // 0: no clustering
  double silhouette = kNoValue;
  std::vector<int> label_of;        // [layer * n_heads + head]: cluster, or -1
  // Stability: the same clustering on each dataset's (or each half's) features.
  std::string basis;                // "" when not measurable
  std::optional<std::vector<std::string>> groups;  // the groups compared (when a clustering exists)
  std::vector<StabilityPair> pairs;
  double ari = kNoValue;            // mean over pairs
};
// Features of every head from one accumulator group's sums.
Matrix head_features(const Accumulator& acc, int group, const AnalysisParams& params);
HeadClusters cluster_heads(const Accumulator& acc, const AnalysisParams& params);

// ---- the five conjectures ----

struct VerdictBase {
  Verdict verdict = Verdict::NotSupported;
  std::string detail;            // one sentence with the deciding numbers
  bool insufficient_data = false;
};

// C1: attention width (mean w_0.9) decreases with depth, over the global layers: a
// windowed layer's w_0.9 is a share of at most W keys, not of the whole prefix, so its
// layers are shown apart (windowed_layers) and left out of the trend and the tests. A
// model whose every layer is windowed is judged over all its layers.
struct LayerPoint {
  int layer = 0;
  Estimate estimate;
  int64_t window = 0;
};
struct C1Verdict : VerdictBase {
  std::vector<LayerPoint> per_layer;        // the layers judged
  std::vector<LayerPoint> windowed_layers;  // windowed layers left out (empty when none)
  bool all_windowed = false;                // every layer windowed: judged over all of them
  TestResult spearman;           // layer vs per-layer mean
  TestResult kruskal_wallis;     // sampled rows grouped by layer
  int peak_layer = -1;
  bool peak_in_middle_third = false, peak_above_first = false, peak_above_last = false;
  bool few_documents = false;    // < 2 documents: degenerate intervals
};
// `kinds`: each layer's window (empty = every layer global).
C1Verdict judge_c1(const Accumulator& acc, const LayerEstimates& layers, const VerdictParams& v,
                   const std::vector<LayerKind>& kinds = {});

// C2: heads form behavioural clusters.
struct C2Verdict : VerdictBase {
  int best_k = 0;
  double silhouette = kNoValue, ari = kNoValue;
  std::string basis;
  size_t points = 0;
};
C2Verdict judge_c2(const HeadClusters& clusters, const VerdictParams& v);

// C3 / C4: per-layer median ratio to the uniform baseline and a one-sided Wilcoxon test.
struct RatioLayer {
  int layer = 0;
  double median_ratio = kNoValue;
  TestResult wilcoxon;
  double p_holm = kNoValue;
  bool pass = false;
};
struct RatioVerdict : VerdictBase {
  double median_ratio_all_rows = kNoValue;
  int layers_passing = 0;
  size_t layers_tested = 0;
  double share_passing = 0;
  std::vector<RatioLayer> per_layer;
};
// C3: recent tokens get high attention (R_w over its baseline, w = recency_window).
struct C3Verdict : RatioVerdict {
  int window = 0;
};
C3Verdict judge_c3(const Accumulator& acc, const LayerEstimates& layers, const VerdictParams& v);
// C4: the first token keeps consistent focus (a_0 (t+1)), with the arg-max share and its
// variation across heads and layers.
struct C4Verdict : RatioVerdict {
  double argmax_share = kNoValue;
  std::vector<double> argmax_share_per_layer;  // NaN for layers without rows
  double cv_sink_mass_across_heads = kNoValue, cv_argmax_share_across_heads = kNoValue;
  double cv_sink_mass_across_layers = kNoValue;
};
C4Verdict judge_c4(const Accumulator& acc, const LayerEstimates& layers, const VerdictParams& v);

// C5: important tokens persistently attract attention (top-k overlap at a gap).
struct C5Verdict : VerdictBase {
  int gap = 0, k = 0;
  int64_t pairs = 0;
  Estimate overlap, h2o_mass;
};
C5Verdict judge_c5(const Accumulator& acc, const DocumentBootstrap& boot, const AnalysisParams& params);

}  // namespace attnsparse::analysis
