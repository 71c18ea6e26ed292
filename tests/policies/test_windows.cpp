// Policies composed with a layer's native sliding window: the set a query attends is
// the policy's set intersected with the window (t - p < W) — never wider. Checked where
// the keys are really visited (a row observer on the attention core) for every kind of
// policy, on random problems; the kept counts of KeySet::kept and PolicySession; and on
// the gemma2 reference model (window 32 on layer 0, layer 1 global) through the oracle
// that eval-policy uses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <set>

#include "analysis/shared_data.h"
#include "core/error.h"
#include "model/model.h"
#include "model/model_util.h"
#include "ops/attention.h"
#include "ops/keyset.h"
#include "policies/eviction.h"
#include "policies/oracle.h"
#include "policies/planner.h"
#include "policies/policy.h"
#include "policies/session.h"
#include "policy_test_util.h"

namespace attnsparse::policies {
namespace {

using testing::make_problem;
using testing::positional_truth;
using testing::Problem;
using testing_support::reference_dir;

// Records, per (head, query), the slots the core visited.
class Recorder : public ops::RowObserver {
 public:
  explicit Recorder(const ops::AttentionShape& s) : s_(s), rows_(size_t(s.n_head) * s.n_q) {}
  void on_row(int head, int64_t query_pos, const float*, const int32_t* keys, int64_t n) override {
    std::set<int64_t> got;
    for (int64_t x = 0; x < n; ++x) got.insert(keys ? keys[x] : x);
    std::lock_guard<std::mutex> lock(mu_);
    rows_[size_t(head) * s_.n_q + (query_pos - s_.q_pos0)] = std::move(got);
  }
  const std::set<int64_t>& row(int h, int64_t i) const { return rows_[size_t(h) * s_.n_q + i]; }

 private:
  ops::AttentionShape s_;
  std::mutex mu_;
  std::vector<std::set<int64_t>> rows_;
};

// The k best visible keys by float64 score (ties to the lower slot).
std::set<int64_t> top_visible(const Problem& p, int h, int64_t i, int64_t k, int64_t W) {
  const std::vector<double> sc = p.scores(h, i);
  const int64_t t = p.s.q_pos0 + i;
  std::vector<int64_t> idx;
  for (int64_t j = 0; j < p.s.n_kv; ++j)
    if (p.pos(j) <= t && t - p.pos(j) < W) idx.push_back(j);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return sc[a] > sc[b]; });
  idx.resize(std::min<int64_t>(k, int64_t(idx.size())));
  return {idx.begin(), idx.end()};
}

