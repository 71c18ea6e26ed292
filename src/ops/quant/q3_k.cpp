// Q3_K: super-blocks of 256 with 3-bit values (2 low bits as Q2_K, the high bit in
// hmask, clear meaning -4) and 6-bit scales per 16 (stored +32), x = d * sc * q; dot with
// Q8_K activations.
#include <algorithm>
#include <cmath>

#include "ops/quant/blocks.h"
#include "ops/quant/kquant_search.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// The signed 3-bit value (-4..3) of element e of a Q3_K block.
inline int q3(const BlockQ3_K& blk, int e) {
  const int lo = (blk.qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
  return lo - (((blk.hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4);
}

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ3_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d);
    int8_t sc[16];
    q3_K_scales(blk[b].scales, sc);
    for (int g = 0; g < 16; ++g) {
      const float dl = d * sc[g];
      for (int l = 0; l < 16; ++l) dst[b * kQK_K + g * 16 + l] = dl * q3(blk[b], g * 16 + l);
    }
  }
}

double dot(const BlockQ3_K* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int8_t sc[16];
    q3_K_scales(w[b].scales, sc);
    int32_t isum = 0;
    for (int g = 0; g < 16; ++g) {
      int32_t s = 0;
      for (int l = 0; l < 16; ++l) s += q3(w[b], g * 16 + l) * a[b].qs[g * 16 + l];
      isum += int32_t(sc[g]) * s;
    }
    const float d = load_f16(w[b].d) * a[b].d;
    sum += double(d * float(isum));
  }
  return sum;
}

// llama.cpp's quantize_row_q3_K_ref: a refined symmetric search per 16, the scales to
// 6 bits (signed, against the one of largest magnitude), then the 3-bit levels.
void quantize(const float* x, uint8_t* dst, int64_t n) {
  using namespace ksearch;
  auto* y = reinterpret_cast<BlockQ3_K*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    int8_t L[kQK_K];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int g = 0; g < 16; ++g) {
      scales[g] = symmetric_levels_refined(16, 4, x + 16 * g, L + 16 * g);
      if (std::fabs(scales[g]) > amax) {
        amax = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    std::memset(y[b].scales, 0, 12);
    if (max_scale != 0.f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int l = std::max(-32, std::min(31, int(int8_t(nearest_int(iscale * scales[j]))))) + 32;
        if (j < 8) y[b].scales[j] = static_cast<uint8_t>(l & 0xF);
        else y[b].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
        y[b].scales[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      y[b].d = fp32_to_fp16(1 / iscale);
    } else {
      y[b].d = fp32_to_fp16(0.f);
    }
    int8_t sc[16];
    q3_K_scales(y[b].scales, sc);
    for (int g = 0; g < 16; ++g) {
      const float d = load_f16(y[b].d) * sc[g];
      if (d == 0.f) continue;
      for (int i = 0; i < 16; ++i) L[16 * g + i] = static_cast<int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * g + i] / d))) + 4);
    }
    std::memset(y[b].hmask, 0, 32);
    std::memset(y[b].qs, 0, 64);
    for (int e = 0; e < kQK_K; ++e) {
      int l = L[e];
      if (l > 3) {
        y[b].hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
        l -= 4;
      }
      y[b].qs[(e / 128) * 32 + e % 32] |= static_cast<uint8_t>(l << (2 * ((e % 128) / 32)));
    }
  }
}
}  // namespace

extern const Format kFormatQ3_K{DType::Q3_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ3_K, BlockQ8_K, dot>, quantize};

}  // namespace attnsparse::ops::quant
