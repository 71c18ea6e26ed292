// gpt2: learned absolute positions, LayerNorm with bias, fused qkv projection with bias,
// GELU (tanh) MLP with biases, output tied to the token embedding in HF checkpoints.
#include <cstring>

#include "core/error.h"
#include "model/forward.h"
#include "model/profile.h"
#include "ops/activation.h"
#include "ops/norm.h"

namespace attnsparse {

void bind_gpt2_weights(const ModelConfig& c, WeightBinder& b, ModelWeights& w) {
  const int64_t d = c.n_embd;
  if (c.n_head * c.head_dim != d)
    fail_file(b.source().path(), "gpt2 needs head_count x head size == embedding length");
  bind_embedding_and_output(c, b, w);
  w.position_embd = &b.require("position_embd", -1, "weight", {c.n_ctx, d});
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerWeights& lw = w.layers[l];
    lw.attn_norm = b.norm("attn_norm", l, true);
    lw.qkv = b.linear("attn_qkv", l, 3 * d, d, true, /*conv1d=*/true);
    lw.o = b.linear("attn_output", l, d, d, true, true);
    lw.ffn_norm = b.norm("ffn_norm", l, true);
    lw.up = b.linear("ffn_up", l, c.n_ff, d, true, true);
    lw.down = b.linear("ffn_down", l, d, c.n_ff, true, true);
  }
}

void gpt2_layer(const ForwardContext& fc, int layer, float* x, Scratch& s) {
  const ModelConfig& c = fc.cfg;
  const LayerWeights& lw = fc.w.layers[layer];
  const int64_t n = fc.n, d = c.n_embd;
  s.xn.resize(n * d);
  s.qkv.resize(n * 3 * d);
  s.att.resize(n * d);
  s.proj.resize(n * d);
  s.ff_a.resize(n * c.n_ff);

  {
    profile::Scope timer(profile::Norm);
    ops::layer_norm(x, n, d, lw.attn_norm.weight, lw.attn_norm.bias, c.norm_eps, s.xn.data());
  }
  linear(lw.qkv, s.xn.data(), n, s.qkv.data());
  {
    profile::Scope timer(profile::Other);
    float* k = fc.cache.new_k(layer, fc.slot0, fc.n);
    float* v = fc.cache.new_v(layer, fc.slot0, fc.n);
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(k + t * d, s.qkv.data() + t * 3 * d + d, d * sizeof(float));
      std::memcpy(v + t * d, s.qkv.data() + t * 3 * d + 2 * d, d * sizeof(float));
    }
  }
  attention_block(fc, layer, s.qkv.data(), 3 * d, s.att.data());
  linear(lw.o, s.att.data(), n, s.proj.data());
  add_inplace(x, s.proj.data(), n * d);

  {
    profile::Scope timer(profile::Norm);
    ops::layer_norm(x, n, d, lw.ffn_norm.weight, lw.ffn_norm.bias, c.norm_eps, s.xn.data());
  }
  linear(lw.up, s.xn.data(), n, s.ff_a.data());
  {
    profile::Scope timer(profile::Activation);
    ops::gelu_f16_table(s.ff_a.data(), n * c.n_ff);
  }
  linear(lw.down, s.ff_a.data(), n, s.proj.data());
  add_inplace(x, s.proj.data(), n * d);
}

}  // namespace attnsparse
