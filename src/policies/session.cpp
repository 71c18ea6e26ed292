// PolicySession: planning hooks, eviction after each call, cache compaction.
#include "policies/session.h"

#include <algorithm>

#include "core/error.h"
#include "policies/planner.h"

namespace attnsparse::policies {

namespace {

bool position_bounded(const Policy& p) {
  return p.kind == Kind::Window || p.kind == Kind::SinkWindow || p.kind == Kind::Dilated ||
         p.kind == Kind::Block;
}

}  // namespace

int64_t visible_keys(const ops::AttentionShape& s, const int32_t* key_pos) {
  int64_t total = 0;
  // The first position a query at t may see: t - window + 1 under a native window.
  auto first = [&](int64_t t) { return s.window > 0 ? std::max<int64_t>(0, t - s.window + 1) : int64_t(0); };
  if (key_pos == nullptr) {
    for (int64_t i = 0; i < s.n_q; ++i) {
      const int64_t t = s.q_pos0 + i;
      total += std::max<int64_t>(0, std::min(s.n_kv, t + 1) - first(t));
    }
    return total;
  }
  std::vector<int32_t> sorted(key_pos, key_pos + s.n_kv);
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < s.n_q; ++i) {
    const int64_t t = s.q_pos0 + i;
    total += std::upper_bound(sorted.begin(), sorted.end(), t) - std::lower_bound(sorted.begin(), sorted.end(), first(t));
  }
  return total;
}

class PolicySession::Hooks : public AttentionHooks {
 public:
  explicit Hooks(PolicySession& s)
      : s_(s), keys_(s.model_.config().n_layer), caches_(s.model_.config().n_layer) {}

  const ops::KeySet* plan(int layer, const ops::AttentionShape& shape, const ops::AttentionArgs& args) override {
    const bool simulated = s_.evicting_ && s_.eviction_ == Eviction::Simulated;
    if (layer == 0 && !simulated) s_.peak_slots_ = std::max(s_.peak_slots_, shape.n_kv);
    const ops::KeySet* result = nullptr;
    if (s_.evicting_ && s_.eviction_ == Eviction::Real) {
      observer_.begin(shape, args, s_.scores_[layer].rows_needed());
      observe_ = true;
    } else {
      observe_ = false;
      if (s_.evicting_) {
        keys_[layer] = s_.simulators_[layer].plan(shape, args);
        if (layer == 0) s_.peak_slots_ = std::max(s_.peak_slots_, s_.simulators_[0].peak());
      } else {
        const int n_head = shape.n_head;
        std::vector<const Policy*> heads(n_head);
        for (int h = 0; h < n_head; ++h) heads[h] = &s_.map_.at(layer, h);
        keys_[layer] = plan_call(heads, shape, args, nullptr, &caches_[layer]);
      }
      if (keys_[layer]) result = &*keys_[layer];
    }
    if (s_.counting_) {
      const int64_t visible = policies::visible_keys(shape, args.key_pos) * shape.n_head;
      s_.visible_ += visible;
      s_.kept_ += result ? result->kept(shape.n_head, shape.n_q, shape.q_pos0, shape.n_kv, args.key_pos, shape.window)
                         : visible;
    }
    return result;
  }

  ops::RowObserver* observer(int layer) override { return observe_ ? &observer_ : nullptr; }

  void after_attention(int layer, const ops::AttentionShape&, const ops::AttentionArgs&) override {
    if (observe_) observer_.finish(s_.scores_[layer]);
    keys_[layer].reset();  // index lists can be large
  }

 private:
  PolicySession& s_;
  std::vector<std::optional<ops::KeySet>> keys_;
  std::vector<PlanCache> caches_;  // per layer, for this session's one sequence
  EvictionObserver observer_;
  bool observe_ = false;
};

