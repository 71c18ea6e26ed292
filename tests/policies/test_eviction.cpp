// Eviction (h2o, tova, snapkv): the keys kept against brute-force readings of each
// policy, exact budgets, and the streaming simulator against a float64 re-simulation.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "policies/eviction.h"
#include "policy_test_util.h"

namespace attnsparse::policies {
namespace {

using testing::make_problem;
using testing::Problem;

using Row = std::map<int32_t, double>;  // position -> head-summed probability

// Independent reading of each policy: which positions survive a cut to the budget.
std::set<int32_t> expected_keep(const Policy& p, const std::vector<std::pair<int64_t, Row>>& rows,
                                const std::vector<int32_t>& cached, int64_t newest) {
  if (int64_t(cached.size()) <= p.budget) return {cached.begin(), cached.end()};
  std::map<int32_t, double> score;
  int64_t protect = 0;
  if (p.kind == Kind::H2O) {
    protect = p.recent;
    for (const auto& [q, r] : rows)
      for (const auto& [pos, val] : r) score[pos] += val;
  } else if (p.kind == Kind::Tova) {
    for (const auto& [pos, val] : rows.back().second) score[pos] = val;
  } else {
    protect = p.window;
    std::map<int32_t, double> votes;
    for (size_t x = rows.size() - std::min<size_t>(rows.size(), p.window); x < rows.size(); ++x)
      for (const auto& [pos, val] : rows[x].second) votes[pos] += val;
    std::vector<int32_t> prefix;
    for (int32_t pos : cached)
      if (pos <= newest - p.window) prefix.push_back(pos);
    std::sort(prefix.begin(), prefix.end());
    const int64_t half = p.pool / 2;
    for (int64_t x = 0; x < int64_t(prefix.size()); ++x) {
      double best = 0;
      for (int64_t y = std::max<int64_t>(0, x - half); y <= std::min<int64_t>(prefix.size() - 1, x + half); ++y)
        best = std::max(best, votes[prefix[y]]);
      score[prefix[x]] = best;
    }
  }
  std::vector<int32_t> candidates;
  std::set<int32_t> keep;
  for (int32_t pos : cached) {
    if (pos > newest - protect) keep.insert(pos);
    else candidates.push_back(pos);
  }
  // Keep the best-scoring candidates; ties: the newer key stays.
  std::sort(candidates.begin(), candidates.end(), [&](int32_t a, int32_t b) {
    return score[a] != score[b] ? score[a] > score[b] : a > b;
  });
  for (int32_t pos : candidates)
    if (int64_t(keep.size()) < p.budget) keep.insert(pos);
  return keep;
}

TEST(EvictionScores, KeepExactlyTheBudgetAndThePolicysKeys) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(0, 1);
  for (const char* text : {"h2o=budget:6,recent:2", "h2o=budget:5,recent:0", "tova=budget:6",
                           "snapkv=budget:7,window:3,pool:3", "snapkv=budget:6,window:2,pool:1"}) {
    const Policy p = Policy::parse(text);
    for (int trial = 0; trial < 20; ++trial) {
      EvictionScores scores(p);
      std::vector<std::pair<int64_t, Row>> rows;
      const int64_t n = 10 + trial % 5;
      std::vector<int32_t> cached;
      for (int32_t pos = 0; pos < n; ++pos) cached.push_back(pos);
      std::shuffle(cached.begin(), cached.end(), rng);  // cache slots are not in position order
      for (int64_t q = n - 5; q < n; ++q) {
        Row r;
        std::vector<int32_t> pos;
        std::vector<float> val;
        for (int32_t x : cached)
          if (x <= q) {
            const float v = float(u(rng));
            r[x] = v;
            pos.push_back(x);
            val.push_back(v);
          }
        rows.push_back({q, r});
        scores.add_row(q, pos.data(), val.data(), int64_t(pos.size()));
      }
      const std::vector<uint8_t> keep = scores.keep(cached.data(), n, n - 1);
      std::set<int32_t> got;
      for (int64_t x = 0; x < n; ++x)
        if (keep[x]) got.insert(cached[x]);
      EXPECT_EQ(int64_t(got.size()), std::min(n, p.budget)) << text;
      EXPECT_EQ(got, expected_keep(p, rows, cached, n - 1)) << text << " trial " << trial;
    }
  }
}

TEST(EvictionScores, UnderBudgetKeepsEverything) {
  EvictionScores scores(Policy::parse("h2o=budget:8,recent:2"));
  const int32_t pos[] = {0, 1, 2};
  const float val[] = {0.2f, 0.3f, 0.5f};
  scores.add_row(2, pos, val, 3);
  const auto keep = scores.keep(pos, 3, 2);
  EXPECT_EQ(std::count(keep.begin(), keep.end(), 1), 3);
}

// Float64 re-simulation of streaming eviction: every query attends the retained keys
// and itself; rows update the scores; the cache is cut to the budget.
std::vector<std::set<int64_t>> resimulate(const Policy& pol, const Problem& p) {
  std::vector<std::set<int64_t>> sets;
  std::vector<int32_t> retained;
  std::vector<std::pair<int64_t, Row>> rows;
  for (int64_t i = 0; i < p.s.n_q; ++i) {
    const int64_t t = p.s.q_pos0 + i;
    std::vector<int32_t> cand = retained;
    cand.push_back(int32_t(t));
    sets.push_back({cand.begin(), cand.end()});
    Row row;
    for (int h = 0; h < p.s.n_head; ++h) {
      const std::vector<double> sc = p.scores(h, i);
      double mx = -1e300, sum = 0;
      for (int32_t j : cand) mx = std::max(mx, sc[j]);
      for (int32_t j : cand) sum += std::exp(sc[j] - mx);
      for (int32_t j : cand) row[j] += std::exp(sc[j] - mx) / sum;
    }
    rows.push_back({t, row});
    // h2o's accumulated scores cover only the time a key has been cached: evicted keys
    // never come back, so summing all rows is the same.
    const std::set<int32_t> keep = expected_keep(pol, rows, cand, t);
    retained.assign(keep.begin(), keep.end());
  }
  return sets;
}

TEST(EvictionSimulator, MatchesAFloat64StreamingSimulation) {
  for (const char* text : {"h2o=budget:8,recent:3", "tova=budget:6", "snapkv=budget:9,window:3,pool:3"}) {
    const Policy pol = Policy::parse(text);
    Problem p = make_problem(48, 0, 48, 4, 2, 16, 21, 1.5f);
    EvictionSimulator sim(pol);
    std::vector<float> out;
    // Two calls: the state carries over.
    Problem first = p, second = p;
    first.s.n_q = 30;
    first.s.n_kv = 30;
    second.s.n_q = 18;
    second.s.q_pos0 = 30;
    second.q.erase(second.q.begin(), second.q.begin() + 30 * 4 * 16);
    const ops::KeySet a = sim.plan(first.s, first.args(out));
    const ops::KeySet b = sim.plan(second.s, second.args(out));
    const auto want = resimulate(pol, p);
    for (int64_t t = 0; t < 48; ++t) {
      const ops::KeySet& ks = t < 30 ? a : b;
      const int64_t i = t < 30 ? t : t - 30;
      std::set<int64_t> got(ks.row_begin(0, i), ks.row_end(0, i));
      EXPECT_EQ(got, want[t]) << text << " t " << t;
      EXPECT_EQ(int64_t(got.size()), std::min<int64_t>(t + 1, pol.budget + 1)) << text;
      EXPECT_TRUE(got.count(t));
    }
    EXPECT_EQ(int64_t(sim.retained().size()), pol.budget);
    EXPECT_EQ(sim.peak(), pol.budget + 1);
  }
}

}  // namespace
}  // namespace attnsparse::policies
