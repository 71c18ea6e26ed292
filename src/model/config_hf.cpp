// ModelConfig from a Hugging Face config.json.
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include <climits>

#include "core/error.h"
#include "core/text.h"
#include "io/json_file.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/config_validate.h"

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
  // A layer count, checked as soon as it is read: per-layer tables are sized by it.
  int64_t get_layer_count(const char* key) const {
    const int64_t v = get_int(key);
    if (v < 1 || v > kMaxLayers)
      fail_file(path, "field '{}' is {}: the layer count must be in [1, {}]", key, v, kMaxLayers);
    return v;
  }
  int64_t get_int_or(const char* key, int64_t dflt) const {
    const json* v = find(key);
    return v ? as_int(key, *v) : dflt;
  }
  int64_t as_int(const char* key, const json& v) const {
    if (!v.is_number_integer())
      fail_file(path, "field '{}' must be an integer, got {}", key, printable(v.dump(), 60));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(kMaxConfigInt))
      fail_file(path, "field '{}' is {}, larger than {}", key, printable(v.dump(), 60), kMaxConfigInt);
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

// The fields of one family beyond the llama ones: softcaps, windows, experts.
void read_family_fields(const Fields& f, const ArchInfo& info, ModelConfig& c) {
  const std::string& path = f.path;
  if (info.hf_query_pre_attn_scalar) {
    if (f.find("query_pre_attn_scalar"))
      c.attn_scale = static_cast<float>(1.0 / std::sqrt(f.get_float("query_pre_attn_scalar")));
    if (!(c.attn_scale >= 0) || !std::isfinite(c.attn_scale))
      fail_file(path, "field 'query_pre_attn_scalar' must be positive");
  }
  // Soft-capping as the config asks (transformers applies it wherever it is set).
  for (auto [key, dst] : {std::pair{"attn_logit_softcapping", &c.attn_softcap},
                          std::pair{"final_logit_softcapping", &c.final_softcap}}) {
    const double v = f.get_float_or(key, 0.0);
    if (!(v >= 0) || !std::isfinite(v)) fail_file(path, "field '{}' must be >= 0", key);
    *dst = static_cast<float>(v);
  }
  if (info.swa_rope_base)
    c.rope_base_swa = static_cast<float>(f.get_float_or("rope_local_base_freq", 10000.0));
  if (info.ffn == FfnKind::GeGLU) {
    for (const char* key : {"hidden_activation", "hidden_act"}) {
      if (const json* act = f.find(key); act && act->is_string()) {
        const std::string a = act->get<std::string>();
        if (a != "gelu_pytorch_tanh" && a != "gelu_tanh")
          fail_file(path, "field '{}': activation '{}' is not supported (gelu_pytorch_tanh)", key, printable(a, 60));
        break;
      }
    }
  }
  if (info.swa_period >= 0) {
    c.sliding_window = f.get_int_or("sliding_window", 0);
  } else if (f.get_bool_or("use_sliding_window", false)) {
    fail_file(path, "field 'use_sliding_window': {}'s sliding window is not supported", info.name);
  }
  if (info.moe != MoeUse::None) {
    const char* n_key = info.hf_n_expert_key.c_str();
    c.n_expert = f.get_int_or(n_key, 0);
    if (c.n_expert == 0 && info.moe == MoeUse::Always) c.n_expert = f.get_int(n_key);
    if (c.n_expert > 0) {
      c.n_expert_used = f.get_int("num_experts_per_tok");
      if (c.n_expert_used > c.n_expert)
        fail_file(path, "num_experts_per_tok {} exceeds {} {}", c.n_expert_used, n_key, c.n_expert);
      c.n_ff_expert = info.hf_ff_expert_key.empty() ? c.n_ff : f.get_int(info.hf_ff_expert_key.c_str());
      // transformers' Qwen3-MoE default is false; Mixtral always renormalises.
      c.moe_norm_topk = info.hf_norm_topk_key ? f.get_bool_or("norm_topk_prob", false) : true;
      if (f.get_int_or("decoder_sparse_step", 1) != 1)
        fail_file(path, "field 'decoder_sparse_step': only 1 (experts in every layer) is supported");
      if (const json* mlp = f.find("mlp_only_layers"); mlp && !(mlp->is_array() && mlp->empty()))
        fail_file(path, "field 'mlp_only_layers': dense layers among expert layers are not supported");
    }
  }
}

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
    hf_arch = mt->get<std::string>();
    if (find_hf_arch(hf_arch) == nullptr) fail_file(path, "model_type '{}' is not supported", printable(hf_arch, 60));
  } else {
    fail_file(path, "missing field 'architectures'");
  }

  ModelConfig c;
  c.source_format = "hf";
  c.name = json_string_or(j, "_name_or_path", std::string(), path);
  const ArchInfo* info = find_hf_arch(hf_arch);
  if (info == nullptr)
    fail_file(path, "architecture '{}' is not supported ({})", printable(hf_arch, 60), supported_arch_list(true));
  c.arch = info->name;
  if (info->learned_positions) {
    c.n_embd = f.get_int("n_embd");
    c.n_layer = f.get_layer_count("n_layer");
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
    finalize_config(c, {});
    return c;
  }
  c.qkv_bias = info->qkv_bias;
  c.n_embd = f.get_int("hidden_size");
  c.n_layer = f.get_layer_count("num_hidden_layers");
  c.n_head = f.get_int("num_attention_heads");
  c.n_kv_head = f.get_int_or("num_key_value_heads", c.n_head);
  c.n_ff = f.get_int("intermediate_size");
  c.n_vocab = f.get_int("vocab_size");
  c.n_ctx = f.get_int("max_position_embeddings");
  c.norm_eps = static_cast<float>(f.get_float("rms_norm_eps"));
  // Gemma's config class ties by default; the others do not.
  c.tied_output = f.get_bool_or("tie_word_embeddings", info->embd_scale);
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
    } else if (type == "yarn") {
      // As transformers' YaRN: factor, original_max_position_embeddings (else the model's
      // max_position_embeddings), beta_fast 32, beta_slow 1; the cos/sin scale is
      // attention_factor when given, else mscale(factor, mscale) / mscale(factor,
      // mscale_all_dim) with mscale(s, m) = 0.1 m ln s + 1, which is 0.1 ln s + 1 by default.
      c.rope_scaling.type = "yarn";
      c.rope_scaling.factor = static_cast<float>(r.get_float("factor"));
      if (!(c.rope_scaling.factor >= 1.f))
        fail_file(path, "rope_scaling.factor must be >= 1 for yarn");
      c.rope_freq_scale = 1.f / c.rope_scaling.factor;
      c.rope_scaling.original_context =
          r.find("original_max_position_embeddings")
              ? r.get_int("original_max_position_embeddings")
              : f.get_int_or("max_position_embeddings", c.rope_scaling.original_context);
      c.rope_scaling.beta_fast = static_cast<float>(r.get_float_or("beta_fast", 32.0));
      c.rope_scaling.beta_slow = static_cast<float>(r.get_float_or("beta_slow", 1.0));
      if (const json* t = r.find("truncate"); t && !(t->is_boolean() && t->get<bool>()))
        fail_file(path, "rope_scaling.truncate false is not supported");
      const double s = c.rope_scaling.factor;
      const auto mscale = [s](double m) { return s <= 1 ? 1.0 : 0.1 * m * std::log(s) + 1.0; };
      double total = mscale(1.0);
      if (r.find("attention_factor"))
        total = r.get_float("attention_factor");
      else if (r.find("mscale") || r.find("mscale_all_dim"))
        total = mscale(r.get_float_or("mscale", 1.0)) / mscale(r.get_float_or("mscale_all_dim", 0.0));
      // The rotation multiplies by attn_factor * (0.1 ln s + 1).
      c.rope_scaling.attn_factor = static_cast<float>(total / mscale(1.0));
    } else if (type != "default" && !type.empty()) {
      fail_file(path, "rope_scaling type '{}' is not supported (linear, llama3, yarn)", printable(type, 60));
    }
    if (c.rope_scaling.type == "llama3" && c.rope_scaling.factor <= 0)
      fail_file(path, "rope_scaling.factor must be positive");
  }
  read_family_fields(f, *info, c);
  std::vector<bool> pattern;
  if (const json* lt = f.find("layer_types")) {
    if (!lt->is_array() || static_cast<int64_t>(lt->size()) != c.n_layer)
      fail_file(path, "field 'layer_types' must be a list of {} strings", c.n_layer);
    for (const json& x : *lt) {
      if (!x.is_string()) fail_file(path, "field 'layer_types' must be a list of strings");
      const std::string kind = x.get<std::string>();
      if (kind != "sliding_attention" && kind != "full_attention")
        fail_file(path, "layer_types: '{}' is not supported (sliding_attention, full_attention)", printable(kind, 60));
      pattern.push_back(kind == "sliding_attention");
    }
  } else if (f.find("sliding_window_pattern")) {
    pattern = swa_pattern_from_period(c.n_layer, f.get_int("sliding_window_pattern"));
  }
  finalize_config(c, pattern);
  return c;
}

void hf_tie_from_storage(ModelConfig& c, const std::string& config_json_path,
                         const TensorSource& weights) {
  if (c.tied_output) return;
  // config_from_hf_json has read this file already; here only: is the flag there at all?
  const json j = read_json_file(config_json_path);
  if (j.is_object() && j.contains("tie_word_embeddings") && !j["tie_word_embeddings"].is_null())
    return;  // said explicitly: untied
  // No tie_word_embeddings (LlamaConfig's default is untied) but only one of the two
  // matrices stored: the checkpoint was saved with them tied.
  const bool gpt2 = c.arch == "gpt2";
  const bool embd = weights.find(gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight") ||
                    (gpt2 && weights.find("wte.weight"));
  const bool head = weights.find("lm_head.weight") != nullptr;
  if (embd != head) c.tied_output = true;
}

}  // namespace attnsparse
