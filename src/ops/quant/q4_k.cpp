// Q4_K: super-blocks of 256 in 8 sub-blocks of 32 with 6-bit scales and mins,
// x = d * sc * q - dmin * mn; dot with Q8_K activations.
#include <algorithm>
#include <cmath>

#include "ops/quant.h"
#include "ops/quant/kquant_search.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

void q4_K_block_ints(const BlockQ4_K& w, const BlockQ8_K& a, int32_t* sumi, int32_t* summ) {
  int32_t si = 0, sm = 0;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    get_scale_min_k4(j, w.scales, &sc, &mn);
    const uint8_t* q = w.qs + (j / 2) * 32;
    const int shift = (j % 2) * 4;
    int32_t s = 0;
    for (int l = 0; l < 32; ++l) s += int32_t((q[l] >> shift) & 0xF) * a.qs[j * 32 + l];
    si += int32_t(sc) * s;
    sm += int32_t(mn) * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
  }
  *sumi = si;
  *summ = sm;
}

// Two f32 chains over the super-blocks in order, one FMA each per super-block (scales
// times the exact integer sums), subtracted at the end: llama.cpp's repacked x86 Q4_K
// kernels, and our packed VNNI kernel, bit for bit.
double dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, int64_t n) {
  float acc = 0, accm = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sumi, summ;
    q4_K_block_ints(w[b], a[b], &sumi, &summ);
    acc = std::fma(float(sumi), load_f16(w[b].d) * a[b].d, acc);
    accm = std::fma(float(summ), load_f16(w[b].dmin) * a[b].d, accm);
  }
  return acc - accm;
}

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ4_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d), dmin = load_f16(blk[b].dmin);
    const uint8_t* q = blk[b].qs;
    float* y = dst + b * kQK_K;
    for (int j = 0; j < 4; ++j, q += 32) {
      uint8_t sc, mn;
      get_scale_min_k4(2 * j, blk[b].scales, &sc, &mn);
      const float d1 = d * sc, m1 = dmin * mn;
      get_scale_min_k4(2 * j + 1, blk[b].scales, &sc, &mn);
      const float d2 = d * sc, m2 = dmin * mn;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// llama.cpp's quantize_row_q4_K_ref: per 32 an affine search weighted by rms + |x|
// (20 steps from -1), scales and mins to 6 bits against the largest, then the levels.
void quantize(const float* x, uint8_t* dst, int64_t n) {
  using namespace ksearch;
  constexpr int NMAX = 15, NSTEP = 20;
  constexpr float RMIN = -1.f;
  auto* y = reinterpret_cast<BlockQ4_K*>(dst);
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
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) y[b].qs[32 * j + l] = static_cast<uint8_t>(L[64 * j + l] | (L[64 * j + l + 32] << 4));
  }
}
}  // namespace

extern const Format kFormatQ4_K{DType::Q4_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ4_K, BlockQ8_K, dot_q4_K_q8_K>, quantize};

}  // namespace attnsparse::ops::quant
