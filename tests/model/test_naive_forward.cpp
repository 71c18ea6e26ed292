// The forward pass against a naive double-precision transformer (naive_model.h) written
// from the architectures' definitions, on synthetic f32 models that exercise what the llama.cpp
// reference files do not: MQA (one KV head), tied output, qwen2 biases with tied output.
// Also checks the synth presets and their determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <omp.h>

#include "core/error.h"
#include "io/gguf.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "model/naive_model.h"
#include "model/synth.h"

namespace attnsparse {
namespace {

using namespace testing;

class NaiveForward : public ::testing::TestWithParam<std::string> {};

TEST_P(NaiveForward, EngineMatchesNaiveDoublePrecision) {
  TempDir dir;
  SynthOptions o;
  o.preset = GetParam();
  o.dtype = DType::F32;
  o.seed = 7;
  const std::string path = dir.file("m.gguf");
  write_synthetic_model(o, path);
  GgufFile f(path);
  Naive naive(f);
  auto model = Model::load(path);
  const SynthPreset& p = find_synth_preset(GetParam());
  EXPECT_EQ(model->config().n_kv_head, p.n_kv_head);
  EXPECT_EQ(model->config().tied_output, p.tied_output);
  EXPECT_EQ(f.find("output.weight") == nullptr, p.tied_output);
  std::vector<int32_t> toks;
  for (int i = 0; i < 24; ++i) toks.push_back(static_cast<int32_t>((i * 131 + 7) % 512));
  KVCache cache = model->make_cache(24);
  std::vector<float> got;
  model->forward(toks, cache, {}, got);
  const auto want = naive.run(toks);
  std::vector<float> want_f;
  for (const auto& row : want) want_f.insert(want_f.end(), row.begin(), row.end());
  const RowError e = logit_error(got, want_f, 512);
  std::printf("[ measured ] %s engine vs naive f64: max %.3g\n", GetParam().c_str(), e.max_rel);
  EXPECT_LE(e.max_rel, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Synth, NaiveForward, ::testing::Values("tiny", "tiny-mqa", "tiny-qwen2"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

// The naive model really distinguishes the things it checks: with GQA's head mapping
// broken (every query head reading KV head 0) the logits move far beyond the tolerance.
TEST(NaiveForward, DetectsAWrongKvHeadMapping) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  o.dtype = DType::F32;
  write_synthetic_model(o, dir.file("m.gguf"));
  GgufFile f(dir.file("m.gguf"));
  Naive good(f), bad(f);
  bad.n_kv = 1;  // as if head_count_kv were 1: all heads read the first KV head
  std::vector<int32_t> toks = {1, 300, 301, 302, 40, 41, 42, 43};
  const auto a = good.run(toks), b = bad.run(toks);
  double worst = 0;
  for (size_t p = 1; p < a.size(); ++p)
    for (size_t i = 0; i < a[p].size(); ++i) worst = std::max(worst, std::fabs(a[p][i] - b[p][i]));
  EXPECT_GT(worst, 0.1);
}

// Presets carry the published dimensions (config.json of each model).
TEST(Synth, PresetsHaveThePublishedShapes) {
  struct Want {
    const char* name;
    int64_t vocab, d, layers, heads, kv, ff;
  };
  for (const Want& w : {Want{"tinyllama-1.1b", 32000, 2048, 22, 32, 4, 5632},
                        Want{"llama3-8b", 128256, 4096, 32, 32, 8, 14336},
                        Want{"qwen2-0.5b", 151936, 896, 24, 14, 2, 4864},
                        Want{"gpt2-124m", 50257, 768, 12, 12, 12, 3072}}) {
    const SynthPreset& p = find_synth_preset(w.name);
    EXPECT_EQ(p.n_vocab, w.vocab) << w.name;
    EXPECT_EQ(p.n_embd, w.d) << w.name;
    EXPECT_EQ(p.n_layer, w.layers) << w.name;
    EXPECT_EQ(p.n_head, w.heads) << w.name;
    EXPECT_EQ(p.n_kv_head, w.kv) << w.name;
    EXPECT_EQ(p.n_ff, w.ff) << w.name;
  }
  EXPECT_TRUE(find_synth_preset("qwen2-0.5b").tied_output);
  EXPECT_FALSE(find_synth_preset("tinyllama-1.1b").tied_output);
  EXPECT_THROW(find_synth_preset("nope"), UsageError);
}

TEST(Synth, SameBytesWhateverTheThreadCount) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny-gpt2";
  o.dtype = DType::Q8_0;
  o.seed = 3;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  write_synthetic_model(o, dir.file("a.gguf"));
  omp_set_num_threads(2);
  write_synthetic_model(o, dir.file("b.gguf"));
  omp_set_num_threads(saved);
  EXPECT_EQ(read_bytes(dir.file("a.gguf")), read_bytes(dir.file("b.gguf")));
  o.seed = 4;
  write_synthetic_model(o, dir.file("c.gguf"));
  EXPECT_NE(read_bytes(dir.file("a.gguf")), read_bytes(dir.file("c.gguf")));
}

// Every preset's architecture at a small depth: loads, runs, finite logits of a sane scale
// (std about 3 by construction), for each writable dtype.
TEST(Synth, TinyPresetsRunWithSaneActivations) {
  TempDir dir;
  for (const char* preset : {"tiny", "tiny-mqa", "tiny-qwen2", "tiny-gpt2"}) {
    for (DType dt : {DType::F16, DType::BF16, DType::Q8_0}) {
      SynthOptions o;
      o.preset = preset;
      o.dtype = dt;
      o.layers = 3;
      write_synthetic_model(o, dir.file("m.gguf"));
      auto m = Model::load(dir.file("m.gguf"));
      ASSERT_EQ(m->config().n_layer, 3);
      std::vector<int32_t> toks = m->tokenizer().encode("The synthetic model reads this.", true);
      KVCache cache = m->make_cache(static_cast<int64_t>(toks.size()));
      std::vector<float> logits;
      m->forward(toks, cache, {}, logits);
      double ss = 0;
      for (float v : logits) {
        ASSERT_TRUE(std::isfinite(v)) << preset;
        ss += double(v) * v;
      }
      const double rms = std::sqrt(ss / logits.size());
      EXPECT_GT(rms, 1.0) << preset << " " << dtype_name(dt);
      EXPECT_LT(rms, 10.0) << preset << " " << dtype_name(dt);
    }
  }
}

// The weight scales keep a deep stack sane: 22 layers (TinyLlama's depth) of f16 weights
// give finite logits of the intended spread (std ~3) at the last of 200 positions.
TEST(Synth, TwentyTwoLayersStaySane) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  o.layers = 22;
  write_synthetic_model(o, dir.file("deep.gguf"));
  auto m = Model::load(dir.file("deep.gguf"));
  std::vector<int32_t> toks;
  for (int i = 0; i < 200; ++i) toks.push_back(static_cast<int32_t>(3 + (i * 37) % 500));
  KVCache cache = m->make_cache(200);
  ForwardOptions opts;
  opts.logit_rows = {0, 199};
  std::vector<float> logits;
  m->forward(toks, cache, opts, logits);
  for (int r = 0; r < 2; ++r) {
    double mean = 0, ss = 0;
    for (int i = 0; i < 512; ++i) mean += logits[r * 512 + i] / 512.0;
    for (int i = 0; i < 512; ++i) {
      ASSERT_TRUE(std::isfinite(logits[r * 512 + i]));
      ss += (logits[r * 512 + i] - mean) * (logits[r * 512 + i] - mean);
    }
    const double sd = std::sqrt(ss / 512);
    EXPECT_GT(sd, 1.5) << "row " << r;
    EXPECT_LT(sd, 6.0) << "row " << r;
  }
}

TEST(Synth, VocabFromCopiesTheTokenizer) {
  REQUIRE_SHARED(vocab, "tokenizer/ggml-vocab-gpt-2.gguf");
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny-gpt2";
  o.vocab_from = vocab;
  write_synthetic_model(o, dir.file("m.gguf"));
  auto m = Model::load(dir.file("m.gguf"));
  EXPECT_EQ(m->config().n_vocab, 50257);
  EXPECT_EQ(m->tokenizer().encode("Hello world", false), (std::vector<int32_t>{15496, 995}));
  o.vocab_from = dir.file("missing.gguf");
  EXPECT_THROW(write_synthetic_model(o, dir.file("x.gguf")), FormatError);
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

}  // namespace
}  // namespace attnsparse
