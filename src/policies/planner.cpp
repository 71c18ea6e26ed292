// Planning key sets for positional, content and paged policies.
#include "policies/planner.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "core/error.h"

namespace attnsparse::policies {

namespace {

constexpr int64_t kListRate = 4;  // strided/dilated steps from which index lists are used

ops::KeySet to_csr(const RowLists& l, int first_head, int heads) {
  std::vector<int64_t> row_ptr{0};
  size_t total = 0;
  for (int h = first_head; h < first_head + heads; ++h)
    for (int64_t i = 0; i < l.n_q; ++i) total += l.row(h, i).size();
  std::vector<int32_t> slots;
  slots.reserve(total);
  row_ptr.reserve(static_cast<size_t>(heads) * l.n_q + 1);
  for (int h = first_head; h < first_head + heads; ++h)
    for (int64_t i = 0; i < l.n_q; ++i) {
      const auto& r = l.row(h, i);
      slots.insert(slots.end(), r.begin(), r.end());
      row_ptr.push_back(static_cast<int64_t>(slots.size()));
    }
  return ops::KeySet::index_lists(l.n_q, heads, std::move(row_ptr), std::move(slots));
}

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Maps absolute positions to cache slots (identity when key_pos is null).
class SlotOfPosition {
 public:
  SlotOfPosition(const ops::AttentionShape& s, const ops::AttentionArgs& a) : n_kv_(s.n_kv) {
    if (a.key_pos == nullptr) return;
    identity_ = false;
    int64_t max_pos = -1;
    for (int64_t j = 0; j < s.n_kv; ++j) max_pos = std::max<int64_t>(max_pos, a.key_pos[j]);
    slot_.assign(max_pos + 1, -1);
    for (int64_t j = 0; j < s.n_kv; ++j) slot_[a.key_pos[j]] = static_cast<int32_t>(j);
  }
  // -1 when the position is not cached.
  int32_t operator()(int64_t pos) const {
    if (identity_) return pos < n_kv_ ? static_cast<int32_t>(pos) : -1;
    return pos < static_cast<int64_t>(slot_.size()) ? slot_[pos] : -1;
  }

 private:
  bool identity_ = true;
  int64_t n_kv_;
  std::vector<int32_t> slot_;
};

// Strided and dilated sets with a large step keep one key in `rate` inside every tile
// they touch: index lists beat computing whole tiles and masking most of each.
bool better_as_lists(const Policy& p) {
  return (p.kind == Kind::Strided || p.kind == Kind::Dilated) && p.rate >= kListRate;
}

}  // namespace

ops::KeySet RowLists::all_heads() const { return to_csr(*this, 0, n_head); }
ops::KeySet RowLists::head(int h) const { return to_csr(*this, h, 1); }

ContentSelector::ContentSelector(std::vector<const Policy*> head_policies, int64_t n_q, int64_t q_pos0)
    : policies_(std::move(head_policies)), q_pos0_(q_pos0),
      lists_(static_cast<int>(policies_.size()), n_q) {}

void ContentSelector::on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys,
                             int64_t n_keys) {
  const Policy* p = policies_[head];
  if (p == nullptr) return;
  auto& out = lists_.row(head, query_pos - q_pos0_);
  out.clear();
  if (keys) {
    select_from_row(*p, probs, keys, n_keys, out);
  } else {
    std::vector<int32_t> idx(n_keys);
    std::iota(idx.begin(), idx.end(), 0);
    select_from_row(*p, probs, idx.data(), n_keys, out);
  }
}

