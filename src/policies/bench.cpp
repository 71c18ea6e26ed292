// AttentionCase: the dense and the sparse attention call of one benchmark shape.
#include "policies/bench.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/model_limits.h"
#include "policies/planner.h"

namespace attnsparse::policies {

namespace {

ops::AttentionArgs make_args(const ops::AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                             const int32_t* key_pos) {
  ops::AttentionArgs a;
  a.q = q;
  a.q_stride = static_cast<int64_t>(s.n_head) * s.head_dim;
  a.k = k;
  a.k_stride = static_cast<int64_t>(s.n_kv_head) * s.head_dim;
  a.v = v;
  a.v_stride = a.k_stride;
  a.out = out;
  a.out_stride = a.q_stride;
  a.key_pos = key_pos;
  return a;
}

}  // namespace

AttentionCase::AttentionCase(const BenchShape& shape, const PolicyMap& map) : shape_(shape), map_(map) {
  if (shape.n < 1 || shape.head_dim < 1 || shape.heads < 1 || shape.kv_heads < 1 || shape.heads % shape.kv_heads)
    fail_usage("bench: bad shape (n {}, head_dim {}, heads {}, kv_heads {})", shape.n, shape.head_dim, shape.heads,
               shape.kv_heads);
  // Key positions are int32 and the inputs are held in memory: bounded before any size is
  // multiplied out (in double, which cannot overflow here).
  constexpr int64_t kMaxKeys = int64_t(1) << 30;
  constexpr double kMaxInputBytes = 16.0 * (1 << 30);
  if (shape.n > kMaxKeys) fail_usage("bench: --n {} is above the limit of {} keys", shape.n, kMaxKeys);
  if (shape.heads > kMaxHeads) fail_usage("bench: --heads {} is above the limit of {}", shape.heads, kMaxHeads);
  const double n_queries = shape.decode ? 1.0 : double(shape.n);
  const double input_bytes =
      4.0 * double(shape.head_dim) * (2.0 * n_queries * shape.heads + 2.0 * double(shape.n) * shape.kv_heads);
  if (input_bytes > kMaxInputBytes)
    fail_usage("bench: n {} x {} heads ({} KV) x head_dim {} needs {:.1f} GiB of inputs; the limit is {:.0f} GiB",
               shape.n, shape.heads, shape.kv_heads, shape.head_dim, input_bytes / (1 << 30), kMaxInputBytes / (1 << 30));
  map_.validate(1, shape.heads);
  for (int h = 0; h < shape.heads; ++h) heads_.push_back(&map_.at(0, h));
  const int64_t n_q = shape.decode ? 1 : shape.n;
  dense_shape_ = {n_q, shape.n - n_q, shape.n, shape.heads, shape.kv_heads, shape.head_dim,
                  1.f / std::sqrt(static_cast<float>(shape.head_dim))};
  const int64_t q_width = static_cast<int64_t>(shape.heads) * shape.head_dim;
  const int64_t kv_width = static_cast<int64_t>(shape.kv_heads) * shape.head_dim;
  std::mt19937 rng(shape.seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  q_.resize(n_q * q_width);
  k_.resize(shape.n * kv_width);
  v_.resize(shape.n * kv_width);
  out_.resize(n_q * q_width);
  for (auto* buf : {&q_, &k_, &v_})
    for (auto& x : *buf) x = nd(rng);
  dense_pairs_ = shape.decode ? static_cast<double>(shape.n) : 0.5 * static_cast<double>(shape.n) * (shape.n + 1);

  if (map_.any_evicting(1, shape.heads)) {
    if (!shape.decode) fail_usage("bench: evicting policies run between decode steps; add --decode");
    const Policy& p = *heads_[0];
    const int64_t budget = std::min<int64_t>(p.budget, shape.n - 1);
    // The cache holds `budget` earlier keys (the most recent ones plus an even spread of
    // older ones) and the new key; the step attends them, scores, and evicts one.
    EvictState st{EvictionScores(p), EvictionObserver(), {}, {}, {}, shape.n - 1};
    st.k.assign((budget + 1) * kv_width, 0.f);
    st.v.assign((budget + 1) * kv_width, 0.f);
    std::vector<int32_t> positions;
    const int64_t recent = std::min<int64_t>(budget, std::max<int64_t>(p.recent, p.window));
    for (int64_t x = 0; x < budget - recent; ++x)
      positions.push_back(static_cast<int32_t>(x * (shape.n - 1 - recent) / std::max<int64_t>(1, budget - recent)));
    for (int64_t x = shape.n - 1 - recent; x < shape.n - 1; ++x) positions.push_back(static_cast<int32_t>(x));
    positions.push_back(static_cast<int32_t>(shape.n - 1));
    st.pos = positions;
    for (size_t j = 0; j < positions.size(); ++j) {
      std::copy_n(k_.data() + positions[j] * kv_width, kv_width, st.k.data() + j * kv_width);
      std::copy_n(v_.data() + positions[j] * kv_width, kv_width, st.v.data() + j * kv_width);
    }
    // Some history for the scores.
    std::vector<float> val(positions.size());
    for (auto& x : val) x = std::fabs(nd(rng));
    st.scores.add_row(shape.n - 2, positions.data(), val.data(), static_cast<int64_t>(positions.size()) - 1);
    evict_.emplace(std::move(st));
    kept_fraction_ = static_cast<double>(budget + 1) / shape.n;
  } else {
    plan();
    if (keys_) {
      const double kept = static_cast<double>(keys_->kept(shape.heads, dense_shape_.n_q, dense_shape_.q_pos0, shape.n, nullptr));
      kept_fraction_ = kept / (dense_pairs_ * shape.heads);
    }
  }
}

void AttentionCase::dense() {
  ops::attention(dense_shape_, make_args(dense_shape_, q_.data(), k_.data(), v_.data(), out_.data(), nullptr));
}

void AttentionCase::plan() {
  if (evict_) return;
  keys_ = plan_call(heads_, dense_shape_, make_args(dense_shape_, q_.data(), k_.data(), v_.data(), out_.data(), nullptr),
                    nullptr, &plan_cache_);
}

void AttentionCase::run_sparse() {
  if (!evict_) {
    ops::attention(dense_shape_, make_args(dense_shape_, q_.data(), k_.data(), v_.data(), out_.data(), nullptr),
                   keys_ ? &*keys_ : nullptr);
    return;
  }
  // One decode step: attend the budget + the new key, score, evict one, append the next.
  EvictState& st = *evict_;
  const int64_t kv_width = static_cast<int64_t>(shape_.kv_heads) * shape_.head_dim;
  const int64_t slots = static_cast<int64_t>(st.pos.size());
  ops::AttentionShape s = dense_shape_;
  s.n_kv = slots;
  s.q_pos0 = st.next_pos;
  const ops::AttentionArgs a = make_args(s, q_.data(), st.k.data(), st.v.data(), out_.data(), st.pos.data());
  st.observer.begin(s, a, st.scores.rows_needed());
  ops::attention(s, a, nullptr, &st.observer);
  st.observer.finish(st.scores);
  std::vector<uint8_t> keep = st.scores.keep(st.pos.data(), slots, st.next_pos);
  std::vector<int32_t> gone;
  for (int64_t j = 0; j < slots; ++j)
    if (!keep[j]) gone.push_back(st.pos[j]);
  st.scores.forget(gone.data(), static_cast<int64_t>(gone.size()));
  const int64_t kept = compact_slots(st.k.data(), st.v.data(), st.pos.data(), kv_width, slots, std::move(keep));
  // The next token's key goes into the freed slot.
  ++st.next_pos;
  for (int64_t j = kept; j < slots; ++j) st.pos[j] = static_cast<int32_t>(st.next_pos);
}

}  // namespace attnsparse::policies
