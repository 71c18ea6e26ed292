// Q5_K: as Q4_K with a fifth bit per value in qh, x = d * sc * q - dmin * mn; dot with
// Q8_K activations.
#include <algorithm>
#include <cmath>

#include "ops/quant/blocks.h"
#include "ops/quant/kquant_search.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// The 5-bit value of element e (sub-block j = e/32) of a Q5_K block.
inline int q5k(const BlockQ5_K& blk, int e) {
  const int j = e / 32, l = e % 32;
  const int lo = (blk.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0xF;
  return lo | (((blk.qh[l] >> j) & 1) << 4);
}

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ5_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d), dmin = load_f16(blk[b].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      get_scale_min_k4(j, blk[b].scales, &sc, &mn);
      const float d1 = d * sc, m1 = dmin * mn;
      for (int l = 0; l < 32; ++l) dst[b * kQK_K + j * 32 + l] = d1 * q5k(blk[b], j * 32 + l) - m1;
    }
  }
}

// As Q4_K: two f32 chains, one FMA per super-block each (the packed VNNI kernel's order).
double dot(const BlockQ5_K* w, const BlockQ8_K* a, int64_t n) {
  float acc = 0, accm = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      get_scale_min_k4(j, w[b].scales, &sc, &mn);
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += q5k(w[b], j * 32 + l) * a[b].qs[j * 32 + l];
      sumi += int32_t(sc) * s;
      summ += int32_t(mn) * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    acc = std::fma(float(sumi), load_f16(w[b].d) * a[b].d, acc);
    accm = std::fma(float(summ), load_f16(w[b].dmin) * a[b].d, accm);
  }
  return acc - accm;
}

// llama.cpp's quantize_row_q5_K_ref: as Q4_K with 5-bit levels (15 steps from -0.5).
void quantize(const float* x, uint8_t* dst, int64_t n) {
  using namespace ksearch;
  constexpr int NMAX = 31, NSTEP = 15;
  constexpr float RMIN = -0.5f;
  auto* y = reinterpret_cast<BlockQ5_K*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float scales[8], mins[8], weights[32];
    uint8_t L[kQK_K], Laux[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float* xj = x + 32 * j;
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += xj[l] * xj[l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xj[l]);
      scales[j] = affine_levels(32, NMAX, xj, weights, L + 32 * j, &mins[j], Laux, RMIN, 0.1f, NSTEP, false);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t* s = y[b].scales;
    std::memset(s, 0, 12);
    for (int j = 0; j < 8; ++j) {
      const uint8_t ls = static_cast<uint8_t>(std::min(63, int(uint8_t(nearest_int(inv_scale * scales[j])))));
      const uint8_t lm = static_cast<uint8_t>(std::min(63, int(uint8_t(nearest_int(inv_min * mins[j])))));
      if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
      } else {
        s[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        s[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    y[b].d = fp32_to_fp16(max_scale / 63.f);
    y[b].dmin = fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, s, &sc, &m);
      const float d = load_f16(y[b].d) * sc;
      if (d == 0.f) continue;
      const float dm = load_f16(y[b].dmin) * m;
      for (int i = 0; i < 32; ++i) L[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(NMAX, nearest_int((x[32 * j + i] + dm) / d))));
    }
    std::memset(y[b].qh, 0, 32);
    for (int e = 0; e < kQK_K; ++e) {
      const int j = e / 32, l = e % 32;
      if (l == 0 && j % 2 == 0) std::memset(y[b].qs + (j / 2) * 32, 0, 32);
      y[b].qs[(j / 2) * 32 + l] |= static_cast<uint8_t>((L[e] & 0xF) << (4 * (j % 2)));
      y[b].qh[l] |= static_cast<uint8_t>((L[e] >> 4) << j);
    }
  }
}
}  // namespace

extern const Format kFormatQ5_K{DType::Q5_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ5_K, BlockQ8_K, dot>, quantize};

}  // namespace attnsparse::ops::quant
