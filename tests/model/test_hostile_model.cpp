// Bad model files and inputs: each gives a FormatError / Error naming the file and the
// problem, never a crash.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include "core/cpu.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/gguf_encode.h"
#include "io/safetensors.h"
#include "model/hf_convert.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "model/synth.h"
#include "model/weights.h"
#include "ops/matmul.h"

namespace attnsparse {
namespace {

using namespace testing;
using nlohmann::json;

std::string load_error(const std::string& path) {
  try {
    auto m = Model::load(path);
  } catch (const FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a FormatError: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << path << " loaded";
  return {};
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "'" << (needle) << "' not in: " << (haystack)

// A small, valid HF directory (tiny llama, f32) to break in different ways.
struct HfDir {
  TempDir tmp;
  std::string dir;
  json config;
  HfDir() {
    SynthOptions o;
    o.preset = "tiny";
    o.dtype = DType::F32;
    write_synthetic_model(o, tmp.file("tiny.gguf"));
    dir = tmp.file("hf");
    std::filesystem::create_directories(dir);
    config = write_hf_dir_from_gguf(tmp.file("tiny.gguf"), dir);
  }
  void set_config(const json& c) { write_text(dir + "/config.json", c.dump()); }
};

TEST(HostileHf, TheUnbrokenDirectoryLoads) {
  HfDir h;
  auto m = Model::load(h.dir);
  EXPECT_EQ(m->config().n_layer, 2);
}

TEST(HostileHf, ConfigJsonMissingFieldsAndBadTypes) {
  HfDir h;
  for (const char* field : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                            "intermediate_size", "vocab_size", "rms_norm_eps"}) {
    json c = h.config;
    c.erase(field);
    h.set_config(c);
    const std::string e = load_error(h.dir);
    EXPECT_HAS(e, "config.json");
    EXPECT_HAS(e, std::string("missing field '") + field + "'");
  }
  json c = h.config;
  c["num_hidden_layers"] = "two";
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "field 'num_hidden_layers' must be an integer");
  c = h.config;
  c["hidden_size"] = -64;
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "must be positive");
  c = h.config;
  c["num_key_value_heads"] = 3;
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "num_key_value_heads 3 does not divide");
  c = h.config;
  c["architectures"] = {"FalconForCausalLM"};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "'FalconForCausalLM' is not supported");
  c = h.config;
  c["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 4.0}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "rope_scaling type 'longrope' is not supported");
  c = h.config;
  c["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "rope_scaling type 'dynamic' is not supported");
  // YaRN is applied, but not with a factor below 1, non-finite betas or truncate: false.
  c = h.config;
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 0.5}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "rope_scaling.factor must be >= 1 for yarn");
  c = h.config;
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", -3.0}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "beta_fast");
  c = h.config;
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"truncate", false}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "rope_scaling.truncate false is not supported");
  c = h.config;
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 0}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "original_max_position_embeddings' must be positive");
  c = h.config;
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "missing field 'low_freq_factor'");
  write_text(h.dir + "/config.json", "{\"hidden_size\": 64,");
  EXPECT_HAS(load_error(h.dir), "config.json: invalid JSON");
  std::filesystem::remove(h.dir + "/config.json");
  EXPECT_HAS(load_error(h.dir), "not a model directory (no config.json)");
}

