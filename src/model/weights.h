// Model weights as views into the memory-mapped tensor source, bound and validated per
// architecture. Internal to src/model/ (the forward pass), but the analysis may read it.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/tensor_source.h"
#include "model/config.h"
#include "ops/matmul.h"
#include "ops/quant/packed.h"

namespace attnsparse {

struct Linear {
  ops::WeightView w;            // [n_out, n_in], any dtype
  const float* bias = nullptr;  // [n_out] f32 or nullptr
};

struct Norm {
  const float* weight = nullptr;  // [dim] f32
  const float* bias = nullptr;    // [dim] f32 (LayerNorm) or nullptr (RMSNorm)
};

struct LayerWeights {
  Norm attn_norm, ffn_norm;
  Norm q_norm, k_norm;              // per-head RMSNorm [head_dim] (qwen3, gemma3) or none
  Norm post_attn_norm, post_ffn_norm;  // gemma: after attention / after the FFN
  Linear q, k, v;  // llama / qwen2
  Linear qkv;      // gpt2, phi3: fused, rows q | k | v
  Linear o;
  Linear gate, up, down;  // gate unused by gpt2; phi3: up holds gate rows then up rows
  // Mixture of experts (empty: dense FFN): router [n_expert, n_embd] and per expert
  // views into the 3-D GGUF tensors (or the HF per-expert tensors).
  Linear router;
  std::vector<Linear> gate_exps, up_exps, down_exps;
};

struct ModelWeights {
  const TensorInfo* token_embd = nullptr;     // [n_vocab, n_embd]
  const TensorInfo* position_embd = nullptr;  // gpt2: [n_ctx, n_embd]
  Norm output_norm;
  Linear output;                              // [n_vocab, n_embd] (token_embd when tied)
  std::vector<LayerWeights> layers;
  std::vector<float> rope_freqs;              // llama3 per-pair divisors (empty = none)
  // Copies made where the file's layout or dtype needed a transform (HF Conv1D
  // transposes, non-f32 norm vectors, tensors stored at an address their type's loads
  // cannot use). Everything else stays memory-mapped.
  std::vector<std::vector<uint8_t>> owned;
  // Tensors of the file whose data is not aligned for their type (a safetensors header
  // whose length is not a multiple of 4, a GGUF general.alignment below 4): the same
  // tensor with its data copied into `owned`, by the file's TensorInfo.
  std::map<const TensorInfo*, std::unique_ptr<TensorInfo>> realigned;
  // Quantised matrices re-laid out for this CPU's integer GEMM (ops::pack_weights); the
  // views' `packed` point here.
  std::vector<std::unique_ptr<ops::PackedWeights>> packed;
};

// Packs every matrix whose type this CPU's kernels read packed (see ops::pack_weights)
// and releases the packed matrices' mapped bytes from `source` (may be null); bind_weights
// calls it.
void pack_for_cpu(ModelWeights& w, const TensorSource* source);

// How logical tensor names (llama.cpp's: "blk.3.attn_q.weight") map to the file's names.
enum class NameStyle { Gguf, HuggingFace };

// The file's name of a logical tensor. `logical` is llama.cpp's base name ("attn_q",
// "token_embd", ...), layer -1 for global tensors, suffix "weight" or "bias".
// Returns "" when the architecture has no such tensor in that naming.
std::string tensor_file_name(NameStyle style, const std::string& arch, const std::string& logical,
                             int layer, const std::string& suffix, int expert = -1);

// Finds, checks and wraps tensors; errors name the file and the tensor.
class WeightBinder {
 public:
  WeightBinder(const ModelConfig& config, const TensorSource& source, NameStyle style,
               ModelWeights& out);

  const TensorInfo* find(const std::string& logical, int layer, const std::string& suffix) const;
  // Requires the tensor and checks its shape (outermost first).
  const TensorInfo& require(const std::string& logical, int layer, const std::string& suffix,
                            const std::vector<int64_t>& shape) const;
  // A linear layer [n_out, n_in]; HF GPT-2 Conv1D weights ([n_in, n_out]) are transposed
  // into an owned buffer when `conv1d` is set and the style is HuggingFace.
  Linear linear(const std::string& logical, int layer, int64_t n_out, int64_t n_in,
                bool with_bias, bool conv1d = false);
  // An f32 vector of n elements (converted into an owned buffer when stored otherwise).
  const float* vector(const std::string& logical, int layer, const std::string& suffix, int64_t n);
  // A norm over `dim` elements (0: n_embd). HF checkpoints of families that store w - 1
  // (gemma) get 1 added into an owned buffer.
  Norm norm(const std::string& logical, int layer, bool with_bias, int64_t dim = 0);
  // The n_expert [n_out, n_in] matrices of a layer: views into one 3-D GGUF tensor
  // [n_expert, n_out, n_in] (offset by expert), or the HF per-expert tensors.
  std::vector<Linear> experts(const std::string& logical, int layer, int64_t n_expert,
                              int64_t n_out, int64_t n_in);

  NameStyle style() const { return style_; }
  const TensorSource& source() const { return src_; }

 private:
  std::string name(const std::string& logical, int layer, const std::string& suffix,
                   int expert = -1) const;
  // t itself when its data is aligned for its type's loads (4 bytes for f32, 2 for f16,
  // bf16 and blocks with f16 fields), else the copy in out_.realigned.
  const TensorInfo* aligned(const TensorInfo* t) const;
  const ModelConfig& cfg_;
  const TensorSource& src_;
  NameStyle style_;
  ModelWeights& out_;
};

// Per-architecture binders (arch_*.cpp), named by the table in model/arch.h.
void bind_llama_weights(const ModelConfig& config, WeightBinder& binder, ModelWeights& w);
void bind_gpt2_weights(const ModelConfig& config, WeightBinder& binder, ModelWeights& w);
void bind_gemma_weights(const ModelConfig& config, WeightBinder& binder, ModelWeights& w);
void bind_phi3_weights(const ModelConfig& config, WeightBinder& binder, ModelWeights& w);
// Shared pieces: token embedding + output (tied or not), the experts of a layer.
void bind_embedding_and_output(const ModelConfig& config, WeightBinder& binder, ModelWeights& w);
void bind_experts(const ModelConfig& config, WeightBinder& binder, int layer, LayerWeights& lw);

// Binds every tensor of the model; throws FormatError for missing tensors or wrong shapes.
ModelWeights bind_weights(const ModelConfig& config, const TensorSource& source, NameStyle style);

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace attnsparse
