#include "analysis/plan.h"

#include <algorithm>

#include "core/error.h"

namespace attnsparse::analysis {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t hash_combine(uint64_t seed, uint64_t value) { return mix64(seed ^ mix64(value)); }

DocumentPlan plan_document(int64_t doc, int64_t n_tokens, int n_layers, int n_heads,
                           const AnalysisParams& params) {
  const SamplingParams& s = params.sampling;
  DocumentPlan p;
  p.doc = doc;
  p.n_tokens = n_tokens;
  p.n_layers = n_layers;
  p.n_heads = n_heads;
  const int64_t decode = s.rows == RowKind::Prefill ? 0 : std::min(s.decode_tokens, n_tokens - 1);
  p.prefill_len = n_tokens - std::max<int64_t>(decode, 0);
  if (s.rows != RowKind::Decode)
    // t advances by at most what is left, so a huge --stride cannot overflow t.
    for (int64_t t = s.min_query; t < p.prefill_len;
         t = p.prefill_len - t > s.stride ? t + s.stride : p.prefill_len)
      p.queries.push_back(int32_t(t));
  if (s.rows != RowKind::Prefill)
    for (int64_t t = std::max(p.prefill_len, s.min_query); t < n_tokens; ++t)
      p.queries.push_back(int32_t(t));
  p.selected_rows = p.candidates();

  // Anchors: evenly spaced over [min_anchor, prefill_len - 2] (each needs a later row).
  const int64_t lo = params.persistence.min_anchor, hi = p.prefill_len - 2;
  const int count = params.persistence.anchors;
  if (hi >= lo && count > 0) {
    for (int a = 0; a < count; ++a) {
      const int64_t t = count == 1 ? lo : lo + (hi - lo) * a / (count - 1);
      if (p.anchors.empty() || p.anchors.back() != t) p.anchors.push_back(t);
    }
  }
  return p;
}

void RowSampler::apply(DocumentPlan& plan) {
  const int64_t n = plan.candidates();
  if (target >= total) {  // keep everything
    seen += n;
    chosen += n;
    return;
  }
  plan.selected_bits.assign((n + 63) / 64, 0);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i, ++seen) {
    // Keep candidate `seen` with probability (still wanted) / (still to see).
    const double u = hash_uniform(hash_combine(seed, uint64_t(seen)));
    if (u * double(total - seen) < double(target - chosen)) {
      plan.selected_bits[i >> 6] |= uint64_t(1) << (i & 63);
      ++chosen;
      ++kept;
    }
  }
  plan.selected_rows = kept;
}

}  // namespace attnsparse::analysis