TEST(HostileHf, MissingTensorsAndWrongShapes) {
  HfDir h;
  SafetensorsSource src(h.dir + "/model.safetensors");
  std::vector<TensorInfo> all(src.tensors().begin(), src.tensors().end());
  auto rewrite = [&](std::vector<TensorInfo> ts) {
    write_safetensors(h.dir + "/model.safetensors.new", ts);
    std::filesystem::rename(h.dir + "/model.safetensors.new", h.dir + "/model.safetensors");
  };
  // Keep a copy of the bytes: the mapped file is replaced below.
  std::vector<std::vector<uint8_t>> keep;
  for (auto& t : all) {
    keep.emplace_back(t.data, t.data + t.nbytes);
    t.data = keep.back().data();
  }
  std::vector<TensorInfo> missing;
  for (const auto& t : all)
    if (t.name != "model.layers.1.mlp.up_proj.weight") missing.push_back(t);
  rewrite(missing);
  std::string e = load_error(h.dir);
  EXPECT_HAS(e, h.dir);
  EXPECT_HAS(e, "missing tensor 'model.layers.1.mlp.up_proj.weight'");

  std::vector<TensorInfo> bad = all;
  for (auto& t : bad)
    if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {64, 32};  // transposed
  rewrite(bad);
  e = load_error(h.dir);
  EXPECT_HAS(e, "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [64 x 32], expected [32 x 64]");

  json c = h.config;  // untied without lm_head
  std::vector<TensorInfo> no_head;
  for (const auto& t : all)
    if (t.name != "lm_head.weight") no_head.push_back(t);
  rewrite(no_head);
  EXPECT_HAS(load_error(h.dir), "missing tensor 'lm_head.weight'");
  c["tie_word_embeddings"] = true;  // tied: fine without it
  h.set_config(c);
  EXPECT_NO_THROW(Model::load(h.dir));
}

// GGUF models: metadata and tensors removed or reshaped.
std::string rewrite_gguf(const std::string& src_path, const std::string& out,
                         const std::function<bool(const std::string&)>& keep_key,
                         const std::function<bool(TensorInfo&)>& keep_tensor) {
  GgufFile src(src_path);
  GgufWriter w;
  for (const auto& [k, v] : src.metadata())
    if (keep_key(k)) w.set(k, v);
  for (TensorInfo t : src.tensors())
    if (keep_tensor(t)) {
      std::vector<float> f(t.numel());
      ops::dequantize_row(t.dtype, t.data, f.data(), t.numel());
      add_f32_tensor(w, t.name, DType::F32, t.shape, f.data());
    }
  w.write(out);
  return out;
}

TEST(HostileGguf, MissingKeysTensorsAndWrongShapes) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  write_synthetic_model(o, dir.file("tiny.gguf"));
  auto all_keys = [](const std::string&) { return true; };
  auto all_tensors = [](TensorInfo&) { return true; };
  std::string p = rewrite_gguf(dir.file("tiny.gguf"), dir.file("a.gguf"),
                               [](const std::string& k) { return k != "llama.embedding_length"; }, all_tensors);
  std::string e = load_error(p);
  EXPECT_HAS(e, "a.gguf: missing metadata key 'llama.embedding_length'");
  p = rewrite_gguf(dir.file("tiny.gguf"), dir.file("b.gguf"), all_keys,
                   [](TensorInfo& t) { return t.name != "blk.1.ffn_gate.weight"; });
  EXPECT_HAS(load_error(p), "b.gguf: missing tensor 'blk.1.ffn_gate.weight'");
  p = rewrite_gguf(dir.file("tiny.gguf"), dir.file("c.gguf"), all_keys, [](TensorInfo& t) {
    if (t.name == "blk.0.attn_v.weight") t.shape = {16, 128};
    return true;
  });
  EXPECT_HAS(load_error(p), "c.gguf: tensor 'blk.0.attn_v.weight' has shape [16 x 128], expected [32 x 64]");
  p = rewrite_gguf(dir.file("tiny.gguf"), dir.file("d.gguf"),
                   [](const std::string& k) { return k != "general.architecture"; }, all_tensors);
  EXPECT_HAS(load_error(p), "d.gguf");
  {
    GgufFile src(dir.file("tiny.gguf"));
    GgufWriter w;
    for (const auto& [k, v] : src.metadata()) w.set(k, v);
    w.set_string("general.architecture", "falcon");
    w.write(dir.file("e.gguf"));
  }
  EXPECT_HAS(load_error(dir.file("e.gguf")), "architecture 'falcon' is not supported");
  p = rewrite_gguf(dir.file("tiny.gguf"), dir.file("f.gguf"),
                   [](const std::string& k) { return k != "tokenizer.ggml.model"; }, all_tensors);
  auto m = Model::load(p);  // weights are fine; the tokenizer is not
  try {
    m->tokenizer();
    ADD_FAILURE() << "no error";
  } catch (const FormatError& err) {
    EXPECT_HAS(std::string(err.what()), "f.gguf: no tokenizer");
  }
}

