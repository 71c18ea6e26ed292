// Each policy's planned key set against a brute-force reading of methods.md §1 on small
// shapes; the renormalisation over G; the exact error identity; oracle accounting.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <numeric>
#include <set>

#include "ops/attention.h"
#include "ops/keyset.h"
#include "policies/planner.h"
#include "policies/policy.h"
#include "policy_test_util.h"

namespace attnsparse::policies {
namespace {

using testing::make_problem;
using testing::positional_truth;
using testing::Problem;

// The set of slots query i of head h visits under `ks` (the key set's own membership).
std::set<int64_t> members(const ops::KeySet& ks, const Problem& p, int h, int64_t i) {
  std::set<int64_t> out;
  for (int64_t j = 0; j < p.s.n_kv; ++j)
    if (ks.contains(h, i, p.s.q_pos0 + i, j, p.pos(j))) out.insert(j);
  return out;
}

ops::KeySet plan_uniform(const Policy& pol, const Problem& p) {
  std::vector<const Policy*> heads(p.s.n_head, &pol);
  std::vector<float> out;
  auto ks = plan_call(heads, p.s, p.args(out));
  return ks ? *ks : ops::KeySet::all();
}

TEST(KeySets, PositionalPoliciesMatchTheirDefinitions) {
  const char* specs[] = {"dense", "window=7", "window=1", "sink=3,window=5", "dilated=4:3", "dilated=6:1",
                         "strided=5", "block=8", "block=1"};
  for (const char* text : specs) {
    const Policy pol = Policy::parse(text);
    for (int64_t q_pos0 : {0, 21}) {
      Problem p = make_problem(30, q_pos0, q_pos0 + 30, 4, 2, 16, 1);
      const ops::KeySet ks = plan_uniform(pol, p);
      for (int h = 0; h < 4; ++h)
        for (int64_t i = 0; i < 30; ++i) {
          std::set<int64_t> want;
          for (int64_t j = 0; j < p.s.n_kv; ++j)
            if (positional_truth(pol, q_pos0 + i, j)) want.insert(j);
          ASSERT_EQ(members(ks, p, h, i), want) << text << " t " << q_pos0 + i;
        }
    }
  }
}

// Windows far longer than the context (fuzzing: dilated=2147483647:2147483647 looped
// 2^31 times per query): the planned lists stop at position 0; truth in closed form.
TEST(KeySets, DilatedWindowsLongerThanTheContextAreClamped) {
  for (const char* text : {"dilated=2147483647:2147483647", "dilated=2147483647:7", "dilated=1000:4",
                           "dilated=2147483647:1"}) {
    const Policy pol = Policy::parse(text);
    Problem p = make_problem(40, 25, 65, 4, 2, 16, 3);
    const ops::KeySet ks = plan_uniform(pol, p);
    for (int h = 0; h < 4; h += 3)
      for (int64_t i = 0; i < 40; ++i) {
        const int64_t t = 25 + i;
        std::set<int64_t> want;
        for (int64_t j = 0; j <= t; ++j)
          if ((t - j) % pol.rate == 0 && (t - j) / pol.rate < pol.window) want.insert(j);
        ASSERT_EQ(members(ks, p, h, i), want) << text << " t " << t;
      }
  }
}

TEST(KeySets, BigBirdIsGlobalWindowAndExactlyRRandomCausalKeys) {
  const Policy pol = Policy::parse("bigbird=global:2,window:4,random:3,seed:11");
  Problem whole = make_problem(60, 0, 60, 2, 1, 16, 2);
  const ops::KeySet ks = plan_uniform(pol, whole);
  // The same sets when the sequence arrives in two calls (seeded by position).
  Problem tail = whole;
  tail.s.n_q = 25;
  tail.s.q_pos0 = 35;
  tail.q.erase(tail.q.begin(), tail.q.begin() + 35 * 2 * 16);
  const ops::KeySet ks_tail = plan_uniform(pol, tail);
  std::set<int64_t> randoms_seen;
  for (int64_t i = 0; i < 60; ++i) {
    const int64_t t = i;
    const std::set<int64_t> got = members(ks, whole, 0, i);
    EXPECT_EQ(got, members(ks, whole, 1, i));  // shared by heads
    int64_t random = 0;
    for (int64_t j = 0; j <= t; ++j) {
      const bool fixed = j < 2 || j > t - 4;
      if (fixed) EXPECT_TRUE(got.count(j)) << "t " << t << " j " << j;
      else if (got.count(j)) {
        ++random;
        randoms_seen.insert(t * 100 + j);
      }
    }
    for (int64_t j : got) EXPECT_LE(j, t);
    const int64_t others = std::max<int64_t>(0, (t - 4 + 1) - 2);  // positions 2 .. t-4
    EXPECT_EQ(random, std::min<int64_t>(3, others)) << "t " << t;
    if (i >= 35) {
      EXPECT_EQ(members(ks_tail, tail, 0, i - 35), got) << "t " << t;
    }
  }
  // Different seeds give different sets.
  const ops::KeySet other = plan_uniform(Policy::parse("bigbird=global:2,window:4,random:3,seed:12"), whole);
  int differ = 0;
  for (int64_t i = 20; i < 60; ++i) differ += members(other, whole, 0, i) != members(ks, whole, 0, i);
  EXPECT_GT(differ, 10);
}

// Brute-force content selection from float64 scores: the k best, ties to lower index.
std::set<int64_t> top_by_score(const Problem& p, int h, int64_t i, int64_t k) {
  const std::vector<double> sc = p.scores(h, i);
  std::vector<int64_t> idx;
  for (int64_t j = 0; j < p.s.n_kv; ++j)
    if (p.pos(j) <= p.s.q_pos0 + i) idx.push_back(j);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return sc[a] > sc[b]; });
  idx.resize(std::min<int64_t>(k, idx.size()));
  return {idx.begin(), idx.end()};
}

