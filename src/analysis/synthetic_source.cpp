#include "analysis/synthetic_source.h"

#include <algorithm>

#include <cmath>
#include <vector>

#include "analysis/collector.h"
#include "analysis/plan.h"
#include "core/error.h"

namespace attnsparse::analysis {

namespace {
// N(0,1) from a hash (Box-Muller).
double gaussian(uint64_t h) {
  const double u1 = (double(mix64(h) >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = double(mix64(h ^ 0x9e3779b97f4a7c15ULL) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
}  // namespace

SyntheticRowSource::SyntheticRowSource(int n_layers, int n_heads, PatternFn pattern, uint64_t seed)
    : n_layers_(n_layers), n_heads_(n_heads), pattern_(std::move(pattern)), seed_(seed) {}

uint64_t SyntheticRowSource::document_seed(std::span<const int32_t> tokens) const {
  uint64_t h = hash_combine(seed_, tokens.size());
  for (int32_t t : tokens) h = hash_combine(h, uint64_t(uint32_t(t)));
  return h;
}

std::vector<LayerKind> SyntheticRowSource::layer_kinds() const {
  std::vector<LayerKind> kinds(static_cast<size_t>(n_layers_));
  for (size_t l = 0; l < kinds.size() && l < windows.size(); ++l) kinds[l].window = windows[l];
  return kinds;
}

int64_t SyntheticRowSource::first_key(int layer, int64_t t) const {
  const int64_t w = size_t(layer) < windows.size() ? windows[size_t(layer)] : 0;
  return w > 0 ? std::max<int64_t>(0, t - w + 1) : 0;
}

void SyntheticRowSource::row(uint64_t doc_seed, int layer, int head, int64_t t,
                             std::vector<double>& probs) const {
  const HeadPattern p = pattern_(layer, head);
  const uint64_t head_seed = hash_combine(hash_combine(doc_seed, uint64_t(layer)), uint64_t(head));
  const uint64_t row_seed = hash_combine(head_seed, uint64_t(t) | (uint64_t(1) << 40));
  const int64_t first = first_key(layer, t);
  probs.resize(t + 1 - first);
  double mx = -1e300;
  for (int64_t j = first; j <= t; ++j) {
    double s = 0;
    if (j == 0) s += p.sink;
    if (j == t - 1) s += p.previous;
    if (t - j < p.recent_window) s += p.recent;
    if (p.heavy != 0 && j > 0 && hash_uniform(hash_combine(doc_seed ^ 0x4eaf, uint64_t(j))) < p.heavy_share)
      s += p.heavy;
    if (p.key_noise != 0) s += p.key_noise * gaussian(hash_combine(head_seed, uint64_t(j)));
    if (p.row_noise != 0) s += p.row_noise * gaussian(hash_combine(row_seed, uint64_t(j)));
    probs[j - first] = s;
    mx = std::max(mx, s);
  }
  double total = 0;
  for (double& x : probs) total += (x = std::exp(x - mx));
  for (double& x : probs) x /= total;
}

void SyntheticRowSource::run_document(std::span<const int32_t> tokens, int64_t prefill_len,
                                      DocumentCollector& collector) {
  const uint64_t doc_seed = document_seed(tokens);
  const int64_t n = static_cast<int64_t>(tokens.size());
  auto call = [&](int64_t q0, int64_t nq) {
    collector.begin_call(q0, nq);
    const int64_t ub = ubatch > 0 ? ubatch : nq;
    for (int64_t c0 = q0; c0 < q0 + nq; c0 += ub) {
      const int64_t cn = std::min(ub, q0 + nq - c0);
      for (int l = 0; l < n_layers_; ++l) {
        if (ubatch > 0) collector.begin_chunk(l, c0, cn);
        ops::RowObserver* obs = collector.observer(l);
        // Units of one head and `per` consecutive queries, latest queries first as the
        // attention core runs them; a unit of several rows goes to on_rows.
        constexpr int B = ops::RowObserver::kObservedBlock;
        if (blocks && (block_rows < 1 || block_rows > B))
          fail("internal: blocks of {} rows (1..{})", block_rows, B);
        const int64_t per = blocks ? block_rows : 1, units = (cn + per - 1) / per;
#pragma omp parallel
        {
          std::vector<double> p;
          std::vector<std::vector<float>> pf(B);
          std::vector<std::vector<int32_t>> keys(B);
          const float* probs[B];
          const int32_t* slots[B];
          int64_t n_keys[B];
#pragma omp for schedule(dynamic, 4)
          for (int64_t x = 0; x < units * n_heads_; ++x) {
            const int head = static_cast<int>(x % n_heads_);
            const int64_t end = c0 + cn - (x / n_heads_) * per, t0 = std::max(c0, end - per);
            for (int64_t t = t0; t < end; ++t) {
              const int64_t k = t - t0;
              row(doc_seed, l, head, t, p);
              pf[k].assign(p.begin(), p.end());
              // Slots are positions (no eviction); a windowed row lists its visible slots.
              const int64_t first = first_key(l, t);
              keys[k].resize(p.size());
              for (size_t i = 0; i < keys[k].size(); ++i) keys[k][i] = int32_t(first + int64_t(i));
              probs[k] = pf[k].data();
              slots[k] = first > 0 ? keys[k].data() : nullptr;
              n_keys[k] = int64_t(p.size());
            }
            // No entropies: the collector computes them from the rows.
            if (blocks) obs->on_rows(head, t0, static_cast<int>(end - t0), probs, slots, n_keys, nullptr, nullptr);
            else obs->on_row(head, t0, probs[0], slots[0], n_keys[0]);
          }
        }
        collector.end_layer(l);
      }
    }
  };
  call(0, prefill_len);
  for (int64_t t = prefill_len; t < n; ++t) call(t, 1);
}

}  // namespace attnsparse::analysis