ops::KeySet bigbird_keys(const Policy& p, const ops::AttentionShape& s, const ops::AttentionArgs& a) {
  const SlotOfPosition slot_of(s, a);
  RowLists lists(1, s.n_q);
#pragma omp parallel for schedule(dynamic, 16) if (s.n_q > 64)
  for (int64_t i = 0; i < s.n_q; ++i) {
    const int64_t t = s.q_pos0 + i;
    std::vector<int64_t> pos;
    // Under a native window the query sees only [visible_from, t]: global keys outside it
    // are dropped and the random keys are drawn among the visible others.
    const int64_t visible_from = s.window > 0 ? std::max<int64_t>(0, t - s.window + 1) : 0;
    const int64_t global_end = std::min(p.sink, t + 1);       // [0, global_end)
    const int64_t window_start = std::max<int64_t>(0, t - p.window + 1);  // [window_start, t]
    for (int64_t x = visible_from; x < global_end; ++x) pos.push_back(x);
    // The others: [max(global_end, visible_from), window_start).
    const int64_t lo = std::max(global_end, visible_from), m = window_start - lo;
    if (m > 0) {
      if (m <= p.random) {
        for (int64_t x = lo; x < window_start; ++x) pos.push_back(x);
      } else {
        // Floyd's sampling of R distinct values from [0, m).
        uint64_t state = p.seed * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(t) * 0xD1B54A32D192ED03ull;
        std::vector<int64_t> chosen;
        for (int64_t jdx = m - p.random; jdx < m; ++jdx) {
          const int64_t r = static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(jdx + 1));
          if (std::find(chosen.begin(), chosen.end(), r) == chosen.end()) chosen.push_back(r);
          else chosen.push_back(jdx);
        }
        for (int64_t c : chosen) pos.push_back(lo + c);
      }
    }
    for (int64_t x = std::max({window_start, global_end, visible_from}); x <= t; ++x) pos.push_back(x);
    auto& row = lists.row(0, i);
    for (int64_t x : pos) {
      const int32_t j = slot_of(x);
      if (j >= 0) row.push_back(j);
    }
    std::sort(row.begin(), row.end());
  }
  return lists.all_heads();
}

ops::KeySet sparse_positional_lists(const Policy& p, const ops::AttentionShape& s, const ops::AttentionArgs& a) {
  const SlotOfPosition slot_of(s, a);
  RowLists lists(1, s.n_q);
#pragma omp parallel for schedule(dynamic, 16) if (s.n_q > 64)
  for (int64_t i = 0; i < s.n_q; ++i) {
    const int64_t t = s.q_pos0 + i;
    auto& row = lists.row(0, i);
    auto add = [&](int64_t pos) {
      const int32_t j = slot_of(pos);
      if (j >= 0) row.push_back(j);
    };
    if (p.kind == Kind::Dilated) {
      // Only the m with t - r*m >= 0 (the window may be far longer than the context).
      for (int64_t m = std::min(p.window - 1, t / p.rate); m >= 0; --m) add(t - p.rate * m);
    } else if (p.kind == Kind::DynWindow) {
      // k(n) of the n keys the query may see: sinks from position 0 (those still inside a
      // native window), then the most recent.
      const int64_t first = s.window > 0 ? std::max<int64_t>(0, t - s.window + 1) : 0;
      const int64_t n = t + 1 - first, k = p.keep_count(n), sinks = p.dynwindow_sinks(n);
      const int64_t recent_from = t + 1 - (k - sinks);
      for (int64_t pos = first; pos < std::min(sinks, recent_from); ++pos) add(pos);
      for (int64_t pos = std::max(recent_from, first); pos <= t; ++pos) add(pos);
    } else {  // strided: the multiples of l before the local window, then the window
      const int64_t local = std::max<int64_t>(0, t - p.rate + 1);
      for (int64_t pos = t % p.rate; pos < local; pos += p.rate) add(pos);
      for (int64_t pos = local; pos <= t; ++pos) add(pos);
    }
    std::sort(row.begin(), row.end());
  }
  return lists.all_heads();
}

namespace {

typedef float v4 __attribute__((vector_size(16)));

inline v4 load4(const float* p) {
  v4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Quest's bound of one page: sum_d max(q_d min_d, q_d max_d).
inline float page_bound(const float* q, const float* mn, const float* mx, int D) {
  v4 acc = {0.f, 0.f, 0.f, 0.f};
  int d = 0;
  for (; d + 4 <= D; d += 4) {
    const v4 qv = load4(q + d), lo = qv * load4(mn + d), hi = qv * load4(mx + d);
    acc += lo > hi ? lo : hi;
  }
  float u = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; d < D; ++d) u += std::max(q[d] * mn[d], q[d] * mx[d]);
  return u;
}

void min_max_into(const float* k, int D, float* mn, float* mx) {
  for (int d = 0; d < D; ++d) {
    mn[d] = std::min(mn[d], k[d]);
    mx[d] = std::max(mx[d], k[d]);
  }
}

}  // namespace

void QuestPages::reset(const ops::AttentionShape& s, const ops::AttentionArgs& a, int64_t page_size) {
  k = a.k;
  k_stride = a.k_stride;
  kv_heads = s.n_kv_head;
  head_dim = s.head_dim;
  page = page_size;
  full_pages = 0;
  mn.clear();
  mx.clear();
}

bool QuestPages::fits(const ops::AttentionShape& s, const ops::AttentionArgs& a, int64_t page_size) const {
  return k == a.k && k_stride == a.k_stride && kv_heads == s.n_kv_head && head_dim == s.head_dim &&
         page == page_size && full_pages * page <= s.n_kv;
}