TEST(KeySets, TopKAndDynamicTopKAreTheLargestScores) {
  Problem p = make_problem(40, 10, 50, 4, 2, 16, 3);
  for (const char* text : {"topk=5", "topk=1", "topk=100", "dyntopk=alpha:1.5,C:0.5"}) {
    const Policy pol = Policy::parse(text);
    const ops::KeySet ks = plan_uniform(pol, p);
    for (int h = 0; h < 4; ++h)
      for (int64_t i = 0; i < 40; ++i) {
        const int64_t n = p.s.q_pos0 + i + 1;
        int64_t k = pol.kind == Kind::TopK ? pol.k
                                           : int64_t(std::ceil(1.5 * std::sqrt(double(n))));
        ASSERT_EQ(members(ks, p, h, i), top_by_score(p, h, i, k)) << text << " h " << h << " i " << i;
      }
  }
}

TEST(KeySets, TopPIsTheSmallestTopSetReachingP) {
  Problem p = make_problem(30, 5, 35, 2, 1, 16, 4, 2.f);
  for (double target : {0.5, 0.9, 0.99, 1.0}) {
    Policy pol;
    pol.kind = Kind::TopP;
    pol.p = target;
    const ops::KeySet ks = plan_uniform(pol, p);
    for (int h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 30; ++i) {
        const std::vector<double> a = p.dense_probs(h, i);
        const std::set<int64_t> got = members(ks, p, h, i);
        // Mass reaches p (up to float rounding of the core's probabilities) ...
        double mass = 0, smallest_kept = 1;
        for (int64_t j : got) {
          mass += a[j];
          smallest_kept = std::min(smallest_kept, a[j]);
        }
        if (target < 1.0) {
          EXPECT_GE(mass, target - 1e-5) << target;
        }
        // ... it is a top set (nothing outside beats anything inside) ...
        for (int64_t j = 0; j <= p.s.q_pos0 + i; ++j)
          if (!got.count(j)) {
            EXPECT_LE(a[j], smallest_kept + 1e-7);
          }
        // ... and dropping its smallest member falls below p.
        if (target < 1.0) {
          EXPECT_LT(mass - smallest_kept, target + 1e-5) << target;
        } else {
          EXPECT_LT(1 - mass, 1e-5);
        }
      }
  }
}

