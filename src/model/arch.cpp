// The architecture table (model/arch.h) and the per-layer attention pattern.
#include "model/arch.h"
#include "model/config_validate.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "model/forward.h"
#include "model/weights.h"

namespace attnsparse {
namespace {

// llama-style HF names (Llama, Mistral, Qwen2/3, Mixtral, Qwen3-MoE).
std::map<std::string, std::string> llama_hf_names() {
  return {
      {"token_embd", "model.embed_tokens"},     {"output_norm", "model.norm"},
      {"output", "lm_head"},                    {"attn_norm", "input_layernorm"},
      {"attn_q", "self_attn.q_proj"},           {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},           {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"},      {"attn_k_norm", "self_attn.k_norm"},
      {"ffn_norm", "post_attention_layernorm"}, {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},                {"ffn_down", "mlp.down_proj"},
  };
}

std::vector<ArchInfo> build_table() {
  std::vector<ArchInfo> t;
  {
    ArchInfo a;
    a.name = "llama";
    a.hf_names = {"LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"};
    a.model_type = "llama";
    a.summary = "Llama 2/3, Mistral, Mixtral (experts), TinyLlama, SmolLM";
    a.gguf_rope = RopeLayout::Adjacent;  // llama.cpp's converter permutes Q/K
    a.moe = MoeUse::IfPresent;
    a.swa_period = 0;  // Mistral: every layer when the file sets a window
    a.bind = bind_llama_weights;
    a.layer = llama_layer;
    a.hf_n_expert_key = "num_local_experts";
    a.hf_tensors = llama_hf_names();
    a.hf_tensors.insert({{"ffn_gate_inp", "block_sparse_moe.gate"},
                         {"ffn_gate_exps", "block_sparse_moe.experts.{e}.w1"},
                         {"ffn_up_exps", "block_sparse_moe.experts.{e}.w3"},
                         {"ffn_down_exps", "block_sparse_moe.experts.{e}.w2"}});
    t.push_back(a);
  }
  {
    ArchInfo a;
    a.name = "qwen2";
    a.hf_names = {"Qwen2ForCausalLM"};
    a.model_type = "qwen2";
    a.summary = "Qwen2 / Qwen2.5 (q/k/v biases)";
    a.qkv_bias = true;
    a.bind = bind_llama_weights;
    a.layer = llama_layer;
    a.hf_tensors = llama_hf_names();
    t.push_back(a);
  }
  {
    ArchInfo a;
    a.name = "qwen3";
    a.hf_names = {"Qwen3ForCausalLM"};
    a.model_type = "qwen3";
    a.summary = "Qwen3 (per-head q/k RMSNorm)";
    a.qk_norm = true;
    a.bind = bind_llama_weights;
    a.layer = llama_layer;
    a.hf_tensors = llama_hf_names();
    t.push_back(a);
  }
  {
    ArchInfo a;
    a.name = "qwen3moe";
    a.hf_names = {"Qwen3MoeForCausalLM"};
    a.model_type = "qwen3_moe";
    a.summary = "Qwen3-MoE (q/k norm, experts in every layer)";
    a.qk_norm = true;
    a.moe = MoeUse::Always;
    a.hf_n_expert_key = "num_experts";
    a.hf_ff_expert_key = "moe_intermediate_size";
    a.hf_norm_topk_key = true;
    a.bind = bind_llama_weights;
    a.layer = llama_layer;
    a.hf_tensors = llama_hf_names();
    a.hf_tensors.insert({{"ffn_gate_inp", "mlp.gate"},
                         {"ffn_gate_exps", "mlp.experts.{e}.gate_proj"},
                         {"ffn_up_exps", "mlp.experts.{e}.up_proj"},
                         {"ffn_down_exps", "mlp.experts.{e}.down_proj"}});
    t.push_back(a);
  }
  for (const char* name : {"gemma2", "gemma3"}) {
    ArchInfo a;
    a.name = name;
    const bool g3 = a.name == "gemma3";
    a.hf_names = {g3 ? "Gemma3ForCausalLM" : "Gemma2ForCausalLM"};
    a.model_type = g3 ? "gemma3_text" : "gemma2";
    a.summary = g3 ? "Gemma 3 text (q/k norm, window pattern with its own RoPE base)"
                   : "Gemma 2 (attention and final logit soft-capping, alternating window)";
    a.ffn = FfnKind::GeGLU;
    a.qk_norm = g3;
    a.post_norms = true;
    a.embd_scale = true;
    a.hf_norm_plus_one = true;
    a.swa_period = g3 ? 6 : 2;
    a.swa_rope_base = g3;
    a.softcap = !g3;
    a.embd_head_scale_layers = {g3 ? 62 : 46};  // the 27B sizes
    a.hf_query_pre_attn_scalar = true;
    a.bind = bind_gemma_weights;
    a.layer = gemma_layer;
    a.hf_tensors = llama_hf_names();
    a.hf_tensors["post_attention_norm"] = "post_attention_layernorm";
    a.hf_tensors["ffn_norm"] = "pre_feedforward_layernorm";
    a.hf_tensors["post_ffw_norm"] = "post_feedforward_layernorm";
    t.push_back(a);
  }
  {
    ArchInfo a;
    a.name = "phi3";
    a.hf_names = {"Phi3ForCausalLM"};
    a.model_type = "phi3";
    a.summary = "Phi-3 (fused qkv and gate|up)";
    a.fused_qkv = true;
    a.fused_gate_up = true;
    a.swa_period = 0;
    a.unsupported_tensors = {"rope_factors_long.weight", "rope_factors_short.weight"};  // LongRoPE
    a.bind = bind_phi3_weights;
    a.layer = phi3_layer;
    a.hf_tensors = {
        {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"},
        {"output", "lm_head"},                {"attn_norm", "input_layernorm"},
        {"attn_qkv", "self_attn.qkv_proj"},   {"attn_output", "self_attn.o_proj"},
        {"ffn_norm", "post_attention_layernorm"}, {"ffn_up", "mlp.gate_up_proj"},
        {"ffn_down", "mlp.down_proj"},
    };
    t.push_back(a);
  }
  {
    ArchInfo a;
    a.name = "gpt2";
    a.hf_names = {"GPT2LMHeadModel"};
    a.model_type = "gpt2";
    a.summary = "GPT-2 (learned positions, LayerNorm, fused qkv)";
    a.norm = NormKind::LayerNorm;
    a.ffn = FfnKind::Gelu;
    a.learned_positions = true;
    a.gguf_rope = RopeLayout::None;
    a.fused_qkv = true;
    a.bind = bind_gpt2_weights;
    a.layer = gpt2_layer;
    a.hf_layer_prefix = "transformer.h.";
    a.hf_tensors = {
        {"token_embd", "transformer.wte"}, {"position_embd", "transformer.wpe"},
        {"output_norm", "transformer.ln_f"}, {"attn_norm", "ln_1"},
        {"attn_qkv", "attn.c_attn"},       {"attn_output", "attn.c_proj"},
        {"ffn_norm", "ln_2"},              {"ffn_up", "mlp.c_fc"},
        {"ffn_down", "mlp.c_proj"},        {"output", "lm_head"},  // only when untied
    };
    t.push_back(a);
  }
  return t;
}

}  // namespace

const std::vector<ArchInfo>& arch_table() {
  static const std::vector<ArchInfo> table = build_table();
  return table;
}

const ArchInfo* find_arch(const std::string& name) {
  for (const ArchInfo& a : arch_table())
    if (a.name == name) return &a;
  return nullptr;
}

const ArchInfo& arch_info(const std::string& name) {
  const ArchInfo* a = find_arch(name);
  if (a == nullptr) fail("architecture '{}' is not supported ({})", name, supported_arch_list());
  return *a;
}

const ArchInfo* find_hf_arch(const std::string& hf_name) {
  for (const ArchInfo& a : arch_table()) {
    if (a.model_type == hf_name) return &a;
    for (const std::string& n : a.hf_names)
      if (n == hf_name) return &a;
  }
  if (hf_name == "mistral" || hf_name == "mixtral") return find_arch("llama");
  return nullptr;
}

std::string supported_arch_list(bool hf) {
  std::string s;
  for (const ArchInfo& a : arch_table()) {
    if (hf) {
      for (const std::string& n : a.hf_names) s += (s.empty() ? "" : ", ") + n;
    } else {
      s += (s.empty() ? "" : ", ") + a.name;
    }
  }
  return s;
}

void finalize_config(ModelConfig& c, const std::vector<bool>& pattern) {
  const ArchInfo& a = arch_info(c.arch);
  if (c.attn_scale == 0.f) c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (c.rope_base_swa == 0.f) c.rope_base_swa = a.swa_rope_base ? 10000.f : c.rope_base;
  if (const char* env = std::getenv("ATTNSPARSE_SLIDING_WINDOW")) {
    const std::string v = env;
    if (v == "off" || v == "0") c.sliding_window_applied = false;
    else if (v == "on" || v == "1" || v.empty()) c.sliding_window_applied = true;
    else fail("ATTNSPARSE_SLIDING_WINDOW must be 'on' or 'off', got '{}'", v);
  }
  // A layer count validate_config will refuse (naming the file) sizes nothing here.
  if (c.n_layer < 1 || c.n_layer > kMaxLayers) return;
  c.layers.assign(c.n_layer, LayerAttention{false, 0, c.rope_base});
  if (c.sliding_window <= 0 || a.swa_period < 0) return;
  if (!pattern.empty() && static_cast<int64_t>(pattern.size()) != c.n_layer)
    fail("sliding-window pattern has {} entries for {} layers", pattern.size(), c.n_layer);
  const int p = a.swa_period;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const bool windowed = !pattern.empty() ? pattern[l] : (p == 0 || l % p < p - 1);
    if (!windowed) continue;
    c.layers[l].sliding = true;
    c.layers[l].window = c.sliding_window_applied ? c.sliding_window : 0;
    c.layers[l].rope_base = c.rope_base_swa;
  }
}

std::vector<bool> swa_pattern_from_period(int64_t n_layer, int64_t period) {
  std::vector<bool> p(n_layer);
  for (int64_t l = 0; l < n_layer; ++l) p[l] = period == 0 || l % period < period - 1;
  return p;
}

std::string layer_kind_string(const ModelConfig& c, int layer) {
  const LayerAttention& la = c.layers.at(layer);
  std::string kind = la.window > 0 ? fmt::format("window {}", la.window)
                     : la.sliding ? fmt::format("window {} (turned off)", c.sliding_window)
                                  : std::string("global");
  if (c.rope_layout != RopeLayout::None) kind += fmt::format(", rope base {:g}", la.rope_base);
  return kind;
}

}  // namespace attnsparse
