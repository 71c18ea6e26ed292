// Whole-model execution with policies on the llama reference model (2 layers, 4 heads,
// 2 KV heads): dense policy == plain forward, topk with K >= n == dense, real eviction
// shrinks the cache and keeps the keys the policy names, simulated eviction == real
// token-by-token decoding, oracle accounting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>

#include "analysis/shared_data.h"
#include "model/model.h"
#include "model/model_util.h"
#include "policies/oracle.h"
#include "policies/session.h"

namespace attnsparse::policies {
namespace {

using testing_support::reference_dir;

struct Fixture {
  std::unique_ptr<Model> model;
  std::vector<int32_t> tokens;
};

const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.model = Model::load(reference_dir() + "/models/llama-spm-f32.gguf");
    x.tokens = read_token_file(reference_dir() + "/expected/llama-spm-f32.random.tokens.txt");
    return x;
  }();
  return f;
}

#define REQUIRE_MODEL() REQUIRE_SHARED_FILE(reference_dir() + "/models/llama-spm-f32.gguf")

std::vector<float> plain_logits(std::span<const int32_t> tokens) {
  const Model& m = *fixture().model;
  KVCache cache = m.make_cache(int64_t(tokens.size()));
  std::vector<float> logits;
  m.forward(tokens, cache, {}, logits);
  return logits;
}

// Tolerance for logits computed with different kernels (tiled vs gathered keys, other
// summation orders): this model's peaky random weights magnify f32 rounding to ~4e-5,
// while a wrong key set moves logits by > 1e-2 (see the window=4 check).
constexpr double kKernelTolerance = 1e-4;

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t x = 0; x < std::min(a.size(), b.size()); ++x)
    worst = std::max(worst, std::fabs(double(a[x]) - b[x]) / (1.0 + std::fabs(double(b[x]))));
  return worst;
}

TEST(PolicySession, DensePolicyIsThePlainForward) {
  REQUIRE_MODEL();
  const auto& f = fixture();
  std::span<const int32_t> toks(f.tokens.data(), 120);
  PolicySession s(*f.model, PolicyMap::parse("dense"), 120);
  std::vector<float> logits;
  s.forward(toks, {}, logits);
  EXPECT_EQ(logits, plain_logits(toks));  // bit for bit
}

TEST(PolicySession, TopKCoveringEveryKeyIsDense) {
  REQUIRE_MODEL();
  const auto& f = fixture();
  std::span<const int32_t> toks(f.tokens.data(), 150);
  for (const char* text : {"topk=150", "topp=1", "window=1000", "L0:topk=500;dense"}) {
    PolicySession s(*f.model, PolicyMap::parse(text), 150);
    std::vector<float> logits;
    s.forward(toks, {}, logits);
    EXPECT_LT(max_rel_diff(logits, plain_logits(toks)), kKernelTolerance) << text;
  }
  // ... and a real restriction changes the result.
  PolicySession w(*f.model, PolicyMap::parse("window=4"), 150);
  std::vector<float> logits;
  w.forward(toks, {}, logits);
  EXPECT_GT(max_rel_diff(logits, plain_logits(toks)), 1e-2);
}

TEST(PolicySession, PrefillThenDecodeMatchesOneLongPrefill) {
  // Non-evicting policies: the key set of query t does not depend on how tokens arrive.
  REQUIRE_MODEL();
  const auto& f = fixture();
  for (const char* text : {"sink=2,window=8", "topk=6", "quest=page:8,pages:3", "bigbird=global:1,window:4,random:3,seed:5",
                           "L0H0-1:strided=5;block=16"}) {
    const PolicyMap map = PolicyMap::parse(text);
    PolicySession whole(*f.model, map, 100, PolicySession::Eviction::Simulated);
    std::vector<float> all;
    whole.forward(std::span<const int32_t>(f.tokens.data(), 100), {}, all);
    PolicySession steps(*f.model, map, 100);
    std::vector<float> logits;
    steps.forward(std::span<const int32_t>(f.tokens.data(), 90), {}, logits);
    const int64_t vocab = f.model->config().n_vocab;
    for (int64_t t = 90; t < 100; ++t) {
      steps.forward(std::span<const int32_t>(f.tokens.data() + t, 1), {}, logits);
      std::vector<float> want(all.begin() + t * vocab, all.begin() + (t + 1) * vocab);
      EXPECT_LT(max_rel_diff(logits, want), kKernelTolerance) << text << " t " << t;
    }
  }
}

