// Shared blocks of the forward pass and the per-architecture layer functions.
// Internal to src/model/.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace attnsparse {

// Everything one forward call's layers need.
struct ForwardContext {
  const ModelConfig& cfg;
  const ModelWeights& w;
  const ops::RopeParams& rope;
  KVCache& cache;
  AttentionHooks* hooks;
  int64_t n;             // new tokens in this call
  const int32_t* pos;    // their absolute positions [n]
  int64_t slot0;         // cache slot of the first new token
};

// Reusable activation buffers (grown on demand).
struct Scratch {
  std::vector<float> xn, q, qkv, att, proj, ff_a, ff_b;
};

// y[m, n_out] = x[m, n_in] W^T (+ bias).
void linear(const Linear& l, const float* x, int64_t m, float* y);
void add_inplace(float* x, const float* y, int64_t n);

// Runs attention of the n new queries (q rows of q_stride floats, heads contiguous) over
// the layer's cache slots 0..slot0+n-1, with the hooks' key set / observer, then
// hooks->after_attention. out: [n, n_head * head_dim].
void attention_block(const ForwardContext& fc, int layer, const float* q, int64_t q_stride,
                     float* out);

// Embedding rows of the new tokens into x [n, n_embd].
void embed_tokens(const ForwardContext& fc, const int32_t* tokens, float* x);

void llama_layer(const ForwardContext& fc, int layer, float* x, Scratch& s);
void llama_output_norm(const ModelConfig& cfg, const ModelWeights& w, const float* x, int64_t m,
                       float* out);
void gpt2_layer(const ForwardContext& fc, int layer, float* x, Scratch& s);
void gpt2_output_norm(const ModelConfig& cfg, const ModelWeights& w, const float* x, int64_t m,
                      float* out);

}  // namespace attnsparse