TEST(HostileInput, TokenIdsOutOfRangeAndOversizedBatches) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny-gpt2";
  write_synthetic_model(o, dir.file("g.gguf"));
  auto m = Model::load(dir.file("g.gguf"));
  std::vector<float> l;
  KVCache c = m->make_cache(4);
  EXPECT_THROW(m->forward(std::vector<int32_t>{1, 512}, c, {}, l), Error);
  EXPECT_THROW(m->forward(std::vector<int32_t>{-1}, c, {}, l), Error);
  EXPECT_THROW(m->forward(std::vector<int32_t>{1, 2, 3, 4, 5}, c, {}, l), Error);  // cache of 4
  ForwardOptions bad_row;
  bad_row.logit_rows = {2};
  EXPECT_THROW(m->forward(std::vector<int32_t>{1, 2}, c, bad_row, l), Error);
  EXPECT_THROW(m->make_cache(0), Error);
  // gpt2's learned positions end at n_ctx (512).
  KVCache big = m->make_cache(600);
  std::vector<int32_t> toks(513, 5);
  try {
    m->forward(toks, big, {}, l);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "learned positions");
  }
}


// ---------------------------------------------------------------- values that lie

// A copy of the GGUF model with edited metadata and f32 tensor values.
std::string edit_gguf(const std::string& src_path, const std::string& out,
                      const std::function<void(GgufWriter&)>& edit_meta,
                      const std::function<void(const std::string&, std::vector<float>&)>& edit_tensor = {},
                      DType dtype = DType::F32) {
  GgufFile src(src_path);
  GgufWriter w;
  for (const auto& [k, v] : src.metadata()) w.set(k, v);
  edit_meta(w);
  for (const TensorInfo& t : src.tensors()) {
    std::vector<float> f(t.numel());
    ops::dequantize_row(t.dtype, t.data, f.data(), t.numel());
    if (edit_tensor) edit_tensor(t.name, f);
    add_f32_tensor(w, t.name, t.shape.size() == 1 ? DType::F32 : dtype, t.shape, f.data());
  }
  w.write(out);
  return out;
}

