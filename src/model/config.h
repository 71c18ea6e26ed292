// The model's hyper-parameters as plain data, filled from GGUF metadata or config.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/tensor_source.h"

namespace attnsparse {

class GgufFile;
class Llama2cFile;

enum class RopeLayout {
  None,         // learned absolute positions (gpt2)
  Adjacent,     // rotate pairs (0,1), (2,3), ... : llama in GGUF files (converter permuted Q/K)
  HalfSplit,    // rotate pairs (i, i + d/2): Hugging Face checkpoints, qwen2 in GGUF
};

struct RopeScaling {
  std::string type;  // "", "linear", "llama3", "yarn"
  float factor = 1.f;
  float low_freq_factor = 1.f;
  float high_freq_factor = 4.f;
  int64_t original_context = 8192;
  // YaRN: pairs rotating faster than beta_fast turns over original_context keep their
  // angle, slower than beta_slow are interpolated by 1/factor, a linear ramp between;
  // cos/sin are multiplied by attn_factor * (1 + 0.1 ln factor).
  float beta_fast = 32.f;
  float beta_slow = 1.f;
  float attn_factor = 1.f;
};

// How one layer's attention sees its keys (per-layer patterns of gemma2/gemma3, Mistral).
struct LayerAttention {
  bool sliding = false;     // the family windows this layer (window 0 when turned off)
  int64_t window = 0;       // native sliding window applied: keys with t - p < window (0 = all)
  float rope_base = 10000.f;
};

struct ModelConfig {
  std::string arch;        // GGUF architecture name: a row of the table in model/arch.h
  std::string name;
  int64_t n_vocab = 0;
  int64_t n_ctx = 0;       // training context length
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_kv_head = 0;
  int64_t head_dim = 0;
  int64_t n_ff = 0;
  float norm_eps = 1e-5f;
  bool tied_output = false;  // output projection reuses token_embd
  // RoPE
  RopeLayout rope_layout = RopeLayout::None;
  int64_t rope_dim = 0;      // rotated dimensions per head
  float rope_base = 10000.f;
  RopeScaling rope_scaling;
  float rope_freq_scale = 1.f;  // angles are multiplied by this (1 / linear scaling factor)
  bool qkv_bias = false;     // q/k/v projections carry biases (qwen2)
  std::string source_format;  // "gguf" or "hf"
  // Attention: score scale (1/sqrt(head_dim) unless the family says otherwise) and
  // logit soft-capping c tanh(s / c) of attention scores / final logits (0 = none).
  float attn_scale = 0.f;
  float attn_softcap = 0.f;
  float final_softcap = 0.f;
  // Sliding window as the file gives it (0 = none), the RoPE base of windowed layers, and
  // whether it is applied (ATTNSPARSE_SLIDING_WINDOW=off / --no-sliding-window turn it
  // off: every layer global, as llama.cpp runs Mistral and Phi-3).
  int64_t sliding_window = 0;
  float rope_base_swa = 0.f;
  bool sliding_window_applied = true;
  // Per layer: window and RoPE base (size n_layer; filled by finalize_config).
  std::vector<LayerAttention> layers;
  // Mixture of experts (n_expert == 0: dense FFN): router softmax over all experts, the
  // top n_expert_used computed, their weights renormalised to sum 1 (moe_norm_topk).
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_expert = 0;
  bool moe_norm_topk = true;
};

// From GGUF metadata (<arch>.* keys) and the tensor table (vocabulary size, tied output).
// Throws FormatError naming the file and the key for missing or mistyped values and for
// architectures we do not run.
ModelConfig config_from_gguf(const GgufFile& gguf);

// From a Hugging Face config.json (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM, GPT2LMHeadModel). Throws FormatError naming config.json and the field.
ModelConfig config_from_hf_json(const std::string& config_json_path);
// Once the weights are open: a config.json without tie_word_embeddings whose checkpoint
// stores only one of model.embed_tokens.weight and lm_head.weight is tied (either name
// then serves both; weights.cpp). Sets c.tied_output.
void hf_tie_from_storage(ModelConfig& c, const std::string& config_json_path,
                         const TensorSource& weights);

// From a llama2.c checkpoint's header (config_llama2c.cpp); source_format "llama2c".
ModelConfig config_from_llama2c(const Llama2cFile& file);

const char* rope_layout_name(RopeLayout layout);

}  // namespace attnsparse
