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
  const std::vector<ops::RopeParams>& rope;  // per layer (bases differ on windowed layers)
  KVCache& cache;
  AttentionHooks* hooks;
  int64_t n;             // new tokens in this call
  const int32_t* pos;    // their absolute positions [n]
  int64_t slot0;         // cache slot of the first new token
};

// Reusable activation buffers (grown on demand).
struct Scratch {
  std::vector<float> xn, q, qkv, att, proj, ff_a, ff_b;
  std::vector<float> moe_x, moe_y;  // experts: gathered rows, per-slot outputs
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

// RMSNorm of each head of n rows of q or k (head_dim each, heads contiguous, rows of
// `stride` floats) with the per-head weight, in place (qwen3, gemma3).
void head_rms_norm(const ModelConfig& cfg, const Norm& norm, float* x, int64_t n, int64_t stride,
                   int n_heads);
// RMSNorm of n rows of n_embd floats.
void rms_norm_rows(const ModelConfig& cfg, const Norm& norm, const float* x, int64_t n, float* out);
// The SwiGLU mixture of experts of a layer: out[n, n_embd] = sum over the chosen experts
// of weight x down(silu(gate(xn)) * up(xn)). Router softmax over all experts, top
// n_expert_used (ties: lower index), weights renormalised when cfg.moe_norm_topk.
void moe_ffn(const ForwardContext& fc, const LayerWeights& lw, const float* xn, float* out,
             Scratch& s);

// Layer functions (the table in model/arch.h names them).
void llama_layer(const ForwardContext& fc, int layer, float* x, Scratch& s);
void gpt2_layer(const ForwardContext& fc, int layer, float* x, Scratch& s);
void gemma_layer(const ForwardContext& fc, int layer, float* x, Scratch& s);
void phi3_layer(const ForwardContext& fc, int layer, float* x, Scratch& s);

}  // namespace attnsparse
