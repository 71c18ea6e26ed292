// Whole-model execution with a policy map, in prefill and in decode: Model::forward with
// hooks that plan each layer's key sets (policies/planner.h) and, for evicting policies,
// collect the attention rows and cut the KV cache back to the budget after every call.
//
// Eviction really shrinks the cache: evicted slots are refilled from the end of the cache
// (so positions in the cache are no longer sorted; the attention core reads the position
// of every slot). Positional policies whose future key sets are bounded by position
// (window, sink+window, dilated, block) also drop keys no later query can visit
// (StreamingLLM-style), when every layer and head uses one of them.
//
// Eviction::Simulated keeps every key in the cache and runs evicting policies through
// EvictionSimulator instead: one prefill call then produces exactly the outputs of
// token-by-token decoding with eviction (used by eval-policy for perplexity).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/model.h"
#include "policies/eviction.h"
#include "policies/policy_map.h"

namespace attnsparse::policies {

class PolicySession {
 public:
  enum class Eviction { Real, Simulated };

  // capacity: KV-cache slots (with real eviction: budget + the longest call is enough).
  PolicySession(const Model& model, PolicyMap map, int64_t capacity,
                Eviction eviction = Eviction::Real);
  ~PolicySession();
  PolicySession(const PolicySession&) = delete;
  PolicySession& operator=(const PolicySession&) = delete;

  // Evaluates `tokens` after everything before (prefill: many tokens; decode: one).
  // opts.hooks must be null (the session installs its own).
  void forward(std::span<const int32_t> tokens, const ForwardOptions& opts, std::vector<float>& logits);

  const KVCache& cache() const { return cache_; }
  int64_t cache_bytes() const { return cache_.bytes(); }
  // Most bytes of K and V the policy needed at once (real: slots held during a call;
  // simulated eviction: the largest key set a query visited).
  int64_t peak_cache_bytes() const;
  int64_t bytes_per_slot() const;  // K and V of one position, all layers

  // Kept-key accounting (off by default; costs a pass over each key set):
  // sum over layers, heads and queries of |G_t| and of the visible keys (both inside
  // each layer's native window: a policy never widens it).
  void count_keys(bool on) { counting_ = on; }
  int64_t kept_keys() const { return kept_; }
  int64_t visible_keys() const { return visible_; }

  const PolicyMap& map() const { return map_; }

 private:
  class Hooks;
  void evict_after_call();

  const Model& model_;
  PolicyMap map_;
  Eviction eviction_;
  KVCache cache_;
  std::unique_ptr<Hooks> hooks_;
  bool evicting_ = false;           // h2o / tova / snapkv in every layer
  bool positional_evict_ = false;   // every policy's key sets are bounded by position
  std::vector<EvictionScores> scores_;       // real eviction, per layer
  std::vector<EvictionSimulator> simulators_;  // simulated eviction, per layer
  int64_t peak_slots_ = 0;
  bool counting_ = false;
  int64_t kept_ = 0, visible_ = 0;
};

// Keys visible to the queries of a call (causal, and inside the layer's native window
// when the shape has one), summed over queries, for one head.
int64_t visible_keys(const ops::AttentionShape& s, const int32_t* key_pos);

// The most KV slots a policy map needs at once when n tokens are decoded one by one
// with real eviction (evicting: min(n, budget + 1); position-bounded policies: the
// largest set of keys some later query may still visit, plus the new one; otherwise n).
int64_t kv_slots_needed(const PolicyMap& map, int n_layer, int n_head, int64_t n_tokens);

}  // namespace attnsparse::policies
