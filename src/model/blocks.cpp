// Blocks shared by every architecture: linear layers, embedding lookup, attention on the
// KV cache with the hooks.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <numeric>

#include "model/arch.h"
#include "core/error.h"
#include "model/finite_check.h"
#include "model/forward.h"
#include "model/profile.h"
#include "ops/activation.h"
#include "ops/matmul.h"
#include "ops/norm.h"

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
  if (arch_info(fc.cfg.arch).embd_scale) {
    // Gemma: embeddings x sqrt(n_embd), in f32 as llama.cpp scales them.
    const float scale = std::sqrt(static_cast<float>(d));
    for (int64_t i = 0; i < fc.n * d; ++i) x[i] *= scale;
  }
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

// A typed cache: the new tokens' staged f32 rows are stored in the cache's type, then the
// layer's slots 0..slot0+n-1 are decoded into the f32 view the attention core reads.
static void typed_kv_view(const ForwardContext& fc, int layer) {
  KVCache& c = fc.cache;
  const DType t = c.type;
  const int64_t d = c.kv_dim, rb = dtype_row_bytes(t, d), n = fc.n, slots = fc.slot0 + n;
  if (static_cast<int64_t>(c.stage_k.size()) < n * d || static_cast<int64_t>(c.stage_v.size()) < n * d)
    fail("internal: the layer did not stage its K/V rows");
  uint8_t* kq = c.kq[layer].data();
  uint8_t* vq = c.vq[layer].data();
  c.view_k.resize(slots * d);
  c.view_v.resize(slots * d);
  float* vk = c.view_k.data();
  float* vv = c.view_v.data();
  const float* sk = c.stage_k.data();
  const float* sv = c.stage_v.data();
  const int64_t slot0 = fc.slot0;
#pragma omp parallel for schedule(static) if (slots * d > (1 << 16))
  for (int64_t j = 0; j < slots; ++j) {
    if (j >= slot0) {
      ops::quantize_row(t, sk + (j - slot0) * d, kq + j * rb, d);
      ops::quantize_row(t, sv + (j - slot0) * d, vq + j * rb, d);
    }
    ops::dequantize_row(t, kq + j * rb, vk + j * d, d);
    ops::dequantize_row(t, vq + j * rb, vv + j * d, d);
  }
}

// A typed cache read by attention directly: the new tokens' staged f32 rows are stored in
// the cache's type, and decoded back into view_k / view_v (n rows) for the finite check.
static void typed_kv_store(const ForwardContext& fc, int layer) {
  KVCache& c = fc.cache;
  const DType t = c.type;
  const int64_t d = c.kv_dim, rb = dtype_row_bytes(t, d), n = fc.n, slot0 = fc.slot0;
  if (static_cast<int64_t>(c.stage_k.size()) < n * d || static_cast<int64_t>(c.stage_v.size()) < n * d)
    fail("internal: the layer did not stage its K/V rows");
  uint8_t* kq = c.kq[layer].data();
  uint8_t* vq = c.vq[layer].data();
  c.view_k.resize(n * d);
  c.view_v.resize(n * d);
#pragma omp parallel for schedule(static) if (n * d > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = slot0 + i;
    ops::quantize_row(t, c.stage_k.data() + i * d, kq + j * rb, d);
    ops::quantize_row(t, c.stage_v.data() + i * d, vq + j * rb, d);
    ops::dequantize_row(t, kq + j * rb, c.view_k.data() + i * d, d);
    ops::dequantize_row(t, vq + j * rb, c.view_v.data() + i * d, d);
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
  // Loaders fill attn_scale and layers (finalize_config); a hand-made config gets the
  // usual scale and global layers.
  shape.scale = c.attn_scale > 0.f ? c.attn_scale : 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  shape.softcap = c.attn_softcap;
  shape.window = layer < static_cast<int>(c.layers.size()) ? c.layers[layer].window : 0;
  ops::AttentionArgs args;
  args.q = q;
  args.q_stride = q_stride;
  ops::TypedKV typed;
  const float* new_k = nullptr;  // the new tokens' K/V rows as attention will read them
  const float* new_v = nullptr;
  if (fc.cache.type == DType::F32) {
    args.k = fc.cache.k[layer].data();
    args.v = fc.cache.v[layer].data();
    new_k = args.k + fc.slot0 * kv_dim;
    new_v = args.v + fc.slot0 * kv_dim;
  } else if ((fc.hooks && fc.hooks->reads_kv()) || c.head_dim % dtype_traits(fc.cache.type).block_size != 0) {
    // (A head that does not start on a block of the type, e.g. q8_0 with head_dim 16,
    // cannot be decoded on its own: the whole rows are decoded into the view.)
    typed_kv_view(fc, layer);
    args.k = fc.cache.view_k.data();
    args.v = fc.cache.view_v.data();
    new_k = args.k + fc.slot0 * kv_dim;
    new_v = args.v + fc.slot0 * kv_dim;
  } else {
    typed_kv_store(fc, layer);
    typed.type = fc.cache.type;
    typed.k = fc.cache.kq[layer].data();
    typed.v = fc.cache.vq[layer].data();
    typed.row_bytes = dtype_row_bytes(typed.type, kv_dim);
    typed.head_bytes = dtype_row_bytes(typed.type, c.head_dim);
    typed.decode = ops::dequantize_row;
    args.typed = &typed;
    new_k = fc.cache.view_k.data();
    new_v = fc.cache.view_v.data();
  }
  args.k_stride = kv_dim;
  args.v_stride = kv_dim;
  args.out = out;
  args.out_stride = c.n_head * c.head_dim;
  args.key_pos = fc.cache.positions[layer].data();
  // Attention would hide a NaN (a NaN score never wins the max): refuse it here.
  require_finite_rows(q, fc.n, c.n_head * c.head_dim, q_stride, layer, "queries", "attn_q");
  require_finite_rows(new_k, fc.n, kv_dim, kv_dim, layer, "keys", "attn_k");
  require_finite_rows(new_v, fc.n, kv_dim, kv_dim, layer, "values", "attn_v");
  const ops::KeySet* keys = nullptr;
  ops::RowObserver* observer = nullptr;
  if (fc.hooks) {
    profile::Scope timer(profile::Hooks);
    keys = fc.hooks->plan(layer, shape, args);
    observer = fc.hooks->observer(layer);
  }
  {
    profile::Scope timer(profile::Attention);
    ops::attention(shape, args, keys, observer);
  }
  if (fc.hooks) {
    profile::Scope timer(profile::Hooks);
    fc.hooks->after_attention(layer, shape, args);
  }
}

