// The engines behind the model verbs (attention, logits, generate, perplexity, bench, info,
// quantize), called in process on synthetic models: against the naive double-precision
// transformer of naive_model.h, closed forms, and the files they write read back.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "model/dense_attention.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "model/naive_model.h"
#include "model/quantize_file.h"
#include "model/speed.h"
#include "model/summary.h"
#include "model/synth.h"
#include "ops/matmul.h"

namespace attnsparse {
namespace {

using namespace testing;

// A synthetic f32 model of the "tiny" preset (llama, 2 layers, 4 query / 2 KV heads,
// vocabulary and context 512) in a temporary directory.
class TinyModel : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions o;
    o.preset = "tiny";
    o.dtype = DType::F32;
    o.seed = 11;
    path_ = dir_.file("tiny.gguf");
    write_synthetic_model(o, path_);
    model_ = Model::load(path_);
    for (int i = 0; i < 20; ++i) tokens_.push_back(static_cast<int32_t>((i * 37 + 5) % 512));
  }
  TempDir dir_;
  std::string path_;
  std::unique_ptr<Model> model_;
  std::vector<int32_t> tokens_;
};

TEST_F(TinyModel, DenseAttentionEqualsTheNaiveModelsProbabilities) {
  GgufFile f(path_);
  Naive naive(f);
  Naive::Rows want;
  naive.run(tokens_, &want);
  const int64_t L = 2, H = 4, n = 20;
  std::vector<float> all(size_t(L * H * n * n), 0.f);
  std::vector<int> layers_seen;
  dense_attention(*model_, tokens_, {}, {}, all.data(), [&](int layer) { layers_seen.push_back(layer); });
  EXPECT_EQ(layers_seen, (std::vector<int>{0, 1}));
  double worst = 0;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t q = 0; q < n; ++q)
        for (int64_t k = 0; k < n; ++k) {
          const float got = all[size_t(((l * H + h) * n + q) * n + k)];
          if (k > q) {
            ASSERT_EQ(got, 0.f) << "above the diagonal at " << l << "," << h << "," << q << "," << k;
          } else {
            worst = std::max(worst, std::fabs(got - want[l][h][q][k]));
          }
        }
  EXPECT_LT(worst, 2e-5);

  // Chosen layers and heads, in the caller's order: the matching slices of the full array.
  const std::vector<int> layers = {1, 0}, heads = {3, 0};
  std::vector<float> some(size_t(2 * 2 * n * n), 0.f);
  dense_attention(*model_, tokens_, layers, heads, some.data());
  for (size_t li = 0; li < layers.size(); ++li)
    for (size_t hi = 0; hi < heads.size(); ++hi)
      for (int64_t x = 0; x < n * n; ++x)
        ASSERT_EQ(some[(li * 2 + hi) * n * n + x], all[(layers[li] * H + heads[hi]) * n * n + x]);
  EXPECT_DOUBLE_EQ(dense_attention_bytes(2, 2, n), 4.0 * 2 * 2 * n * n);
  EXPECT_THROW(dense_attention(*model_, tokens_, {2}, {}, some.data()), UsageError);
  EXPECT_THROW(dense_attention(*model_, tokens_, {}, {1, 1}, some.data()), UsageError);
}

TEST_F(TinyModel, CausalLogitsAreTheNaiveModelsRowsInTheOrderAsked) {
  GgufFile f(path_);
  const auto want = Naive(f).run(tokens_);
  const std::vector<int64_t> rows = {5, 0, 19};
  const std::vector<float> got = causal_logits(*model_, tokens_, rows);
  ASSERT_EQ(got.size(), rows.size() * 512);
  std::vector<float> want_rows;
  for (int64_t r : rows) want_rows.insert(want_rows.end(), want[size_t(r)].begin(), want[size_t(r)].end());
  EXPECT_LE(logit_error(got, want_rows, 512).max_rel, 1e-4);
  EXPECT_EQ(causal_logits(*model_, tokens_).size(), tokens_.size() * 512);
  EXPECT_THROW(causal_logits(*model_, tokens_, {20}), UsageError);
}

