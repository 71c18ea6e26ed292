// One attention call under a policy, set up for timing: random q/k/v of a given shape,
// the dense call, the planned sparse call, and (for evicting policies) a decode step with
// a KV cache held at the budget. Shared by `attnsparse bench-attention` and
// bench/bench_attention.cpp so both measure the same thing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ops/attention.h"
#include "ops/keyset.h"
#include "policies/eviction.h"
#include "policies/planner.h"
#include "policies/policy_map.h"

namespace attnsparse::policies {

struct BenchShape {
  int64_t n = 4096;     // context length (keys); prefill: also the number of queries
  int head_dim = 128;
  int heads = 32;
  int kv_heads = 8;
  bool decode = false;  // one query at position n-1 instead of a prefill of n queries
  uint32_t seed = 1;
};

class AttentionCase {
 public:
  // Layer 0 of `map` gives each head's policy. Throws UsageError for an evicting policy
  // in prefill mode (eviction happens between decode steps).
  AttentionCase(const BenchShape& shape, const PolicyMap& map);

  void dense();       // the dense call over the whole context
  void plan();        // builds the sparse key set (not evicting)
  void run_sparse();  // the planned sparse call (or one evicting decode step)
  bool evicting() const { return evict_.has_value(); }

  double kept_fraction() const { return kept_fraction_; }
  // Query-key pairs visited per query head: dense and sparse.
  double dense_pairs() const { return dense_pairs_; }
  double sparse_pairs() const { return kept_fraction_ * dense_pairs_; }
  const ops::AttentionShape& dense_shape() const { return dense_shape_; }

 private:
  BenchShape shape_;
  std::vector<const Policy*> heads_;
  PolicyMap map_;
  ops::AttentionShape dense_shape_;
  std::vector<float> q_, k_, v_, out_;
  std::optional<ops::KeySet> keys_;
  PlanCache plan_cache_;  // as in a session: quest keeps the bounds of full pages
  double kept_fraction_ = 1, dense_pairs_ = 0;
  struct EvictState {
    EvictionScores scores;
    EvictionObserver observer;
    std::vector<float> k, v;  // budget + 1 slots
    std::vector<int32_t> pos;
    int64_t next_pos;
  };
  std::optional<EvictState> evict_;
};

}  // namespace attnsparse::policies
