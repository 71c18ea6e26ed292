// Micro-batched forward calls (ForwardOptions::ubatch) compute the same bits as one batch:
// logits, the K/V written to the cache, and every attention row the hooks observe, for
// f32, f16 and Q8_0 weights, micro-batches of 1, 7, 64 tokens and the whole sequence.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <mutex>

#include "core/error.h"
#include "model/model.h"
#include "model_test_util.h"

namespace attnsparse {
namespace {

using testing::read_ids;

// Records every observed row (layer, head, query) -> probabilities over positions.
class RowRecorder : public AttentionHooks {
 public:
  explicit RowRecorder(int layers) {
    for (int l = 0; l < layers; ++l) obs_.push_back(std::make_unique<Obs>(this, l));
  }
  ops::RowObserver* observer(int layer) override { return obs_[layer].get(); }
  void after_attention(int layer, const ops::AttentionShape& shape, const ops::AttentionArgs&) override {
    calls.push_back({layer, shape.q_pos0, shape.n_q});
  }
  std::map<std::tuple<int, int, int64_t>, std::vector<float>> rows;
  struct Call {
    int layer;
    int64_t q0, nq;
  };
  std::vector<Call> calls;

 private:
  struct Obs : ops::RowObserver {
    Obs(RowRecorder* r, int l) : rec(r), layer(l) {}
    RowRecorder* rec;
    int layer;
    void on_row(int head, int64_t q, const float* p, const int32_t* keys, int64_t n) override {
      std::vector<float> row(q + 1, 0.f);
      for (int64_t j = 0; j < n; ++j) row[keys ? keys[j] : j] = p[j];
      std::lock_guard<std::mutex> lock(rec->mu);
      rec->rows[{layer, head, q}] = std::move(row);
    }
  };
  std::mutex mu;
  std::vector<std::unique_ptr<Obs>> obs_;
};

struct Pass {
  std::vector<float> logits, k, v;
  std::map<std::tuple<int, int, int64_t>, std::vector<float>> rows;
  std::vector<RowRecorder::Call> calls;
};

Pass run(const Model& m, const std::vector<int32_t>& tokens, int64_t ubatch,
         const std::vector<int64_t>& logit_rows) {
  KVCache cache = m.make_cache(static_cast<int64_t>(tokens.size()));
  RowRecorder rec(static_cast<int>(m.config().n_layer));
  ForwardOptions o;
  o.ubatch = ubatch;
  o.hooks = &rec;
  o.logit_rows = logit_rows;
  Pass p;
  m.forward(tokens, cache, o, p.logits);
  for (size_t l = 0; l < cache.k.size(); ++l) {
    p.k.insert(p.k.end(), cache.k[l].begin(), cache.k[l].end());
    p.v.insert(p.v.end(), cache.v[l].begin(), cache.v[l].end());
  }
  p.rows = std::move(rec.rows);
  p.calls = rec.calls;
  return p;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class UbatchCase : public ::testing::TestWithParam<std::string> {};

TEST_P(UbatchCase, MicroBatchesGiveTheSameBitsAsOneBatch) {
  const std::string dir = std::string(ATTNSPARSE_SHARED_DIR) + "/reference";
  const auto model = Model::load(dir + "/models/" + GetParam() + ".gguf");
  const std::vector<int32_t> tokens = read_ids(dir + "/expected/" + GetParam() + ".random.tokens.txt");
  ASSERT_GE(tokens.size(), 200u);
  // Rows in no particular order, as `logits --rows` may ask.
  const std::vector<int64_t> rows = {299, 0, 16, 17, 150, 64, 63, 1};
  const Pass whole = run(*model, tokens, 0, rows);
  ASSERT_EQ(whole.rows.size(), size_t(model->config().n_layer * model->config().n_head) * tokens.size());
  for (int64_t ub : {1, 7, 64, 512}) {
    const Pass p = run(*model, tokens, ub, rows);
    EXPECT_TRUE(same_bits(p.logits, whole.logits)) << "ubatch " << ub;
    EXPECT_TRUE(same_bits(p.k, whole.k)) << "ubatch " << ub;
    EXPECT_TRUE(same_bits(p.v, whole.v)) << "ubatch " << ub;
    ASSERT_EQ(p.rows.size(), whole.rows.size()) << "ubatch " << ub;
    int64_t differing = 0;
    for (const auto& [key, row] : whole.rows) differing += !same_bits(p.rows.at(key), row);
    EXPECT_EQ(differing, 0) << "ubatch " << ub << ": attention rows that differ";
    // Hooks see one attention call per micro-batch and layer.
    const int64_t n = static_cast<int64_t>(tokens.size());
    const int64_t expect_calls = (n + ub - 1) / ub;
    EXPECT_EQ(int64_t(p.calls.size()), expect_calls * model->config().n_layer) << "ubatch " << ub;
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, UbatchCase,
                         ::testing::Values("llama-spm-f32", "qwen2-f16", "llama-spm-q8_0", "gpt2-f32"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

TEST(Ubatch, LogitsStreamedPerMicroBatchEqualTheCollectedOnes) {
  const std::string dir = std::string(ATTNSPARSE_SHARED_DIR) + "/reference";
  const auto model = Model::load(dir + "/models/qwen2-f16.gguf");
  const std::vector<int32_t> tokens = read_ids(dir + "/expected/qwen2-f16.random.tokens.txt");
  const int64_t V = model->config().n_vocab;
  std::vector<int64_t> rows;
  for (int64_t r = 3; r < int64_t(tokens.size()); r += 5) rows.push_back(r);
  KVCache c1 = model->make_cache(int64_t(tokens.size()));
  ForwardOptions o;
  o.ubatch = 0;
  o.logit_rows = rows;
  std::vector<float> all;
  model->forward(tokens, c1, o, all);
  ASSERT_EQ(all.size(), rows.size() * V);
  KVCache c2 = model->make_cache(int64_t(tokens.size()));
  o.ubatch = 32;
  std::vector<int64_t> seen;
  std::vector<float> streamed;
  o.on_logits = [&](int64_t row, const float* lg) {
    seen.push_back(row);
    streamed.insert(streamed.end(), lg, lg + V);
  };
  std::vector<float> unused;
  model->forward(tokens, c2, o, unused);
  EXPECT_TRUE(unused.empty());
  EXPECT_EQ(seen, rows);
  EXPECT_TRUE(same_bits(streamed, all));
}

// A hook that runs the model itself (a forward on another cache, on the same thread, in
// the middle of the outer one's layers): the outer call's hidden state and activation
// buffers must be its own, so its logits and cache are those of a run without the hook.
class NestedForward : public AttentionHooks {
 public:
  NestedForward(const Model& m, std::vector<int32_t> tokens) : m_(m), tokens_(std::move(tokens)) {}
  void after_attention(int layer, const ops::AttentionShape&, const ops::AttentionArgs&) override {
    KVCache inner = m_.make_cache(static_cast<int64_t>(tokens_.size()));
    ForwardOptions o;
    o.ubatch = 8;
    std::vector<float> logits;
    m_.forward(tokens_, inner, o, logits);
    inner_logits = std::move(logits);
    ++calls;
  }
  bool reads_kv() const override { return false; }
  std::vector<float> inner_logits;
  int calls = 0;

 private:
  const Model& m_;
  std::vector<int32_t> tokens_;
};

TEST(Ubatch, AForwardInsideAHookLeavesTheOuterForwardUnchanged) {
  const std::string dir = std::string(ATTNSPARSE_SHARED_DIR) + "/reference";
  const auto model = Model::load(dir + "/models/llama-spm-f32.gguf");
  const std::vector<int32_t> all = read_ids(dir + "/expected/llama-spm-f32.random.tokens.txt");
  const std::vector<int32_t> outer(all.begin(), all.begin() + 96), inner(all.begin() + 100, all.begin() + 131);
  const std::vector<int64_t> rows = {0, 40, 95};
  auto run_outer = [&](AttentionHooks* hooks, std::vector<float>& logits, KVCache& cache) {
    ForwardOptions o;
    o.ubatch = 32;  // micro-batches that reuse the activation buffers between them
    o.logit_rows = rows;
    o.hooks = hooks;
    model->forward(outer, cache, o, logits);
  };
  KVCache plain_cache = model->make_cache(96), hooked_cache = model->make_cache(96);
  std::vector<float> plain, hooked;
  run_outer(nullptr, plain, plain_cache);
  NestedForward hook(*model, inner);
  run_outer(&hook, hooked, hooked_cache);
  EXPECT_EQ(hook.calls, 3 * int(model->config().n_layer));
  EXPECT_TRUE(same_bits(hooked, plain));
  EXPECT_TRUE(same_bits(hooked_cache.k[0], plain_cache.k[0]));
  // The inner forward itself is right too: the same logits as on its own.
  KVCache alone = model->make_cache(int64_t(inner.size()));
  ForwardOptions o;
  o.ubatch = 8;
  std::vector<float> want;
  model->forward(inner, alone, o, want);
  EXPECT_TRUE(same_bits(hook.inner_logits, want));
}

TEST(Ubatch, DefaultIsSettableAndNegativeIsRejected) {
  const int64_t saved = default_ubatch();
  EXPECT_EQ(saved, 512);
  set_default_ubatch(64);
  EXPECT_EQ(default_ubatch(), 64);
  EXPECT_THROW(set_default_ubatch(-1), UsageError);
  set_default_ubatch(saved);
}

}  // namespace
}  // namespace attnsparse