PolicySession::PolicySession(const Model& model, PolicyMap map, int64_t capacity, Eviction eviction)
    : model_(model), map_(std::move(map)), eviction_(eviction), cache_(model.make_cache(capacity, DType::F32)) {
  const ModelConfig& c = model.config();
  const int n_layer = static_cast<int>(c.n_layer), n_head = static_cast<int>(c.n_head);
  map_.validate(n_layer, n_head);
  evicting_ = map_.any_evicting(n_layer, n_head);
  if (evicting_) {
    for (int l = 0; l < n_layer; ++l) {
      if (eviction_ == Eviction::Real) scores_.emplace_back(map_.at(l, 0));
      else simulators_.emplace_back(map_.at(l, 0));
    }
  } else {
    positional_evict_ = eviction_ == Eviction::Real;
    for (const Policy& p : map_.used(n_layer, n_head)) positional_evict_ &= position_bounded(p);
  }
  hooks_ = std::make_unique<Hooks>(*this);
}

PolicySession::~PolicySession() = default;

int64_t PolicySession::bytes_per_slot() const {
  const ModelConfig& c = model_.config();
  return 2 * c.n_layer * c.n_kv_head * c.head_dim * static_cast<int64_t>(sizeof(float));
}

int64_t PolicySession::peak_cache_bytes() const { return peak_slots_ * bytes_per_slot(); }

void PolicySession::forward(std::span<const int32_t> tokens, const ForwardOptions& opts, std::vector<float>& logits) {
  if (opts.hooks) fail("policy session: ForwardOptions.hooks must be empty");
  ForwardOptions o = opts;
  o.hooks = hooks_.get();
  model_.forward(tokens, cache_, o, logits);
  evict_after_call();
}

void PolicySession::evict_after_call() {
  const ModelConfig& c = model_.config();
  const int64_t kv_dim = c.n_kv_head * c.head_dim;
  const int64_t n = cache_.n_used;
  if (evicting_ && eviction_ == Eviction::Real) {
    int64_t kept = -1;
    for (int l = 0; l < c.n_layer; ++l) {
      const int32_t* pos = cache_.positions[l].data();
      std::vector<uint8_t> keep = scores_[l].keep(pos, n, cache_.next_pos - 1);
      std::vector<int32_t> evicted;
      for (int64_t j = 0; j < n; ++j)
        if (!keep[j]) evicted.push_back(pos[j]);
      scores_[l].forget(evicted.data(), static_cast<int64_t>(evicted.size()));
      const int64_t k = compact_slots(cache_.k[l].data(), cache_.v[l].data(), cache_.positions[l].data(), kv_dim, n, std::move(keep));
      if (kept >= 0 && k != kept) fail("policy session: layers kept different numbers of keys ({} vs {})", kept, k);
      kept = k;
    }
    cache_.n_used = kept;
    return;
  }
  if (positional_evict_) {
    const std::vector<Policy> used = map_.used(static_cast<int>(c.n_layer), static_cast<int>(c.n_head));
    // Every layer holds the same positions (nothing evicts per layer here).
    const int32_t* pos = cache_.positions[0].data();
    std::vector<uint8_t> keep(n, 0);
    for (int64_t j = 0; j < n; ++j)
      for (const Policy& p : used)
        if (p.may_need(pos[j], cache_.next_pos)) {
          keep[j] = 1;
          break;
        }
    int64_t kept = n;
    for (int l = 0; l < c.n_layer; ++l)
      kept = compact_slots(cache_.k[l].data(), cache_.v[l].data(), cache_.positions[l].data(), kv_dim, n, keep);
    cache_.n_used = kept;
  }
}

int64_t kv_slots_needed(const PolicyMap& map, int n_layer, int n_head, int64_t n) {
  if (n <= 0) return 0;
  const std::vector<Policy> used = map.used(n_layer, n_head);
  bool bounded = true;
  for (const Policy& p : used) {
    if (p.evicting()) return std::min(n, p.budget + 1);
    bounded &= position_bounded(p);
  }
  if (!bounded) return n;
  // Keys held while query t runs: those some query >= t may visit (t itself included).
  auto held = [&](int64_t t) {
    int64_t count = 0;
    for (int64_t p = 0; p <= t; ++p)
      for (const Policy& q : used)
        if (q.may_need(p, t)) {
          ++count;
          break;
        }
    return count;
  };
  std::vector<int64_t> at = {n - 1};
  for (const Policy& p : used)
    if (p.kind == Kind::Block && n / p.rate > 0) at.push_back(n / p.rate * p.rate - 1);
  int64_t best = 0;
  for (int64_t t : at) best = std::max(best, held(t));
  return best;
}

}  // namespace attnsparse::policies
