// Per-row attention metrics (docs/methods.md §4): widths, entropy, sink, recency, top-k.
// All functions take one probability row `probs[0..n)` over keys whose absolute positions
// are `key_pos[0..n)` (increasing; nullptr = positions 0..n-1) for a query at position t.
// Cost is O(n) per row: widths use histogram selection, top-k a bound from chunk maxima.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "analysis/layer_kind.h"

namespace attnsparse::analysis {

inline constexpr std::array<double, 4> kWidthLevels = {0.5, 0.9, 0.95, 0.99};
inline constexpr std::array<int, 5> kRecencyWindows = {1, 8, 32, 64, 128};

struct RowMetrics {
  int32_t query = 0;                 // t
  int32_t n_keys = 0;
  // Keys the layer lets the query see: t+1, or min(t+1, W) with a native window W
  // (0 = not set: t+1).
  int32_t visible = 0;
  std::array<int32_t, 4> width{};    // W_p for kWidthLevels
  double entropy = 0;                // nats
  bool sink_visible = true;          // key 0 is among the visible keys (always, in a global layer)
  double sink_mass = 0;              // a_0 (mass on the key at position 0; 0 when not visible)
  bool sink_argmax = false;          // key 0 is the arg-max (ties: lower index wins)
  bool sink_top5 = false;            // key 0 is in the top 5
  std::array<double, 5> recency{};   // R_w for kRecencyWindows

  int64_t visible_keys() const { return visible > 0 ? visible : int64_t(query) + 1; }
  // W_p / visible.
  double norm_width(int i) const { return double(width[i]) / double(visible_keys()); }
  // H / ln(visible); 0 when one key is visible.
  double norm_entropy() const;
  // The uniform row's R_w over the visible keys: min(w, visible) / visible.
  double recency_baseline_of(int i) const {
    const int64_t v = visible_keys();
    return double(std::min<int64_t>(kRecencyWindows[i], v)) / double(v);
  }
  // min(w, v) / v with v the keys visible from query t in a layer with this window (0 = global).
  static double recency_baseline(int w, int64_t t, int64_t window = 0) {
    const int64_t v = analysis::visible_keys(t, window);
    return double(std::min<int64_t>(w, v)) / double(v);
  }
};

// Exact W_p = min{k : sum of the k largest entries >= p} for each p in `levels` (sorted
// ascending). Returns n when the row never reaches p (rounding). `scratch` is reused.
// `largest`: the row's largest entry when the caller already has it (the attention kernel
// does), which saves a pass over the row; nullptr: found here. It must be that entry.
void widths(const float* probs, int64_t n, const double* levels, int n_levels, int32_t* out,
            std::vector<float>& scratch, const float* largest = nullptr);
// The same by weighted quickselect alone (the reference for tests and short rows).
void widths_quickselect(const float* probs, int64_t n, const double* levels, int n_levels,
                        int32_t* out, std::vector<float>& scratch);
// The weighted quickselect itself, on a[0..n) (reordered), float or double entries: for
// each target mass in `levels` (ascending; any scale, e.g. (1 - eps) times the row's sum)
// the fewest largest entries whose sum reaches it, summed in double; n when none does.
// theory's k_eps is this with the target (1 - eps) sum(a).
template <typename T>
void mass_widths_inplace(T* a, int64_t n, const double* levels, int n_levels, int64_t* out);

// Indices (into v) of the k largest entries ordered by (value desc, index asc); ties are
// broken by the lower index. Returns min(k, n) indices. float rows and the int64
// accumulated attention of persistence.
template <typename T>
std::vector<int32_t> topk_indices(const T* v, int64_t n, int k) {
  auto better = [v](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); };
  const int64_t kk = std::min<int64_t>(k, n);
  std::vector<int32_t> out;  // exactly kk entries at the end (callers keep many)
  if (kk <= 0) return out;
  // The kk-th largest of the maxima of up to 4 kk chunks is at most the kk-th largest
  // entry (kk distinct entries reach it), so every entry of the top kk is at least that
  // bound. The entries that reach it (a little over kk on attention rows) are then
  // ranked: two passes over the row, no heap updates.
  const int64_t n_chunks = std::min<int64_t>(n, 4 * kk);
  std::vector<T> maxima(static_cast<size_t>(n_chunks));
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t c0 = c * n / n_chunks, c1 = (c + 1) * n / n_chunks;
    T mx = v[c0];
    for (int64_t j = c0 + 1; j < c1; ++j) mx = v[j] > mx ? v[j] : mx;
    maxima[size_t(c)] = mx;
  }
  std::nth_element(maxima.begin(), maxima.begin() + (kk - 1), maxima.end(), std::greater<T>());
  const T bound = maxima[size_t(kk - 1)];
  for (int64_t j = 0; j < n; ++j)
    if (v[j] >= bound) out.push_back(int32_t(j));
  if (int64_t(out.size()) < kk) {  // (unordered entries, NaN, only): rank them all
    out.resize(size_t(n));
    for (int64_t j = 0; j < n; ++j) out[size_t(j)] = int32_t(j);
  }
  std::nth_element(out.begin(), out.begin() + (kk - 1), out.end(), better);
  out.resize(size_t(kk));
  out.shrink_to_fit();
  std::sort(out.begin(), out.end(), better);
  return out;
}

// The sum of v[0..n) in double.
double segment_sum(const float* v, int64_t n);

// Entropy in nats, -sum a ln a over a > 0, accumulated in double.
double entropy(const float* probs, int64_t n);

// known_entropy: the row's entropy when the caller already has it (the attention kernel
// computes it from the scores), else nullptr and it is computed from probs. window: the
// layer's native sliding window (0 = global), which sets `visible` and `sink_visible`;
// the row itself holds the visible keys (the attention core gives nothing else).
// largest: the row's largest probability when known (see widths), else nullptr.
RowMetrics compute_row_metrics(const float* probs, const int32_t* key_pos, int64_t n,
                               int64_t query_pos, std::vector<float>& scratch,
                               const double* known_entropy = nullptr, int64_t window = 0,
                               const float* largest = nullptr);

}  // namespace attnsparse::analysis