TEST(NativeWindow, EveryPolicyVisitsOnlyKeysInsideTheWindow) {
  const int64_t W = 16;
  const char* specs[] = {"dense",        "window=4",      "window=64",     "sink=2,window=6", "dilated=8:2",
                         "dilated=8:5",  "strided=5",     "block=8",       "topk=6",          "topk=100",
                         "dyntopk=alpha:1,C:0.5", "topp=0.8", "quest=page:4,pages:3",
                         "bigbird=global:2,window:4,random:6,seed:3", "h2o=budget:12,recent:4",
                         "tova=budget:10", "snapkv=budget:12,window:3,pool:3"};
  for (const char* text : specs) {
    const Policy pol = Policy::parse(text);
    Problem p = make_problem(40, 30, 70, 4, 2, 16, 5);
    p.s.window = W;
    std::vector<float> out;
    const ops::AttentionArgs a = p.args(out);
    std::optional<ops::KeySet> ks;
    if (pol.evicting()) {
      EvictionSimulator sim(pol);
      ks = sim.plan(p.s, a);
    } else {
      std::vector<const Policy*> heads(p.s.n_head, &pol);
      ks = plan_call(heads, p.s, a);
    }
    Recorder rec(p.s);
    ops::attention(p.s, a, ks ? &*ks : nullptr, &rec);
    int64_t visited = 0;
    for (int h = 0; h < p.s.n_head; ++h)
      for (int64_t i = 0; i < p.s.n_q; ++i) {
        const int64_t t = p.s.q_pos0 + i;
        const std::set<int64_t>& got = rec.row(h, i);
        const std::string where = std::string(text) + " head " + std::to_string(h) + " t " + std::to_string(t);
        ASSERT_FALSE(got.empty()) << where;
        for (int64_t j : got) {
          ASSERT_LE(p.pos(j), t) << where;
          ASSERT_LT(t - p.pos(j), W) << where << ": key " << j << " is outside the native window";
        }
        visited += int64_t(got.size());
        // The intersection itself, where the policy's set is known independently.
        if (pol.positional() && pol.kind != Kind::BigBird) {
          std::set<int64_t> want;
          for (int64_t j = 0; j < p.s.n_kv; ++j)
            if (positional_truth(pol, t, p.pos(j)) && t - p.pos(j) < W) want.insert(j);
          EXPECT_EQ(got, want) << where;
        }
        if (pol.kind == Kind::TopK) {
          EXPECT_EQ(got, top_visible(p, h, i, pol.k, W)) << where;
        }
        if (pol.kind == Kind::BigBird) {
          // Global keys 0..1 are outside the window here (t >= 30): the local 4 and 6
          // random others among the visible keys.
          EXPECT_EQ(int64_t(got.size()), std::min<int64_t>(W, 4 + 6)) << where;
        }
        if (pol.kind == Kind::Quest) {
          // Three whole pages of visible keys (pages are slot ranges of 4): the pages
          // holding no visible key are never chosen.
          std::set<int64_t> pages, live;
          for (int64_t j : got) pages.insert(j / 4);
          for (int64_t j = 0; j < p.s.n_kv; ++j)
            if (p.pos(j) <= t && t - p.pos(j) < W) live.insert(j / 4);
          EXPECT_EQ(pages.size(), std::min<size_t>(3, live.size())) << where;
          for (int64_t j = 0; j < p.s.n_kv; ++j)
            if (pages.count(j / 4) && p.pos(j) <= t && t - p.pos(j) < W) {
              EXPECT_TRUE(got.count(j)) << where;
            }
        }
      }
    // KeySet::kept with the window counts what the core visited.
    if (ks) {
      EXPECT_EQ(ks->kept(p.s.n_head, p.s.n_q, p.s.q_pos0, p.s.n_kv, nullptr, W), visited) << text;
    }
  }
}

TEST(NativeWindow, BigBirdWithTheGlobalKeysInsideTheWindow) {
  // Early queries still see the global keys: they stay, the random ones come from the
  // visible rest.
  const Policy pol = Policy::parse("bigbird=global:2,window:3,random:4,seed:7");
  const int64_t W = 12;
  Problem p = make_problem(30, 0, 30, 2, 1, 16, 8);
  p.s.window = W;
  std::vector<float> out;
  const ops::AttentionArgs a = p.args(out);
  const ops::KeySet ks = bigbird_keys(pol, p.s, a);
  for (int64_t t = 0; t < 30; ++t) {
    const int64_t first = std::max<int64_t>(0, t - W + 1);
    const std::set<int64_t> got(ks.row_begin(0, t), ks.row_end(0, t));
    std::set<int64_t> fixed;  // global (j < 2) and local (j > t - 3) keys the window holds
    for (int64_t j = first; j <= t; ++j)
      if (j < 2 || j > t - 3) fixed.insert(j);
    for (int64_t j : got) {
      ASSERT_GE(j, first) << "t " << t;
      ASSERT_LE(j, t) << "t " << t;
    }
    for (int64_t j : fixed) EXPECT_TRUE(got.count(j)) << "t " << t << " j " << j;
    const int64_t others = std::max<int64_t>(0, (t - 3 + 1) - std::max<int64_t>(2, first));  // j in [max(2, first), t-3]
    EXPECT_EQ(int64_t(got.size()) - int64_t(fixed.size()), std::min<int64_t>(4, others)) << "t " << t;
  }
}

