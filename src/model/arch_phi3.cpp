// phi3: the llama block with one fused qkv projection (rows q | k | v) and one fused
// gate|up projection (the first n_ff rows are the SiLU gate, the last n_ff the up
// projection); RoPE on halves, RMSNorm, separate output.
#include <cstring>

#include "model/forward.h"
#include "model/profile.h"
#include "ops/activation.h"
#include "ops/rope.h"

namespace attnsparse {

void bind_phi3_weights(const ModelConfig& c, WeightBinder& b, ModelWeights& w) {
  const int64_t d = c.n_embd, qd = c.n_head * c.head_dim, kvd = c.n_kv_head * c.head_dim;
  bind_embedding_and_output(c, b, w);
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerWeights& lw = w.layers[l];
    lw.attn_norm = b.norm("attn_norm", l, false);
    lw.qkv = b.linear("attn_qkv", l, qd + 2 * kvd, d, false);
    lw.o = b.linear("attn_output", l, d, qd, false);
    lw.ffn_norm = b.norm("ffn_norm", l, false);
    lw.up = b.linear("ffn_up", l, 2 * c.n_ff, d, false);
    lw.down = b.linear("ffn_down", l, d, c.n_ff, false);
  }
}

void phi3_layer(const ForwardContext& fc, int layer, float* x, Scratch& s) {
  const ModelConfig& c = fc.cfg;
  const LayerWeights& lw = fc.w.layers[layer];
  const int64_t n = fc.n, d = c.n_embd, F = c.n_ff;
  const int64_t qd = c.n_head * c.head_dim, kvd = c.n_kv_head * c.head_dim;
  const int64_t row = qd + 2 * kvd;
  s.xn.resize(n * d);
  s.qkv.resize(n * row);
  s.att.resize(n * qd);
  s.proj.resize(n * d);
  s.ff_a.resize(n * F);
  s.ff_b.resize(n * 2 * F);

  rms_norm_rows(c, lw.attn_norm, x, n, s.xn.data());
  linear(lw.qkv, s.xn.data(), n, s.qkv.data());
  float* k = fc.cache.new_k(layer, fc.slot0, fc.n);
  float* v = fc.cache.new_v(layer, fc.slot0, fc.n);
  {
    profile::Scope timer(profile::Other);
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(k + t * kvd, s.qkv.data() + t * row + qd, kvd * sizeof(float));
      std::memcpy(v + t * kvd, s.qkv.data() + t * row + qd + kvd, kvd * sizeof(float));
    }
  }
  {
    profile::Scope timer(profile::Rope);
    ops::rope_inplace(fc.rope[layer], s.qkv.data(), n, row, static_cast<int>(c.n_head), fc.pos);
    ops::rope_inplace(fc.rope[layer], k, n, kvd, static_cast<int>(c.n_kv_head), fc.pos);
  }
  attention_block(fc, layer, s.qkv.data(), row, s.att.data());
  linear(lw.o, s.att.data(), n, s.proj.data());
  add_inplace(x, s.proj.data(), n * d);

  rms_norm_rows(c, lw.ffn_norm, x, n, s.xn.data());
  linear(lw.up, s.xn.data(), n, s.ff_b.data());
  {
    profile::Scope timer(profile::Activation);
    // Split the fused rows into contiguous gate and up halves, then one (parallel) SwiGLU.
    s.q.resize(n * F);
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(s.ff_a.data() + t * F, s.ff_b.data() + t * 2 * F, F * sizeof(float));
      std::memcpy(s.q.data() + t * F, s.ff_b.data() + t * 2 * F + F, F * sizeof(float));
    }
    ops::swiglu(s.ff_a.data(), s.q.data(), n * F);
  }
  linear(lw.down, s.ff_a.data(), n, s.proj.data());
  add_inplace(x, s.proj.data(), n * d);
}

}  // namespace attnsparse
