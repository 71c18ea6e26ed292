// Hugging Face model directories: the reference GGUF models rewritten by the test as HF
// directories (HF names, half-split Q/K, Conv1D layouts, shards, BF16) must give the same
// logits as the GGUF files and as llama.cpp. Also: Llama 3 RoPE scaling from config.json
// equals the GGUF rope_freqs tensor computed here from the published formula.
#include <gtest/gtest.h>

#include <numbers>

#include "core/error.h"
#include "io/gguf_writer.h"
#include "model/hf_convert.h"
#include "model/hf_tokenizer_json.h"
#include "model/model.h"
#include "model/model_test_util.h"

namespace attnsparse {
namespace {

using namespace testing;

std::string expected_dir() { return std::string(ATTNSPARSE_SHARED_DIR) + "/reference/expected"; }

std::vector<float> forward_rows(const Model& m, const std::vector<int32_t>& toks,
                                const std::vector<int64_t>& rows) {
  KVCache cache = m.make_cache(static_cast<int64_t>(toks.size()));
  ForwardOptions opts;
  opts.logit_rows = rows;
  std::vector<float> logits;
  m.forward(toks, cache, opts, logits);
  return logits;
}

struct Case {
  std::string model, expected_case;
  HfConvertOptions opt;
  double vs_gguf, vs_llama_cpp;  // tolerances (see test_reference.cpp for the latter)
  std::string folder = "";       // "arch/": the families of ../shared/reference/arch
};

void check_case(const Case& c) {
  REQUIRE_SHARED(gguf, c.folder + "models/" + c.model);
  REQUIRE_SHARED(manifest_path, c.folder + "expected/manifest.json");
  const std::string expected_dir = std::string(ATTNSPARSE_SHARED_DIR) + "/reference/" + c.folder + "expected";
  nlohmann::json spec;
  const nlohmann::json manifest = read_json_file(manifest_path);
  for (const auto& x : manifest["cases"])
    if (x["case"] == c.expected_case) spec = x;
  ASSERT_FALSE(spec.is_null());
  TempDir dir;
  write_hf_dir_from_gguf(gguf, dir.path().string(), c.opt);
  auto hf = Model::load(dir.path().string());
  auto gg = Model::load(gguf);
  EXPECT_EQ(hf->config().source_format, "hf");
  EXPECT_EQ(hf->config().arch, gg->config().arch);
  EXPECT_EQ(hf->config().n_kv_head, gg->config().n_kv_head);
  EXPECT_EQ(hf->config().tied_output, gg->config().tied_output);
  const auto toks = read_ids(expected_dir + "/" + c.expected_case + ".tokens.txt");
  std::vector<int64_t> rows;
  for (const auto& r : spec["logit_rows"]) rows.push_back(r.get<int64_t>());
  const auto l_hf = forward_rows(*hf, toks, rows), l_gg = forward_rows(*gg, toks, rows);
  const auto want = read_f32_file(expected_dir + "/" + spec["logits_file"].get<std::string>());
  const int64_t V = spec["n_vocab"];
  const double e_gg = logit_error(l_hf, l_gg, V).max_rel, e_ref = logit_error(l_hf, want, V).max_rel;
  std::printf("[ measured ] %s as HF dir: vs GGUF %.3g, vs llama.cpp %.3g\n", c.model.c_str(), e_gg, e_ref);
  EXPECT_LE(e_gg, c.vs_gguf);
  EXPECT_LE(e_ref, c.vs_llama_cpp);
}

TEST(HfModel, LlamaF32SingleFileMatchesGgufAndLlamaCpp) {
  // Same arithmetic, only RoPE's pair order differs: rounding-level differences.
  check_case({"llama-spm-f32.gguf", "llama-spm-f32.random", {}, 1e-4, 1e-4});
}

TEST(HfModel, Qwen2F16ShardedMatchesGgufAndLlamaCpp) {
  HfConvertOptions o;
  o.shards = 3;
  check_case({"qwen2-f16.gguf", "qwen2-f16.random", o, 1e-5, 1e-2});
}

TEST(HfModel, Gpt2Conv1dWithoutPrefixUntiedMatchesGgufAndLlamaCpp) {
  HfConvertOptions o;
  o.gpt2_prefix = false;  // as openai-community/gpt2's model.safetensors
  check_case({"gpt2-f32.gguf", "gpt2-f32.random", o, 1e-6, 3e-3});
}

// The families of ../shared/reference/arch as HF directories: gemma norms stored as w - 1,
// Qwen3/Gemma q_norm/k_norm, Phi-3's fused qkv_proj / gate_up_proj, experts as one tensor
// per expert (Mixtral's w1/w3/w2, Qwen3-MoE's gate/up/down_proj), Mixtral's Q/K permuted
// back to halves, Gemma-3's layer_types, Gemma-2's softcaps in config.json. Against the
// GGUF (measured 2026-12-02): bit-identical logits, except Mixtral (1.2e-3: the RoPE pair
// order changes the sums, and a flipped f16 activation rounding is amplified by the peaky
// weights as in test_reference.cpp's incremental-decode case); against llama.cpp: the
// values and tolerances of test_arch_reference.cpp.
TEST(HfModel, Qwen3MatchesGgufAndLlamaCpp) {
  check_case({"qwen3-f16.gguf", "qwen3-f16.random", {}, 1e-6, 8e-3, "arch/"});
}
TEST(HfModel, Gemma2MatchesGgufAndLlamaCpp) {
  check_case({"gemma2-f16.gguf", "gemma2-f16.text", {}, 1e-6, 5e-3, "arch/"});
}
TEST(HfModel, Gemma3MatchesGgufAndLlamaCpp) {
  check_case({"gemma3-f16.gguf", "gemma3-f16.text", {}, 1e-6, 5e-3, "arch/"});
}
TEST(HfModel, Phi3MatchesGgufAndLlamaCpp) {
  check_case({"phi3-f16.gguf", "phi3-f16.random", {}, 1e-6, 1e-2, "arch/"});
}
TEST(HfModel, Qwen3MoeMatchesGgufAndLlamaCpp) {
  check_case({"qwen3moe-f16.gguf", "qwen3moe-f16.text", {}, 1e-6, 1.5e-2, "arch/"});
}
TEST(HfModel, MixtralMatchesGgufAndLlamaCpp) {
  HfConvertOptions o;
  o.shards = 2;
  check_case({"mixtral-f16.gguf", "mixtral-f16.random", o, 5e-3, 7e-3, "arch/"});
}

TEST(HfModel, Gpt2WithTransformerPrefix) {
  check_case({"gpt2-f32.gguf", "gpt2-f32.text", {}, 1e-6, 3e-3});
}

// BF16 safetensors against the same BF16 weights in a GGUF written here. qwen2 keeps the
// half-split RoPE layout in GGUF too, so both files hold identical rows and the logits
// must agree to the bit (llama's Q/K permutation would reorder sums, and BF16 activation
// rounding would amplify that).
TEST(HfModel, Qwen2Bf16MatchesTheSameWeightsAsGgufBf16) {
  REQUIRE_SHARED(gguf, "models/qwen2-f16.gguf");
  TempDir dir;
  HfConvertOptions o;
  o.float_type = DType::BF16;
  std::filesystem::create_directories(dir.file("hf"));
  write_hf_dir_from_gguf(gguf, dir.file("hf"), o);
  {
    GgufFile src(gguf);
    GgufWriter w;
    for (const auto& [k, v] : src.metadata()) w.set(k, v);
    for (const TensorInfo& t : src.tensors()) {
      std::vector<float> f(t.numel());
      ops::dequantize_row(t.dtype, t.data, f.data(), t.numel());
      w.add_tensor(t.name, t.shape.size() == 2 ? DType::BF16 : DType::F32, t.shape, f.data());
    }
    w.write(dir.file("bf16.gguf"));
  }
  auto hf = Model::load(dir.file("hf"));
  auto gg = Model::load(dir.file("bf16.gguf"));
  EXPECT_EQ(hf->weights().find("model.layers.0.self_attn.q_proj.weight")->dtype, DType::BF16);
  const auto toks = read_ids(expected_dir() + "/qwen2-f16.random.tokens.txt");
  const std::vector<int64_t> rows = {0, 50, 150, 299};
  const double e = logit_error(forward_rows(*hf, toks, rows), forward_rows(*gg, toks, rows), 50257).max_rel;
  std::printf("[ measured ] qwen2 bf16 HF vs GGUF: %.3g\n", e);
  EXPECT_LE(e, 1e-6);
}

// Llama 3 "rope_scaling": {"rope_type": "llama3", ...} — the divisors per frequency as
// transformers' _compute_llama3_parameters defines them, computed here in double.
std::vector<float> llama3_divisors(int rope_dim, double base, double factor, double lo, double hi,
                                   double original) {
  std::vector<float> out;
  for (int i = 0; i < rope_dim / 2; ++i) {
    const double inv_freq = std::pow(base, -2.0 * i / rope_dim);
    const double wavelen = 2 * std::numbers::pi / inv_freq;
    double scaled;
    if (wavelen < original / hi) {
      scaled = inv_freq;
    } else if (wavelen > original / lo) {
      scaled = inv_freq / factor;
    } else {
      const double smooth = (original / wavelen - lo) / (hi - lo);
      scaled = (1 - smooth) * inv_freq / factor + smooth * inv_freq;
    }
    out.push_back(static_cast<float>(inv_freq / scaled));
  }
  return out;
}

TEST(HfModel, Llama3RopeScalingFromConfigEqualsGgufRopeFreqs) {
  REQUIRE_SHARED(gguf, "models/llama-spm-f32.gguf");
  TempDir dir;
  // A short original context so that the scaling touches most frequencies of this
  // 16-dimension head: wavelengths 6.3 .. 2e4 against 64/4 .. 64.
  const double factor = 8, lo = 1, hi = 4, original = 64;
  HfConvertOptions o;
  o.config_extra = {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", factor}, {"low_freq_factor", lo},
                                      {"high_freq_factor", hi},
                                      {"original_max_position_embeddings", static_cast<int>(original)}}}};
  std::filesystem::create_directories(dir.file("hf"));
  write_hf_dir_from_gguf(gguf, dir.file("hf"), o);
  const auto div = llama3_divisors(16, 10000.0, factor, lo, hi, original);
  int scaled = 0;
  for (float x : div) scaled += x != 1.f;
  ASSERT_GE(scaled, 4);
  {
    GgufFile src(gguf);
    GgufWriter w;
    for (const auto& [k, v] : src.metadata()) w.set(k, v);
    for (const TensorInfo& t : src.tensors())
      w.add_tensor_raw(t.name, t.dtype, t.shape, t.data, t.nbytes);
    w.add_tensor("rope_freqs.weight", DType::F32, {8}, div.data());
    w.write(dir.file("llama3.gguf"));
  }
  auto hf = Model::load(dir.file("hf"));
  auto gg = Model::load(dir.file("llama3.gguf"));
  auto plain = Model::load(gguf);
  EXPECT_EQ(hf->config().rope_scaling.type, "llama3");
  EXPECT_EQ(gg->config().rope_scaling.type, "llama3");
  const auto toks = read_ids(expected_dir() + "/llama-spm-f32.random.tokens.txt");
  const std::vector<int64_t> rows = {10, 100, 299};
  const auto a = forward_rows(*hf, toks, rows), b = forward_rows(*gg, toks, rows),
             p = forward_rows(*plain, toks, rows);
  const double same = logit_error(a, b, 32000).max_rel, differs = logit_error(a, p, 32000).max_rel;
  std::printf("[ measured ] llama3 scaling HF vs GGUF rope_freqs %.3g; scaled vs unscaled %.3g\n", same, differs);
  EXPECT_LE(same, 1e-4);
  EXPECT_GE(differs, 1e-2);  // the scaling really changes the model
}

