// ModelConfig from a Hugging Face config.json.
#include <nlohmann/json.hpp>

#include <climits>

#include "core/error.h"
#include "core/text.h"
#include "io/json_file.h"
#include "model/config.h"

namespace attnsparse {
namespace {

using nlohmann::json;

// Every integer hyper-parameter is at most 2^31 - 1 when read, so the products formed from
// them below and in validate_config cannot overflow (the sane limits are checked there).
constexpr int64_t kMaxConfigInt = INT32_MAX;

struct Fields {
  const json& j;
  const std::string& path;

  const json* find(const char* key) const {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
  }
  int64_t get_int(const char* key) const {
    const json* v = find(key);
    if (!v) fail_file(path, "missing field '{}'", key);
    return as_int(key, *v);
  }
  int64_t get_int_or(const char* key, int64_t dflt) const {
    const json* v = find(key);
    return v ? as_int(key, *v) : dflt;
  }
  int64_t as_int(const char* key, const json& v) const {
    if (!v.is_number_integer())
      fail_file(path, "field '{}' must be an integer, got {}", key, printable(v.dump(), 60));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(kMaxConfigInt))
      fail_file(path, "field '{}' is {}, larger than {}", key, v.dump(), kMaxConfigInt);
    int64_t x = v.get<int64_t>();
    if (x <= 0) fail_file(path, "field '{}' must be positive, got {}", key, x);
    if (x > kMaxConfigInt) fail_file(path, "field '{}' is {}, larger than {}", key, x, kMaxConfigInt);
    return x;
  }
  double get_float(const char* key) const {
    const json* v = find(key);
    if (!v) fail_file(path, "missing field '{}'", key);
    return as_float(key, *v);
  }
  double get_float_or(const char* key, double dflt) const {
    const json* v = find(key);
    return v ? as_float(key, *v) : dflt;
  }
  double as_float(const char* key, const json& v) const {
    if (!v.is_number()) fail_file(path, "field '{}' must be a number, got {}", key, printable(v.dump(), 60));
    return v.get<double>();
  }
  bool get_bool_or(const char* key, bool dflt) const {
    const json* v = find(key);
    if (!v) return dflt;
    if (!v->is_boolean()) fail_file(path, "field '{}' must be true or false, got {}", key, printable(v->dump(), 60));
    return v->get<bool>();
  }
};

}  // namespace

