// Per-row attention metrics (docs/methods.md §4): widths, entropy, sink, recency, top-k.
// All functions take one probability row `probs[0..n)` over keys whose absolute positions
// are `key_pos[0..n)` (increasing; nullptr = positions 0..n-1) for a query at position t.
// Cost is O(n) per row: widths use histogram selection, top-k a bounded heap.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace attnsparse::analysis {

inline constexpr std::array<double, 4> kWidthLevels = {0.5, 0.9, 0.95, 0.99};
inline constexpr std::array<int, 5> kRecencyWindows = {1, 8, 32, 64, 128};

struct RowMetrics {
  int32_t query = 0;                 // t
  int32_t n_keys = 0;
  std::array<int32_t, 4> width{};    // W_p for kWidthLevels
  double entropy = 0;                // nats
  double sink_mass = 0;              // a_0 (mass on the key at position 0)
  bool sink_argmax = false;          // key 0 is the arg-max (ties: lower index wins)
  bool sink_top5 = false;            // key 0 is in the top 5
  std::array<double, 5> recency{};   // R_w for kRecencyWindows

  double norm_width(int i) const { return double(width[i]) / double(query + 1); }
  // H / ln(t+1); 0 for t = 0.
  double norm_entropy() const;
  static double recency_baseline(int w, int64_t t) {
    return double(std::min<int64_t>(w, t + 1)) / double(t + 1);
  }
};

// Exact W_p = min{k : sum of the k largest entries >= p} for each p in `levels` (sorted
// ascending). Returns n when the row never reaches p (rounding). `scratch` is reused.
void widths(const float* probs, int64_t n, const double* levels, int n_levels, int32_t* out,
            std::vector<float>& scratch);
// The same by weighted quickselect alone (the reference for tests and short rows).
void widths_quickselect(const float* probs, int64_t n, const double* levels, int n_levels,
                        int32_t* out, std::vector<float>& scratch);

// Indices (into probs) of the k largest entries ordered by (value desc, index asc);
// ties are broken by the lower index. Returns min(k, n) indices.
std::vector<int32_t> topk_indices(const float* probs, int64_t n, int k);

// Entropy in nats, -sum a ln a over a > 0, accumulated in double.
double entropy(const float* probs, int64_t n);

// known_entropy: the row's entropy when the caller already has it (the attention kernel
// computes it from the scores), else nullptr and it is computed from probs.
RowMetrics compute_row_metrics(const float* probs, const int32_t* key_pos, int64_t n,
                               int64_t query_pos, std::vector<float>& scratch,
                               const double* known_entropy = nullptr);

}  // namespace attnsparse::analysis
