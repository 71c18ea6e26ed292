// Every parameter of an analysis run (defaults: docs/methods.md §4-§7, §10), printed
// into the report.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace attnsparse::analysis {

inline constexpr std::array<int, 4> kPersistenceGaps = {1, 16, 128, 1024};
inline constexpr std::array<int, 2> kTopK = {8, 32};

enum class RowKind { Prefill, Decode, Both };
const char* row_kind_name(RowKind kind);

// Which rows are analysed.
struct SamplingParams {
  RowKind rows = RowKind::Prefill;
  int64_t min_query = 16;      // Q: prefill rows at t >= Q ...
  int64_t stride = 1;          // ... with (t - Q) % S == 0
  int64_t decode_tokens = 32;  // teacher-forced continuation: the last D tokens (decode rows)
  int64_t max_rows = 0;        // 0 = all candidates; else a seeded uniform sample of this many
  int64_t max_tokens = 0;      // 0 = the model's context; longer documents: middle truncation
  uint64_t seed = 1;
};

// Persistence (docs/methods.md §5): anchors t per document (evenly spaced), pairs (t, t + gap).
struct PersistenceParams {
  int anchors = 16;            // anchor query positions per document and head
  int64_t min_anchor = 64;     // t >= this, so that top-32 sets are not the whole row
  int feature_gap = 16;        // the per-head feature uses the top-32 overlap at this gap
};

// Statistics and the verdict rules (docs/methods.md §7).
struct VerdictParams {
  int bootstrap_resamples = 1000;
  double alpha = 0.05;             // 95% intervals
  int reservoir = 2000;            // rows per layer kept for the rank tests
  // C1
  double c1_rho = -0.5;            // supported if rho <= this ...
  double c1_p = 0.01;              // ... and p < this
  // C2
  int kmeans_min_k = 2, kmeans_max_k = 8, kmeans_restarts = 10;
  double c2_silhouette_supported = 0.5, c2_ari_supported = 0.7;
  double c2_silhouette_partial = 0.25;
  // C3 / C4: a layer passes if its median ratio >= ratio and its Holm-adjusted one-sided
  // Wilcoxon p < p; supported if >= supported_share of the layers pass, partial if
  // >= partial_share (our addition: the study gives only the "supported" rule;
  // docs/methods.md §7).
  double c34_ratio = 5.0, c34_p = 0.01;
  double c34_supported_share = 0.9, c34_partial_share = 0.5;
  int recency_window = 32;         // R_32
  // C5: mean top-k overlap at the gap
  int c5_gap = 128, c5_k = 32;
  double c5_supported = 0.8, c5_partial = 0.4;
};

// Upper bounds of the --set parameters that size memory or loops (validate()).
inline constexpr int kMaxBootstrapResamples = 100000;
inline constexpr int kMaxReservoir = 1000000;
inline constexpr int kMaxKmeansK = 64;
inline constexpr int kMaxKmeansRestarts = 1000;
inline constexpr int kMaxAnchors = 4096;

struct AnalysisParams {
  SamplingParams sampling;
  PersistenceParams persistence;
  VerdictParams verdict;
};

nlohmann::json to_json(const AnalysisParams& p);
// Throws UsageError naming the parameter for values outside their range.
void validate(const AnalysisParams& p);
// Index of recency_window in kRecencyWindows (validate() guarantees it exists).
int recency_window_index(const VerdictParams& v);

}  // namespace attnsparse::analysis
