// The forward pass against a naive double-precision transformer written here from the
// architectures' definitions, on synthetic f32 models that exercise what the llama.cpp
// reference files do not: MQA (one KV head), tied output, qwen2 biases with tied output.
// Also checks the synth presets and their determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <omp.h>

#include "core/error.h"
#include "io/gguf.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "model/synth.h"

namespace attnsparse {
namespace {

using namespace testing;

struct Naive {
  const GgufFile& f;
  std::string arch;
  int64_t d, n_layer, n_head, n_kv, hd, n_ff, V;
  double eps, base;

  explicit Naive(const GgufFile& file) : f(file) {
    arch = f.architecture();
    const std::string a = arch + ".";
    d = *f.get_int(a + "embedding_length");
    n_layer = *f.get_int(a + "block_count");
    n_head = *f.get_int(a + "attention.head_count");
    n_kv = *f.get_int(a + "attention.head_count_kv");
    n_ff = *f.get_int(a + "feed_forward_length");
    eps = *f.get_float(a + "attention.layer_norm_rms_epsilon");
    base = *f.get_float(a + "rope.freq_base");
    hd = d / n_head;
    V = f.require("token_embd.weight").shape[0];
  }
  const float* t(const std::string& name) const {
    const TensorInfo& ti = f.require(name);
    EXPECT_EQ(ti.dtype, DType::F32) << name;
    return reinterpret_cast<const float*>(ti.data);
  }
  const float* opt(const std::string& name) const {
    const TensorInfo* ti = f.find(name);
    return ti ? reinterpret_cast<const float*>(ti->data) : nullptr;
  }
  static std::vector<double> matvec(const float* w, const float* bias, const std::vector<double>& x,
                                    int64_t n_out) {
    std::vector<double> y(n_out);
    const int64_t n_in = static_cast<int64_t>(x.size());
    for (int64_t o = 0; o < n_out; ++o) {
      double s = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < n_in; ++i) s += static_cast<double>(w[o * n_in + i]) * x[i];
      y[o] = s;
    }
    return y;
  }
  std::vector<double> rms(const std::vector<double>& x, const float* w) const {
    double ms = 0;
    for (double v : x) ms += v * v;
    const double s = 1.0 / std::sqrt(ms / x.size() + eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
    return y;
  }
  // GGUF llama rotates adjacent pairs (2i, 2i+1); qwen2 rotates (i, i + hd/2).
  void rope(std::vector<double>& v, int64_t heads, int64_t pos) const {
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double th = pos * std::pow(base, -2.0 * i / hd);
        const int64_t a = arch == "llama" ? h * hd + 2 * i : h * hd + i;
        const int64_t b = arch == "llama" ? a + 1 : a + hd / 2;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * std::cos(th) - x1 * std::sin(th);
        v[b] = x0 * std::sin(th) + x1 * std::cos(th);
      }
  }

  // Logits of every position.
  std::vector<std::vector<double>> run(const std::vector<int32_t>& toks) const {
    const int64_t n = static_cast<int64_t>(toks.size());
    std::vector<std::vector<double>> x(n, std::vector<double>(d));
    const float* E = t("token_embd.weight");
    for (int64_t p = 0; p < n; ++p)
      for (int64_t i = 0; i < d; ++i) x[p][i] = E[toks[p] * d + i];
    for (int64_t l = 0; l < n_layer; ++l) {
      auto blk = [&](const char* what) { return "blk." + std::to_string(l) + "." + what; };
      std::vector<std::vector<double>> q(n), k(n), v(n);
      for (int64_t p = 0; p < n; ++p) {
        const auto xn = rms(x[p], t(blk("attn_norm.weight")));
        q[p] = matvec(t(blk("attn_q.weight")), opt(blk("attn_q.bias")), xn, n_head * hd);
        k[p] = matvec(t(blk("attn_k.weight")), opt(blk("attn_k.bias")), xn, n_kv * hd);
        v[p] = matvec(t(blk("attn_v.weight")), opt(blk("attn_v.bias")), xn, n_kv * hd);
        rope(q[p], n_head, p);
        rope(k[p], n_kv, p);
      }
      for (int64_t p = 0; p < n; ++p) {
        std::vector<double> att(n_head * hd, 0.0);
        for (int64_t h = 0; h < n_head; ++h) {
          const int64_t g = h / (n_head / n_kv);  // the KV head this query head reads
          std::vector<double> s(p + 1);
          double mx = -1e300;
          for (int64_t j = 0; j <= p; ++j) {
            double dot = 0;
            for (int64_t i = 0; i < hd; ++i) dot += q[p][h * hd + i] * k[j][g * hd + i];
            s[j] = dot / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[j]);
          }
          double z = 0;
          for (double& e : s) z += (e = std::exp(e - mx));
          for (int64_t j = 0; j <= p; ++j)
            for (int64_t i = 0; i < hd; ++i) att[h * hd + i] += s[j] / z * v[j][g * hd + i];
        }
        const auto o = matvec(t(blk("attn_output.weight")), nullptr, att, d);
        for (int64_t i = 0; i < d; ++i) x[p][i] += o[i];
        const auto xn = rms(x[p], t(blk("ffn_norm.weight")));
        const auto gt = matvec(t(blk("ffn_gate.weight")), nullptr, xn, n_ff);
        const auto up = matvec(t(blk("ffn_up.weight")), nullptr, xn, n_ff);
        std::vector<double> a(n_ff);
        for (int64_t i = 0; i < n_ff; ++i) a[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
        const auto dn = matvec(t(blk("ffn_down.weight")), nullptr, a, d);
        for (int64_t i = 0; i < d; ++i) x[p][i] += dn[i];
      }
    }
    const float* out = opt("output.weight") ? t("output.weight") : E;  // tied: token_embd
    std::vector<std::vector<double>> logits(n);
    for (int64_t p = 0; p < n; ++p) logits[p] = matvec(out, nullptr, rms(x[p], t("output_norm.weight")), V);
    return logits;
  }
};

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
