// ModelConfig from GGUF metadata, with llama.cpp's key names.
#include <fmt/format.h>

#include <climits>
#include <cmath>

#include "core/error.h"
#include "core/text.h"
#include "io/gguf.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/config_validate.h"

namespace attnsparse {

const char* rope_layout_name(RopeLayout layout) {
  switch (layout) {
    case RopeLayout::None: return "none";
    case RopeLayout::Adjacent: return "adjacent";
    case RopeLayout::HalfSplit: return "half-split";
  }
  return "?";
}

namespace {

// Every integer hyper-parameter is at most 2^31 - 1 when read, so products formed from
// them (head_count x key_length, ...) cannot overflow; validate_config checks sane limits.
int64_t bounded(const GgufFile& f, const std::string& key, int64_t v) {
  if (v > INT32_MAX) fail_file(f.path(), "metadata key '{}' is {}, larger than {}", key, v, INT32_MAX);
  return v;
}

int64_t require_int(const GgufFile& f, const std::string& key) {
  auto v = f.get_int(key);
  if (!v) fail_file(f.path(), "missing metadata key '{}'", key);
  if (*v <= 0) fail_file(f.path(), "metadata key '{}' must be positive, got {}", key, *v);
  return bounded(f, key, *v);
}

}  // namespace

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  c.source_format = "gguf";
  c.arch = f.architecture();
  const ArchInfo* info = find_arch(c.arch);
  if (info == nullptr)
    fail_file(f.path(), "architecture '{}' is not supported ({})", printable(c.arch, 60), supported_arch_list());
  const std::string a = c.arch + ".";
  c.name = f.get_string("general.name").value_or("");
  c.n_ctx = require_int(f, a + "context_length");
  c.n_embd = require_int(f, a + "embedding_length");
  c.n_layer = require_int(f, a + "block_count");
  if (c.n_layer > kMaxLayers)  // before anything is sized by it
    fail_file(f.path(), "metadata key '{}' is {}: more than {} layers", a + "block_count", c.n_layer, kMaxLayers);
  c.n_ff = require_int(f, a + "feed_forward_length");
  c.n_head = require_int(f, a + "attention.head_count");
  c.n_kv_head = bounded(f, a + "attention.head_count_kv", f.get_int(a + "attention.head_count_kv").value_or(c.n_head));
  if (c.n_kv_head <= 0 || c.n_head % c.n_kv_head != 0)
    fail_file(f.path(), "attention.head_count_kv {} does not divide head_count {}", c.n_kv_head,
              c.n_head);
  c.head_dim = bounded(f, a + "attention.key_length", f.get_int(a + "attention.key_length").value_or(c.n_embd / c.n_head));
  if (c.n_head > c.n_embd && !f.get_int(a + "attention.key_length"))
    fail_file(f.path(), "attention.head_count {} is larger than embedding_length {}", c.n_head, c.n_embd);
  if (c.head_dim <= 0 || (!f.get_int(a + "attention.key_length") && c.n_embd % c.n_head != 0))
    fail_file(f.path(), "embedding_length {} is not a multiple of head_count {}", c.n_embd,
              c.n_head);
  if (auto vl = f.get_int(a + "attention.value_length"); vl && *vl != c.head_dim)
    fail_file(f.path(), "attention.value_length {} differs from key_length {}", *vl, c.head_dim);

  if (info->norm == NormKind::LayerNorm) {
    auto eps = f.get_float(a + "attention.layer_norm_epsilon");
    if (!eps) fail_file(f.path(), "missing metadata key '{}'", a + "attention.layer_norm_epsilon");
    c.norm_eps = static_cast<float>(*eps);
  } else {
    auto eps = f.get_float(a + "attention.layer_norm_rms_epsilon");
    if (!eps)
      fail_file(f.path(), "missing metadata key '{}'", a + "attention.layer_norm_rms_epsilon");
    c.norm_eps = static_cast<float>(*eps);
  }
  // llama.cpp's converter permutes llama Q/K rows so that RoPE rotates adjacent pairs;
  // the other families keep the Hugging Face half-split ("neox") layout.
  c.rope_layout = info->gguf_rope;
  if (c.rope_layout != RopeLayout::None) {
    c.rope_dim = bounded(f, a + "rope.dimension_count", f.get_int(a + "rope.dimension_count").value_or(c.head_dim));
    if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
      fail_file(f.path(), "rope.dimension_count {} is invalid for head size {}", c.rope_dim,
                c.head_dim);
    c.rope_base = static_cast<float>(f.get_float(a + "rope.freq_base").value_or(10000.0));
    if (auto type = f.get_string(a + "rope.scaling.type"); type && *type != "none") {
      c.rope_scaling.type = *type;
      if (*type != "linear" && *type != "llama3" && *type != "yarn")
        fail_file(f.path(), "rope scaling type '{}' is not supported (linear, llama3, yarn)", printable(*type, 60));
    }
    if (auto factor = f.get_float(a + "rope.scaling.factor")) {
      c.rope_scaling.factor = static_cast<float>(*factor);
      if (c.rope_scaling.factor <= 0)
        fail_file(f.path(), "rope.scaling.factor must be positive");
      if (c.rope_scaling.type.empty() && *factor != 1.0) c.rope_scaling.type = "linear";
    }
    if (auto scale = f.get_float(a + "rope.scale_linear")) {
      c.rope_scaling.type = "linear";
      c.rope_scaling.factor = static_cast<float>(*scale);
    }
    if (auto orig = f.get_int(a + "rope.scaling.original_context_length"))
      c.rope_scaling.original_context = *orig;
    if (c.rope_scaling.type == "yarn") {
      // llama.cpp's defaults where the converter wrote nothing (ext_factor is 1 for yarn).
      c.rope_scaling.beta_fast =
          static_cast<float>(f.get_float(a + "rope.scaling.yarn_beta_fast").value_or(32.0));
      c.rope_scaling.beta_slow =
          static_cast<float>(f.get_float(a + "rope.scaling.yarn_beta_slow").value_or(1.0));
      c.rope_scaling.attn_factor =
          static_cast<float>(f.get_float(a + "rope.scaling.yarn_attn_factor").value_or(1.0));
      if (auto ext = f.get_float(a + "rope.scaling.yarn_ext_factor"); ext && *ext != 1.0)
        fail_file(f.path(), "rope.scaling.yarn_ext_factor {} is not supported (1)", *ext);
    }
    // As llama.cpp: a scaling factor in the file always scales positions linearly.
    if (c.rope_scaling.factor != 1.f) c.rope_freq_scale = 1.f / c.rope_scaling.factor;
    // Llama 3 scaling arrives as per-pair divisors in rope_freqs.weight.
    if (f.find("rope_freqs.weight") != nullptr) c.rope_scaling.type = "llama3";
  }
  c.qkv_bias = info->qkv_bias;

