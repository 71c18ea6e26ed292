// Synthetic GGUF models (attnsparse synth): real shapes, random weights, built-in byte
// tokenizer or one copied from another GGUF file.
#include "model/synth.h"

#include <fmt/format.h>
#include <omp.h>

#include <cmath>
#include <memory>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"

namespace attnsparse {

const std::vector<SynthPreset>& synth_presets() {
  // Dimensions from the models' published config.json files.
  static const std::vector<SynthPreset> presets = {
      {"tinyllama-1.1b", "llama", "TinyLlama-1.1B (Llama 2 shape, GQA 32/4)",
       32000, 2048, 2048, 22, 32, 4, 5632, 10000.f, 1e-5f, false},
      {"llama3-8b", "llama", "Meta-Llama-3-8B (GQA 32/8, rope base 5e5)",
       128256, 8192, 4096, 32, 32, 8, 14336, 500000.f, 1e-5f, false},
      {"qwen2-0.5b", "qwen2", "Qwen2-0.5B (q/k/v biases, GQA 14/2, tied output)",
       151936, 32768, 896, 24, 14, 2, 4864, 1000000.f, 1e-6f, true},
      {"gpt2-124m", "gpt2", "GPT-2 small (learned positions, LayerNorm, tied output)",
       50257, 1024, 768, 12, 12, 12, 3072, 0.f, 1e-5f, true},
      // Small shapes for tests and quick experiments.
      {"tiny", "llama", "tiny llama for tests (2 layers, n_embd 64, GQA 4/2)",
       512, 512, 64, 2, 4, 2, 128, 10000.f, 1e-5f, false},
      {"tiny-mqa", "llama", "tiny llama with one KV head (MQA) and tied output",
       512, 512, 64, 2, 4, 1, 128, 10000.f, 1e-5f, true},
      {"tiny-qwen2", "qwen2", "tiny qwen2 for tests (q/k/v biases)",
       512, 512, 64, 2, 4, 2, 160, 1000000.f, 1e-6f, true},
      {"tiny-gpt2", "gpt2", "tiny gpt2 for tests",
       512, 512, 64, 2, 4, 4, 256, 0.f, 1e-5f, true},
  };
  return presets;
}

const SynthPreset& find_synth_preset(const std::string& name) {
  std::string known;
  for (const auto& p : synth_presets()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  fail_usage("--preset: unknown preset '{}' (known: {})", name, known);
}

SynthVocab synth_byte_vocab(int64_t n_vocab) {
  if (n_vocab < 260) fail_usage("the built-in byte vocabulary needs at least 260 tokens, got {}", n_vocab);
  SynthVocab v;
  v.tokens.reserve(n_vocab);
  auto add = [&](std::string t, float score, int32_t type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  // llama.cpp token types: 1 normal, 2 unknown, 3 control, 5 unused, 6 byte.
  add("<unk>", 0.f, 2);
  add("<s>", 0.f, 3);
  add("</s>", 0.f, 3);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 0.f, 6);
  add("\xE2\x96\x81", -1.f, 1);  // "▁": a space, so that decoding restores spaces
  for (int64_t i = static_cast<int64_t>(v.tokens.size()); i < n_vocab; ++i)
    add(fmt::format("<unused{}>", i), -1e9f, 5);
  return v;
}

namespace {

// splitmix64's finaliser: a good 64-bit mix, so value(i) = mix(key + i) is a cheap
// counter-based generator.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t name_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix64(h ^ mix64(seed + 0x9e3779b97f4a7c15ull));
}

// Approximately standard normal from 64 random bits: the sum of four 16-bit uniforms
// (Irwin-Hall, bell-shaped, |g| < 3.5), cheap and deterministic.
inline float gauss(uint64_t bits) {
  const int64_t s = static_cast<int64_t>(bits & 0xffff) + static_cast<int64_t>((bits >> 16) & 0xffff) +
                    static_cast<int64_t>((bits >> 32) & 0xffff) + static_cast<int64_t>(bits >> 48);
  return static_cast<float>(s - 131070) * (1.0f / 37836.3f);
}

// What one tensor holds: mean + std(row) * N(0, 1).
struct Fill {
  float mean = 0.f;
  float std = 0.f;
  // Rows [alt_begin, alt_end) use alt_std instead (gpt2's fused qkv: q and k rows differ
  // from v rows).
  int64_t alt_begin = 0, alt_end = 0;
  float alt_std = 0.f;
};

GgufWriter::RowGenerator make_generator(uint64_t key, int64_t cols, Fill fill) {
  return [key, cols, fill](int64_t row0, int64_t nrows, float* dst) {
#pragma omp parallel for schedule(static) if (nrows * cols > (1 << 15))
    for (int64_t r = 0; r < nrows; ++r) {
      const int64_t row = row0 + r;
      const float sd = row >= fill.alt_begin && row < fill.alt_end ? fill.alt_std : fill.std;
      const uint64_t base = key + static_cast<uint64_t>(row * cols) * 0x9e3779b97f4a7c15ull;
      float* out = dst + r * cols;
      for (int64_t i = 0; i < cols; ++i)
        out[i] = fill.mean + sd * gauss(mix64(base + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull));
    }
  };
}

uint32_t llama_file_type(DType t) {  // llama.cpp's LLAMA_FTYPE_*
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q8_0: return 7;
    case DType::BF16: return 32;
    default: return 0;
  }
}

}  // namespace

