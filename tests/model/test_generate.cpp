// Sampling, the generation loop and perplexity against closed forms and computations
// written out here.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "model/synth.h"

namespace attnsparse {
namespace {

using namespace testing;

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> l = {0.f, 3.f, -1.f, 3.f, 2.f};
  EXPECT_EQ(s.sample(l.data(), 5), 1);
  l[4] = 3.5f;
  EXPECT_EQ(s.sample(l.data(), 5), 4);
}

// Frequencies of 70000 draws against softmax(l / T) restricted to the nucleus, within 5
// standard errors.
void expect_distribution(float temp, float top_p, const std::vector<float>& logits,
                         const std::vector<double>& want) {
  SamplingParams p;
  p.temperature = temp;
  p.top_p = top_p;
  p.seed = 11;
  Sampler s(p);
  const int n = 70000;
  std::vector<int> count(logits.size());
  for (int i = 0; i < n; ++i) ++count[s.sample(logits.data(), static_cast<int64_t>(logits.size()))];
  for (size_t k = 0; k < want.size(); ++k) {
    const double f = static_cast<double>(count[k]) / n;
    const double se = std::sqrt(want[k] * (1 - want[k]) / n) + 1e-9;
    EXPECT_NEAR(f, want[k], 5 * se) << "token " << k << " temp " << temp << " top_p " << top_p;
  }
}

TEST(Sampler, TemperatureAndTopPFollowTheirDefinitions) {
  const std::vector<float> l = {0.f, std::log(2.f), std::log(4.f)};  // probabilities 1:2:4
  expect_distribution(1.f, 1.f, l, {1 / 7.0, 2 / 7.0, 4 / 7.0});
  // T = 2: weights 1 : sqrt 2 : 2.
  const double z = 1 + std::sqrt(2.0) + 2;
  expect_distribution(2.f, 1.f, l, {1 / z, std::sqrt(2.0) / z, 2 / z});
  // Nucleus 0.8: 4/7 = 0.57 < 0.8, then 6/7 >= 0.8 -> {2, 1} renormalised to 2/3, 1/3.
  expect_distribution(1.f, 0.8f, l, {0.0, 1 / 3.0, 2 / 3.0});
  // Nucleus 0.5: the top token alone.
  expect_distribution(1.f, 0.5f, l, {0.0, 0.0, 1.0});
}

TEST(Sampler, SameSeedSameDrawsAndBadInputIsAnError) {
  const std::vector<float> l = {0.1f, 0.2f, 0.3f, 0.4f};
  SamplingParams p;
  p.seed = 5;
  Sampler a(p), b(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(l.data(), 4), b.sample(l.data(), 4));
  std::vector<float> nan = {0.f, NAN};
  EXPECT_THROW(a.sample(nan.data(), 2), Error);
  p.top_p = 0.f;
  EXPECT_THROW(Sampler{p}, UsageError);
}

// A model whose next token is always (last + 1), and EOS (2) after token 10.
class CountingModel : public Model {
 public:
  CountingModel() {
    cfg_.arch = "llama";
    cfg_.n_vocab = 512;
    cfg_.n_ctx = 512;
    cfg_.n_embd = 1;
    tok_ = Tokenizer::load(synth_path());
  }
  static std::string synth_path() {
    static TempDir dir;
    static const std::string p = [] {
      SynthOptions o;
      o.preset = "tiny";
      write_synthetic_model(o, dir.file("tiny.gguf"));
      return dir.file("tiny.gguf");
    }();
    return p;
  }
  const ModelConfig& config() const override { return cfg_; }
  const Tokenizer& tokenizer() const override { return *tok_; }
  const TensorSource& weights() const override { throw Error("no weights"); }
  // The "hidden state" of a row is its token id; the head puts 10 on (id + 1).
  void forward_layers(std::span<const int32_t> tokens, KVCache& cache, AttentionHooks*,
                      std::span<const int64_t> rows, std::vector<float>& hidden) const override {
    for (int64_t r : rows) hidden.push_back(static_cast<float>(tokens[r]));
    cache.n_used += static_cast<int64_t>(tokens.size());
    cache.next_pos += static_cast<int64_t>(tokens.size());
  }
  void output_head(const float* hidden, int64_t m, float* logits) const override {
    std::fill(logits, logits + m * 512, 0.f);
    for (int64_t r = 0; r < m; ++r) {
      const int32_t last = static_cast<int32_t>(hidden[r]);
      logits[r * 512 + (last == 10 ? 2 : last + 1)] = 10.f;
    }
  }
  ModelConfig cfg_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST(Generate, StopsAtEndOfSequenceAndReportsEachToken) {
  CountingModel m;
  SamplingParams p;
  p.temperature = 0;
  std::vector<int32_t> seen;
  const std::vector<int32_t> prompt = {1, 5};
  const GenerateResult r = generate(m, prompt, 20, p, [&](int32_t t) { seen.push_back(t); });
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{6, 7, 8, 9, 10}));
  EXPECT_EQ(seen, r.tokens);
  EXPECT_TRUE(r.stopped_at_eos);
  const GenerateResult r2 = generate(m, prompt, 3, p);
  EXPECT_EQ(r2.tokens, (std::vector<int32_t>{6, 7, 8}));
  EXPECT_FALSE(r2.stopped_at_eos);
}