// A whole HF directory through the command line: weights, tokenizer.json and
// tokenizer_config.json (BOS added): tokenize gives llama.cpp's ids, logits its values,
// generate runs.
TEST(HfModel, DirectoryEndToEndThroughTheCli) {
  REQUIRE_SHARED(gguf, "models/llama-spm-f32.gguf");
  REQUIRE_SHARED(vocab, "tokenizer/ggml-vocab-llama-spm.gguf");
  TempDir tmp;
  const std::string dir = tmp.file("Llama-HF");
  std::filesystem::create_directories(dir);
  write_hf_dir_from_gguf(gguf, dir);
  write_text(dir + "/tokenizer.json", llama_tokenizer_json(GgufFile(vocab)).dump());
  write_text(dir + "/tokenizer_config.json",
             nlohmann::json{{"add_bos_token", true}, {"bos_token", "<s>"}, {"eos_token", "</s>"}}.dump());
  const std::string text = expected_dir() + "/text_a.txt", ids = expected_dir() + "/llama-spm-f32.text.tokens.txt";
  auto r = run_cli("tokenize '" + dir + "' --text-file '" + text + "'", tmp.path().string());
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream ss(r.out);
  std::vector<int32_t> got;
  for (long long v; ss >> v;) got.push_back(static_cast<int32_t>(v));
  EXPECT_EQ(got, read_ids(ids));
  r = run_cli("logits '" + dir + "' --tokens '" + ids + "' --rows 141 --out '" + tmp.file("l.f32") + "'",
              tmp.path().string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto want = read_f32_file(expected_dir() + "/llama-spm-f32.text.logits.f32");
  EXPECT_LE(logit_error(read_f32_file(tmp.file("l.f32")),
                        std::vector<float>(want.end() - 32000, want.end()), 32000).max_rel, 1e-4);
  r = run_cli("generate '" + dir + "' --prompt 'Hello world' -n 8 --temp 0", tmp.path().string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Hello world", 0), 0u);
}

}  // namespace
}  // namespace attnsparse
