// Eviction scores (h2o, tova, snapkv), the row collector and the streaming simulator.
#include "policies/eviction.h"

#include <omp.h>

#include <algorithm>
#include <mutex>
#include <numeric>

#include "core/error.h"

namespace attnsparse::policies {

EvictionScores::EvictionScores(const Policy& p) : policy_(p) {
  if (!p.evicting()) fail("eviction: {} is not an evicting policy", p.spec());
}

int64_t EvictionScores::rows_needed() const {
  switch (policy_.kind) {
    case Kind::Tova: return 1;
    case Kind::SnapKV: return policy_.window;
    default: return 0;  // h2o: all rows, summed
  }
}

double& EvictionScores::acc(int64_t pos) {
  if (pos >= static_cast<int64_t>(accumulated_.size()))
    accumulated_.resize(std::max<size_t>(pos + 1, accumulated_.size() * 2), 0.0);
  return accumulated_[pos];
}

void EvictionScores::add_row(int64_t query_pos, const int32_t* pos, const float* value, int64_t n) {
  if (policy_.kind == Kind::H2O) {
    for (int64_t x = 0; x < n; ++x) acc(pos[x]) += value[x];
    return;
  }
  Row r{query_pos, std::vector<int32_t>(pos, pos + n), std::vector<float>(value, value + n)};
  recent_rows_.push_back(std::move(r));
  while (static_cast<int64_t>(recent_rows_.size()) > rows_needed()) recent_rows_.pop_front();
}

void EvictionScores::forget(const int32_t* pos, int64_t n) {
  if (policy_.kind != Kind::H2O) return;
  for (int64_t x = 0; x < n; ++x)
    if (pos[x] < static_cast<int64_t>(accumulated_.size())) accumulated_[pos[x]] = 0.0;
}

std::vector<double> EvictionScores::scores(const int32_t* pos, int64_t n, int64_t newest) const {
  std::vector<double> s(n, 0.0);
  if (policy_.kind == Kind::H2O) {
    for (int64_t x = 0; x < n; ++x)
      s[x] = pos[x] < static_cast<int64_t>(accumulated_.size()) ? accumulated_[pos[x]] : 0.0;
    return s;
  }
  // Sum of the recorded rows (tova: the newest query; snapkv: the observation window),
  // accumulated by position in a scratch array, rows in arrival order.
  int64_t max_pos = 0;
  for (int64_t x = 0; x < n; ++x) max_pos = std::max<int64_t>(max_pos, pos[x]);
  if (static_cast<int64_t>(votes_.size()) <= max_pos) votes_.resize(max_pos + 1, 0.0);
  for (const Row& r : recent_rows_)
    for (size_t y = 0; y < r.pos.size(); ++y)
      if (r.pos[y] <= max_pos) votes_[r.pos[y]] += r.value[y];
  for (int64_t x = 0; x < n; ++x) s[x] = votes_[pos[x]];
  for (const Row& r : recent_rows_)
    for (size_t y = 0; y < r.pos.size(); ++y)
      if (r.pos[y] <= max_pos) votes_[r.pos[y]] = 0.0;
  if (policy_.kind != Kind::SnapKV || policy_.pool <= 1) return s;
  // Max-pooling over neighbouring keys before the observation window (position order).
  std::vector<int32_t> prefix;
  for (int64_t x = 0; x < n; ++x)
    if (pos[x] <= newest - policy_.window) prefix.push_back(static_cast<int32_t>(x));
  std::sort(prefix.begin(), prefix.end(), [&](int32_t a, int32_t b) { return pos[a] < pos[b]; });
  const int64_t m = static_cast<int64_t>(prefix.size()), half = policy_.pool / 2;
  std::vector<double> pooled(m);
  for (int64_t x = 0; x < m; ++x) {
    double best = s[prefix[x]];
    for (int64_t y = std::max<int64_t>(0, x - half); y <= std::min(m - 1, x + half); ++y)
      best = std::max(best, s[prefix[y]]);
    pooled[x] = best;
  }
  for (int64_t x = 0; x < m; ++x) s[prefix[x]] = pooled[x];
  return s;
}

std::vector<uint8_t> EvictionScores::keep(const int32_t* pos, int64_t n, int64_t newest) const {
  std::vector<uint8_t> keep(n, 1);
  const int64_t budget = policy_.budget;
  if (n <= budget) return keep;
  int64_t protect = 0;
  if (policy_.kind == Kind::H2O) protect = policy_.recent;
  if (policy_.kind == Kind::SnapKV) protect = policy_.window;
  const std::vector<double> s = scores(pos, n, newest);
  std::vector<int32_t> victims;
  for (int64_t x = 0; x < n; ++x)
    if (pos[x] <= newest - protect) victims.push_back(static_cast<int32_t>(x));
  const int64_t drop = n - budget;
  if (static_cast<int64_t>(victims.size()) < drop)
    fail("eviction: {} keys to drop but only {} unprotected", drop, victims.size());
  auto worse = [&](int32_t a, int32_t b) { return s[a] != s[b] ? s[a] < s[b] : pos[a] < pos[b]; };
  std::nth_element(victims.begin(), victims.begin() + (drop - 1), victims.end(), worse);
  for (int64_t x = 0; x < drop; ++x) keep[victims[x]] = 0;
  return keep;
}

int64_t compact_slots(float* k, float* v, int32_t* pos, int64_t kv_dim, int64_t n, std::vector<uint8_t> keep) {
  int64_t lo = 0, hi = n - 1;
  for (;;) {
    while (lo < n && keep[lo]) ++lo;
    while (hi >= 0 && !keep[hi]) --hi;
    if (lo >= hi) break;
    std::copy_n(k + hi * kv_dim, kv_dim, k + lo * kv_dim);
    std::copy_n(v + hi * kv_dim, kv_dim, v + lo * kv_dim);
    pos[lo] = pos[hi];
    keep[lo] = 1;
    keep[hi] = 0;
  }
  return std::count(keep.begin(), keep.begin() + n, uint8_t{1});
}

// ---------------------------------------------------------------- observer

void EvictionObserver::begin(const ops::AttentionShape& s, const ops::AttentionArgs& a, int64_t rows_needed) {
  n_kv_ = s.n_kv;
  q_pos0_ = s.q_pos0;
  n_q_ = s.n_q;
  key_pos_ = a.key_pos;
  // Row 0 sums the queries before first_kept_; rows 1.. hold the last rows_needed queries.
  const int64_t separate = rows_needed <= 0 ? 0 : std::min(rows_needed, s.n_q);
  first_kept_ = s.n_q - separate;
  n_rows_ = 1 + separate;
  threads_ = omp_get_max_threads();
  buf_.assign(static_cast<size_t>(threads_) * n_rows_ * n_kv_, 0.f);
}

void EvictionObserver::on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys,
                              int64_t n_keys) {
  const int64_t i = query_pos - q_pos0_;
  const int64_t row = i < first_kept_ ? 0 : 1 + (i - first_kept_);
  float* dst = buf_.data() + (static_cast<size_t>(omp_get_thread_num()) * n_rows_ + row) * n_kv_;
  if (keys) {
    for (int64_t x = 0; x < n_keys; ++x) dst[keys[x]] += probs[x];
  } else {
    for (int64_t x = 0; x < n_keys; ++x) dst[x] += probs[x];
  }
}

