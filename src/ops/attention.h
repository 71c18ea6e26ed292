// The attention core: causal softmax attention for a block of queries against a KV
// cache, with GQA/MQA, optional sparse key sets, and an optional observer that sees
// every finished probability row. The model's forward pass calls only this.
//
// Layouts (f32, row-major):
//   q   [n_q, n_head, head_dim]      query i has absolute position q_pos0 + i
//   k,v [n_kv, n_kv_head, head_dim]  key j has absolute position key_pos(j)
//   out [n_q, n_head, head_dim]
// Strides are in floats between consecutive tokens (so q/k/v may live inside wider
// buffers, e.g. a fused qkv projection).
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace attnsparse::ops {

struct AttentionShape {
  int64_t n_q = 0;       // queries in this call
  int64_t q_pos0 = 0;    // absolute position of query 0
  int64_t n_kv = 0;      // keys in the cache (slots)
  int n_head = 0;        // query heads
  int n_kv_head = 0;     // key/value heads; query head h uses kv head h / (n_head / n_kv_head)
  int head_dim = 0;
  float scale = 0.f;     // logit scale, usually 1/sqrt(head_dim)
  // Logit transform of the model (not of a sparse policy), applied to the scaled score
  // s = scale * q.k before the softmax as llama.cpp orders it: s -> softcap * tanh(s /
  // softcap) when softcap > 0 (gemma2's attention logit soft-capping).
  float softcap = 0.f;
  // Native sliding window of the layer (0 = none): query at position t visits the key at
  // position p only if 0 <= t - p < window. Intersected with any key set; keys outside get
  // probability exactly 0 (observers never see them).
  int64_t window = 0;
};

// K and V kept in a storage type other than f32 (a typed KV cache: f16, bf16, q8_0).
// Slot j's row of n_kv_head x head_dim values starts at k + j * row_bytes (v likewise);
// KV head g's values start head_bytes * g into it. decode(type, src, dst, n) turns n
// values into f32 (ops::dequantize_row). The dense prefill and decode paths decode the
// tiles they pack, so no f32 copy of the cache exists; key sets of index lists need f32
// rows (AttentionArgs::k / v).
struct TypedKV {
  DType type = DType::F32;
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  int64_t row_bytes = 0;
  int64_t head_bytes = 0;
  void (*decode)(DType type, const uint8_t* src, float* dst, int64_t n) = nullptr;
};

struct AttentionArgs {
  const float* q = nullptr;
  int64_t q_stride = 0;
  const float* k = nullptr;
  int64_t k_stride = 0;
  const float* v = nullptr;
  int64_t v_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  // Absolute position of each cache slot (size n_kv); nullptr means slot j = position j.
  // Eviction policies keep a subset of positions in the cache.
  const int32_t* key_pos = nullptr;
  // When set, K and V are read from here and k / v may be null (see TypedKV).
  const TypedKV* typed = nullptr;
};

// Sees each finished row of post-softmax probabilities over the keys the query visited.
// `keys` lists the cache slots in increasing order (nullptr: slots 0..n_keys-1).
// Called concurrently from several threads (different heads/queries): implementations
// must be thread-safe for distinct (head, query) pairs.
class RowObserver {
 public:
  virtual ~RowObserver() = default;
  virtual void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys,
                      int64_t n_keys) = 0;
  // The same row together with its entropy -sum p ln p (nats), which the tiled kernel gets
  // almost for free from the scores it already has (ln p_j = (s_j - max) ln 2 - ln sum).
  // Producers that know it call this; the default ignores it and forwards to on_row.
  virtual void on_row_with_entropy(int head, int64_t query_pos, const float* probs, const int32_t* keys,
                                   int64_t n_keys, double entropy) {
    (void)entropy;
    on_row(head, query_pos, probs, keys, n_keys);
  }
  // Rows of one head for the consecutive queries query_pos0, query_pos0 + 1, ... (at most
  // kObservedBlock), each with its probabilities, slots, length and entropy: the tiled
  // kernel finishes a job's queries of a head together, and an observer can then do work
  // over several rows in one pass. `entropy` may be nullptr (not known). `largest`, when
  // not nullptr: each row's largest probability (the kernel finds it while it writes the
  // row; observers that need it skip a pass). The default hands each row to
  // on_row_with_entropy (on_row without entropies).
  static constexpr int kObservedBlock = 8;
  virtual void on_rows(int head, int64_t query_pos0, int n_rows, const float* const* probs,
                       const int32_t* const* keys, const int64_t* n_keys, const double* entropy,
                       const float* largest) {
    (void)largest;
    for (int k = 0; k < n_rows; ++k) {
      if (entropy != nullptr) on_row_with_entropy(head, query_pos0 + k, probs[k], keys[k], n_keys[k], entropy[k]);
      else on_row(head, query_pos0 + k, probs[k], keys[k], n_keys[k]);
    }
  }
};

class KeySet;  // ops/keyset.h: which keys each query visits (sparse attention)

// Dense causal attention when `keys` is nullptr. Multi-threaded over heads x queries.
void attention(const AttentionShape& shape, const AttentionArgs& args,
               const KeySet* keys = nullptr, RowObserver* observer = nullptr);

// Naive reference: materialises each score row, no tiling; a sparse key set is applied
// as a -inf mask built from KeySet::contains. For tests only.
void attention_reference(const AttentionShape& shape, const AttentionArgs& args,
                         const KeySet* keys = nullptr, RowObserver* observer = nullptr);

// The SIMD variant attention() uses: "avx512", "avx2" or "sse2", from the active
// instruction-set level (core/cpu.h; cpu::ScopedLevel selects one in tests).
const char* attention_isa();

}  // namespace attnsparse::ops
