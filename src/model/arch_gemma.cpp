// gemma2 and gemma3 (text): embeddings x sqrt(n_embd), RMSNorm before and after both the
// attention and the FFN (norm weights used as stored: llama.cpp's converter has added
// Hugging Face's +1), GeGLU FFN, RoPE on halves. gemma2 soft-caps attention scores and
// the final logits; gemma3 has per-head q/k RMSNorm and its own RoPE base on windowed
// layers. The per-layer windows and softcaps live in ModelConfig (model/arch.cpp).
#include "model/arch.h"
#include "model/forward.h"
#include "model/profile.h"
#include "ops/activation.h"
#include "ops/rope.h"

namespace attnsparse {

void bind_gemma_weights(const ModelConfig& c, WeightBinder& b, ModelWeights& w) {
  const int64_t d = c.n_embd, qd = c.n_head * c.head_dim, kvd = c.n_kv_head * c.head_dim;
  const bool qk_norm = arch_info(c.arch).qk_norm;
  bind_embedding_and_output(c, b, w);
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerWeights& lw = w.layers[l];
    lw.attn_norm = b.norm("attn_norm", l, false);
    lw.q = b.linear("attn_q", l, qd, d, false);
    lw.k = b.linear("attn_k", l, kvd, d, false);
    lw.v = b.linear("attn_v", l, kvd, d, false);
    if (qk_norm) {
      lw.q_norm = b.norm("attn_q_norm", l, false, c.head_dim);
      lw.k_norm = b.norm("attn_k_norm", l, false, c.head_dim);
    }
    lw.o = b.linear("attn_output", l, d, qd, false);
    lw.post_attn_norm = b.norm("post_attention_norm", l, false);
    lw.ffn_norm = b.norm("ffn_norm", l, false);
    lw.gate = b.linear("ffn_gate", l, c.n_ff, d, false);
    lw.up = b.linear("ffn_up", l, c.n_ff, d, false);
    lw.down = b.linear("ffn_down", l, d, c.n_ff, false);
    lw.post_ffn_norm = b.norm("post_ffw_norm", l, false);
  }
}

void gemma_layer(const ForwardContext& fc, int layer, float* x, Scratch& s) {
  const ModelConfig& c = fc.cfg;
  const LayerWeights& lw = fc.w.layers[layer];
  const int64_t n = fc.n, d = c.n_embd;
  const int64_t qd = c.n_head * c.head_dim, kvd = c.n_kv_head * c.head_dim;
  s.xn.resize(n * d);
  s.q.resize(n * qd);
  s.att.resize(n * qd);
  s.proj.resize(n * d);
  s.ff_a.resize(n * c.n_ff);
  s.ff_b.resize(n * c.n_ff);

  rms_norm_rows(c, lw.attn_norm, x, n, s.xn.data());
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
  // Scale (1/sqrt(head_dim) or the 27B rule), softcap and window: attention_block.
  attention_block(fc, layer, s.q.data(), qd, s.att.data());
  linear(lw.o, s.att.data(), n, s.proj.data());
  rms_norm_rows(c, lw.post_attn_norm, s.proj.data(), n, s.xn.data());
  add_inplace(x, s.xn.data(), n * d);

  rms_norm_rows(c, lw.ffn_norm, x, n, s.xn.data());
  linear(lw.gate, s.xn.data(), n, s.ff_a.data());
  linear(lw.up, s.xn.data(), n, s.ff_b.data());
  {
    profile::Scope timer(profile::Activation);
    ops::geglu_f16_table(s.ff_a.data(), s.ff_b.data(), n * c.n_ff);
  }
  linear(lw.down, s.ff_a.data(), n, s.proj.data());
  rms_norm_rows(c, lw.post_ffn_norm, s.proj.data(), n, s.xn.data());
  add_inplace(x, s.xn.data(), n * d);
}

}  // namespace attnsparse