std::string forward_error(const std::string& path, std::vector<int32_t> tokens, bool logits = true) {
  auto m = Model::load(path);
  KVCache c = m->make_cache(16);
  ForwardOptions o;
  o.no_logits = !logits;
  std::vector<float> l;
  try {
    m->forward(tokens, c, o, l);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "forward ran; logit 0 = " << (l.empty() ? 0.f : l[0]);
  return {};
}

const auto kNoMeta = [](GgufWriter&) {};

TEST(HostileGguf, NonFiniteWeightsFailNamingTheTensorOrLayer) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  write_synthetic_model(o, dir.file("tiny.gguf"));
  const std::string tiny = dir.file("tiny.gguf");
  // The unedited copy runs (the checks do not fire on a sane model).
  EXPECT_NO_THROW(Model::load(edit_gguf(tiny, dir.file("same.gguf"), kNoMeta)));
  // Small tensors are scanned at load.
  std::string p = edit_gguf(tiny, dir.file("norm.gguf"), kNoMeta, [](const std::string& n, std::vector<float>& f) {
    if (n == "output_norm.weight") f[3] = NAN;
  });
  std::string e = load_error(p);
  EXPECT_HAS(e, "norm.gguf: tensor 'output_norm.weight' holds NaN or Inf (element 3");
  p = edit_gguf(tiny, dir.file("anorm.gguf"), kNoMeta, [](const std::string& n, std::vector<float>& f) {
    if (n == "blk.1.attn_norm.weight") f[0] = -INFINITY;
  });
  EXPECT_HAS(load_error(p), "tensor 'blk.1.attn_norm.weight' holds NaN or Inf (element 0 is -inf)");
  // Big matrices: caught where their values are first used. Row 5 of the embedding only.
  p = edit_gguf(tiny, dir.file("embd.gguf"), kNoMeta, [](const std::string& n, std::vector<float>& f) {
    if (n == "token_embd.weight") f[5 * 64 + 7] = NAN;
  });
  EXPECT_HAS(forward_error(p, {1, 5, 9}), "embd.gguf: the embedding of the input (token_embd.weight");
  {
    auto m = Model::load(p);  // other tokens are fine
    KVCache c = m->make_cache(4);
    std::vector<float> l;
    EXPECT_NO_THROW(m->forward(std::vector<int32_t>{1, 9}, c, {}, l));
  }
  p = edit_gguf(tiny, dir.file("down.gguf"), kNoMeta, [](const std::string& n, std::vector<float>& f) {
    if (n == "blk.1.ffn_down.weight") f[100] = INFINITY;
  });
  e = forward_error(p, {1, 5, 9}, /*logits=*/false);  // as analyze runs it: no logits
  EXPECT_HAS(e, "down.gguf: the hidden state after layer 1 (tensors blk.1.*) holds NaN or Inf");
  // A NaN query would be hidden inside attention (it never wins the max).
  p = edit_gguf(tiny, dir.file("q.gguf"), kNoMeta, [](const std::string& n, std::vector<float>& f) {
    if (n == "blk.0.attn_q.weight") f[10] = NAN;
  });
  EXPECT_HAS(forward_error(p, {1, 5, 9}), "q.gguf: layer 0: the attention queries of token 0 hold NaN or Inf");
  p = edit_gguf(tiny, dir.file("out.gguf"), kNoMeta, [](const std::string& n, std::vector<float>& f) {
    if (n == "output.weight") f[64 * 200] = NAN;
  });
  EXPECT_HAS(forward_error(p, {1, 5, 9}), "out.gguf: the logits (output_norm.weight / output.weight) holds NaN");
}

TEST(HostileGguf, OutOfRangeHyperParametersAreRefused) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  write_synthetic_model(o, dir.file("tiny.gguf"));
  const std::string tiny = dir.file("tiny.gguf");
  struct Case {
    const char* name;
    std::function<void(GgufWriter&)> edit;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"eps_neg", [](GgufWriter& w) { w.set_f32("llama.attention.layer_norm_rms_epsilon", -1.f); },
       "the normalisation epsilon is -1; it must be a finite number in (0, 1]"},
      {"eps_nan", [](GgufWriter& w) { w.set_f32("llama.attention.layer_norm_rms_epsilon", NAN); },
       "the normalisation epsilon is nan"},
      // Found by fuzz_gguf: per-layer tables were sized by the count before it was checked
      // (922,746,880 layers: 2 GB and seconds before any error).
      {"layers_huge", [](GgufWriter& w) { w.set_u32("llama.block_count", 922746880u); },
       "metadata key 'llama.block_count' is 922746880: more than 4096 layers"},
      {"theta0", [](GgufWriter& w) { w.set_f32("llama.rope.freq_base", 0.f); }, "the RoPE base"},
      {"theta_neg", [](GgufWriter& w) { w.set_f32("llama.rope.freq_base", -10000.f); }, "the RoPE base"},
      {"theta_huge", [](GgufWriter& w) { w.set_f32("llama.rope.freq_base", 1e30f); }, "the RoPE base"},
      {"ctx", [](GgufWriter& w) { w.set("llama.context_length", GgufValue::make_u64(uint64_t{1} << 62)); },
       "metadata key 'llama.context_length' is 4611686018427387904, larger than 2147483647"},
      {"ctx2", [](GgufWriter& w) { w.set_u32("llama.context_length", 1u << 30); },
       "the context length is 1073741824, outside [1, 134217728]"},
      {"layers", [](GgufWriter& w) { w.set("llama.block_count", GgufValue::make_u64(uint64_t{1} << 31)); },
       "metadata key 'llama.block_count' is 2147483648, larger than 2147483647"},
      {"heads", [](GgufWriter& w) { w.set("llama.attention.head_count", GgufValue::make_u64(4611686018427387904ULL)); },
       "metadata key 'llama.attention.head_count' is 4611686018427387904, larger than"},
      {"heads2", [](GgufWriter& w) { w.set_u32("llama.attention.head_count", 128); },
       "attention.head_count 128 is larger than embedding_length 64"},
      {"keylen", [](GgufWriter& w) { w.set("llama.attention.key_length", GgufValue::make_u64(uint64_t{1} << 40)); },
       "metadata key 'llama.attention.key_length' is 1099511627776, larger than"},
      {"keylen2", [](GgufWriter& w) {
         w.set_u32("llama.attention.key_length", 1u << 30);
         w.set_u32("llama.attention.value_length", 1u << 30);
       }, "the head size is 1073741824, outside [1, 4096]"},
  };
  for (const Case& c : cases) {
    const std::string p = edit_gguf(tiny, dir.file(std::string(c.name) + ".gguf"), c.edit);
    const std::string e = load_error(p);
    EXPECT_HAS(e, std::string(c.name) + ".gguf: ");
    EXPECT_HAS(e, c.expect);
  }
  // Q8_0 weights with a NaN epsilon gave all-zero logits: refused at load as well.
  const std::string q8 = edit_gguf(tiny, dir.file("q8.gguf"), [](GgufWriter& w) {
    w.set_f32("llama.attention.layer_norm_rms_epsilon", NAN);
  }, {}, DType::Q8_0);
  EXPECT_HAS(load_error(q8), "q8.gguf: the normalisation epsilon is nan");
}