TEST(DynWindow, SinksAndTheMostRecentKeysOfABudgetGrowingWithN) {
  const Policy pol = Policy::parse("dynwindow=alpha:1.5,C:0.5");
  EXPECT_EQ(pol.kind, Kind::DynWindow);
  EXPECT_EQ(pol.spec(), "dynwindow=alpha:1.5,C:0.5,sink:4");
  EXPECT_EQ(Policy::parse(pol.spec()), pol);
  EXPECT_EQ(Policy::parse("dynwindow=alpha:2,C:0.25,sink:0").sink, 0);
  for (const char* bad : {"dynwindow", "dynwindow=alpha:1", "dynwindow=alpha:0,C:0.5", "dynwindow=alpha:1,C:1.5",
                          "dynwindow=alpha:1,C:0.5,sink:-1", "dynwindow=alpha:1,C:0.5,page:2"})
    EXPECT_THROW(Policy::parse(bad), UsageError) << bad;
  for (int64_t W : {int64_t(0), int64_t(20)}) {
    Problem p = make_problem(50, 10, 60, 2, 1, 16, 4);
    p.s.window = W;
    std::vector<float> out;
    const ops::AttentionArgs a = p.args(out);
    std::vector<const Policy*> heads(2, &pol);
    const auto ks = plan_call(heads, p.s, a);
    ASSERT_TRUE(ks);
    Recorder rec(p.s);
    ops::attention(p.s, a, &*ks, &rec);
    for (int64_t i = 0; i < p.s.n_q; ++i) {
      const int64_t t = p.s.q_pos0 + i, first = W > 0 ? std::max<int64_t>(0, t - W + 1) : 0, n = t + 1 - first;
      const int64_t k = std::min<int64_t>(n, int64_t(std::ceil(1.5 * std::sqrt(double(n))))),
                    sinks = std::min<int64_t>(4, k / 2);
      std::set<int64_t> want;
      for (int64_t q = first; q <= t; ++q)
        if (q < sinks || q > t - (k - sinks)) want.insert(q);
      EXPECT_EQ(rec.row(0, i), want) << "W " << W << " t " << t;
      EXPECT_EQ(rec.row(1, i), want) << "W " << W << " t " << t;
    }
  }
}

TEST(NativeWindow, SessionCountsKeptAndVisibleKeysInsideTheWindow) {
  ops::AttentionShape s{10, 40, 50, 4, 2, 16, 0.25f};
  s.window = 8;
  // Visible: keys t-7..t of each query.
  EXPECT_EQ(visible_keys(s, nullptr), 10 * 8);
  std::vector<int32_t> pos(50);
  for (int j = 0; j < 50; ++j) pos[size_t(j)] = 49 - j;  // reversed slots, same positions
  EXPECT_EQ(visible_keys(s, pos.data()), 10 * 8);
  s.window = 0;
  int64_t causal = 0;
  for (int64_t t = 40; t < 50; ++t) causal += t + 1;
  EXPECT_EQ(visible_keys(s, nullptr), causal);
  // A window policy wider than the native window keeps the native window, no more.
  const ops::KeySet wide = ops::KeySet::window(64);
  EXPECT_EQ(wide.kept(4, 10, 40, 50, nullptr, 8), 4 * 10 * 8);
  EXPECT_EQ(wide.kept(4, 10, 40, 50, pos.data(), 8), 4 * 10 * 8);
  EXPECT_EQ(ops::KeySet::sink_window(4, 2).kept(4, 10, 40, 50, nullptr, 8), 4 * 10 * 2);
}

// ---- the gemma2 reference model: window 32 on layer 0, layer 1 global ----

struct Gemma {
  std::unique_ptr<Model> model;
  std::vector<int32_t> tokens;
};

const Gemma& gemma() {
  static Gemma g = [] {
    Gemma x;
    x.model = Model::load(reference_dir() + "/arch/models/gemma2-f16.gguf");
    x.tokens = read_token_file(reference_dir() + "/arch/expected/gemma2-f16.text.tokens.txt");
    return x;
  }();
  return g;
}