void write_synthetic_model(const SynthOptions& opts, const std::string& out_path,
                           const SynthProgress& progress) {
  const SynthPreset& p = find_synth_preset(opts.preset);
  if (opts.dtype != DType::F32 && opts.dtype != DType::F16 && opts.dtype != DType::BF16 &&
      opts.dtype != DType::Q8_0)
    fail_usage("--dtype: {} cannot be written (f32, f16, bf16, q8_0)", dtype_name(opts.dtype));
  if (opts.layers < 0) fail_usage("--layers must be positive, got {}", opts.layers);
  const int64_t n_layer = opts.layers > 0 ? opts.layers : p.n_layer;
  if (out_path.empty()) fail_usage("--out: empty path");

  GgufWriter w;
  const std::string a = p.arch + ".";
  w.set_string("general.architecture", p.arch);
  w.set_string("general.name", fmt::format("attnsparse synthetic {} ({}, seed {})", p.name,
                                           dtype_name(opts.dtype), opts.seed));
  w.set_u32("general.file_type", llama_file_type(opts.dtype));
  w.set_string("general.description",
               fmt::format("random weights with the shape of {}; written by attnsparse synth",
                           p.description));

  // Vocabulary: copied, or the built-in byte vocabulary.
  int64_t n_vocab = p.n_vocab;
  if (!opts.vocab_from.empty()) {
    GgufFile vocab(opts.vocab_from);
    const GgufArray* toks = vocab.get_array("tokenizer.ggml.tokens");
    if (toks == nullptr || toks->values.empty())
      fail_file(opts.vocab_from, "has no tokenizer (tokenizer.ggml.tokens is missing)");
    n_vocab = static_cast<int64_t>(toks->values.size());
    w.copy_metadata_prefix(vocab, "tokenizer.");
  } else {
    const SynthVocab v = synth_byte_vocab(n_vocab);
    std::vector<GgufValue> tokens, scores, types;
    tokens.reserve(n_vocab);
    scores.reserve(n_vocab);
    types.reserve(n_vocab);
    for (int64_t i = 0; i < n_vocab; ++i) {
      tokens.push_back(GgufValue::make_string(v.tokens[i]));
      scores.push_back(GgufValue::make_f32(v.scores[i]));
      types.push_back(GgufValue::make_i32(v.types[i]));
    }
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string("tokenizer.ggml.pre", "default");
    w.set("tokenizer.ggml.tokens", GgufValue::make_array(GgufType::STRING, std::move(tokens)));
    w.set("tokenizer.ggml.scores", GgufValue::make_array(GgufType::FLOAT32, std::move(scores)));
    w.set("tokenizer.ggml.token_type", GgufValue::make_array(GgufType::INT32, std::move(types)));
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_eos_token", false);
  }

  const int64_t d = p.n_embd, head_dim = p.n_embd / p.n_head;
  const int64_t qd = p.n_head * head_dim, kvd = p.n_kv_head * head_dim;
  w.set_u32(a + "vocab_size", static_cast<uint32_t>(n_vocab));
  w.set_u32(a + "context_length", static_cast<uint32_t>(p.n_ctx));
  w.set_u32(a + "embedding_length", static_cast<uint32_t>(d));
  w.set_u32(a + "block_count", static_cast<uint32_t>(n_layer));
  w.set_u32(a + "feed_forward_length", static_cast<uint32_t>(p.n_ff));
  w.set_u32(a + "attention.head_count", static_cast<uint32_t>(p.n_head));
  w.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(p.n_kv_head));
  if (p.arch == "gpt2") {
    w.set_f32(a + "attention.layer_norm_epsilon", p.norm_eps);
  } else {
    w.set_f32(a + "attention.layer_norm_rms_epsilon", p.norm_eps);
    w.set_f32(a + "rope.freq_base", p.rope_base);
    w.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(head_dim));
  }

  // Scales. Every residual contribution (embeddings, attention output, MLP output) has
  // std about r = 3/sqrt(d), so the residual stream grows like sqrt(layers) and never
  // overflows f16; logits have std about 3 (tied or not). Q and K are a little larger
  // than the usual 1/sqrt(d) so that attention is not uniform (score std ~ 1.4).
  const float r = 3.f / std::sqrt(static_cast<float>(d));
  const float in_d = 1.f / std::sqrt(static_cast<float>(d));
  const float qk = 1.2f * in_d;
  const uint64_t seed = opts.seed;
  const DType mt = opts.dtype;

  struct Pending {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    Fill fill;
  };
  std::vector<Pending> plan;
  auto mat = [&](std::string name, int64_t rows, int64_t cols, Fill f) {
    plan.push_back({std::move(name), mt, {rows, cols}, f});
  };
  auto vec = [&](std::string name, int64_t n, float mean, float sd) {
    plan.push_back({std::move(name), DType::F32, {n}, Fill{mean, sd}});
  };
  auto blk = [](int64_t l, const char* what) { return fmt::format("blk.{}.{}", l, what); };

  mat("token_embd.weight", n_vocab, d, Fill{0.f, r});
  if (p.arch == "gpt2") {
    mat("position_embd.weight", p.n_ctx, d, Fill{0.f, r});
    vec("output_norm.weight", d, 1.f, 0.1f);
    vec("output_norm.bias", d, 0.f, 0.05f);
  } else {
    vec("output_norm.weight", d, 1.f, 0.1f);
  }
  if (!p.tied_output) mat("output.weight", n_vocab, d, Fill{0.f, r});
  for (int64_t l = 0; l < n_layer; ++l) {
    if (p.arch == "gpt2") {
      vec(blk(l, "attn_norm.weight"), d, 1.f, 0.1f);
      vec(blk(l, "attn_norm.bias"), d, 0.f, 0.05f);
      Fill qkv{0.f, qk};
      qkv.alt_begin = 2 * d;  // v rows
      qkv.alt_end = 3 * d;
      qkv.alt_std = in_d;
      mat(blk(l, "attn_qkv.weight"), 3 * d, d, qkv);
      vec(blk(l, "attn_qkv.bias"), 3 * d, 0.f, 0.1f);
      mat(blk(l, "attn_output.weight"), d, d, Fill{0.f, r / std::sqrt(float(d))});
      vec(blk(l, "attn_output.bias"), d, 0.f, 0.1f * r);
      vec(blk(l, "ffn_norm.weight"), d, 1.f, 0.1f);
      vec(blk(l, "ffn_norm.bias"), d, 0.f, 0.05f);
      mat(blk(l, "ffn_up.weight"), p.n_ff, d, Fill{0.f, in_d});
      vec(blk(l, "ffn_up.bias"), p.n_ff, 0.f, 0.1f);
      mat(blk(l, "ffn_down.weight"), d, p.n_ff, Fill{0.f, 1.5f * r / std::sqrt(float(p.n_ff))});
      vec(blk(l, "ffn_down.bias"), d, 0.f, 0.1f * r);
    } else {
      vec(blk(l, "attn_norm.weight"), d, 1.f, 0.1f);
      mat(blk(l, "attn_q.weight"), qd, d, Fill{0.f, qk});
      mat(blk(l, "attn_k.weight"), kvd, d, Fill{0.f, qk});
      mat(blk(l, "attn_v.weight"), kvd, d, Fill{0.f, in_d});
      if (p.arch == "qwen2") {
        vec(blk(l, "attn_q.bias"), qd, 0.f, 0.1f);
        vec(blk(l, "attn_k.bias"), kvd, 0.f, 0.1f);
        vec(blk(l, "attn_v.bias"), kvd, 0.f, 0.1f);
      }
      mat(blk(l, "attn_output.weight"), d, qd, Fill{0.f, r / std::sqrt(float(qd))});
      vec(blk(l, "ffn_norm.weight"), d, 1.f, 0.1f);
      mat(blk(l, "ffn_gate.weight"), p.n_ff, d, Fill{0.f, in_d});
      mat(blk(l, "ffn_up.weight"), p.n_ff, d, Fill{0.f, in_d});
      // SiLU(g) * u has std ~0.6 for unit g, u: 1.5 brings the MLP output to ~r.
      mat(blk(l, "ffn_down.weight"), d, p.n_ff, Fill{0.f, 1.5f * r / std::sqrt(float(p.n_ff))});
    }
  }

  const size_t total = plan.size();
  for (size_t i = 0; i < total; ++i) {
    Pending& t = plan[i];
    auto gen = make_generator(name_key(seed, t.name), t.shape.back(), t.fill);
    if (progress) {
      gen = [gen, i, total, name = t.name, &progress](int64_t row0, int64_t nrows, float* dst) {
        if (row0 == 0) progress(i, total, name);
        gen(row0, nrows, dst);
      };
    }
    w.add_tensor_generated(t.name, t.type, t.shape, std::move(gen));
  }
  w.write(out_path);
  if (progress) progress(total, total, "");
}

}  // namespace attnsparse
