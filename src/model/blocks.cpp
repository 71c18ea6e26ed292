// Blocks shared by every architecture: linear layers, embedding lookup, attention on the
// KV cache with the hooks.
#include <cmath>
#include <cstring>

#include "model/finite_check.h"
#include "model/forward.h"
#include "model/profile.h"
#include "ops/matmul.h"

namespace attnsparse {

void linear(const Linear& l, const float* x, int64_t m, float* y) {
  profile::Scope timer(profile::Matmul);
  ops::matmul(l.w, x, m, y);
  if (l.bias) {
    const int64_t n_out = l.w.n_out;
#pragma omp parallel for schedule(static) if (m > 1)
    for (int64_t t = 0; t < m; ++t)
      for (int64_t o = 0; o < n_out; ++o) y[t * n_out + o] += l.bias[o];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void embed_tokens(const ForwardContext& fc, const int32_t* tokens, float* x) {
  profile::Scope timer(profile::Embed);
  const TensorInfo& e = *fc.w.token_embd;
  const int64_t d = fc.cfg.n_embd;
  const int64_t row_bytes = dtype_row_bytes(e.dtype, d);
#pragma omp parallel for schedule(static) if (fc.n > 1)
  for (int64_t t = 0; t < fc.n; ++t)
    ops::dequantize_row(e.dtype, e.data + tokens[t] * row_bytes, x + t * d, d);
  if (fc.w.position_embd) {
    const TensorInfo& p = *fc.w.position_embd;
    const int64_t p_row_bytes = dtype_row_bytes(p.dtype, d);
#pragma omp parallel
    {
      std::vector<float> row(d);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < fc.n; ++t) {
        ops::dequantize_row(p.dtype, p.data + fc.pos[t] * p_row_bytes, row.data(), d);
        for (int64_t i = 0; i < d; ++i) x[t * d + i] += row[i];
      }
    }
  }
}

void attention_block(const ForwardContext& fc, int layer, const float* q, int64_t q_stride,
                     float* out) {
  const ModelConfig& c = fc.cfg;
  const int64_t kv_dim = c.n_kv_head * c.head_dim;
  ops::AttentionShape shape;
  shape.n_q = fc.n;
  shape.q_pos0 = fc.pos[0];
  shape.n_kv = fc.slot0 + fc.n;
  shape.n_head = static_cast<int>(c.n_head);
  shape.n_kv_head = static_cast<int>(c.n_kv_head);
  shape.head_dim = static_cast<int>(c.head_dim);
  shape.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ops::AttentionArgs args;
  args.q = q;
  args.q_stride = q_stride;
  args.k = fc.cache.k[layer].data();
  args.k_stride = kv_dim;
  args.v = fc.cache.v[layer].data();
  args.v_stride = kv_dim;
  args.out = out;
  args.out_stride = c.n_head * c.head_dim;
  args.key_pos = fc.cache.positions[layer].data();
  // Attention would hide a NaN (a NaN score never wins the max): refuse it here.
  require_finite_rows(q, fc.n, c.n_head * c.head_dim, q_stride, layer, "queries", "attn_q");
  require_finite_rows(args.k + fc.slot0 * kv_dim, fc.n, kv_dim, kv_dim, layer, "keys", "attn_k");
  require_finite_rows(args.v + fc.slot0 * kv_dim, fc.n, kv_dim, kv_dim, layer, "values", "attn_v");
  const ops::KeySet* keys = fc.hooks ? fc.hooks->plan(layer, shape, args) : nullptr;
  ops::RowObserver* observer = fc.hooks ? fc.hooks->observer(layer) : nullptr;
  {
    profile::Scope timer(profile::Attention);
    ops::attention(shape, args, keys, observer);
  }
  if (fc.hooks) fc.hooks->after_attention(layer, shape, args);
}

}  // namespace attnsparse