#define REQUIRE_GEMMA() REQUIRE_SHARED_FILE(reference_dir() + "/arch/models/gemma2-f16.gguf")

TEST(NativeWindow, OracleOnAWindowedModelNeverWidensTheWindow) {
  REQUIRE_GEMMA();
  const Gemma& g = gemma();
  ASSERT_EQ(g.model->config().layers[0].window, 32);
  ASSERT_EQ(g.model->config().layers[1].window, 0);
  const int64_t n = int64_t(g.tokens.size()), W = 32, H = 4;
  std::vector<PolicyMap> maps = {PolicyMap::parse("dense"), PolicyMap::parse("window=64"),
                                 PolicyMap::parse("window=8"), PolicyMap::parse("topk=4"),
                                 PolicyMap::parse("bigbird=global:2,window:8,random:8,seed:1"),
                                 PolicyMap::parse("quest=page:8,pages:2"), PolicyMap::parse("h2o=budget:16,recent:4")};
  OracleHooks oracle(g.model->config(), maps);
  KVCache cache = g.model->make_cache(n);
  ForwardOptions o;
  o.hooks = &oracle;
  o.no_logits = true;
  std::vector<float> logits;
  g.model->forward(g.tokens, cache, o, logits);
  const auto& st = oracle.stats();
  auto sum_min = [&](int64_t cap, int64_t window) {
    int64_t s = 0;
    for (int64_t t = 0; t < n; ++t) s += std::min({cap, t + 1, window > 0 ? window : t + 1});
    return H * s;
  };
  // Layer 0 sees min(t+1, 32) keys, layer 1 all t+1.
  EXPECT_EQ(st[0][0].visible, sum_min(n, W));
  EXPECT_EQ(st[0][1].visible, sum_min(n, 0));
  // window=64 on layer 0 is the native window itself: every visible key, no error.
  EXPECT_EQ(st[1][0].kept, st[1][0].visible);
  EXPECT_LT(st[1][0].relative_l2(), 1e-6);
  EXPECT_LT(st[1][0].tau, 1e-4);
  // ... and on the global layer a real window of 64.
  EXPECT_EQ(st[1][1].kept, sum_min(64, 0));
  EXPECT_GT(st[1][1].relative_l2(), 1e-3);
  // window=8 and topk=4: inside the visible keys.
  EXPECT_EQ(st[2][0].kept, sum_min(8, W));
  EXPECT_EQ(st[3][0].kept, sum_min(4, W));
  EXPECT_EQ(st[3][1].kept, sum_min(4, 0));
  for (size_t m = 0; m < maps.size(); ++m)
    for (int l = 0; l < 2; ++l) EXPECT_LE(st[m][l].kept, st[m][l].visible) << m << " " << l;
  // BigBird on the windowed layer: the 8 local + 8 random visible keys once t >= 32 (the
  // global keys have left the window).
  EXPECT_LE(st[4][0].kept, sum_min(2 + 8 + 8, W));
  EXPECT_GE(st[4][0].kept, H * (n - W) * 16);
  EXPECT_LE(st[5][0].kept, sum_min(2 * 8, W));
  // H2O keeps 16 cached keys (+ the query's own); the window hides the older ones.
  EXPECT_LE(st[6][0].kept, sum_min(17, W));
  EXPECT_EQ(st[6][1].kept, sum_min(17, 0));
}

