// Decode-time eviction (h2o, tova, snapkv): which keys stay in a layer's KV cache.
//
// The KV cache is shared by the heads of a layer, so a layer keeps one set of keys and
// the scores are the attention probabilities summed over the layer's query heads.
// One step: the new key(s) are appended, the queries attend everything cached, their
// probability rows update the scores, and the cache is cut back to `budget` keys by
// dropping the lowest-scoring keys outside the protected ones (ties: older key first):
//   h2o     score = attention accumulated over every query since the key arrived;
//           the `recent` newest keys are protected.
//   tova    score = the newest query's attention; nothing is protected.
//   snapkv  score = attention from the last `window` queries (the observation window),
//           max-pooled over `pool` neighbouring cached keys (in position order); the
//           `window` newest keys are protected. A long prompt evaluated in one call is
//           compressed exactly as in SnapKV; token-by-token it re-selects at every step.
// Two executions share this code: the real one (PolicySession evicts slots from the
// KVCache after each forward call) and the simulated one (EvictionSimulator plans the
// same per-query key sets as index lists over a full cache, so one prefill gives the
// outputs of token-by-token decoding with eviction).
#pragma once
#include <cstdint>
#include <deque>
#include <vector>

#include "ops/attention.h"
#include "ops/keyset.h"
#include "policies/policy.h"

namespace attnsparse::policies {

class EvictionScores {
 public:
  explicit EvictionScores(const Policy& p);

  // One query's row, summed over heads: value[x] belongs to the key at position pos[x].
  // Rows must arrive in query order.
  void add_row(int64_t query_pos, const int32_t* pos, const float* value, int64_t n);

  // keep[x] for the cached keys at positions pos[0..n): all when n <= budget, else
  // exactly `budget` of them. `newest` is the position of the newest key.
  std::vector<uint8_t> keep(const int32_t* pos, int64_t n, int64_t newest) const;

  // Drops the state of keys that left the cache.
  void forget(const int32_t* pos, int64_t n);

  // The scores the policy ranks the cached keys by (snapkv: pooled over the keys before
  // the observation window, i.e. positions <= newest - window).
  std::vector<double> scores(const int32_t* pos, int64_t n, int64_t newest) const;

  const Policy& policy() const { return policy_; }
  // Queries whose rows must be recorded for the next keep(): rows of earlier queries of a
  // multi-query call are summed (h2o) or not needed (tova: 1, snapkv: window).
  int64_t rows_needed() const;

 private:
  double& acc(int64_t pos);
  Policy policy_;
  std::vector<double> accumulated_;  // h2o, by position
  struct Row {
    int64_t query;
    std::vector<int32_t> pos;
    std::vector<float> value;
  };
  std::deque<Row> recent_rows_;  // tova: 1, snapkv: window
  mutable std::vector<double> votes_;  // scratch of scores(), all zero between calls
};

// Collects the head-summed rows of one attention call (the observer is called from many
// threads), then hands them to EvictionScores in query order.
class EvictionObserver : public ops::RowObserver {
 public:
  // Prepares for a call: rows of the last `rows_needed` queries are kept separately, the
  // earlier ones summed (all of them when rows_needed <= 0).
  void begin(const ops::AttentionShape& s, const ops::AttentionArgs& a, int64_t rows_needed);
  void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys,
              int64_t n_keys) override;
  // Feeds the collected rows to `scores` (slots translated to positions).
  void finish(EvictionScores& scores);

 private:
  int64_t n_kv_ = 0, q_pos0_ = 0, n_q_ = 0, first_kept_ = 0, n_rows_ = 0;
  const int32_t* key_pos_ = nullptr;
  int threads_ = 1;
  std::vector<float> buf_;  // [thread][row][slot]; row 0 = summed earlier queries
};

// Removes the slots with keep[j] == 0 from a cache of n slots (kv_dim floats of K and of
// V per slot) by moving the last kept slots into the holes: O(evicted) copies instead of
// shifting the whole cache, so slot order stops following position order. Returns the
// number of slots kept (they are now 0..kept-1).
int64_t compact_slots(float* k, float* v, int32_t* pos, int64_t kv_dim, int64_t n, std::vector<uint8_t> keep);

// Streaming eviction planned over a full cache: for every query in order, the query
// visits the retained keys and itself; then the cache is cut back to the budget. Under a
// native window the query visits those of them inside the window (intersection); the
// others stay candidates with no attention from it.
class EvictionSimulator {
 public:
  explicit EvictionSimulator(const Policy& p) : scores_(p) {}
  // Index lists (shared by all heads) for one call; advances the state. The cache must
  // hold every key (slots found by position).
  ops::KeySet plan(const ops::AttentionShape& s, const ops::AttentionArgs& a);
  const std::vector<int32_t>& retained() const { return retained_; }  // positions
  int64_t peak() const { return peak_; }  // most keys a query visited

 private:
  EvictionScores scores_;
  std::vector<int32_t> retained_;
  int64_t peak_ = 0;
};

}  // namespace attnsparse::policies