  // Experts.
  if (info->moe != MoeUse::None) {
    c.n_expert = bounded(f, a + "expert_count", f.get_int(a + "expert_count").value_or(0));
    if (c.n_expert < 0) fail_file(f.path(), "metadata key '{}expert_count' must be >= 0", a);
    if (c.n_expert == 0 && info->moe == MoeUse::Always)
      fail_file(f.path(), "missing metadata key '{}'", a + "expert_count");
    if (c.n_expert > 0) {
      c.n_expert_used = require_int(f, a + "expert_used_count");
      if (c.n_expert_used > c.n_expert)
        fail_file(f.path(), "expert_used_count {} exceeds expert_count {}", c.n_expert_used,
                  c.n_expert);
      c.n_ff_expert = bounded(f, a + "expert_feed_forward_length", f.get_int(a + "expert_feed_forward_length").value_or(c.n_ff));
      if (c.n_ff_expert <= 0)
        fail_file(f.path(), "metadata key '{}' must be positive", a + "expert_feed_forward_length");
    }
  }
  // Soft-capping (gemma2).
  if (info->softcap) {
    for (auto [key, dst] : {std::pair{"attn_logit_softcapping", &c.attn_softcap},
                            std::pair{"final_logit_softcapping", &c.final_softcap}}) {
      if (auto v = f.get_float(a + key)) {
        if (!(*v >= 0) || !std::isfinite(*v))
          fail_file(f.path(), "metadata key '{}' must be a finite number >= 0", a + key);
        *dst = static_cast<float>(*v);
      }
    }
  }
  // Gemma's attention scale: llama.cpp uses 1/sqrt(n_embd / n_head) for the 27B sizes
  // (gemma2 46 layers, gemma3 62 layers), 1/sqrt(head_dim) otherwise (finalize_config).
  for (int64_t layers : info->embd_head_scale_layers)
    if (c.n_layer == layers) c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.n_embd / c.n_head));
  // Sliding window and its layer pattern (a period or per-layer flags).
  std::vector<bool> pattern;
  if (info->swa_period >= 0) {
    if (auto w = f.get_int(a + "attention.sliding_window")) {
      if (*w < 0) fail_file(f.path(), "metadata key '{}' must be >= 0", a + "attention.sliding_window");
      c.sliding_window = *w;
    }
    const std::string pk = a + "attention.sliding_window_pattern";
    const GgufValue* pv = f.find_meta(pk);
    if (pv != nullptr && pv->type == GgufType::ARRAY) {
      const GgufArray* arr = &pv->as_array();
      if (static_cast<int64_t>(arr->values.size()) != c.n_layer)
        fail_file(f.path(), "metadata key '{}' has {} entries for {} layers", pk,
                  arr->values.size(), c.n_layer);
      for (const GgufValue& v : arr->values) {
        if (!v.is_integer() && v.type != GgufType::BOOL)
          fail_file(f.path(), "metadata key '{}' must hold integers or booleans", pk);
        pattern.push_back(v.type == GgufType::BOOL ? v.as_bool() : v.as_int() != 0);
      }
    } else if (auto period = f.get_int(pk)) {
      if (*period < 0) fail_file(f.path(), "metadata key '{}' must be >= 0", pk);
      pattern = swa_pattern_from_period(c.n_layer, *period);
    }
    if (info->swa_rope_base)
      if (auto b = f.get_float(a + "rope.freq_base_swa")) c.rope_base_swa = static_cast<float>(*b);
  }
  for (const std::string& t : info->unsupported_tensors)
    if (f.find(t)) fail_file(f.path(), "tensor '{}': this {} variant is not supported", t, c.arch);

  const TensorInfo& embd = f.require("token_embd.weight");
  if (embd.shape.size() != 2)
    fail_file(f.path(), "tensor 'token_embd.weight' must have 2 dimensions");
  c.n_vocab = embd.shape[0];
  c.tied_output = f.find("output.weight") == nullptr;
  finalize_config(c, pattern);
  return c;
}

}  // namespace attnsparse
