// Streams one document's attention rows into an Accumulator. A row source (the model's
// forward pass, or a synthetic generator in tests) drives it:
//
//   collector.begin_call(q_pos0, n_q);          // before each forward call
//   for each layer:
//     rows -> collector.observer(layer)->on_row(...)   (concurrently, any order)
//     collector.end_layer(layer);                // after the layer's attention
//   collector.finish();
//
// on_row computes the O(n) row metrics of selected rows into a slot per (head, query)
// and, during the prefill call, the persistence inputs; end_layer reduces the slots in
// (head, query) order. Results therefore do not depend on the thread count or on the
// order rows arrive in. Memory: O(heads x (queries of the call + anchors x context)).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "analysis/accumulator.h"
#include "analysis/plan.h"
#include "ops/attention.h"

namespace attnsparse::analysis {

// Receives the CSV lines of analysed rows (--dump-rows), in a deterministic order.
using RowDumpSink = std::function<void(const std::string& lines)>;
extern const char* const kRowDumpHeader;  // the CSV header line (with '\n')

class DocumentCollector {
 public:
  // `acc` must have been prepared with acc.begin_document(info) for plan.doc's info; the
  // collector adds to acc's entry `doc_slot` (the index begin_document returned).
  DocumentCollector(const DocumentPlan& plan, const AnalysisParams& params, Accumulator& acc,
                    int64_t doc_slot, RowDumpSink dump = nullptr);
  ~DocumentCollector();

  void begin_call(int64_t q_pos0, int64_t n_q);
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
  void on_row(int layer, int head, int64_t query, const float* probs, const int32_t* keys, int64_t n,
              const double* entropy = nullptr);
  void reduce_rows(int layer);
  void reduce_persistence(int layer);

  const DocumentPlan& plan_;
  const AnalysisParams& params_;
  Accumulator& acc_;
  int64_t doc_slot_;
  RowDumpSink dump_;
  std::array<int, 3> groups_;
  int n_heads_;

  int64_t q_pos0_ = 0, n_q_ = 0;
  bool persistence_call_ = false;
  std::vector<int32_t> candidate_of_;   // query position -> index in plan.queries, or -1
  std::vector<Slot> slots_;             // [head * n_q + (query - q_pos0)]
  std::unique_ptr<LayerObserver> observer_;
  int64_t rows_done_ = 0;

  // Persistence (prefill call only). Anchor a has position t_a = plan.anchors[a].
  std::vector<int32_t> bucket_of_;      // query position -> first anchor with t_a >= query, or -1
  std::vector<int32_t> anchor_of_;      // query position -> anchor index, or -1
  // Attention accumulated by the rows of each bucket, in fixed point (2^-30) so that the
  // sum does not depend on the order rows arrive in: [head][anchor] -> keys 0..t_a.
  std::vector<std::vector<std::vector<int64_t>>> buckets_;
  std::vector<std::mutex> bucket_locks_;  // [head * anchors + anchor]
  // top-32 of each anchor row: [head][anchor] (positions, best first)
  std::vector<std::vector<std::vector<int32_t>>> anchor_topk_;
  // Row t_a + gap restricted to keys 0..t_a: [head][anchor][gap]
  std::vector<std::vector<std::vector<std::vector<float>>>> pair_rows_;
};

}  // namespace attnsparse::analysis
