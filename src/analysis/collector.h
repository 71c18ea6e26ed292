// Streams one document's attention rows into an Accumulator. A row source (the model's
// forward pass, or a synthetic generator in tests) drives it:
//
//   collector.begin_call(q_pos0, n_q);          // before each forward call
//   for each micro-batch [q0, q0 + nq) of the call (in order), for each layer:
//     collector.begin_chunk(layer, q0, nq);      // optional when the call is one batch
//     rows -> collector.observer(layer)->on_row(...)   (concurrently, any order)
//     collector.end_layer(layer);                // after the layer's attention
//
// on_row computes the O(n) row metrics of selected rows into a slot per (head, query of
// the micro-batch) and, during the prefill call, the persistence inputs; end_layer
// reduces the slots in (query, head) order. Results therefore do not depend on the
// thread count, on the order rows arrive in, or on how the prefill is cut into
// micro-batches. Memory: O(heads x queries of a micro-batch) for the rows; for
// persistence, per layer and head the attention accumulated so far (one int64 per key)
// plus the buckets and later rows of the anchors inside the current micro-batch.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "analysis/accumulator.h"
#include "analysis/layer_kind.h"
#include "analysis/plan.h"
#include "ops/attention.h"

namespace attnsparse::analysis {

// Receives the CSV lines of analysed rows (--dump-rows), in a deterministic order:
// document, query, layer, head.
using RowDumpSink = std::function<void(const std::string& lines)>;
extern const char* const kRowDumpHeader;  // the CSV header line (with '\n')

class DocumentCollector {
 public:
  // `acc` must have been prepared with acc.begin_document(info) for plan.doc's info; the
  // collector adds to acc's entry `doc_slot` (the index begin_document returned).
  // `layers`: each layer's native window (analysis/layer_kind.h); empty = every layer
  // global. Rows of a windowed layer are measured over the keys it lets the query see.
  DocumentCollector(const DocumentPlan& plan, const AnalysisParams& params, Accumulator& acc,
                    int64_t doc_slot, RowDumpSink dump = nullptr, const std::vector<LayerKind>& layers = {});
  ~DocumentCollector();

  void begin_call(int64_t q_pos0, int64_t n_q);
  // The queries [q0, q0 + nq) of the call that the next rows of `layer` belong to.
  void begin_chunk(int layer, int64_t q0, int64_t nq);
  ops::RowObserver* observer(int layer);
  void end_layer(int layer);

  int64_t rows_done() const { return rows_done_; }
  // Called after each end_layer with the rows reduced so far (progress reports).
  std::function<void(int64_t rows_done)> on_progress;

 private:
  class LayerObserver;
  struct Slot;
  // entropy: the row's entropy when the producer computed it (the attention kernel does),
  // else nullptr and it is computed from probs.
  // add_to_bucket = false: the caller adds the row to its persistence bucket (on_rows).
  // largest: the row's largest probability when the producer found it, else nullptr.
  void on_row(int layer, int head, int64_t query, const float* probs, const int32_t* keys, int64_t n,
              const double* entropy = nullptr, bool add_to_bucket = true, const float* largest = nullptr);
  void on_rows(int layer, int head, int64_t query0, int n_rows, const float* const* probs,
               const int32_t* const* keys, const int64_t* n, const double* entropy, const float* largest);
  // Calls add(bucket b's data) for `head` in `layer` under the bucket's lock, the bucket
  // sized on first use.
  template <typename Add>
  void with_bucket(int layer, int head, int32_t b, Add&& add);
  void reduce_rows(int layer);
  void persistence_chunk_done(int layer);
  void reduce_persistence(int layer);

  const DocumentPlan& plan_;
  const AnalysisParams& params_;
  Accumulator& acc_;
  int64_t doc_slot_;
  RowDumpSink dump_;
  std::array<int, 3> groups_;
  int n_heads_;
  std::vector<int64_t> windows_;        // [layer]: native window, 0 = global

  int64_t call0_ = 0, call_n_ = 0;      // the forward call
  int64_t q_pos0_ = 0, n_q_ = 0;        // its current micro-batch
  bool chunk_set_ = false;              // begin_chunk was called for the current layer
  bool persistence_call_ = false;
  std::vector<int32_t> candidate_of_;   // query position -> index in plan.queries, or -1
  std::vector<Slot> slots_;             // [head * n_q + (query - q_pos0)]
  // --dump-rows lines of the current micro-batch, [query - q_pos0][layer], written after
  // its last layer in (query, layer, head) order: the same file for any micro-batching.
  std::vector<std::vector<std::string>> dump_lines_;
  std::unique_ptr<LayerObserver> observer_;
  int64_t rows_done_ = 0;

  // Persistence (prefill call only). Anchor a has position t_a = plan.anchors[a].
  std::vector<int32_t> bucket_of_;      // query position -> first anchor with t_a >= query, or -1
  std::vector<int32_t> anchor_of_;      // query position -> anchor index, or -1
  // What the reduction needs of the row t_a + gap restricted to keys 0..t_a.
  struct PairData {
    bool seen = false;
    std::vector<float> row;             // the row itself until the anchor's heavy set is known
    std::vector<int32_t> top;           // its top-32 key positions
    double mass = 0;                    // its total mass on keys 0..t_a
    std::array<double, kTopK.size()> on_heavy{};  // its mass on the anchor's heavy top-k
  };
  struct HeadPersistence {
    // Attention accumulated by the queries of the anchors' buckets folded so far, in
    // fixed point (2^-30) so that the sum does not depend on the order rows arrive in.
    std::vector<int64_t> accumulated;
    std::vector<std::vector<int64_t>> buckets;   // [anchor]: rows of (t_{a-1}, t_a], while open
    std::vector<std::vector<int32_t>> heavy;     // [anchor]: top-32 of accumulated at t_a
    std::vector<std::vector<int32_t>> anchor_top;  // [anchor]: top-32 positions of row t_a
    std::vector<std::array<PairData, kPersistenceGaps.size()>> pairs;  // [anchor][gap]
  };
  struct LayerPersistence {
    std::vector<HeadPersistence> heads;
    int32_t folded = 0;                 // anchors whose heavy set is known
  };
  std::vector<LayerPersistence> persistence_;   // [layer]
  std::vector<std::mutex> bucket_locks_;        // [head * anchors + anchor] (one layer at a time)
  void compact_pair(const HeadPersistence& hp, int32_t anchor, PairData& pd) const;
};

}  // namespace attnsparse::analysis
