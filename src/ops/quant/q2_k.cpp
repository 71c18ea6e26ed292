// Q2_K: super-blocks of 256 with 2-bit values and 4-bit scale / min per 16,
// x = d * sc * q - dmin * mn; dot with Q8_K activations.
#include <algorithm>
#include <cmath>

#include "ops/quant/blocks.h"
#include "ops/quant/kquant_search.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// The 2-bit value of element e (0..255) of a Q2_K / Q3_K block.
inline int q2(const uint8_t* qs, int e) { return (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ2_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d), dmin = load_f16(blk[b].dmin);
    for (int g = 0; g < 16; ++g) {
      const float dl = d * (blk[b].scales[g] & 0xF), ml = dmin * (blk[b].scales[g] >> 4);
      for (int l = 0; l < 16; ++l) {
        const int e = g * 16 + l;
        dst[b * kQK_K + e] = dl * q2(blk[b].qs, e) - ml;
      }
    }
  }
}

double dot(const BlockQ2_K* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t isum = 0, summs = 0;
    for (int g = 0; g < 16; ++g) {
      int32_t s = 0;
      for (int l = 0; l < 16; ++l) s += q2(w[b].qs, g * 16 + l) * a[b].qs[g * 16 + l];
      isum += int32_t(w[b].scales[g] & 0xF) * s;
      summs += int32_t(w[b].scales[g] >> 4) * a[b].bsums[g];
    }
    const float dall = a[b].d * load_f16(w[b].d), dmin = a[b].d * load_f16(w[b].dmin);
    sum += double(dall * float(isum)) - double(dmin * float(summs));
  }
  return sum;
}

// llama.cpp's quantize_row_q2_K_ref: per 16 an affine search weighted by |x| (mean
// absolute error, 15 steps from -0.5), scales and mins to 4 bits, then the levels.
void quantize(const float* x, uint8_t* dst, int64_t n) {
  using namespace ksearch;
  auto* y = reinterpret_cast<BlockQ2_K*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    uint8_t L[kQK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    float max_scale = 0, max_min = 0;
    for (int g = 0; g < 16; ++g) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * g + l]);
      scales[g] = affine_levels(16, 3, x + 16 * g, weights, L + 16 * g, &mins[g], Laux, -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[g]);
      max_min = std::max(max_min, mins[g]);
    }
    if (max_scale > 0) {
      const float iscale = 15.f / max_scale;
      for (int g = 0; g < 16; ++g) y[b].scales[g] = static_cast<uint8_t>(nearest_int(iscale * scales[g]));
      y[b].d = fp32_to_fp16(max_scale / 15.f);
    } else {
      std::memset(y[b].scales, 0, 16);
      y[b].d = fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = 15.f / max_min;
      for (int g = 0; g < 16; ++g) y[b].scales[g] |= static_cast<uint8_t>(nearest_int(iscale * mins[g]) << 4);
      y[b].dmin = fp32_to_fp16(max_min / 15.f);
    } else {
      y[b].dmin = fp32_to_fp16(0.f);
    }
    for (int g = 0; g < 16; ++g) {
      const float d = load_f16(y[b].d) * (y[b].scales[g] & 0xF);
      if (d == 0.f) continue;
      const float dm = load_f16(y[b].dmin) * (y[b].scales[g] >> 4);
      for (int i = 0; i < 16; ++i) L[16 * g + i] = static_cast<uint8_t>(std::max(0, std::min(3, nearest_int((x[16 * g + i] + dm) / d))));
    }
    std::memset(y[b].qs, 0, 64);
    for (int e = 0; e < kQK_K; ++e) y[b].qs[(e / 128) * 32 + e % 32] |= static_cast<uint8_t>(L[e] << (2 * ((e % 128) / 32)));
  }
}
}  // namespace

extern const Format kFormatQ2_K{DType::Q2_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ2_K, BlockQ8_K, dot>, quantize};

}  // namespace attnsparse::ops::quant