TEST(KeySets, QuestKeepsThePagesWithTheLargestBounds) {
  const Policy pol = Policy::parse("quest=page:4,pages:3");
  Problem p = make_problem(30, 10, 40, 4, 2, 8, 5);
  const ops::KeySet ks = plan_uniform(pol, p);
  for (int h = 0; h < 4; ++h)
    for (int64_t i = 0; i < 30; ++i) {
      const int64_t t = p.s.q_pos0 + i;
      const float* q = p.qrow(h, i);
      // Page bounds over the visible keys, brute force.
      std::vector<std::pair<double, int64_t>> bound;  // (-bound, page)
      for (int64_t page = 0; page * 4 < p.s.n_kv; ++page) {
        std::vector<double> mn(8, 1e300), mx(8, -1e300);
        bool any = false;
        for (int64_t j = page * 4; j < std::min<int64_t>(p.s.n_kv, page * 4 + 4); ++j) {
          if (j > t) continue;
          any = true;
          for (int d = 0; d < 8; ++d) {
            mn[d] = std::min<double>(mn[d], p.krow(h, j)[d]);
            mx[d] = std::max<double>(mx[d], p.krow(h, j)[d]);
          }
        }
        if (!any) continue;
        double u = 0;
        for (int d = 0; d < 8; ++d) u += std::max(q[d] * mn[d], q[d] * mx[d]);
        bound.push_back({-u, page});
      }
      std::sort(bound.begin(), bound.end());
      std::set<int64_t> want;
      for (size_t x = 0; x < std::min<size_t>(3, bound.size()); ++x)
        for (int64_t j = bound[x].second * 4; j < bound[x].second * 4 + 4; ++j)
          if (j <= t) want.insert(j);
      ASSERT_EQ(members(ks, p, h, i), want) << "h " << h << " t " << t;
    }
}

TEST(KeySets, QuestPageBoundsKeptBetweenCallsGiveTheSameLists) {
  // A sequence arriving in three calls (prefill, then two decode steps) with the page
  // bounds kept between calls selects exactly what fresh bounds select.
  const Policy pol = Policy::parse("quest=page:4,pages:3");
  Problem whole = make_problem(1, 0, 45, 4, 2, 8, 9);
  whole.q.resize(45 * 4 * 8);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (auto& x : whole.q) x = nd(rng);
  QuestPages cache;
  for (const auto& [q_pos0, n_q] : {std::pair<int64_t, int64_t>{0, 43}, {43, 1}, {44, 1}}) {
    Problem call = whole;
    call.s.q_pos0 = q_pos0;
    call.s.n_q = n_q;
    call.s.n_kv = q_pos0 + n_q;
    call.q.assign(whole.q.begin() + q_pos0 * 32, whole.q.begin() + (q_pos0 + n_q) * 32);
    std::vector<float> out;
    ops::AttentionArgs a = call.args(out);
    a.k = whole.k.data();  // one cache for the whole sequence, as in a session
    a.v = whole.v.data();
    const RowLists kept = quest_lists(pol, call.s, a, &cache);
    const RowLists fresh = quest_lists(pol, call.s, a);
    EXPECT_EQ(kept.rows, fresh.rows) << "call at " << q_pos0;
    EXPECT_EQ(cache.full_pages, call.s.n_kv / 4);
  }
  // The kept bounds are really used: poison page 0's, and every row picks page 0.
  Problem last = whole;
  last.s.q_pos0 = 44;
  last.s.n_q = 1;
  last.q.assign(whole.q.begin() + 44 * 32, whole.q.end());
  std::vector<float> out;
  ops::AttentionArgs a = last.args(out);
  a.k = whole.k.data();
  a.v = whole.v.data();
  for (int x = 0; x < 2 * 8; ++x) {  // page 0, both KV heads
    cache.mn[x] = -1e30f;
    cache.mx[x] = 1e30f;
  }
  const RowLists poisoned = quest_lists(pol, last.s, a, &cache);
  for (int h = 0; h < 4; ++h) {
    ASSERT_FALSE(poisoned.row(h, 0).empty());
    EXPECT_EQ(poisoned.row(h, 0).front(), 0);
  }
}