RowLists quest_lists(const Policy& p, const ops::AttentionShape& s, const ops::AttentionArgs& a, QuestPages* cache) {
  const int D = s.head_dim;
  const int group = s.n_head / s.n_kv_head;
  const int64_t P = p.page;
  const int64_t n_pages = (s.n_kv + P - 1) / P;
  auto pos_of = [&](int64_t j) -> int64_t { return a.key_pos ? a.key_pos[j] : j; };
  QuestPages local;
  QuestPages& pages = cache ? *cache : local;
  if (!pages.fits(s, a, P)) pages.reset(s, a, P);
  // Bounds [page][kv_head][D] over all keys of each page. Pages whose slots all exist
  // never change (quest does not evict) and are kept for the next call; the last,
  // partial page is recomputed every time.
  const int64_t kv_width = static_cast<int64_t>(s.n_kv_head) * D;
  const int64_t first = pages.full_pages;
  pages.mn.resize(n_pages * kv_width);
  pages.mx.resize(n_pages * kv_width);
#pragma omp parallel for schedule(static) if (n_pages - first > 16)
  for (int64_t x = first; x < n_pages; ++x)
    for (int g = 0; g < s.n_kv_head; ++g) {
      float* mn = pages.mn.data() + x * kv_width + static_cast<int64_t>(g) * D;
      float* mx = pages.mx.data() + x * kv_width + static_cast<int64_t>(g) * D;
      std::fill(mn, mn + D, std::numeric_limits<float>::infinity());
      std::fill(mx, mx + D, -std::numeric_limits<float>::infinity());
      for (int64_t j = x * P; j < std::min(s.n_kv, (x + 1) * P); ++j)
        min_max_into(a.k + j * a.k_stride + static_cast<int64_t>(g) * D, D, mn, mx);
    }
  pages.full_pages = s.n_kv / P;
  std::vector<int64_t> page_last(n_pages), page_first(n_pages);  // largest / smallest position in each page
  for (int64_t x = 0; x < n_pages; ++x) {
    int64_t last = -1, first = std::numeric_limits<int64_t>::max();
    for (int64_t j = x * P; j < std::min(s.n_kv, (x + 1) * P); ++j) {
      last = std::max(last, pos_of(j));
      first = std::min(first, pos_of(j));
    }
    page_last[x] = last;
    page_first[x] = first;
  }
  // A key at position p is visible from t when p <= t and, under a native window, t - p < window.
  auto visible = [&](int64_t p, int64_t t) { return p <= t && (s.window <= 0 || t - p < s.window); };
  RowLists lists(s.n_head, s.n_q);
#pragma omp parallel if (static_cast<double>(s.n_q) * s.n_head * n_pages * D > 1 << 18)
  {
    std::vector<float> bound(n_pages);
    std::vector<int32_t> order(n_pages);
    std::vector<float> pmn(D), pmx(D);
#pragma omp for collapse(2) schedule(dynamic, 8)
    for (int h = 0; h < s.n_head; ++h)
      for (int64_t i = 0; i < s.n_q; ++i) {
        const int64_t t = s.q_pos0 + i;
        const int g = h / group;
        const float* q = a.q + i * a.q_stride + static_cast<int64_t>(h) * D;
        int64_t n_live = 0;
        for (int64_t x = 0; x < n_pages; ++x) {
          const float* mn = pages.mn.data() + x * kv_width + static_cast<int64_t>(g) * D;
          const float* mx = pages.mx.data() + x * kv_width + static_cast<int64_t>(g) * D;
          if (page_last[x] > t || !visible(page_first[x], t)) {
            // Partly in the query's future (or before its native window): bounds over the
            // visible keys only; pages with none are not candidates.
            std::fill(pmn.begin(), pmn.end(), std::numeric_limits<float>::infinity());
            std::fill(pmx.begin(), pmx.end(), -std::numeric_limits<float>::infinity());
            bool any = false;
            for (int64_t j = x * P; j < std::min(s.n_kv, (x + 1) * P); ++j) {
              if (!visible(pos_of(j), t)) continue;
              any = true;
              min_max_into(a.k + j * a.k_stride + static_cast<int64_t>(g) * D, D, pmn.data(), pmx.data());
            }
            if (!any) continue;
            mn = pmn.data();
            mx = pmx.data();
          }
          bound[x] = page_bound(q, mn, mx, D);
          order[n_live++] = static_cast<int32_t>(x);
        }
        const int64_t keep = std::min<int64_t>(p.pages, n_live);
        auto before = [&](int32_t x, int32_t y) { return bound[x] != bound[y] ? bound[x] > bound[y] : x < y; };
        if (keep < n_live) std::nth_element(order.begin(), order.begin() + (keep - 1), order.begin() + n_live, before);
        std::sort(order.begin(), order.begin() + keep);
        auto& row = lists.row(h, i);
        for (int64_t y = 0; y < keep; ++y) {
          const int64_t x = order[y];
          for (int64_t j = x * P; j < std::min(s.n_kv, (x + 1) * P); ++j)
            if (visible(pos_of(j), t)) row.push_back(static_cast<int32_t>(j));
        }
      }
  }
  return lists;
}