TEST(PolicySession, WindowPolicyDropsKeysNoLaterQueryVisits) {
  REQUIRE_MODEL();
  const auto& f = fixture();
  PolicySession s(*f.model, PolicyMap::parse("sink=2,window=16"), 200);
  std::vector<float> logits;
  s.forward(std::span<const int32_t>(f.tokens.data(), 100), {}, logits);
  // Query 100 visits positions 0, 1 and 85..100: 17 keys stay before it arrives.
  EXPECT_EQ(s.cache().n_used, 17);
  std::set<int32_t> pos(s.cache().positions[1].begin(), s.cache().positions[1].begin() + 17);
  std::set<int32_t> want = {0, 1};
  for (int32_t p = 85; p < 100; ++p) want.insert(p);
  EXPECT_EQ(pos, want);
  EXPECT_EQ(s.cache_bytes(), 17 * s.bytes_per_slot());
  EXPECT_EQ(kv_slots_needed(PolicyMap::parse("sink=2,window=16"), 2, 4, 100), 18);
  EXPECT_EQ(kv_slots_needed(PolicyMap::parse("block=8"), 2, 4, 100), 8);
  EXPECT_EQ(kv_slots_needed(PolicyMap::parse("dense"), 2, 4, 100), 100);
  EXPECT_EQ(kv_slots_needed(PolicyMap::parse("h2o=budget:32,recent:4"), 2, 4, 100), 33);
}

// Head-summed dense rows of every layer, captured from a plain forward.
class ColumnSums : public AttentionHooks {
 public:
  ColumnSums(int layers, int64_t n) : sums_(layers, std::vector<double>(n, 0.0)) {
    for (int l = 0; l < layers; ++l) taps_.push_back(Tap{this, l});
  }
  ops::RowObserver* observer(int layer) override { return &taps_[layer]; }
  std::vector<std::vector<double>> sums_;

 private:
  struct Tap : ops::RowObserver {
    Tap(ColumnSums* o, int l) : owner(o), layer(l) {}
    ColumnSums* owner;
    int layer;
    void on_row(int, int64_t, const float* probs, const int32_t* keys, int64_t n) override {
      std::lock_guard<std::mutex> lock(owner->mu_);
      for (int64_t x = 0; x < n; ++x) owner->sums_[layer][keys ? keys[x] : x] += probs[x];
    }
  };
  std::vector<Tap> taps_;
  std::mutex mu_;
};

TEST(PolicySession, H2OPrefillKeepsRecentAndHeavyHitters) {
  REQUIRE_MODEL();
  const auto& f = fixture();
  const int64_t n = 160, budget = 40, recent = 8;
  std::span<const int32_t> toks(f.tokens.data(), n);
  ColumnSums sums(2, n);
  {
    KVCache cache = f.model->make_cache(n);
    ForwardOptions o;
    o.hooks = &sums;
    o.no_logits = true;
    std::vector<float> logits;
    f.model->forward(toks, cache, o, logits);
  }
  PolicySession s(*f.model, PolicyMap::parse("h2o=budget:40,recent:8"), n + 4);
  std::vector<float> logits;
  s.forward(toks, {}, logits);
  ASSERT_EQ(s.cache().n_used, budget);
  for (int l = 0; l < 2; ++l) {
    std::set<int32_t> got(s.cache().positions[l].begin(), s.cache().positions[l].begin() + budget);
    std::vector<int32_t> older;
    std::set<int32_t> want;
    for (int32_t p = 0; p < n; ++p) (p >= n - recent ? want.insert(p), void() : older.push_back(p));
    std::sort(older.begin(), older.end(), [&](int32_t a, int32_t b) { return sums.sums_[l][a] > sums.sums_[l][b]; });
    for (int64_t x = 0; x < budget - recent; ++x) want.insert(older[x]);
    EXPECT_EQ(got, want) << "layer " << l;
  }
  // Decoding keeps the budget, and the bytes are the budget's.
  for (int64_t t = n; t < n + 10; ++t) {
    s.forward(std::span<const int32_t>(f.tokens.data() + t, 1), {}, logits);
    EXPECT_EQ(s.cache().n_used, budget);
  }
  EXPECT_EQ(s.cache_bytes(), budget * s.bytes_per_slot());
  EXPECT_EQ(s.peak_cache_bytes(), n * s.bytes_per_slot());  // the prefill held everything
  PolicySession dense(*f.model, PolicyMap::parse("dense"), n + 10);
  dense.forward(std::span<const int32_t>(f.tokens.data(), n + 10), {}, logits);
  EXPECT_EQ(dense.cache_bytes(), (n + 10) * dense.bytes_per_slot());
  EXPECT_LT(s.cache_bytes() * 4, dense.cache_bytes());
}