TEST(HostileHf, ConfigValuesThatOverflowOrLieAreRefused) {
  HfDir h;
  auto expect_error = [&](const json& edits, const std::string& want) {
    json c = h.config;
    c.merge_patch(edits);
    h.set_config(c);
    const std::string e = load_error(h.dir);
    EXPECT_HAS(e, "config.json: ");
    EXPECT_HAS(e, want);
  };
  expect_error({{"rope_theta", 0}}, "the RoPE base (rope_theta / rope.freq_base) is 0");
  expect_error({{"rope_theta", -5.0}}, "the RoPE base");
  expect_error({{"rope_theta", 1e30}}, "the RoPE base");
  expect_error({{"rms_norm_eps", -1}}, "the normalisation epsilon is -1");
  expect_error({{"max_position_embeddings", int64_t{1} << 62}},
               "field 'max_position_embeddings' is 4611686018427387904, larger than 2147483647");
  expect_error({{"max_position_embeddings", int64_t{1} << 30}}, "the context length is 1073741824");
  expect_error({{"head_dim", int64_t{1} << 40}}, "field 'head_dim' is 1099511627776, larger than");
  expect_error({{"head_dim", 1 << 20}}, "the head size is 1048576");
  expect_error({{"num_hidden_layers", int64_t{1} << 31}}, "field 'num_hidden_layers' is 2147483648, larger than");
  expect_error({{"num_hidden_layers", 100000}}, "field 'num_hidden_layers' is 100000: the layer count must be in [1, 4096]");
  expect_error({{"num_hidden_layers", 0}}, "field 'num_hidden_layers' must be positive, got 0");
  // Refused when read, before a per-layer sliding-window pattern of 2^31 - 1 entries is made.
  expect_error({{"num_hidden_layers", 2147483647}, {"sliding_window_pattern", 2}},
               "field 'num_hidden_layers' is 2147483647: the layer count must be in [1, 4096]");
  expect_error({{"_name_or_path", 5}}, "field '_name_or_path' must be a string, got 5");
  // GPT-2 without n_inner: 4 * n_embd must not overflow.
  json g = {{"architectures", {"GPT2LMHeadModel"}}, {"n_embd", int64_t{1} << 62}, {"n_layer", 2}, {"n_head", 4},
            {"n_positions", 64}, {"vocab_size", 512}};
  h.set_config(g);
  EXPECT_HAS(load_error(h.dir), "field 'n_embd' is 4611686018427387904, larger than 2147483647");
  // A key given twice: nlohmann would keep one silently.
  write_text(h.dir + "/config.json", h.config.dump().insert(1, "\"hidden_size\": 128, "));
  EXPECT_HAS(load_error(h.dir), "config.json: duplicate key 'hidden_size' at the top level");
}

