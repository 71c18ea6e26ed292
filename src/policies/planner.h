// Planning: turns the policies of one attention call (one per query head, none evicting)
// into the key set the attention core runs. Planning is separate from running: a plan
// is an ops::KeySet, built before the call and passed to ops::attention.
//
//   positional  a KeySet kind (window, sink+window, block; dilated and strided with
//               steps < 4) or index lists shared by all heads (bigbird; strided and
//               dilated with larger steps, whose tiles would be mostly masked);
//   content     topk/dyntopk/topp select from the dense probability row of each (head,
//               query): a first dense pass of the core with a ContentSelector observer
//               (or the model's own dense pass, in oracle mode), then index lists;
//   quest       per-page elementwise min/max of the keys bound each page's best score
//               (sum_d max(q_d min_d, q_d max_d)); the K best pages are kept.
// Heads with different policies get a per-head KeySet.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "ops/attention.h"
#include "ops/keyset.h"
#include "policies/policy.h"

namespace attnsparse::policies {

// Per (head, query) sorted slot lists of one call.
struct RowLists {
  int n_head = 0;
  int64_t n_q = 0;
  std::vector<std::vector<int32_t>> rows;  // [head * n_q + i]

  RowLists() = default;
  RowLists(int heads, int64_t queries) : n_head(heads), n_q(queries), rows(static_cast<size_t>(heads) * queries) {}
  std::vector<int32_t>& row(int head, int64_t i) { return rows[static_cast<size_t>(head) * n_q + i]; }
  const std::vector<int32_t>& row(int head, int64_t i) const { return rows[static_cast<size_t>(head) * n_q + i]; }
  ops::KeySet all_heads() const;   // IndexList with n_head list heads
  ops::KeySet head(int h) const;   // IndexList of head h alone (1 list head)
};

// Selects the kept keys of content-policy heads from dense probability rows.
// head_policies[h] == nullptr: head h is not selected (its rows are ignored).
class ContentSelector : public ops::RowObserver {
 public:
  ContentSelector(std::vector<const Policy*> head_policies, int64_t n_q, int64_t q_pos0);
  void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys,
              int64_t n_keys) override;
  const RowLists& lists() const { return lists_; }

 private:
  std::vector<const Policy*> policies_;
  int64_t q_pos0_;
  RowLists lists_;
};

// BigBird: global keys p < G, the window p > t-W, and R random other causal keys drawn
// per query from a generator seeded by (seed, t) — so the set of query t does not depend
// on how the sequence is split into calls. Shared by all heads. Under a native window
// (s.window) only visible keys are listed: the global keys inside it, the random ones
// drawn among the visible others.
//
// Every planner composes a policy with the layer's native window by intersection: the
// attention core visits only keys with t - p < window whatever the set says, content
// policies select from the dense row over the visible keys, Quest bounds and picks
// pages of visible keys, BigBird draws its random keys among them.
ops::KeySet bigbird_keys(const Policy& p, const ops::AttentionShape& s, const ops::AttentionArgs& a);

// Strided / dilated sets as index lists shared by all heads (used for steps >= 4, where
// tiles would be mostly masked), and dynwindow's sets (their size changes with t).
ops::KeySet sparse_positional_lists(const Policy& p, const ops::AttentionShape& s, const ops::AttentionArgs& a);

// Quest's per-page key bounds kept between the calls of one sequence: pages whose slots
// all exist never change (quest does not evict), so a decode step only bounds the last
// page. Tied to one cache (k pointer, stride, shape); refreshed when those change.
struct QuestPages {
  const float* k = nullptr;
  int64_t k_stride = 0, page = 0, full_pages = 0;
  int kv_heads = 0, head_dim = 0;
  std::vector<float> mn, mx;  // [page][kv_head][head_dim]
  void reset(const ops::AttentionShape& s, const ops::AttentionArgs& a, int64_t page_size);
  bool fits(const ops::AttentionShape& s, const ops::AttentionArgs& a, int64_t page_size) const;
};

// What a planner keeps between the calls of one sequence, per layer. Clear it (or make
// a new one) when a new sequence starts: a new cache may reuse the old one's memory.
struct PlanCache {
  std::vector<QuestPages> quest;  // one per page size
  void clear() { quest.clear(); }
};

// Quest lists for every query head (pages are slot ranges [x*P, (x+1)*P); a page's bounds
// cover only the keys the query may see). `cache` may be null (bounds computed afresh).
RowLists quest_lists(const Policy& p, const ops::AttentionShape& s, const ops::AttentionArgs& a,
                     QuestPages* cache = nullptr);

// The key set of a call where query head h follows *head_policies[h] (none evicting).
// `dense_rows`, when given, supplies content selections made on the model's own dense
// pass; otherwise content heads trigger a dense scoring pass here. nullopt: all dense.
std::optional<ops::KeySet> plan_call(const std::vector<const Policy*>& head_policies,
                                     const ops::AttentionShape& s, const ops::AttentionArgs& a,
                                     const RowLists* dense_rows = nullptr, PlanCache* cache = nullptr);

}  // namespace attnsparse::policies