TEST(Oracle, PerRowResultsAddUpToTheLayerTotalsAndDoNotDependOnTheOtherRows) {
  REQUIRE_GEMMA();
  const Gemma& g = gemma();
  std::vector<PolicyMap> maps = {PolicyMap::parse("topk=6"), PolicyMap::parse("sink=2,window=10"),
                                 PolicyMap::parse("dynwindow=alpha:1,C:0.6")};
  auto run = [&](bool only_chosen, auto chosen, std::map<std::tuple<size_t, int, int, int64_t>, OracleRow>& rows) {
    OracleHooks oracle(g.model->config(), maps);
    oracle.report_rows(chosen, [&](const OracleRow& r) { rows[{r.map, r.layer, r.head, r.query}] = r; }, only_chosen);
    KVCache cache = g.model->make_cache(int64_t(g.tokens.size()));
    ForwardOptions o;
    o.hooks = &oracle;
    o.no_logits = true;
    std::vector<float> logits;
    g.model->forward(g.tokens, cache, o, logits);
    return oracle.stats();
  };
  std::map<std::tuple<size_t, int, int, int64_t>, OracleRow> all, some;
  const auto st = run(false, [](int64_t) { return true; }, all);
  ASSERT_EQ(all.size(), maps.size() * 2 * 4 * g.tokens.size());
  for (size_t m = 0; m < maps.size(); ++m)
    for (int l = 0; l < 2; ++l) {
      double diff2 = 0, ref2 = 0, tau = 0;
      int64_t kept = 0, visible = 0;
      for (const auto& [key, r] : all)
        if (std::get<0>(key) == m && std::get<1>(key) == l)
          diff2 += r.diff2, ref2 += r.ref2, tau += r.tau, kept += r.kept, visible += r.visible;
      EXPECT_NEAR(diff2, st[m][l].diff2, 1e-9 * st[m][l].ref2) << m << " " << l;
      EXPECT_NEAR(ref2, st[m][l].ref2, 1e-9 * st[m][l].ref2) << m << " " << l;
      EXPECT_NEAR(tau, st[m][l].tau, 1e-9 * double(st[m][l].rows)) << m << " " << l;
      EXPECT_EQ(kept, st[m][l].kept) << m << " " << l;
      EXPECT_EQ(visible, st[m][l].visible) << m << " " << l;
    }
  // Only every 7th row measured: the same numbers for those rows, nothing else.
  run(true, [](int64_t q) { return q % 7 == 3; }, some);
  ASSERT_EQ(some.size(), maps.size() * 2 * 4 * ((g.tokens.size() + 3) / 7));
  for (const auto& [key, r] : some) {
    const OracleRow& ref = all.at(key);
    EXPECT_EQ(r.diff2, ref.diff2);
    EXPECT_EQ(r.ref2, ref.ref2);
    EXPECT_EQ(r.tau, ref.tau);
    EXPECT_EQ(r.kept, ref.kept);
  }
}

TEST(NativeWindow, SessionWithAWiderWindowPolicyIsTheNativeWindow) {
  REQUIRE_GEMMA();
  const Gemma& g = gemma();
  const int64_t n = int64_t(g.tokens.size());
  auto run = [&](const std::string& spec, int64_t* kept, int64_t* visible) {
    PolicySession session(*g.model, PolicyMap::parse(spec), n, PolicySession::Eviction::Simulated);
    session.count_keys(true);
    std::vector<float> logits;
    ForwardOptions o;
    o.logit_rows = {0, 40, 80, n - 1};
    session.forward(g.tokens, o, logits);
    if (kept) *kept = session.kept_keys(), *visible = session.visible_keys();
    return logits;
  };
  int64_t kept = 0, visible = 0;
  // window=64 everywhere equals window=64 on the global layer only: on layer 0 the policy
  // cannot widen the native 32.
  const auto everywhere = run("window=64", &kept, &visible);
  const auto global_only = run("L0:dense;default:window=64", nullptr, nullptr);
  double worst = 0;
  for (size_t x = 0; x < everywhere.size(); ++x)
    worst = std::max(worst, std::fabs(double(everywhere[x]) - global_only[x]) / (1.0 + std::fabs(double(global_only[x]))));
  EXPECT_LT(worst, 1e-4);
  int64_t want_kept = 0, want_visible = 0;
  for (int64_t t = 0; t < n; ++t) {
    want_visible += std::min<int64_t>(t + 1, 32) + (t + 1);
    want_kept += std::min<int64_t>(t + 1, 32) + std::min<int64_t>(t + 1, 64);
  }
  EXPECT_EQ(visible, 4 * want_visible);
  EXPECT_EQ(kept, 4 * want_kept);
}

}  // namespace
}  // namespace attnsparse::policies
