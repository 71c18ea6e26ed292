// Which rows of which document are analysed: candidate query positions (min query,
// stride, prefill / decode), the seeded uniform --max-rows sample, persistence anchors.
#pragma once
#include <cstdint>
#include <vector>

#include "analysis/params.h"

namespace attnsparse::analysis {

// A stateless 64-bit mix (splitmix64 finaliser); hash_combine folds values in order.
uint64_t mix64(uint64_t x);
uint64_t hash_combine(uint64_t seed, uint64_t value);
// Uniform in [0, 1) from a hash.
inline double hash_uniform(uint64_t h) { return double(h >> 11) * 0x1.0p-53; }

struct DocumentPlan {
  int64_t doc = 0;            // index in the run
  int64_t n_tokens = 0;
  int64_t prefill_len = 0;    // tokens of the prefill call; the rest are decode steps
  std::vector<int32_t> queries;        // candidate query positions, increasing
  std::vector<int64_t> anchors;        // persistence anchors (prefill positions), increasing
  int n_layers = 0, n_heads = 0;
  // Empty = every candidate row is analysed; else one bit per (layer, head, candidate)
  // in that order.
  std::vector<uint64_t> selected_bits;
  int64_t selected_rows = 0;

  int64_t candidates() const { return int64_t(queries.size()) * n_layers * n_heads; }
  bool selected(int layer, int head, int64_t candidate_index) const {
    if (selected_bits.empty()) return true;
    const int64_t bit = (int64_t(layer) * n_heads + head) * int64_t(queries.size()) + candidate_index;
    return (selected_bits[bit >> 6] >> (bit & 63)) & 1;
  }
};

// The document's candidates and anchors (no sampling yet: selected_rows = candidates).
// Prefill length: the whole document for RowKind::Prefill, else all but the last
// min(decode_tokens, n - 1) tokens.
DocumentPlan plan_document(int64_t doc, int64_t n_tokens, int n_layers, int n_heads,
                           const AnalysisParams& params);

// Seeded uniform sample of exactly `target` rows out of `total` candidates over the whole
// run (selection sampling, Knuth's Algorithm S, with one hashed uniform per candidate),
// applied one document at a time in run order. The state is two counters, so a
// checkpoint can store it.
struct RowSampler {
  int64_t total = 0, target = 0;  // target >= total: keep everything
  int64_t seen = 0, chosen = 0;
  uint64_t seed = 1;
  void apply(DocumentPlan& plan);
};

}  // namespace attnsparse::analysis
