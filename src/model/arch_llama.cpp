// The llama block and its relatives: llama (Llama 2/3, Mistral, TinyLlama, SmolLM;
// Mixtral when the layer has experts), qwen2 (q/k/v biases), qwen3 (per-head q/k
// RMSNorm before RoPE), qwen3moe (q/k norm and experts): RMSNorm, RoPE, GQA attention,
// SwiGLU MLP or SwiGLU mixture of experts.
#include "core/error.h"
#include "model/arch.h"
#include "model/forward.h"
#include "model/profile.h"
#include "ops/activation.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace attnsparse {

void bind_embedding_and_output(const ModelConfig& c, WeightBinder& b, ModelWeights& w) {
  const int64_t d = c.n_embd;
  w.token_embd = &b.require("token_embd", -1, "weight", {c.n_vocab, d});
  w.output_norm = b.norm("output_norm", -1, arch_info(c.arch).norm == NormKind::LayerNorm);
  if (c.tied_output) {  // GGUF: no output.weight; HF: tie_word_embeddings
    w.output.w = {w.token_embd->dtype, w.token_embd->data, c.n_vocab, d};
  } else {
    w.output = b.linear("output", -1, c.n_vocab, d, false);
  }
}

void bind_experts(const ModelConfig& c, WeightBinder& b, int l, LayerWeights& lw) {
  const int64_t d = c.n_embd, E = c.n_expert, F = c.n_ff_expert;
  lw.router = b.linear("ffn_gate_inp", l, E, d, false);
  lw.gate_exps = b.experts("ffn_gate_exps", l, E, F, d);
  lw.up_exps = b.experts("ffn_up_exps", l, E, F, d);
  lw.down_exps = b.experts("ffn_down_exps", l, E, d, F);
}

void bind_llama_weights(const ModelConfig& c, WeightBinder& b, ModelWeights& w) {
  const int64_t d = c.n_embd, qd = c.n_head * c.head_dim, kvd = c.n_kv_head * c.head_dim;
  const ArchInfo& info = arch_info(c.arch);
  bind_embedding_and_output(c, b, w);
  if (const TensorInfo* rf = b.find("rope_freqs", -1, "weight")) {
    (void)b.require("rope_freqs", -1, "weight", {c.rope_dim / 2});
    w.rope_freqs.resize(c.rope_dim / 2);
    ops::dequantize_row(rf->dtype, rf->data, w.rope_freqs.data(), c.rope_dim / 2);
  }
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerWeights& lw = w.layers[l];
    lw.attn_norm = b.norm("attn_norm", l, false);
    lw.q = b.linear("attn_q", l, qd, d, c.qkv_bias);
    lw.k = b.linear("attn_k", l, kvd, d, c.qkv_bias);
    lw.v = b.linear("attn_v", l, kvd, d, c.qkv_bias);
    lw.o = b.linear("attn_output", l, d, qd, false);
    if (info.qk_norm) {
      lw.q_norm = b.norm("attn_q_norm", l, false, c.head_dim);
      lw.k_norm = b.norm("attn_k_norm", l, false, c.head_dim);
    }
    lw.ffn_norm = b.norm("ffn_norm", l, false);
    if (c.n_expert > 0) {
      bind_experts(c, b, l, lw);
    } else {
      lw.gate = b.linear("ffn_gate", l, c.n_ff, d, false);
      lw.up = b.linear("ffn_up", l, c.n_ff, d, false);
      lw.down = b.linear("ffn_down", l, d, c.n_ff, false);
    }
  }
}

void llama_layer(const ForwardContext& fc, int layer, float* x, Scratch& s) {
  const ModelConfig& c = fc.cfg;
  const LayerWeights& lw = fc.w.layers[layer];
  const int64_t n = fc.n, d = c.n_embd;
  const int64_t qd = c.n_head * c.head_dim, kvd = c.n_kv_head * c.head_dim;
  s.xn.resize(n * d);
  s.q.resize(n * qd);
  s.att.resize(n * qd);
  s.proj.resize(n * d);

  {
    profile::Scope timer(profile::Norm);
    ops::rms_norm(x, n, d, lw.attn_norm.weight, c.norm_eps, s.xn.data());
  }
  // K and V go straight into their cache slots.
  float* k = fc.cache.new_k(layer, fc.slot0, fc.n);
  float* v = fc.cache.new_v(layer, fc.slot0, fc.n);
  linear(lw.q, s.xn.data(), n, s.q.data());
  linear(lw.k, s.xn.data(), n, k);
  linear(lw.v, s.xn.data(), n, v);
  if (lw.q_norm.weight) {
    head_rms_norm(c, lw.q_norm, s.q.data(), n, qd, static_cast<int>(c.n_head));
    head_rms_norm(c, lw.k_norm, k, n, kvd, static_cast<int>(c.n_kv_head));
  }
  {
    profile::Scope timer(profile::Rope);
    ops::rope_inplace(fc.rope[layer], s.q.data(), n, qd, static_cast<int>(c.n_head), fc.pos);
    ops::rope_inplace(fc.rope[layer], k, n, kvd, static_cast<int>(c.n_kv_head), fc.pos);
  }
  attention_block(fc, layer, s.q.data(), qd, s.att.data());
  linear(lw.o, s.att.data(), n, s.proj.data());
  add_inplace(x, s.proj.data(), n * d);

  {
    profile::Scope timer(profile::Norm);
    ops::rms_norm(x, n, d, lw.ffn_norm.weight, c.norm_eps, s.xn.data());
  }
  if (!lw.gate_exps.empty()) {
    moe_ffn(fc, lw, s.xn.data(), s.proj.data(), s);
    add_inplace(x, s.proj.data(), n * d);
    return;
  }
  s.ff_a.resize(n * c.n_ff);
  s.ff_b.resize(n * c.n_ff);
  linear(lw.gate, s.xn.data(), n, s.ff_a.data());
  linear(lw.up, s.xn.data(), n, s.ff_b.data());
  {
    profile::Scope timer(profile::Activation);
    ops::swiglu(s.ff_a.data(), s.ff_b.data(), n * c.n_ff);
  }
  linear(lw.down, s.ff_a.data(), n, s.proj.data());
  add_inplace(x, s.proj.data(), n * d);
}

}  // namespace attnsparse
