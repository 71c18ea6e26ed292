// Decoder-only language models in libtorch with llama.cpp's GGUF tensor layout, the
// condensation regulariser (docs/methods.md §9), attention-sparsity metrics, GGUF export and
// checkpoints. Parameters are plain tensors named exactly as in GGUF (shape [out, in] =
// GGUF [out x in]), so export is a copy. Attention softmax is explicit so that the
// regulariser sees the probabilities.
//   llama: RMSNorm, RoPE on adjacent pairs (0,1),(2,3),... (the GGUF llama layout, so Q/K
//          are written unpermuted), SwiGLU, GQA, no biases, untied or tied output.
//   gpt2 : learned positions, LayerNorm with bias, fused qkv with bias, tanh-GELU MLP.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "train/reg_spec.h"

namespace attnsparse::train {

class TextTokenizer;

struct LMConfig {
  std::string arch = "llama";  // llama | gpt2
  int64_t n_vocab = 0;
  int64_t n_ctx = 128;
  int64_t n_embd = 64;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_kv_head = 4;
  int64_t n_ff = 128;
  bool tied = false;
  double rope_base = 10000.0;
  double norm_eps = 1e-5;
  int64_t head_dim() const { return n_embd / n_head; }
  std::string to_json() const;
  static LMConfig from_json(const std::string& s);
};

// Non-embedding parameters: tiny 0.1M (tests), mini 0.8M (experiments), small 3.2M,
// base 10.6M (llama); add 2 x n_vocab x n_embd for the untied embeddings. Throws UsageError.
LMConfig preset_config(const std::string& arch, const std::string& preset, int64_t n_vocab,
                       int64_t n_ctx);

class LMImpl : public torch::nn::Module {
 public:
  LMImpl(const LMConfig& cfg, uint64_t seed);
  // idx: [B, T] int64, T <= n_ctx. Returns logits [B, T, n_vocab]. When probs is given it
  // receives each layer's attention probabilities [B, n_head, T, T] (autograd-connected).
  torch::Tensor forward(const torch::Tensor& idx, std::vector<torch::Tensor>* probs = nullptr);
  const LMConfig& config() const { return cfg_; }
  // Parameters by GGUF name, in GGUF order.
  const std::vector<std::pair<std::string, torch::Tensor>>& gguf_params() const { return params_; }
  torch::Tensor param(const std::string& gguf_name) const;
  int64_t num_params() const;
  // Evaluate GELU as llama.cpp (and so the engine) does on CPU: on the f16-rounded input,
  // result rounded to f16. Not for training (no useful gradient); the export cross-check
  // uses it to show that this table is the only difference between the two gpt2 forwards.
  void set_gelu_f16_table(bool on) { gelu_f16_table_ = on; }

 private:
  torch::Tensor add(const std::string& name, torch::Tensor t);
  torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          std::vector<torch::Tensor>* probs);
  torch::Tensor rope(const torch::Tensor& x) const;  // [B, H, T, hd], adjacent pairs
  LMConfig cfg_;
  bool gelu_f16_table_ = false;
  std::vector<std::pair<std::string, torch::Tensor>> params_;
};
TORCH_MODULE(LM);

// λ · mean over the chosen layers, heads, batch rows and query rows t >= k_t of
// (1 − M_k(a_t)) (tail-mass form) or max(0, 1 − ε − M_k(a_t)) (hinge form).
// probs: per layer [B, H, T, T]. Returns a 0-d tensor (0 when no row qualifies).
torch::Tensor condensation_loss(const std::vector<torch::Tensor>& probs, const RegSpec& spec);

// Sparsity metrics over query rows t >= k of every layer and head (no gradient).
struct SparsityStats {
  double mass_sum = 0;  // sum of M_k
  int64_t sparse = 0;   // rows with M_k >= 1 - eps
  int64_t rows = 0;
  void add(const std::vector<torch::Tensor>& probs, int64_t k, double eps);
};

// Writes the model as GGUF (f32, or f16 matrices with f32 norms/biases). Extra string
// metadata (e.g. the training command) goes under attnsparse.train.*.
void export_gguf(LM& model, const TextTokenizer& tok, const std::string& path, bool f16,
                 const std::vector<std::pair<std::string, std::string>>& extra = {});

}  // namespace attnsparse::train