TEST_F(TinyModel, PerplexityOfOneWindowIsTheNaiveNextTokenLoss) {
  GgufFile f(path_);
  const auto logits = Naive(f).run(tokens_);
  double nll = 0;  // -log softmax(logits[t])[token t+1], summed in double
  for (size_t t = 0; t + 1 < tokens_.size(); ++t) {
    const auto& row = logits[t];
    double mx = row[0];
    for (double x : row) mx = std::max(mx, x);
    double z = 0;
    for (double x : row) z += std::exp(x - mx);
    nll += mx + std::log(z) - row[size_t(tokens_[t + 1])];
  }
  const PerplexityResult r = perplexity(*model_, tokens_, 20, 20);
  EXPECT_EQ(r.scored, 19);
  EXPECT_EQ(r.windows, 1);
  EXPECT_NEAR(r.nll_sum, nll, 1e-4 * nll);
  // Bits per byte: nats / ln 2 / bytes.
  PerplexityResult ten_bits;
  ten_bits.nll_sum = 10 * std::log(2.0);
  EXPECT_DOUBLE_EQ(bits_per_byte(ten_bits, 5), 2.0);
  // Default windows: min(512, context), half of it as the stride.
  EXPECT_EQ(default_perplexity_ctx(model_->config()), 512);
  ModelConfig small = model_->config();
  small.n_ctx = 100;
  EXPECT_EQ(default_perplexity_ctx(small), 100);
  EXPECT_EQ(default_perplexity_stride(513), 256);
  EXPECT_EQ(default_perplexity_stride(1), 1);
}

TEST_F(TinyModel, GenerationBudgetStaysWithinTheContext) {
  const ModelConfig& c = model_->config();  // n_ctx 512
  EXPECT_EQ(generation_budget(c, 10, 64), 64);
  EXPECT_EQ(generation_budget(c, 500, 64), 12);
  EXPECT_EQ(generation_budget(c, 511, 64), 1);
  EXPECT_THROW(generation_budget(c, 0, 8), UsageError);
  EXPECT_THROW(generation_budget(c, 512, 8), UsageError);
  EXPECT_THROW(generation_budget(c, 10, -1), UsageError);
}

// True when s is complete, well-formed UTF-8 (written out here, independent of the code).
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