void EvictionObserver::finish(EvictionScores& scores) {
  std::vector<int32_t> pos(n_kv_);
  for (int64_t j = 0; j < n_kv_; ++j) pos[j] = key_pos_ ? key_pos_[j] : static_cast<int32_t>(j);
  std::vector<float> sum(n_kv_);
  std::vector<int32_t> row_pos;
  std::vector<float> row_val;
  for (int64_t row = 0; row < n_rows_; ++row) {
    if (row == 0 && first_kept_ == 0) continue;  // no earlier queries
    std::fill(sum.begin(), sum.end(), 0.f);
    for (int th = 0; th < threads_; ++th) {
      const float* src = buf_.data() + (static_cast<size_t>(th) * n_rows_ + row) * n_kv_;
      for (int64_t j = 0; j < n_kv_; ++j) sum[j] += src[j];
    }
    const int64_t query = q_pos0_ + (row == 0 ? first_kept_ - 1 : first_kept_ + row - 1);
    row_pos.clear();
    row_val.clear();
    for (int64_t j = 0; j < n_kv_; ++j)
      if (pos[j] <= query) {
        row_pos.push_back(pos[j]);
        row_val.push_back(sum[j]);
      }
    scores.add_row(query, row_pos.data(), row_val.data(), static_cast<int64_t>(row_pos.size()));
  }
}

// ---------------------------------------------------------------- simulator