// Greedy generation through the KV cache equals re-running the whole sequence each step.
TEST(Generate, GreedyWithCacheEqualsRecomputingFromScratch) {
  auto m = Model::load(CountingModel::synth_path());
  SamplingParams p;
  p.temperature = 0;
  const std::vector<int32_t> prompt = m->tokenizer().encode("In the beginning", true);
  const GenerateResult r = generate(*m, prompt, 12, p);
  std::vector<int32_t> seq = prompt;
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    KVCache c = m->make_cache(static_cast<int64_t>(seq.size()));
    ForwardOptions o;
    o.logit_rows = {static_cast<int64_t>(seq.size()) - 1};
    std::vector<float> l;
    m->forward(seq, c, o, l);
    const int32_t best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    ASSERT_EQ(best, r.tokens[i]) << "step " << i;
    seq.push_back(best);
  }
}

// Perplexity against log-softmax sums over windows written out here.
double manual_nll(const Model& m, const std::vector<int32_t>& toks, int64_t ctx, int64_t stride,
                  int64_t* scored) {
  const int64_t n = static_cast<int64_t>(toks.size()), V = m.config().n_vocab;
  std::vector<bool> done(n, false);
  double nll = 0;
  *scored = 0;
  for (int64_t b = 0;; b += stride) {
    const int64_t e = std::min(b + ctx, n);
    std::vector<int32_t> w(toks.begin() + b, toks.begin() + e);
    KVCache c = m.make_cache(e - b);
    std::vector<float> l;
    m.forward(w, c, {}, l);  // all rows
    for (int64_t t = b + 1; t < e; ++t) {
      if (done[t]) continue;
      done[t] = true;
      const float* row = l.data() + (t - 1 - b) * V;
      double z = 0;
      for (int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(row[i]));
      nll += std::log(z) - row[toks[t]];
      ++*scored;
    }
    if (e == n) break;
  }
  return nll;
}

TEST(Perplexity, MatchesWindowedLogSoftmaxSums) {
  auto m = Model::load(CountingModel::synth_path());
  std::vector<int32_t> toks;
  for (int i = 0; i < 70; ++i) toks.push_back(static_cast<int32_t>((i * 97 + 13) % 512));
  for (auto [ctx, stride] : std::vector<std::pair<int64_t, int64_t>>{{100, 50}, {70, 70}, {32, 8}, {20, 20}, {16, 5}}) {
    int64_t scored = 0;
    const double want = manual_nll(*m, toks, ctx, stride, &scored);
    const PerplexityResult r = perplexity(*m, toks, ctx, stride);
    EXPECT_EQ(r.tokens, 70);
    EXPECT_EQ(r.scored, scored) << ctx << "/" << stride;
    EXPECT_NEAR(r.nll_sum, want, 1e-6 * std::fabs(want)) << ctx << "/" << stride;
    if (stride < ctx) {
      EXPECT_EQ(r.scored, 69);  // every token but the first
    }
  }
  EXPECT_THROW(perplexity(*m, toks, 16, 17), UsageError);
  EXPECT_THROW(perplexity(*m, std::vector<int32_t>{1}, 16, 8), UsageError);
}

}  // namespace
}  // namespace attnsparse
