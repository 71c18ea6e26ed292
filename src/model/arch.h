// The model families as a table: one row per architecture says how its tensors bind,
// which norm and activation it uses, how it positions tokens, its per-layer window and
// RoPE-base pattern, softcaps, q/k norms, experts, embedding scale and post-norms. The
// loader, the weight binder, the forward loop and the CLI ask this table instead of
// comparing architecture names. Adding a family = one forward-pass file (arch_*.cpp:
// bind + layer functions) and one row in arch.cpp (docs/runtime.md, "Adding a family").
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"

namespace attnsparse {

struct ForwardContext;
struct Scratch;
struct ModelWeights;
class WeightBinder;

enum class NormKind { RMSNorm, LayerNorm };
enum class FfnKind {
  SwiGLU,  // silu(gate) * up (f32)
  GeGLU,   // tanh-GELU(gate) * up, GELU read from llama.cpp's f16 table
  Gelu,    // gelu(up) (gpt2)
};
enum class MoeUse {
  None,
  IfPresent,  // experts when the layer has a router (llama: Mixtral layout)
  Always,     // every layer has experts (qwen3moe)
};

struct ArchInfo {
  std::string name;                   // GGUF general.architecture
  std::vector<std::string> hf_names;  // config.json "architectures" entries
  std::string model_type;             // config.json "model_type" (when "architectures" is absent)
  std::string summary;
  NormKind norm = NormKind::RMSNorm;
  FfnKind ffn = FfnKind::SwiGLU;
  bool learned_positions = false;     // absolute position table, no RoPE (n_ctx is a hard limit)
  RopeLayout gguf_rope = RopeLayout::HalfSplit;  // how GGUF files of the family rotate
  bool qkv_bias = false;              // q/k/v projections carry biases
  bool qk_norm = false;               // per-head RMSNorm of q and k before RoPE
  bool fused_qkv = false;             // one attn_qkv projection, rows q | k | v
  bool fused_gate_up = false;         // ffn_up holds gate rows then up rows
  bool post_norms = false;            // RMSNorm after attention and after the FFN (gemma)
  bool embd_scale = false;            // embeddings multiplied by sqrt(n_embd)
  bool hf_norm_plus_one = false;      // HF checkpoints store RMSNorm weights as w - 1
  MoeUse moe = MoeUse::None;
  // Sliding window: -1 the family has none; 0 every layer windowed when the file sets a
  // window (Mistral); p > 0: layer l windowed iff l % p < p - 1 (llama.cpp's rule, also
  // HF's for gemma2/gemma3), p overridable by <arch>.attention.sliding_window_pattern.
  int swa_period = -1;
  bool swa_rope_base = false;         // windowed layers use rope.freq_base_swa (default 1e4)
  bool softcap = false;               // attention / final logit soft-capping keys
  // Layer counts for which llama.cpp scales scores by 1/sqrt(n_embd / n_head) instead of
  // 1/sqrt(head_dim) (gemma 27B); HF families with query_pre_attn_scalar read that.
  std::vector<int64_t> embd_head_scale_layers;
  bool hf_query_pre_attn_scalar = false;
  // GGUF tensors whose presence means a variant we do not run (message names them).
  std::vector<std::string> unsupported_tensors;
  // HF config.json keys of the experts: their count and (empty: intermediate_size) their
  // FFN width; whether norm_topk_prob is read (else the top-k weights are renormalised).
  std::string hf_n_expert_key, hf_ff_expert_key;
  bool hf_norm_topk_key = false;
  // Binding and forward pass (arch_*.cpp).
  void (*bind)(const ModelConfig&, WeightBinder&, ModelWeights&) = nullptr;
  void (*layer)(const ForwardContext&, int, float*, Scratch&) = nullptr;
  // Hugging Face tensor names: llama.cpp base name -> HF name after the layer prefix
  // ("{e}" stands for the expert index); global tensors are listed with their full name.
  std::string hf_layer_prefix = "model.layers.";
  std::map<std::string, std::string> hf_tensors;
};

// The row of a GGUF architecture name; nullptr when we do not run it.
const ArchInfo* find_arch(const std::string& name);
// The same, throwing Error for an unknown name (names the supported ones).
const ArchInfo& arch_info(const std::string& name);
// The row of an HF "architectures" entry or model_type; nullptr when unknown.
const ArchInfo* find_hf_arch(const std::string& hf_name);
// Every row, in table order.
const std::vector<ArchInfo>& arch_table();
// "llama, qwen2, ..." (for error messages and --help).
std::string supported_arch_list(bool hf = false);

// Fills the per-layer table (window, RoPE base) from the family's pattern and the file's
// window / pattern, the default attention scale, and applies the sliding-window switch
// (ATTNSPARSE_SLIDING_WINDOW=off in the environment turns every native window off).
// `pattern`: per-layer windowed flags from the file (empty: the family's period rule).
void finalize_config(ModelConfig& c, const std::vector<bool>& pattern);

// Per-layer windowed flags of the period rule (period 0: every layer).
std::vector<bool> swa_pattern_from_period(int64_t n_layer, int64_t period);

// The per-layer kind for display: "global" or "window 4096"; with the RoPE base.
std::string layer_kind_string(const ModelConfig& c, int layer);

}  // namespace attnsparse