ModelConfig config_from_hf_json(const std::string& path) {
  const json j = read_json_file(path);  // regular file, bounded, no duplicate keys
  if (!j.is_object()) fail_file(path, "expected a JSON object");
  Fields f{j, path};

  std::string hf_arch;
  if (const json* archs = f.find("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
      fail_file(path, "field 'architectures' must be a list of strings");
    hf_arch = (*archs)[0].get<std::string>();
  } else if (const json* mt = f.find("model_type"); mt && mt->is_string()) {
    const std::string t = mt->get<std::string>();
    if (t == "llama") hf_arch = "LlamaForCausalLM";
    else if (t == "mistral") hf_arch = "MistralForCausalLM";
    else if (t == "qwen2") hf_arch = "Qwen2ForCausalLM";
    else if (t == "gpt2") hf_arch = "GPT2LMHeadModel";
    else fail_file(path, "model_type '{}' is not supported", t);
  } else {
    fail_file(path, "missing field 'architectures'");
  }

  ModelConfig c;
  c.source_format = "hf";
  c.name = json_string_or(j, "_name_or_path", std::string(), path);
  if (hf_arch == "GPT2LMHeadModel") {
    c.arch = "gpt2";
    c.n_embd = f.get_int("n_embd");
    c.n_layer = f.get_int("n_layer");
    c.n_head = f.get_int("n_head");
    c.n_kv_head = c.n_head;
    c.n_ctx = f.get_int("n_positions");
    c.n_ff = f.get_int_or("n_inner", 4 * c.n_embd);
    c.norm_eps = static_cast<float>(f.get_float_or("layer_norm_epsilon", 1e-5));
    c.n_vocab = f.get_int("vocab_size");
    // GPT2LMHeadModel ties lm_head to wte unless the config says otherwise.
    c.tied_output = f.get_bool_or("tie_word_embeddings", true);
    c.rope_layout = RopeLayout::None;
    if (c.n_embd % c.n_head != 0)
      fail_file(path, "n_embd {} is not a multiple of n_head {}", c.n_embd, c.n_head);
    c.head_dim = c.n_embd / c.n_head;
    return c;
  }
  if (hf_arch == "LlamaForCausalLM" || hf_arch == "MistralForCausalLM") {
    c.arch = "llama";
  } else if (hf_arch == "Qwen2ForCausalLM") {
    c.arch = "qwen2";
    c.qkv_bias = true;
  } else {
    fail_file(path, "architecture '{}' is not supported (LlamaForCausalLM, MistralForCausalLM, "
                    "Qwen2ForCausalLM, GPT2LMHeadModel)", hf_arch);
  }
  c.n_embd = f.get_int("hidden_size");
  c.n_layer = f.get_int("num_hidden_layers");
  c.n_head = f.get_int("num_attention_heads");
  c.n_kv_head = f.get_int_or("num_key_value_heads", c.n_head);
  c.n_ff = f.get_int("intermediate_size");
  c.n_vocab = f.get_int("vocab_size");
  c.n_ctx = f.get_int("max_position_embeddings");
  c.norm_eps = static_cast<float>(f.get_float("rms_norm_eps"));
  c.tied_output = f.get_bool_or("tie_word_embeddings", false);
  if (c.n_head % c.n_kv_head != 0)
    fail_file(path, "num_key_value_heads {} does not divide num_attention_heads {}", c.n_kv_head,
              c.n_head);
  if (f.find("head_dim")) {
    c.head_dim = f.get_int("head_dim");
  } else {
    if (c.n_embd % c.n_head != 0)
      fail_file(path, "hidden_size {} is not a multiple of num_attention_heads {}", c.n_embd,
                c.n_head);
    c.head_dim = c.n_embd / c.n_head;
  }
  if (c.head_dim % 2 != 0) fail_file(path, "head size {} must be even for RoPE", c.head_dim);
  c.rope_layout = RopeLayout::HalfSplit;  // Hugging Face checkpoints rotate halves
  c.rope_dim = c.head_dim;
  c.rope_base = static_cast<float>(f.get_float_or("rope_theta", 10000.0));
  if (const json* rs = f.find("rope_scaling")) {
    if (!rs->is_object()) fail_file(path, "field 'rope_scaling' must be an object or null");
    Fields r{*rs, path};
    std::string type;
    for (const char* key : {"rope_type", "type"}) {
      if (const json* t = r.find(key)) {
        if (!t->is_string()) fail_file(path, "field 'rope_scaling.{}' must be a string", key);
        type = t->get<std::string>();
        break;
      }
    }
    if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = static_cast<float>(r.get_float("factor"));
      c.rope_scaling.low_freq_factor = static_cast<float>(r.get_float("low_freq_factor"));
      c.rope_scaling.high_freq_factor = static_cast<float>(r.get_float("high_freq_factor"));
      c.rope_scaling.original_context = r.get_int("original_max_position_embeddings");
      if (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor)
        fail_file(path, "rope_scaling.high_freq_factor must exceed low_freq_factor");
    } else if (type == "linear") {
      c.rope_scaling.type = "linear";
      c.rope_scaling.factor = static_cast<float>(r.get_float("factor"));
      if (c.rope_scaling.factor <= 0) fail_file(path, "rope_scaling.factor must be positive");
      c.rope_freq_scale = 1.f / c.rope_scaling.factor;
    } else if (type != "default" && !type.empty()) {
      fail_file(path, "rope_scaling type '{}' is not supported (linear, llama3)", type);
    }
    if (c.rope_scaling.type == "llama3" && c.rope_scaling.factor <= 0)
      fail_file(path, "rope_scaling.factor must be positive");
  }
  return c;
}

}  // namespace attnsparse
