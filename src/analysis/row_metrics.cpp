#include "analysis/row_metrics.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace attnsparse::analysis {

double RowMetrics::norm_entropy() const {
  return query > 0 ? entropy / std::log(double(query + 1)) : 0.0;
}

void widths(const float* probs, int64_t n, const double* levels, int n_levels, int32_t* out,
            std::vector<float>& scratch) {
  // Weighted quickselect. Invariant: scratch[0, lo) holds the lo largest entries (in some
  // order) with total mass `taken`; everything in [lo, n) is <= all of them. Each level
  // extends the prefix, so four levels cost about as much as one selection (O(n) expected).
  scratch.assign(probs, probs + n);
  float* a = scratch.data();
  int64_t lo = 0;
  double taken = 0;
  for (int li = 0; li < n_levels; ++li) {
    const double p = levels[li];
    int64_t hi = n;
    bool done = taken >= p;
    while (!done && lo < n) {
      if (lo == hi) hi = n;  // the narrowed block ran out (rounding): widen to the rest
      if (hi - lo <= 24) {
        std::sort(a + lo, a + hi, [](float x, float y) { return x > y; });
        while (lo < hi) {
          taken += a[lo++];
          if (taken >= p) { done = true; break; }
        }
        continue;
      }
      // Median-of-three pivot, three-way partition: [lo, gt) > pivot, [gt, eq) == pivot.
      const float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
      const float pivot = std::max(std::min(x, y), std::min(std::max(x, y), z));
      int64_t gt = lo, i = lo, lt = hi;
      while (i < lt) {
        const float v = a[i];
        if (v > pivot) { std::swap(a[gt++], a[i++]); }
        else if (v < pivot) { std::swap(a[i], a[--lt]); }
        else { ++i; }
      }
      double sum_gt = 0;
      for (int64_t j = lo; j < gt; ++j) sum_gt += a[j];
      if (taken + sum_gt >= p) {
        hi = gt;  // the answer lies inside the strictly larger block
        continue;
      }
      taken += sum_gt;
      lo = gt;
      while (lo < lt) {  // equal block: take one at a time
        taken += a[lo++];
        if (taken >= p) { done = true; break; }
      }
    }
    out[li] = static_cast<int32_t>(lo);
    if (!done) out[li] = static_cast<int32_t>(n);
  }
}

std::vector<int32_t> topk_indices(const float* probs, int64_t n, int k) {
  // "better" = larger value, then lower index. Keep a heap whose top is the worst kept.
  auto better = [probs](int32_t i, int32_t j) {
    return probs[i] > probs[j] || (probs[i] == probs[j] && i < j);
  };
  const int64_t kk = std::min<int64_t>(k, n);
  std::vector<int32_t> heap;
  heap.reserve(kk);
  for (int32_t j = 0; j < n; ++j) {
    if (int64_t(heap.size()) < kk) {
      heap.push_back(j);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (kk > 0 && better(j, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = j;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  return heap;
}

namespace {
// ln(x) for normal positive floats, |error| < 1e-7 absolute on the mantissa part; branch
// free so that the entropy loop vectorises. x = 2^e * m with m in [sqrt(1/2), sqrt(2)).
inline float fast_log(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  int32_t e = int32_t((bits >> 23) & 0xff) - 127;
  uint32_t mbits = (bits & 0x7fffff) | 0x3f800000u;  // m in [1, 2)
  float m = std::bit_cast<float>(mbits);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float s = (m - 1.f) / (m + 1.f);
  const float s2 = s * s;
  const float poly = s * (2.f + s2 * (0.666666667f + s2 * (0.4f + s2 * (0.285714286f + s2 * 0.222222222f))));
  return float(e) * 0.693147181f + poly;
}
}  // namespace

double entropy(const float* probs, int64_t n) {
  double h = 0;
#pragma omp simd reduction(+ : h)
  for (int64_t j = 0; j < n; ++j) {
    const float p = probs[j];
    // Subnormals and zeros contribute (almost) nothing; fast_log needs a normal input.
    const float pl = p > 1e-30f ? p * fast_log(p) : 0.f;
    h -= double(pl);
  }
  return h;
}

RowMetrics compute_row_metrics(const float* probs, const int32_t* key_pos, int64_t n,
                               int64_t query_pos, std::vector<float>& scratch) {
  RowMetrics m;
  m.query = static_cast<int32_t>(query_pos);
  m.n_keys = static_cast<int32_t>(n);
  widths(probs, n, kWidthLevels.data(), int(kWidthLevels.size()), m.width.data(), scratch);
  m.entropy = entropy(probs, n);
  auto pos = [&](int64_t j) -> int64_t { return key_pos ? key_pos[j] : j; };
  if (n > 0 && pos(0) == 0) {
    const float a0 = probs[0];
    m.sink_mass = a0;
    int64_t larger = 0;
    for (int64_t j = 1; j < n; ++j) larger += probs[j] > a0;
    m.sink_argmax = larger == 0;
    m.sink_top5 = larger < 5;
  }
  // Recency: keys with position > t - w, scanning back from the newest key.
  double acc = 0;
  size_t wi = 0;
  const int max_w = kRecencyWindows.back();
  int64_t j = n - 1;
  for (; j >= 0 && pos(j) > query_pos - max_w; --j) {
    while (wi < kRecencyWindows.size() && pos(j) <= query_pos - kRecencyWindows[wi])
      m.recency[wi++] = acc;
    acc += probs[j];
  }
  for (; wi < kRecencyWindows.size(); ++wi) m.recency[wi] = acc;
  return m;
}

}  // namespace attnsparse::analysis