TEST(HostileHf, TokenizerJsonTypesAndVocabularySize) {
  HfDir h;
  auto tokenizer_error = [&](const json& tok) {
    write_text(h.dir + "/tokenizer.json", tok.dump());
    auto m = Model::load(h.dir);
    try {
      m->tokenizer();
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
    ADD_FAILURE() << "tokenizer loaded";
    return std::string();
  };
  json vocab = json::object();
  for (int i = 0; i < 300; ++i) vocab["t" + std::to_string(i)] = i;
  json tok = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}},
              {"pre_tokenizer", {{"type", "ByteLevel"}}}};
  {
    write_text(h.dir + "/tokenizer.json", tok.dump());
    auto m = Model::load(h.dir);
    EXPECT_EQ(m->tokenizer().n_vocab(), 300);  // the sane file loads
  }
  json t = tok;
  t["model"]["type"] = 7;
  EXPECT_HAS(tokenizer_error(t), "tokenizer.json: field 'model.type' must be a string, got 7");
  t = tok;
  t["pre_tokenizer"]["add_prefix_space"] = "yes";
  EXPECT_HAS(tokenizer_error(t), "tokenizer.json: field 'add_prefix_space' must be true or false");
  t = tok;
  t["added_tokens"] = {{{"id", 5000}, {"content", "<big>"}, {"special", true}}};
  EXPECT_HAS(tokenizer_error(t), "the tokenizer has 5001 tokens but the embedding only 512 rows");
  // A few named ids and one far beyond them (found by fuzzing: every id up to the largest
  // got a token, 2 GB and 13 s for a 4 KB file).
  t = tok;
  t["model"]["vocab"]["<far>"] = 8888429;
  EXPECT_HAS(tokenizer_error(t), "tokenizer.json: token id 8888429 leaves 8888129 ids without a token for 301 named ones");
  t = tok;
  t["added_tokens"] = {{{"id", 1000000}, {"content", "<far>"}, {"special", true}}};
  EXPECT_HAS(tokenizer_error(t), "token id 1000000 leaves 999700 ids without a token for 301 named ones");
  t = tok;
  t["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", 3}}}}}}};
  EXPECT_HAS(tokenizer_error(t), "tokenizer.json: unexpected JSON structure");
  // Strings from the file reach the library's messages escaped (the Python module raises
  // them as they are); they were quoted raw.
  t = tok;
  t["model"]["type"] = "W\x1b[2J\u009b";
  std::string e = tokenizer_error(t);
  EXPECT_HAS(e, "tokenizer model type 'W\\x1b[2J\\xc2\\x9b' is not supported");
  t = tok;
  t["pre_tokenizer"]["type"] = "\n\x1b]0;x\x07";
  EXPECT_HAS(tokenizer_error(t), "unsupported pre-tokenizer type '\\n\\x1b]0;x\\x07'");
  t = tok;
  t["model"]["merges"] = {"t1\x1bt2"};
  EXPECT_HAS(tokenizer_error(t), "malformed merge 't1\\x1bt2' (no space)");
  json c = h.config;
  c["architectures"] = {"Evil\x1b[31mForCausalLM"};
  h.set_config(c);
  e = load_error(h.dir);
  EXPECT_HAS(e, "architecture 'Evil\\x1b[31mForCausalLM' is not supported");
  EXPECT_EQ(e.find('\x1b'), std::string::npos) << e;
}


// ---------------------------------------------------------------- the command line

void expect_error_line(const ProcessResult& r, const std::string& needle) {
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_HAS(r.err, needle);
}

