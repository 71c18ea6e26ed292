#include "analysis/params.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis/row_metrics.h"
#include "core/error.h"

namespace attnsparse::analysis {

const char* row_kind_name(RowKind kind) {
  switch (kind) {
    case RowKind::Prefill: return "prefill";
    case RowKind::Decode: return "decode";
    case RowKind::Both: return "both";
  }
  return "?";
}

int recency_window_index(const VerdictParams& v) {
  const auto it = std::find(kRecencyWindows.begin(), kRecencyWindows.end(), v.recency_window);
  return static_cast<int>(it - kRecencyWindows.begin());
}

void validate(const AnalysisParams& p) {
  const SamplingParams& s = p.sampling;
  if (s.min_query < 0) fail_usage("--min-query must be >= 0 (got {})", s.min_query);
  if (s.stride < 1) fail_usage("--stride must be >= 1 (got {})", s.stride);
  if (s.max_rows < 0) fail_usage("--max-rows must be >= 0 (got {})", s.max_rows);
  if (s.max_tokens < 0) fail_usage("--max-tokens must be >= 0 (got {})", s.max_tokens);
  if (s.decode_tokens < 1) fail_usage("--decode-tokens must be >= 1 (got {})", s.decode_tokens);
  if (p.persistence.anchors < 0) fail_usage("persistence anchors must be >= 0");
  if (p.persistence.min_anchor < 0) fail_usage("persistence min anchor must be >= 0");
  if (std::find(kPersistenceGaps.begin(), kPersistenceGaps.end(), p.persistence.feature_gap) ==
      kPersistenceGaps.end())
    fail_usage("persistence feature gap must be one of 1, 16, 128, 1024");
  const VerdictParams& v = p.verdict;
  if (recency_window_index(v) >= int(kRecencyWindows.size()))
    fail_usage("recency window must be one of 1, 8, 32, 64, 128 (got {})", v.recency_window);
  if (std::find(kPersistenceGaps.begin(), kPersistenceGaps.end(), v.c5_gap) == kPersistenceGaps.end())
    fail_usage("C5 gap must be one of 1, 16, 128, 1024 (got {})", v.c5_gap);
  if (std::find(kTopK.begin(), kTopK.end(), v.c5_k) == kTopK.end())
    fail_usage("C5 k must be 8 or 32 (got {})", v.c5_k);
  // Bounds on what sizes memory or loops (resamples x layers x heads, reservoir rows,
  // k-means runs) and on the verdict thresholds, which must be finite and inside the
  // range of the statistic they compare with (docs/analysis.md, "--set").
  if (v.bootstrap_resamples < 10 || v.bootstrap_resamples > kMaxBootstrapResamples)
    fail_usage("bootstrap_resamples must be in [10, {}] (got {})", kMaxBootstrapResamples, v.bootstrap_resamples);
  if (v.reservoir < 10 || v.reservoir > kMaxReservoir)
    fail_usage("reservoir must be in [10, {}] (got {})", kMaxReservoir, v.reservoir);
  if (v.kmeans_min_k < 2 || v.kmeans_max_k < v.kmeans_min_k || v.kmeans_max_k > kMaxKmeansK)
    fail_usage("the k-means k range must satisfy 2 <= kmeans_min_k <= kmeans_max_k <= {} (got {}..{})", kMaxKmeansK,
               v.kmeans_min_k, v.kmeans_max_k);
  if (v.kmeans_restarts < 1 || v.kmeans_restarts > kMaxKmeansRestarts)
    fail_usage("kmeans_restarts must be in [1, {}] (got {})", kMaxKmeansRestarts, v.kmeans_restarts);
  if (p.persistence.anchors > kMaxAnchors)
    fail_usage("persistence anchors must be in [0, {}] (got {})", kMaxAnchors, p.persistence.anchors);
  auto in = [](const char* name, double x, double lo, double hi, bool open = false) {
    if (!std::isfinite(x) || (open ? x <= lo || x >= hi : x < lo || x > hi))
      fail_usage("{} must be a finite number in {}{}, {}{} (got {})", name, open ? "(" : "[", lo, hi, open ? ")" : "]",
                 x);
  };
  in("alpha", v.alpha, 0, 1, true);  // 1 - alpha intervals (0 and 1 give none)
  in("c1_rho", v.c1_rho, -1, 1);
  in("c1_p", v.c1_p, 0, 1);
  in("c2_silhouette_supported", v.c2_silhouette_supported, -1, 1);
  in("c2_silhouette_partial", v.c2_silhouette_partial, -1, 1);
  in("c2_ari_supported", v.c2_ari_supported, -1, 1);
  in("c34_ratio", v.c34_ratio, 0, 1e300, true);  // (a ratio of masses: positive)
  in("c34_p", v.c34_p, 0, 1);
  in("c34_supported_share", v.c34_supported_share, 0, 1);
  in("c34_partial_share", v.c34_partial_share, 0, 1);
  in("c5_supported", v.c5_supported, 0, 1);
  in("c5_partial", v.c5_partial, 0, 1);
}

nlohmann::json to_json(const AnalysisParams& p) {
  const SamplingParams& s = p.sampling;
  const PersistenceParams& q = p.persistence;
  const VerdictParams& v = p.verdict;
  using nlohmann::json;
  return json{
      {"sampling",
       {{"rows", row_kind_name(s.rows)}, {"min_query", s.min_query}, {"stride", s.stride},
        {"decode_tokens", s.decode_tokens}, {"max_rows", s.max_rows}, {"max_tokens", s.max_tokens},
        {"seed", s.seed}}},
      {"metrics",
       {{"width_levels", kWidthLevels}, {"recency_windows", kRecencyWindows}, {"top_k", kTopK},
        {"persistence_gaps", kPersistenceGaps}}},
      {"persistence",
       {{"anchors_per_document", q.anchors}, {"min_anchor", q.min_anchor},
        {"feature_gap", q.feature_gap},
        {"accumulated_attention_resolution", "2^-30 per row (fixed point, order independent)"}}},
      {"statistics",
       {{"bootstrap_resamples", v.bootstrap_resamples}, {"interval", 1 - v.alpha},
        {"bootstrap_unit", "document"}, {"rank_test_rows_per_layer", v.reservoir},
        {"holm_family", "the layers of one conjecture"}}},
      {"c1",
       {{"rho_at_most", v.c1_rho}, {"p_below", v.c1_p}, {"middle_third", "layers l with L/3 <= l + 0.5 < 2L/3"},
        {"opposite_trend", "rho >= -rho_at_most with p below: not_supported (our addition to methods.md)"}}},
      {"c2",
       {{"k_min", v.kmeans_min_k}, {"k_max", v.kmeans_max_k}, {"restarts", v.kmeans_restarts},
        {"silhouette_supported", v.c2_silhouette_supported}, {"ari_supported", v.c2_ari_supported},
        {"silhouette_partial", v.c2_silhouette_partial},
        {"features", {"width_norm_p90", "sink_mass", "recent_32", "entropy_norm", "persistence_overlap_k32"}}}},
      {"c3_c4",
       {{"recency_window", v.recency_window}, {"median_ratio_at_least", v.c34_ratio}, {"p_below", v.c34_p},
        {"supported_layer_share", v.c34_supported_share},
        {"partial_layer_share", v.c34_partial_share},
        {"median_from", "histogram of the ratio in log bins 0.02 decades (4.7%) wide, interpolated inside the bin"},
        {"test_rows", "bottom-k hash sample of the rows of each layer (rank_test_rows_per_layer)"}}},
      {"c5",
       {{"gap", v.c5_gap}, {"k", v.c5_k}, {"supported_at_least", v.c5_supported},
        {"partial_at_least", v.c5_partial}}},
  };
}

}  // namespace attnsparse::analysis
