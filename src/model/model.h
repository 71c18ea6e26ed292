// A loaded model: config, weights (memory-mapped), tokenizer, and the forward pass.
// Architectures: llama (Llama 2/3, Mistral, TinyLlama, SmolLM, llama2.c), qwen2, gpt2.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tokenizer.h"
#include "ops/attention.h"

namespace attnsparse {

class TensorSource;

// Per-layer hooks into the attention core, used by the analysis (observers), the sparse
// policies (key sets, eviction) and the policy evaluation (oracle comparisons).
// All methods have no-op defaults; with no hooks the forward pass runs plain attention.
class AttentionHooks {
 public:
  virtual ~AttentionHooks() = default;
  // Which keys each query of this layer visits (nullptr = all, dense).
  virtual const ops::KeySet* keys(int layer) { return nullptr; }
  // The same with the call's shape and inputs (q, the cache's k/v and slot positions), for
  // policies whose key set depends on them (src/policies). Called first, before
  // observer(layer). Default: keys(layer).
  virtual const ops::KeySet* plan(int layer, const ops::AttentionShape& shape,
                                  const ops::AttentionArgs& args) {
    return keys(layer);
  }
  // Sees every probability row of this layer (nullptr = none).
  virtual ops::RowObserver* observer(int layer) { return nullptr; }
  // Called after the layer's attention with the exact q/k/v/out it used (out holds the
  // result the model continues with). May run more attention calls on the same inputs.
  virtual void after_attention(int layer, const ops::AttentionShape& shape,
                               const ops::AttentionArgs& args) {}
};

// KV cache: per layer, f32 K and V of [capacity, n_kv_head, head_dim] plus the absolute
// position of each slot (slots are compacted when a policy evicts keys).
struct KVCache {
  int64_t capacity = 0;
  int64_t n_used = 0;       // slots filled
  int64_t next_pos = 0;     // absolute position of the next token
  std::vector<std::vector<float>> k, v;          // [layer][slot * kv_dim]
  std::vector<std::vector<int32_t>> positions;   // [layer][slot]
  int64_t bytes() const;    // bytes of K and V actually held (n_used slots)
};

struct ForwardOptions {
  // Rows (indices into this call's tokens) whose logits are wanted; empty = all rows.
  std::vector<int64_t> logit_rows;
  bool no_logits = false;  // skip the output head entirely
  AttentionHooks* hooks = nullptr;
};

struct ModelLoadOptions {
  // A tokenizer to use instead of the model's own: a .gguf file, a Hugging Face directory
  // or a llama2.c tokenizer .bin (at most as many tokens as the model's vocabulary).
  // Empty: the model's own (for a llama2.c checkpoint: tok<N>.bin or tokenizer.bin
  // beside it, see find_llama2c_tokenizer).
  std::string tokenizer;
};

class Model {
 public:
  virtual ~Model() = default;
  // path: a .gguf file, a Hugging Face model directory, or a llama2.c checkpoint (.bin
  // whose header matches its size; io/llama2c.h). Throws FormatError. The tokenizer is
  // read on first use of tokenizer().
  static std::unique_ptr<Model> load(const std::string& path, const ModelLoadOptions& options = {});

  virtual const ModelConfig& config() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual const TensorSource& weights() const = 0;

  KVCache make_cache(int64_t capacity) const;

  // Evaluates `tokens` as one causal batch at positions cache.next_pos..., appending
  // their K/V to the cache. logits receives [rows x n_vocab] floats (rows as in opts).
  // Throws Error for token ids out of range or a cache that is too small.
  virtual void forward(std::span<const int32_t> tokens, KVCache& cache,
                       const ForwardOptions& opts, std::vector<float>& logits) const = 0;
};

}  // namespace attnsparse