TEST_F(TinyModel, ContinuationTextReleasesWholeCharactersOnly) {
  EXPECT_EQ(incomplete_utf8_tail("abc"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("a\xC3"), 1u);
  EXPECT_EQ(incomplete_utf8_tail("\xE2\x82"), 2u);
  EXPECT_EQ(incomplete_utf8_tail("\xE2\x82\xAC"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_utf8_tail(""), 0u);

  // The synthetic model's vocabulary is bytes: multi-byte characters arrive in pieces.
  const Tokenizer& tok = model_->tokenizer();
  const std::vector<int32_t> prompt = tok.encode("Say", true);
  const std::string words = "caf\xC3\xA9 \xE2\x82\xAC 5";  // "café € 5"
  // Encoding adds SentencePiece's leading space, which the continuation keeps.
  const std::vector<int32_t> cont = tok.encode(words, false);
  const std::string want = " " + words;
  ASSERT_GT(cont.size(), 8u);
  ContinuationText text(tok, prompt);
  std::string streamed;
  int held_back = 0;
  for (int32_t id : cont) {
    const std::string part = text.push(id);
    EXPECT_TRUE(valid_utf8(part)) << "a partial character was released";
    held_back += part.empty();
    streamed += part;
  }
  streamed += text.finish();
  EXPECT_EQ(streamed, want);
  EXPECT_GE(held_back, 3);  // the first byte of é and the first two of €
  EXPECT_EQ(ContinuationText::of(tok, prompt, cont), want);
}

TEST_F(TinyModel, SpeedRunsEveryRepAndChecksItsOptions) {
  SpeedOptions o;
  o.n_prompt = 8;
  o.n_gen = 3;
  o.reps = 2;
  std::vector<int> calls;
  const SpeedRuns runs = measure_speed(*model_, o, [&](int done, const SpeedRuns& r) {
    calls.push_back(done);
    EXPECT_EQ(r.prefill_seconds.size(), size_t(done));
  });
  EXPECT_EQ(calls, (std::vector<int>{0, 1, 2}));
  ASSERT_EQ(runs.prefill_seconds.size(), 2u);
  ASSERT_EQ(runs.decode_seconds.size(), 2u);
  for (double s : runs.prefill_seconds) EXPECT_GT(s, 0);
  for (double s : runs.decode_seconds) EXPECT_GT(s, 0);
  EXPECT_GE(runs.prefill_cpu_seconds, 0);
  // Rates 20 and 40 tokens/s: mean 30, sample standard deviation 10 sqrt(2).
  const RateStats st = rate_stats({0.5, 0.25}, 10);
  EXPECT_DOUBLE_EQ(st.mean, 30.0);
  EXPECT_NEAR(st.sd, 10 * std::sqrt(2.0), 1e-12);
  o.n_gen = 0;
  EXPECT_EQ(measure_speed(*model_, o).decode_seconds.size(), 0u);
  SpeedOptions bad = o;
  bad.reps = 0;
  EXPECT_THROW(measure_speed(*model_, bad), UsageError);
  bad = o;
  bad.n_prompt = 0;
  EXPECT_THROW(measure_speed(*model_, bad), UsageError);
  bad = o;
  bad.n_prompt = 513;
  EXPECT_THROW(measure_speed(*model_, bad), UsageError);
}

TEST_F(TinyModel, WeightSummaryCountsWhatTheFileHolds) {
  GgufFile f(path_);
  int64_t elements = 0, bytes = 0;
  for (const TensorInfo& t : f.tensors()) {
    elements += t.numel();
    bytes += t.nbytes;
  }
  const WeightSummary s = summarize_weights(*model_);
  EXPECT_EQ(s.parameters, elements);
  EXPECT_EQ(s.bytes, bytes);
  ASSERT_EQ(s.by_dtype.size(), 1u);  // an f32 model
  EXPECT_EQ(s.by_dtype.at("f32").tensors, int64_t(f.tensors().size()));
  EXPECT_EQ(s.dominant_dtype(), "f32");
  const TokenizerSummary t = summarize_tokenizer(*model_);
  EXPECT_TRUE(t.error.empty()) << t.error;
  EXPECT_EQ(t.n_vocab, 512);
}

TEST_F(TinyModel, QuantizeWritesTheMixAndValuesWithinOneStep) {
  const auto q8 = ops::quant::find_file_type("Q8_0");
  ASSERT_TRUE(q8.has_value());
  const std::string out = dir_.file("q8.gguf");
  const QuantizeSummary s = quantize_model_file(path_, out, *q8);
  GgufFile in(path_), got(out);
  ASSERT_EQ(got.tensors().size(), in.tensors().size());
  EXPECT_EQ(s.tensors, int64_t(in.tensors().size()));
  EXPECT_EQ(*got.get_int("general.file_type"), int64_t(q8->llama_ftype));
  std::map<std::string, int> seen;
  for (const TensorInfo& t : got.tensors()) {
    ++seen[dtype_name(t.dtype)];
    const TensorInfo& src = in.require(t.name);
    // 1-D tensors (norms) stay f32; matrices become Q8_0 (llama-quantize without imatrix).
    EXPECT_EQ(t.dtype, t.shape.size() == 1 ? DType::F32 : DType::Q8_0) << t.name;
    if (t.dtype != DType::Q8_0) continue;
    // Each value within one quantisation step (its block's max |x| / 127) of the original.
    const int64_t cols = t.cols(), rows = t.numel() / cols;
    std::vector<float> deq(static_cast<size_t>(cols));
    const float* x = reinterpret_cast<const float*>(src.data);
    for (int64_t r = 0; r < rows; ++r) {
      ops::dequantize_row(DType::Q8_0, t.data + r * dtype_row_bytes(DType::Q8_0, cols), deq.data(), cols);
      for (int64_t b = 0; b < cols; b += 32) {
        double amax = 0;
        for (int64_t i = b; i < b + 32; ++i) amax = std::max(amax, double(std::fabs(x[r * cols + i])));
        for (int64_t i = b; i < b + 32; ++i)
          ASSERT_LE(std::fabs(deq[size_t(i)] - x[r * cols + i]), amax / 127 + 1e-6) << t.name;
      }
    }
  }
  EXPECT_EQ(s.by_dtype, seen);
  EXPECT_THROW(quantize_model_file(path_, path_, *q8), UsageError);
}

}  // namespace
}  // namespace attnsparse
