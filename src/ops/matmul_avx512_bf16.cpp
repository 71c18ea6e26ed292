// BF16 weights with AVX512-BF16 dot products (vdpbf16ps): activations are rounded to bf16
// (as llama.cpp does for BF16 weights, and as round_acts does on the other levels) and
// each instruction multiplies 16 pairs of bf16 into f32 sums — twice the multiply-adds of
// an f32 FMA, with no widening of the weights. Products of two bf16 are exact in f32, so
// results differ from the f32-FMA kernels only in the order of additions.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "ops/matmul_kernels.h"

#pragma GCC push_options
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")

namespace {

using attnsparse::ops::WeightView;

constexpr int64_t kKC = 256;   // GEMM k-block (elements; 128 bf16 pairs)
constexpr int kNR = 12;        // weight rows per GEMM tile
constexpr int kTB = 32;        // tokens per GEMM tile (two vectors of 16)

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// ---- activations -> bf16 (round to nearest even) ----
void to_bf16(const float* x, uint16_t* xb, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(xb + i, reinterpret_cast<__m512i>(h));
  }
  for (; i < n; ++i) xb[i] = attnsparse::fp32_to_bf16(x[i]);
}

// ---- GEMV: R weight rows x NT tokens, 32 elements per step ----
template <int R, int NT>
inline void dot_tile(const uint16_t* const* rows, const uint16_t* const* xs, int64_t n, float* out) {
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512bh xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = as_bh(_mm512_loadu_si512(xs[t] + i));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512bh wv = as_bh(_mm512_loadu_si512(rows[r] + i));
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
    }
  }
  if (i < n) {  // tail: masked loads fill with zeros
    const __mmask32 mk = static_cast<__mmask32>((uint64_t{1} << (n - i)) - 1);
    __m512bh xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = as_bh(_mm512_maskz_loadu_epi16(mk, xs[t] + i));
    for (int r = 0; r < R; ++r) {
      const __m512bh wv = as_bh(_mm512_maskz_loadu_epi16(mk, rows[r] + i));
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) out[r * NT + t] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int NT>
void dot_tokens(const WeightView& w, const uint16_t* const* xs, float* const* ys, int64_t o0, int64_t o1) {
  constexpr int R = NT == 1 ? 8 : 4;
  const int64_t n = w.n_in;
  const uint16_t* base = reinterpret_cast<const uint16_t*>(w.data);
  float out[R * NT];
  int64_t o = o0;
  for (; o + R <= o1; o += R) {
    const uint16_t* rows[R];
    for (int r = 0; r < R; ++r) rows[r] = base + (o + r) * n;
    dot_tile<R, NT>(rows, xs, n, out);
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t) ys[t][o + r] = out[r * NT + t];
  }
  for (; o < o1; ++o) {
    const uint16_t* row = base + o * n;
    dot_tile<1, NT>(&row, xs, n, out);
    for (int t = 0; t < NT; ++t) ys[t][o] = out[t];
  }
}

void bf16_rows(const WeightView& w, const uint16_t* xb, int64_t m, float* y, int64_t o0, int64_t o1) {
  const int64_t n = w.n_in;
  for (int64_t t0 = 0; t0 < m; t0 += 4) {
    const int nt = static_cast<int>(std::min<int64_t>(4, m - t0));
    const uint16_t* xs[4];
    float* ys[4];
    for (int j = 0; j < nt; ++j) {
      xs[j] = xb + (t0 + j) * n;
      ys[j] = y + (t0 + j) * w.n_out;
    }
    switch (nt) {
      case 1: dot_tokens<1>(w, xs, ys, o0, o1); break;
      case 2: dot_tokens<2>(w, xs, ys, o0, o1); break;
      case 3: dot_tokens<3>(w, xs, ys, o0, o1); break;
      default: dot_tokens<4>(w, xs, ys, o0, o1); break;
    }
  }
}