// FIFOs and devices as inputs are refused at once (they blocked in open() or were read
// forever); outputs never replace a device; runs beyond the context are refused.
TEST(HostileCli, SpecialFilesContextAndOutputs) {
  TempDir dir;
  const std::string d = dir.path().string();
  SynthOptions o;
  o.preset = "tiny";
  const std::string model = dir.file("tiny.gguf");
  write_synthetic_model(o, model);
  const auto q = [](const std::string& s) { return "'" + s + "'"; };
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  std::filesystem::create_symlink("/dev/zero", dir.file("zero.txt"));
  write_text(dir.file("ids.txt"), "1 5 9 13");
  const std::string fifo = q(dir.file("fifo")), out = " --out " + q(dir.file("o.f32"));
  expect_error_line(run_cli("info " + fifo), "fifo: is a FIFO (named pipe), expected a regular file");
  expect_error_line(run_cli("logits " + q(model) + " --tokens " + fifo + out), "fifo: is a FIFO");
  expect_error_line(run_cli("logits " + q(model) + " --tokens " + q(dir.file("zero.txt")) + out),
                    "zero.txt: is a character device");
  expect_error_line(run_cli("perplexity " + q(model) + " --text-file " + fifo), "fifo: is a FIFO");
  expect_error_line(run_cli("tokenize " + q(model) + " --text-file " + q(dir.file("zero.txt"))),
                    "is a character device");
  expect_error_line(run_cli("eval-policy " + q(model) + " --data " + q(dir.file("zero.txt")) + " --out " + q(dir.file("r.json"))),
                    "is a character device");
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.f32")));

  // Outputs: a device is refused (it used to be replaced by a regular file via rename).
  expect_error_line(run_cli("logits " + q(model) + " --tokens " + q(dir.file("ids.txt")) + " --out /dev/null"),
                    "/dev/null: is a character device; outputs are written only to regular files");
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  expect_error_line(run_cli("logits " + q(model) + " --tokens " + q(dir.file("ids.txt")) + " --out " + fifo),
                    "is a FIFO");
  expect_error_line(run_cli("logits " + q(model) + " --tokens " + q(dir.file("ids.txt")) + " --out " +
                                q(dir.file("no/such/dir/o.f32"))),
                    "does not exist");

  // 513 tokens on a 512-token model: refused unless --beyond-context, then warned about.
  std::string many;
  for (int i = 0; i < 513; ++i) many += "7 ";
  write_text(dir.file("many.txt"), many);
  expect_error_line(run_cli("logits " + q(model) + " --tokens " + q(dir.file("many.txt")) + out),
                    "513 tokens exceed the model's context length of 512");
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.f32")));
  const ProcessResult r = run_cli("logits " + q(model) + " --tokens " + q(dir.file("many.txt")) + " --rows 512" + out +
                                  " --beyond-context");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_HAS(r.err, "warning: 513 tokens exceed the model's context length of 512");
  EXPECT_EQ(std::filesystem::file_size(dir.file("o.f32")), 512u * 4u);
}