void head_rms_norm(const ModelConfig& c, const Norm& norm, float* x, int64_t n, int64_t stride,
                   int n_heads) {
  profile::Scope timer(profile::Norm);
  const int64_t hd = c.head_dim;
  if (stride == n_heads * hd) {
    ops::rms_norm(x, n * n_heads, hd, norm.weight, c.norm_eps, x);
    return;
  }
  for (int64_t t = 0; t < n; ++t) ops::rms_norm(x + t * stride, n_heads, hd, norm.weight, c.norm_eps, x + t * stride);
}

void rms_norm_rows(const ModelConfig& c, const Norm& norm, const float* x, int64_t n, float* out) {
  profile::Scope timer(profile::Norm);
  ops::rms_norm(x, n, c.n_embd, norm.weight, c.norm_eps, out);
}

void moe_ffn(const ForwardContext& fc, const LayerWeights& lw, const float* xn, float* out,
             Scratch& s) {
  const ModelConfig& c = fc.cfg;
  const int64_t n = fc.n, d = c.n_embd, E = c.n_expert, K = c.n_expert_used, F = c.n_ff_expert;
  std::vector<float> logits(n * E);
  linear(lw.router, xn, n, logits.data());
  // Routing: softmax over all experts, the K most probable (ties: lower index), their
  // probabilities renormalised to sum 1.
  std::vector<int32_t> sel(n * K);
  std::vector<float> weight(n * K);
  {
    profile::Scope timer(profile::Other);
    std::vector<int32_t> order(E);
    std::vector<float> p(E);
    for (int64_t t = 0; t < n; ++t) {
      const float* l = logits.data() + t * E;
      const float mx = *std::max_element(l, l + E);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) {
        p[e] = std::exp(l[e] - mx);
        sum += p[e];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t e = 0; e < E; ++e) p[e] *= inv;
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t a, int32_t b) {
        return p[a] > p[b] || (p[a] == p[b] && a < b);
      });
      float wsum = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        sel[t * K + k] = order[k];
        weight[t * K + k] = p[order[k]];
        wsum += p[order[k]];
      }
      if (c.moe_norm_topk) {
        wsum = std::max(wsum, 6.103515625e-5f);  // llama.cpp clamps the sum at 2^-14
        for (int64_t k = 0; k < K; ++k) weight[t * K + k] /= wsum;
      }
    }
  }
  // Each expert runs on the rows routed to it; results land in their (token, slot) row.
  s.moe_y.resize(n * K * d);
  s.moe_x.resize(n * d);
  s.ff_a.resize(n * F);
  s.ff_b.resize(n * F);
  s.proj.resize(n * d);
  std::vector<int64_t> rows;
  for (int64_t e = 0; e < E; ++e) {
    rows.clear();
    for (int64_t r = 0; r < n * K; ++r)
      if (sel[r] == e) rows.push_back(r);
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(s.moe_x.data() + i * d, xn + rows[i] / K * d, d * sizeof(float));
    linear(lw.gate_exps[e], s.moe_x.data(), m, s.ff_a.data());
    linear(lw.up_exps[e], s.moe_x.data(), m, s.ff_b.data());
    {
      profile::Scope timer(profile::Activation);
      ops::swiglu(s.ff_a.data(), s.ff_b.data(), m * F);
    }
    linear(lw.down_exps[e], s.ff_a.data(), m, s.proj.data());
    for (int64_t i = 0; i < m; ++i) {
      const float w = weight[rows[i]];
      float* y = s.moe_y.data() + rows[i] * d;
      const float* p = s.proj.data() + i * d;
      for (int64_t j = 0; j < d; ++j) y[j] = p[j] * w;
    }
  }
  // Sum the slots in order (as llama.cpp adds its expert views).
  for (int64_t t = 0; t < n; ++t) {
    float* o = out + t * d;
    std::memcpy(o, s.moe_y.data() + t * K * d, d * sizeof(float));
    for (int64_t k = 1; k < K; ++k) {
      const float* y = s.moe_y.data() + (t * K + k) * d;
      for (int64_t j = 0; j < d; ++j) o[j] += y[j];
    }
  }
}

}  // namespace attnsparse
