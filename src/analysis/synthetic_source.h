// Synthetic attention rows with planted structure, for truth tests of the whole analysis
// path (collector, accumulators, persistence, clustering, verdicts) without a model.
//
// Row t of head (layer, h) is softmax(s) over the keys the layer lets the query see —
// 0..t, or t-W+1..t in a layer with a native window W (`windows`) — with logits
//   s_j = sink [j = 0] + previous [j = t-1] + recent [t - j < recent_window]
//       + heavy [j is a heavy hitter] + key_noise z_j + row_noise z_tj
// where z_j ~ N(0,1) is fixed per (document, layer, head, key) — a persistent preference —
// and z_tj ~ N(0,1) is fresh for every query. Heavy hitters are the same keys for every
// head of a document (about heavy_share of the keys, never key 0). All randomness is a
// hash of (seed, document tokens, layer, head, t, j): rows do not depend on threads or on
// prefill vs decode.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "analysis/row_source.h"
#include "ops/attention.h"

namespace attnsparse::analysis {

struct HeadPattern {
  double sink = 0;
  double previous = 0;
  double recent = 0;
  int recent_window = 8;
  double heavy = 0;
  double heavy_share = 0.05;
  double key_noise = 0;
  double row_noise = 0;
};

class SyntheticRowSource : public RowSource {
 public:
  using PatternFn = std::function<HeadPattern(int layer, int head)>;
  SyntheticRowSource(int n_layers, int n_heads, PatternFn pattern, uint64_t seed = 1);

  int n_layers() const override { return n_layers_; }
  int n_heads() const override { return n_heads_; }
  int n_kv_heads() const override { return n_heads_; }
  std::vector<LayerKind> layer_kinds() const override;
  void run_document(std::span<const int32_t> tokens, int64_t prefill_len,
                    DocumentCollector& collector) override;

  // The probabilities of one row (exposed so tests can derive expectations independently
  // of the collector): probs[i] is the key at position first_key(layer, t) + i, up to t.
  // doc_seed identifies the document (see document_seed).
  void row(uint64_t doc_seed, int layer, int head, int64_t t, std::vector<double>& probs) const;
  int64_t first_key(int layer, int64_t t) const;
  uint64_t document_seed(std::span<const int32_t> tokens) const;

  // Deliver the prefill call in micro-batches of this many queries (0: one batch), in
  // the order the model's micro-batched forward pass uses (micro-batch, then layer).
  int64_t ubatch = 0;
  // Native sliding window per layer (0 = global); empty: every layer global.
  std::vector<int64_t> windows;
  // Hand a head's consecutive queries to the observer together (RowObserver::on_rows, at
  // most kObservedBlock at a time), as the tiled attention kernel does; false: row by row.
  bool blocks = false;
  // Rows per block with `blocks` (1..kObservedBlock): the kernel's jobs hand over 4 or 8.
  int block_rows = ops::RowObserver::kObservedBlock;

 private:
  int n_layers_, n_heads_;
  PatternFn pattern_;
  uint64_t seed_;
};

}  // namespace attnsparse::analysis