TEST(KeySets, MixedHeadsUseEachHeadsPolicy) {
  const Policy w = Policy::parse("window=3"), k = Policy::parse("topk=2"), d = Policy::parse("dense"),
               b = Policy::parse("block=4");
  Problem p = make_problem(20, 0, 20, 4, 2, 16, 6);
  std::vector<const Policy*> heads = {&w, &k, &d, &b};
  std::vector<float> out;
  const auto ks = plan_call(heads, p.s, p.args(out));
  ASSERT_TRUE(ks);
  for (int64_t i = 0; i < 20; ++i) {
    EXPECT_EQ(members(*ks, p, 0, i), members(plan_uniform(w, p), p, 0, i));
    EXPECT_EQ(members(*ks, p, 1, i), top_by_score(p, 1, i, 2));
    EXPECT_EQ(members(*ks, p, 2, i).size(), size_t(i + 1));
    EXPECT_EQ(members(*ks, p, 3, i), members(plan_uniform(b, p), p, 3, i));
  }
  std::vector<const Policy*> all_dense(4, &d);
  EXPECT_FALSE(plan_call(all_dense, p.s, p.args(out)));
}

// ---------------------------------------------------------------- renormalisation, error identity

struct RowCapture : ops::RowObserver {
  std::map<std::pair<int, int64_t>, std::map<int32_t, float>> rows;
  std::mutex mu;
  void on_row(int head, int64_t pos, const float* probs, const int32_t* keys, int64_t n) override {
    std::map<int32_t, float> r;
    for (int64_t x = 0; x < n; ++x) r[keys ? keys[x] : int32_t(x)] = probs[x];
    std::lock_guard<std::mutex> lock(mu);
    rows[{head, pos}] = std::move(r);
  }
};

TEST(KeySets, SparseRowsAreDenseRowsRenormalisedOverG) {
  // a'_j = a_j / sum_{i in G} a_i for j in G: every kept weight grows.
  Problem p = make_problem(25, 15, 40, 4, 2, 16, 7);
  for (const char* text : {"window=6", "topk=4", "strided=4", "quest=page:4,pages:2"}) {
    const ops::KeySet ks = plan_uniform(Policy::parse(text), p);
    RowCapture sparse;
    std::vector<float> out;
    ops::attention(p.s, p.args(out), &ks, &sparse);
    for (int h = 0; h < 4; ++h)
      for (int64_t i = 0; i < 25; ++i) {
        const std::vector<double> a = p.dense_probs(h, i);
        const auto& row = sparse.rows.at({h, p.s.q_pos0 + i});
        double kept = 0;
        for (const auto& [j, _] : row) kept += a[j];
        for (const auto& [j, prob] : row) {
          EXPECT_NEAR(prob, a[j] / kept, 2e-6 + 1e-5 * a[j] / kept) << text;
          EXPECT_GE(prob, a[j] - 1e-6) << text;
        }
      }
  }
}

TEST(KeySets, ErrorIsTailMassTimesDistanceOfMeans) {
  // ||o - o_G|| = tau * ||mu_tail - mu_G|| (methods.md §1), o and o_G from the core.
  Problem p = make_problem(20, 30, 50, 2, 1, 16, 8, 1.5f);
  for (const char* text : {"window=8", "sink=2,window=5", "topk=6", "dilated=5:3", "block=16"}) {
    const ops::KeySet ks = plan_uniform(Policy::parse(text), p);
    std::vector<float> dense, sparse;
    ops::attention(p.s, p.args(dense));
    ops::attention(p.s, p.args(sparse), &ks);
    for (int h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 20; ++i) {
        const std::vector<double> a = p.dense_probs(h, i);
        const std::set<int64_t> g = members(ks, p, h, i);
        double kept = 0;
        for (int64_t j : g) kept += a[j];
        const double tau = 1 - kept;
        double lhs = 0, diff = 0;
        for (int d = 0; d < 16; ++d) {
          double mu_g = 0, mu_tail = 0;
          for (int64_t j = 0; j <= p.s.q_pos0 + i; ++j)
            (g.count(j) ? mu_g : mu_tail) += a[j] * p.vrow(h, j)[d];
          mu_g /= kept;
          if (tau > 0) mu_tail /= tau;
          const int64_t c = (i * 2 + h) * 16 + d;
          lhs += std::pow(double(dense[c]) - sparse[c], 2);
          diff += std::pow(mu_tail - mu_g, 2);
        }
        EXPECT_NEAR(std::sqrt(lhs), tau * std::sqrt(diff), 2e-5) << text << " h " << h << " i " << i;
      }
  }
}

}  // namespace
}  // namespace attnsparse::policies