// ---- GEMM ----
// Packed activations: for k-block c and token block b, [pair p][token j] of u32 holding
// the bf16 pair (x[2p], x[2p+1]) of token b*kTB + j (zero for tokens past m).
void bf16_pack(const uint16_t* xb, int64_t m, int64_t n, uint32_t* xp, int64_t b0, int64_t b1) {
  const int64_t n_tb = (m + kTB - 1) / kTB, n_kc = (n + kKC - 1) / kKC;
  for (int64_t b = b0; b < b1; ++b)
    for (int64_t c = 0; c < n_kc; ++c) {
      uint32_t* dst = xp + (c * n_tb + b) * (kKC / 2) * kTB;
      const int64_t k0 = c * kKC, pairs = (std::min(kKC, n - k0)) / 2;
      for (int64_t j = 0; j < kTB; ++j) {
        const int64_t t = b * kTB + j;
        if (t < m) {
          const uint16_t* src = xb + t * n + k0;
          for (int64_t p = 0; p < pairs; ++p) {
            uint32_t v;
            std::memcpy(&v, src + 2 * p, 4);
            dst[p * kTB + j] = v;
          }
        } else {
          for (int64_t p = 0; p < pairs; ++p) dst[p * kTB + j] = 0;
        }
      }
    }
}

template <int TV>
inline void micro(const uint32_t* xb, const uint16_t* const* wr, int64_t pairs, float* c, bool accumulate) {
  __m512 acc[kNR][TV];
#pragma GCC unroll 16
  for (int r = 0; r < kNR; ++r)
    for (int v = 0; v < TV; ++v) acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * kTB + v * 16) : _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh xv[TV];
    for (int v = 0; v < TV; ++v) xv[v] = as_bh(_mm512_loadu_si512(xb + p * kTB + v * 16));
#pragma GCC unroll 16
    for (int r = 0; r < kNR; ++r) {
      uint32_t wp;
      std::memcpy(&wp, wr[r] + 2 * p, 4);
      const __m512bh b = as_bh(_mm512_set1_epi32(static_cast<int>(wp)));
      for (int v = 0; v < TV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], b, xv[v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kNR; ++r)
    for (int v = 0; v < TV; ++v) _mm512_storeu_ps(c + r * kTB + v * 16, acc[r][v]);
}

void bf16_gemm(const WeightView& w, const uint32_t* xp, int64_t m, float* y, int64_t o0, int64_t o1) {
  const int64_t n = w.n_in;
  const int64_t n_tb = (m + kTB - 1) / kTB, n_kc = (n + kKC - 1) / kKC;
  const int64_t n_pan = (o1 - o0 + kNR - 1) / kNR;
  thread_local std::vector<float> cbuf;
  thread_local std::vector<uint16_t> zero_row;
  cbuf.resize(n_pan * n_tb * kNR * kTB);
  zero_row.assign(kKC, 0);
  const uint16_t* base = reinterpret_cast<const uint16_t*>(w.data);
  for (int64_t c = 0; c < n_kc; ++c) {
    const int64_t k0 = c * kKC, pairs = std::min(kKC, n - k0) / 2;
    for (int64_t p = 0; p < n_pan; ++p) {
      const int64_t r0 = o0 + p * kNR;
      const uint16_t* wr[kNR];
      for (int r = 0; r < kNR; ++r) wr[r] = r0 + r < o1 ? base + (r0 + r) * n + k0 : zero_row.data();
      for (int64_t b = 0; b < n_tb; ++b) {
        const uint32_t* xb = xp + (c * n_tb + b) * (kKC / 2) * kTB;
        float* tile = cbuf.data() + (p * n_tb + b) * kNR * kTB;
        if (m - b * kTB > 16)
          micro<2>(xb, wr, pairs, tile, c > 0);
        else
          micro<1>(xb, wr, pairs, tile, c > 0);
      }
    }
  }
  for (int64_t p = 0; p < n_pan; ++p) {
    const int64_t r0 = o0 + p * kNR, nr = std::min<int64_t>(kNR, o1 - r0);
    for (int64_t b = 0; b < n_tb; ++b) {
      const float* tile = cbuf.data() + (p * n_tb + b) * kNR * kTB;
      const int64_t nt = std::min<int64_t>(kTB, m - b * kTB);
      for (int64_t t = 0; t < nt; ++t) {
        float* yt = y + (b * kTB + t) * w.n_out + r0;
        for (int64_t r = 0; r < nr; ++r) yt[r] = tile[r * kTB + t];
      }
    }
  }
}

}  // namespace

#pragma GCC pop_options
#pragma GCC diagnostic pop

namespace attnsparse::ops::kern {

const Bf16DotKernels& avx512_bf16_dot_kernels() {
  static const Bf16DotKernels k{to_bf16, bf16_rows, 16, kTB, kKC, bf16_pack, bf16_gemm};
  return k;
}

}  // namespace attnsparse::ops::kern