// Safetensors offsets count from the end of a header of any length: with 1-3 spaces more
// in the header every tensor sits 1-3 bytes off, where the kernels' f32 / f16 / bf16
// loads were undefined behaviour (UBSan flagged them). The model binds copies of such
// tensors: every view it computes with is aligned, and the results are the bits of the
// aligned file.
TEST(HostileHf, UnalignedTensorDataIsCopiedAndGivesTheSameResults) {
  TempDir tmp;
  SynthOptions o;
  o.preset = "tiny";
  o.dtype = DType::F32;
  write_synthetic_model(o, tmp.file("tiny.gguf"));
  const std::vector<int32_t> tokens = {1, 5, 9, 20, 3};
  auto logits_of = [&](const std::string& dir) {
    auto m = Model::load(dir);
    KVCache c = m->make_cache(8);
    std::vector<float> l;
    m->forward(tokens, c, {}, l);
    return l;
  };
  for (DType ft : {DType::F32, DType::F16, DType::BF16}) {
    const std::string base = tmp.file(std::string("hf-") + dtype_name(ft));
    std::filesystem::create_directories(base);
    HfConvertOptions opt;
    opt.float_type = ft;
    write_hf_dir_from_gguf(tmp.file("tiny.gguf"), base, opt);
    const std::vector<float> want = logits_of(base);
    ASSERT_FALSE(want.empty());
    const std::vector<uint8_t> file = read_bytes(base + "/model.safetensors");
    uint64_t header = 0;
    std::memcpy(&header, file.data(), 8);
    for (int shift = 1; shift <= 3; ++shift) {
      const std::string dir = base + "-shift" + std::to_string(shift);
      std::filesystem::create_directories(dir);
      std::filesystem::copy_file(base + "/config.json", dir + "/config.json");
      std::vector<uint8_t> out(8);
      const uint64_t len = header + static_cast<uint64_t>(shift);
      std::memcpy(out.data(), &len, 8);
      out.insert(out.end(), file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(header));
      out.insert(out.end(), static_cast<size_t>(shift), ' ');  // JSON allows trailing spaces
      out.insert(out.end(), file.begin() + 8 + static_cast<std::ptrdiff_t>(header), file.end());
      write_bytes(dir + "/model.safetensors", out.data(), out.size());

      // Every view the forward pass reads is aligned for its type.
      ModelConfig cfg = config_from_hf_json(dir + "/config.json");
      auto source = open_safetensors_dir(dir);
      hf_tie_from_storage(cfg, dir + "/config.json", *source);
      const ModelWeights w = bind_weights(cfg, *source, NameStyle::HuggingFace);
      const uintptr_t need = ft == DType::F32 ? 4 : 2;
      auto aligned = [&](const void* p, uintptr_t a) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % a == 0; };
      EXPECT_TRUE(aligned(w.token_embd->data, need)) << dtype_name(ft) << " shift " << shift;
      EXPECT_TRUE(aligned(w.output.w.data, need));
      EXPECT_TRUE(aligned(w.output_norm.weight, 4));
      for (const LayerWeights& l : w.layers) {
        for (const Linear* lin : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down})
          EXPECT_TRUE(aligned(lin->w.data, need)) << dtype_name(ft) << " shift " << shift;
        EXPECT_TRUE(aligned(l.attn_norm.weight, 4));
        EXPECT_TRUE(aligned(l.ffn_norm.weight, 4));
      }
      EXPECT_FALSE(w.realigned.empty()) << dtype_name(ft) << " shift " << shift;

      const std::vector<float> got = logits_of(dir);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0) << dtype_name(ft) << " shift " << shift;
    }
  }
}

// A NaN produced inside a layer (here by a NaN weight of ffn_up) reached the quantised
// ffn_down as an activation; its Q8_0 quantisation turned the NaN into a finite number,
// so the hidden state, the checks and the logits were all finite: a silent wrong result.
// The activation quantisers now give a block holding NaN or Inf the scale NaN, and the
// check after the layer names it.
TEST(HostileGguf, NaNInsideAQuantisedLayerIsNotHidden) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  write_synthetic_model(o, dir.file("tiny.gguf"));
  const std::string path = dir.file("up.gguf");
  {
    GgufFile src(dir.file("tiny.gguf"));
    GgufWriter w;
    for (const auto& [k, v] : src.metadata()) w.set(k, v);
    for (const TensorInfo& t : src.tensors()) {
      std::vector<float> f(t.numel());
      ops::dequantize_row(t.dtype, t.data, f.data(), t.numel());
      // ffn_up in f32 with one NaN; every other matrix in Q8_0 (ffn_down included).
      DType type = t.shape.size() == 1 ? DType::F32 : DType::Q8_0;
      if (t.name == "blk.0.ffn_up.weight") {
        f[3] = NAN;
        type = DType::F32;
      }
      add_f32_tensor(w, t.name, type, t.shape, f.data());
    }
    w.write(path);
  }
  for (const char* simd : {"portable", "native"}) {
    std::optional<cpu::ScopedLevel> level;
    if (std::string(simd) == "portable") level.emplace(cpu::Level::Portable);
    EXPECT_HAS(forward_error(path, {1, 5, 9}, /*logits=*/false),
               "up.gguf: the hidden state after layer 0 (tensors blk.0.*) holds NaN or Inf")
        << simd;
  }
}

}  // namespace
}  // namespace attnsparse
