// Oracle comparison: the model runs dense attention, and at every layer each policy map
// is applied to exactly the same q/k/v (same hidden states). Per map and layer:
//   kept / visible  keys in the policy's sets vs. causal keys (summed over heads, rows);
//   tau             dense tail mass the policy drops, 1 - sum_{j in G_t} a_j, per row;
//   diff2 / ref2    ||O - O_G||^2 and ||O||^2 over the layer's attention outputs, where
//                   O_G is the core's output with the policy's key sets.
// Evicting policies are simulated token by token (EvictionSimulator) on the dense q/k,
// with their state carried across the calls of one sequence (call reset() between
// sequences).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/model.h"
#include "policies/policy_map.h"

namespace attnsparse::policies {

struct OracleLayerStats {
  double diff2 = 0, ref2 = 0;  // squared L2 norms (error, dense output)
  double tau = 0;              // summed over rows
  int64_t rows = 0;
  int64_t kept = 0, visible = 0;
  void merge(const OracleLayerStats& o);
  double relative_l2() const;
};

// One row's comparison (OracleHooks::report_rows): map, layer, query head and position;
// the dense mass the map's set drops, ||o - o_G||^2 and ||o||^2 over the head's output
// (o = the dense output, o_G = the output over the map's set), and the keys kept of those
// the layer lets the query see.
struct OracleRow {
  size_t map = 0;
  int layer = 0, head = 0;
  int64_t query = 0;
  double tau = 0, diff2 = 0, ref2 = 0;
  int64_t kept = 0, visible = 0;
};

class OracleHooks : public AttentionHooks {
 public:
  OracleHooks(const ModelConfig& config, std::vector<PolicyMap> maps);
  ~OracleHooks() override;

  void reset();  // a new sequence starts (eviction simulators restart)
  // [map][layer]
  const std::vector<std::vector<OracleLayerStats>>& stats() const { return stats_; }
  // [map][layer][call]: what each layer call added to stats() since the last reset(), in
  // order (stats() merges them one by one), so that a sequence's statistics measured in
  // one process can be added to a total kept in another with the same roundings.
  const std::vector<std::vector<std::vector<OracleLayerStats>>>& calls() const { return calls_; }

  // Per-row results for the query positions `chosen` accepts (theory fit): after each
  // layer's attention, `sink` gets one OracleRow per map, chosen query of the call and
  // head, in that order, from the calling thread. `chosen` must be safe to call from
  // several threads. Pass nullptr functions to stop. With `only_chosen` the other rows
  // are not measured at all (content policies select nothing for them) and stats() stays
  // empty: the per-row results cost only the chosen rows.
  void report_rows(std::function<bool(int64_t query)> chosen, std::function<void(const OracleRow&)> sink,
                   bool only_chosen = false);

  const ops::KeySet* plan(int layer, const ops::AttentionShape& shape, const ops::AttentionArgs& args) override;
  ops::RowObserver* observer(int layer) override;
  void after_attention(int layer, const ops::AttentionShape& shape, const ops::AttentionArgs& args) override;

 private:
  class RowTap;
  struct PerMap;
  ModelConfig config_;
  std::vector<PolicyMap> maps_;
  std::vector<std::unique_ptr<PerMap>> per_map_;
  std::unique_ptr<RowTap> tap_;
  std::vector<std::vector<OracleLayerStats>> stats_;
  std::vector<std::vector<std::vector<OracleLayerStats>>> calls_;
  std::vector<OracleLayerStats> call_;  // [map] the current layer call's sums
  std::function<bool(int64_t)> chosen_;
  std::function<void(const OracleRow&)> row_sink_;
  bool only_chosen_ = false;
};

}  // namespace attnsparse::policies