namespace {

// Sums one query's rows over heads into sum[k], k indexing the listed candidate slots
// (increasing). The row lists the candidates the query sees: all of them, or under a
// native window only those inside it (the others keep 0: this query gave them nothing).
class HeadSum : public ops::RowObserver {
 public:
  HeadSum(const std::vector<int32_t>& listed, std::vector<float>& sum) : listed_(listed), sum_(sum) {}
  void on_row(int, int64_t, const float* probs, const int32_t* keys, int64_t n) override {
    std::lock_guard<std::mutex> lock(mu_);
    size_t y = 0;
    for (int64_t x = 0; x < n; ++x) {
      const int32_t slot = keys ? keys[x] : static_cast<int32_t>(x);
      while (y < listed_.size() && listed_[y] < slot) ++y;
      if (y == listed_.size() || listed_[y] != slot)
        fail("eviction simulator: a row visited slot {}, which is not a candidate", slot);
      sum_[y] += probs[x];
    }
  }

 private:
  const std::vector<int32_t>& listed_;
  std::vector<float>& sum_;
  std::mutex mu_;
};

}  // namespace

ops::KeySet EvictionSimulator::plan(const ops::AttentionShape& s, const ops::AttentionArgs& a) {
  // Slot of each cached position.
  auto pos_of = [&](int64_t j) -> int32_t { return a.key_pos ? a.key_pos[j] : static_cast<int32_t>(j); };
  int64_t max_pos = s.q_pos0 + s.n_q;
  for (int64_t j = 0; j < s.n_kv; ++j) max_pos = std::max<int64_t>(max_pos, pos_of(j));
  std::vector<int32_t> slot(max_pos + 1, -1);
  for (int64_t j = 0; j < s.n_kv; ++j) slot[pos_of(j)] = static_cast<int32_t>(j);

  std::vector<int64_t> row_ptr{0};
  std::vector<int32_t> lists;
  std::vector<float> out(static_cast<size_t>(s.n_head) * s.head_dim);
  std::vector<int32_t> cand_pos, cand_slot, evicted;
  std::vector<float> value;
  for (int64_t i = 0; i < s.n_q; ++i) {
    const int64_t t = s.q_pos0 + i;
    cand_pos = retained_;
    cand_pos.push_back(static_cast<int32_t>(t));
    cand_slot.clear();
    for (int32_t p : cand_pos) {
      if (slot[p] < 0) fail("eviction simulator: position {} is not in the cache", p);
      cand_slot.push_back(slot[p]);
    }
    std::vector<int32_t> order(cand_slot.size());  // candidates by slot
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return cand_slot[x] < cand_slot[y]; });
    std::vector<int32_t> sorted(cand_slot.size());
    for (size_t k = 0; k < order.size(); ++k) sorted[k] = cand_slot[order[k]];
    lists.insert(lists.end(), sorted.begin(), sorted.end());
    row_ptr.push_back(static_cast<int64_t>(lists.size()));
    peak_ = std::max<int64_t>(peak_, static_cast<int64_t>(sorted.size()));

    // This query's rows over the candidates, summed over heads.
    ops::AttentionShape one = s;
    one.n_q = 1;
    one.q_pos0 = t;
    ops::AttentionArgs args = a;
    args.q = a.q + i * a.q_stride;
    args.out = out.data();
    args.out_stride = static_cast<int64_t>(s.n_head) * s.head_dim;
    const ops::KeySet ks = ops::KeySet::index_lists(1, 1, {0, static_cast<int64_t>(sorted.size())}, sorted);
    std::vector<float> by_slot(sorted.size(), 0.f);
    HeadSum sum(sorted, by_slot);
    ops::attention(one, args, &ks, &sum);
    value.resize(cand_pos.size());
    for (size_t k = 0; k < order.size(); ++k) value[order[k]] = by_slot[k];
    scores_.add_row(t, cand_pos.data(), value.data(), static_cast<int64_t>(cand_pos.size()));

    const std::vector<uint8_t> keep = scores_.keep(cand_pos.data(), static_cast<int64_t>(cand_pos.size()), t);
    retained_.clear();
    evicted.clear();
    for (size_t x = 0; x < cand_pos.size(); ++x) (keep[x] ? retained_ : evicted).push_back(cand_pos[x]);
    scores_.forget(evicted.data(), static_cast<int64_t>(evicted.size()));
  }
  return ops::KeySet::index_lists(s.n_q, 1, std::move(row_ptr), std::move(lists));
}

}  // namespace attnsparse::policies