std::optional<ops::KeySet> plan_call(const std::vector<const Policy*>& heads, const ops::AttentionShape& s,
                                     const ops::AttentionArgs& a, const RowLists* dense_rows, PlanCache* cache) {
  if (static_cast<int>(heads.size()) != s.n_head)
    fail("plan: {} head policies for {} heads", heads.size(), s.n_head);
  bool all_dense = true, uniform = true, any_content = false;
  for (int h = 0; h < s.n_head; ++h) {
    const Policy& p = *heads[h];
    if (p.evicting()) fail("plan: {} is an evicting policy; it is executed by the policy session", p.spec());
    all_dense &= p.kind == Kind::Dense;
    uniform &= *heads[h] == *heads[0];
    any_content |= p.content();
  }
  if (all_dense) return std::nullopt;

  // Content selections: from the caller's dense pass or a scoring pass of our own.
  RowLists own_rows;
  if (any_content && dense_rows == nullptr) {
    std::vector<const Policy*> content(s.n_head, nullptr);
    for (int h = 0; h < s.n_head; ++h)
      if (heads[h]->content()) content[h] = heads[h];
    ContentSelector selector(content, s.n_q, s.q_pos0);
    std::vector<float> scratch(static_cast<size_t>(s.n_q) * s.n_head * s.head_dim);
    ops::AttentionArgs scoring = a;
    scoring.out = scratch.data();
    scoring.out_stride = static_cast<int64_t>(s.n_head) * s.head_dim;
    ops::attention(s, scoring, nullptr, &selector);
    own_rows = selector.lists();
    dense_rows = &own_rows;
  }

  // Per distinct policy, computed once.
  std::vector<std::pair<Policy, ops::KeySet>> shared;  // bigbird, strided/dilated lists
  std::vector<std::pair<Policy, RowLists>> quest;
  auto shared_set = [&](const Policy& p) -> const ops::KeySet& {
    for (auto& [q, ks] : shared)
      if (q == p) return ks;
    shared.emplace_back(p, p.kind == Kind::BigBird ? bigbird_keys(p, s, a) : sparse_positional_lists(p, s, a));
    return shared.back().second;
  };
  auto quest_rows = [&](const Policy& p) -> const RowLists& {
    for (auto& [q, rl] : quest)
      if (q == p) return rl;
    QuestPages* pages = nullptr;
    if (cache) {
      for (auto& q : cache->quest)
        if (q.page == p.page) pages = &q;
      if (!pages) pages = &cache->quest.emplace_back();
    }
    quest.emplace_back(p, quest_lists(p, s, a, pages));
    return quest.back().second;
  };

  if (uniform) {
    const Policy& p = *heads[0];
    if (better_as_lists(p)) return sparse_positional_lists(p, s, a);
    if (p.has_simple_key_set()) return p.positional_keys();
    if (p.kind == Kind::BigBird || p.kind == Kind::DynWindow) return shared_set(p);
    if (p.content()) return dense_rows->all_heads();
    if (p.paged()) return quest_rows(p).all_heads();
  }
  std::vector<ops::KeySet> per_head;
  per_head.reserve(s.n_head);
  for (int h = 0; h < s.n_head; ++h) {
    const Policy& p = *heads[h];
    if (better_as_lists(p)) per_head.push_back(shared_set(p));
    else if (p.has_simple_key_set()) per_head.push_back(p.positional_keys());
    else if (p.kind == Kind::BigBird || p.kind == Kind::DynWindow) per_head.push_back(shared_set(p));
    else if (p.content()) per_head.push_back(dense_rows->head(h));
    else per_head.push_back(quest_rows(p).head(h));
  }
  return ops::KeySet::per_head(std::move(per_head));
}

}  // namespace attnsparse::policies
