// Bad model files and inputs: each gives a FormatError / Error naming the file and the
// problem, never a crash.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "model/hf_convert.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "model/synth.h"

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
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  h.set_config(c);
  EXPECT_HAS(load_error(h.dir), "rope_scaling type 'yarn' is not supported");
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
      w.add_tensor(t.name, DType::F32, t.shape, f.data());
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

}  // namespace
}  // namespace attnsparse