TEST(PolicySession, SimulatedEvictionEqualsRealTokenByTokenDecoding) {
  REQUIRE_MODEL();
  const auto& f = fixture();
  const int64_t n = 70;
  const int64_t vocab = f.model->config().n_vocab;
  for (const char* text : {"h2o=budget:20,recent:4", "tova=budget:16", "snapkv=budget:24,window:4,pool:3"}) {
    const PolicyMap map = PolicyMap::parse(text);
    PolicySession sim(*f.model, map, n, PolicySession::Eviction::Simulated);
    std::vector<float> all;
    sim.forward(std::span<const int32_t>(f.tokens.data(), n), {}, all);
    PolicySession real(*f.model, map, 32);
    std::vector<float> logits;
    double worst = 0;
    for (int64_t t = 0; t < n; ++t) {
      real.forward(std::span<const int32_t>(f.tokens.data() + t, 1), {}, logits);
      std::vector<float> want(all.begin() + t * vocab, all.begin() + (t + 1) * vocab);
      worst = std::max(worst, max_rel_diff(logits, want));
      EXPECT_LE(real.cache().n_used, map.at(0, 0).budget);
    }
    EXPECT_LT(worst, kKernelTolerance) << text;
    EXPECT_EQ(real.cache().n_used, map.at(0, 0).budget) << text;
    EXPECT_EQ(sim.peak_cache_bytes(), (map.at(0, 0).budget + 1) * sim.bytes_per_slot());
    // Eviction changed the result (the budget is well below n).
    EXPECT_GT(max_rel_diff(all, plain_logits(std::span<const int32_t>(f.tokens.data(), n))), 1e-3) << text;
  }
}

TEST(Oracle, DenseHasNoErrorAndWindowsCountTheirKeys) {
  REQUIRE_MODEL();
  const auto& f = fixture();
  const int64_t n = 64;
  std::vector<PolicyMap> maps = {PolicyMap::parse("dense"), PolicyMap::parse("window=1"),
                                 PolicyMap::parse("topk=64"), PolicyMap::parse("window=8")};
  OracleHooks oracle(f.model->config(), maps);
  KVCache cache = f.model->make_cache(n);
  ForwardOptions o;
  o.hooks = &oracle;
  o.no_logits = true;
  std::vector<float> logits;
  // Two calls: the oracle accumulates.
  f.model->forward(std::span<const int32_t>(f.tokens.data(), 40), cache, o, logits);
  f.model->forward(std::span<const int32_t>(f.tokens.data() + 40, 24), cache, o, logits);
  const auto& st = oracle.stats();
  for (int l = 0; l < 2; ++l) {
    EXPECT_EQ(st[0][l].relative_l2(), 0.0);
    EXPECT_LT(st[0][l].tau, 1e-3);
    EXPECT_EQ(st[0][l].kept, st[0][l].visible);
    EXPECT_EQ(st[0][l].visible, 4 * n * (n + 1) / 2);
    EXPECT_EQ(st[0][l].rows, 4 * n);
    EXPECT_EQ(st[1][l].kept, 4 * n);  // one key per row
    EXPECT_GT(st[1][l].relative_l2(), 0.1);
    EXPECT_LT(st[2][l].relative_l2(), 1e-5);
    EXPECT_LT(st[2][l].tau, 1e-3);
    int64_t window_keys = 0;
    for (int64_t t = 0; t < n; ++t) window_keys += std::min<int64_t>(8, t + 1);
    EXPECT_EQ(st[3][l].kept, 4 * window_keys);
    EXPECT_GT(st[3][l].tau, st[2][l].tau);
    EXPECT_LT(st[3][l].tau, st[1][l].tau);
  }
}

}  // namespace
}  // namespace attnsparse::policies
