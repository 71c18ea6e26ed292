// A loaded model: config, weights (memory-mapped), tokenizer, and the forward pass.
// Architectures: llama (Llama 2/3, Mistral, TinyLlama, SmolLM, llama2.c), qwen2, gpt2.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
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
  // Whether plan / after_attention read the f32 K/V rows (args.k / args.v). A typed cache
  // then decodes the layer's slots into an f32 view for them (O(n) scratch); hooks that
  // only observe rows return false, and attention decodes the tiles it packs instead.
  virtual bool reads_kv() const { return true; }
};

// KV cache: per layer, f32 K and V of [capacity, n_kv_head, head_dim] plus the absolute
// position of each slot (slots are compacted when a policy evicts keys).
//
// The storage type (`type`, --kv-type) is F32 (the default, exact) or F16 / BF16 / Q8_0
// (rows of kv_dim elements in that type, half or ~0.27 of the memory). A typed cache keeps
// K and V only in `kq` / `vq`: each layer writes the new tokens' f32 K/V into a staging
// buffer (new_k / new_v), attention_block stores them in the type and the attention core
// decodes the stored rows tile by tile as it packs them (ops::TypedKV) — so attention sees
// exactly what is stored, without an f32 copy of the layer. Hooks that read K/V
// (AttentionHooks::reads_kv) get an f32 view of the layer's slots decoded from the stored
// rows instead (view_k / view_v, one layer at a time).
struct KVCache {
  int64_t capacity = 0;
  int64_t n_used = 0;       // slots filled
  int64_t next_pos = 0;     // absolute position of the next token
  int64_t kv_dim = 0;       // floats per slot (n_kv_head x head_dim)
  DType type = DType::F32;
  std::vector<std::vector<float>> k, v;          // F32: [layer][slot * kv_dim]
  std::vector<std::vector<uint8_t>> kq, vq;      // other types: [layer][slot * row_bytes]
  std::vector<std::vector<int32_t>> positions;   // [layer][slot]
  std::vector<float> stage_k, stage_v;           // typed: the new tokens' rows (f32)
  std::vector<float> view_k, view_v;             // typed: the layer's slots decoded for hooks that read
                                                 // K/V, else the new rows only (finite check)
  int64_t bytes() const;    // bytes of K and V actually held (n_used slots)
  // Where a layer writes the f32 K (V) rows of the n tokens starting at slot0.
  float* new_k(int layer, int64_t slot0, int64_t n);
  float* new_v(int layer, int64_t slot0, int64_t n);
};

// The KV storage type make_cache uses: F32 unless a verb's --kv-type changed it. Types:
// f32, f16, bf16, q8_0 (names as dtype_from_name); others are a UsageError.
DType default_kv_type();
void set_default_kv_type(DType type);

// The micro-batch size a ForwardOptions with ubatch = -1 uses: 512 tokens unless a verb's
// --ubatch changed it (set_default_ubatch; 0 = the whole call as one batch).
int64_t default_ubatch();
void set_default_ubatch(int64_t ubatch);

struct ForwardOptions {
  // Rows (indices into this call's tokens) whose logits are wanted; empty = all rows.
  std::vector<int64_t> logit_rows;
  bool no_logits = false;  // skip the output head entirely
  AttentionHooks* hooks = nullptr;
  // Micro-batching: the call's tokens go through the layers `ubatch` tokens at a time
  // against the growing KV cache (-1: default_ubatch(); 0: all at once); activations are
  // held for one micro-batch only. Attention rows, K/V and logits are the same bits as in
  // one batch: a call of at least kPrefillMinTokens tokens computes its matrix products
  // batch-invariantly (ops::ScopedBatchInvariant). Hooks see one attention call per
  // micro-batch and layer (AttentionShape::q_pos0 / n_q say which queries).
  int64_t ubatch = -1;
  // When set, each requested row's logits are handed here (row index into this call's
  // tokens, n_vocab floats) as soon as its micro-batch is done, and `logits` stays empty:
  // memory for one micro-batch of logits instead of all rows (perplexity).
  std::function<void(int64_t row, const float* logits)> on_logits;
};

// Calls of at least this many tokens (prefills) are computed batch-invariantly, so their
// results do not depend on ubatch; shorter ones (decode steps) take the small-batch kernels.
inline constexpr int64_t kPrefillMinTokens = 16;

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

  // A cache for `capacity` tokens in default_kv_type() (or `type`).
  KVCache make_cache(int64_t capacity) const;
  KVCache make_cache(int64_t capacity, DType type) const;

  // Evaluates `tokens` as one causal sequence at positions cache.next_pos..., appending
  // their K/V to the cache, in micro-batches of opts.ubatch tokens (src/model/ubatch.cpp).
  // logits receives [rows x n_vocab] floats (rows as in opts). Throws Error for token ids
  // out of range or a cache that is too small.
  void forward(std::span<const int32_t> tokens, KVCache& cache, const ForwardOptions& opts,
               std::vector<float>& logits) const;

  // One micro-batch through the layers; the final hidden states of `rows` (indices into
  // tokens, in that order) are appended to `hidden` ([rows x n_embd], before the output
  // norm). Called by forward().
  virtual void forward_layers(std::span<const int32_t> tokens, KVCache& cache,
                              AttentionHooks* hooks, std::span<const int64_t> rows,
                              std::vector<float>& hidden) const = 0;
  // Output norm and LM head of m hidden-state rows -> logits [m x n_vocab].
  virtual void output_head(const float* hidden, int64_t m, float* logits) const = 0;
};

}  // namespace attnsparse
