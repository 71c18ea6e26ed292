// Q4_1: 32 4-bit values q, x = d * q + m; dot with Q8_1 activations:
// d_w d_a sum(q * q8) + m_w s_a.
#include <algorithm>
#include <cfloat>

#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ4_1*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = load_f16(blk[b].d), m = load_f16(blk[b].m);
    for (int j = 0; j < 16; ++j) {
      dst[b * 32 + j] = d * (blk[b].qs[j] & 0x0F) + m;
      dst[b * 32 + j + 16] = d * (blk[b].qs[j] >> 4) + m;
    }
  }
}

double dot(const BlockQ4_1* w, const BlockQ8_1* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) s += int32_t(w[b].qs[j] & 0x0F) * a[b].qs[j] + int32_t(w[b].qs[j] >> 4) * a[b].qs[j + 16];
    sum += double(float(s) * (load_f16(w[b].d) * load_f16(a[b].d))) + double(load_f16(w[b].m) * load_f16(a[b].s));
  }
  return sum;
}

// llama.cpp's quantize_row_q4_1_ref: d = (max - min)/15, m = min,
// q = min(15, trunc((x - min)/d + 0.5)).
void quantize(const float* src, uint8_t* dst, int64_t n) {
  auto* y = reinterpret_cast<BlockQ4_1*>(dst);
  for (int64_t b = 0; b < n / kQK8_0; ++b, src += kQK8_0) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < kQK8_0; ++j) {
      mn = std::min(mn, src[j]);
      mx = std::max(mx, src[j]);
    }
    const float d = (mx - mn) / 15;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = fp32_to_fp16(d);
    y[b].m = fp32_to_fp16(mn);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, int(int8_t((src[j] - mn) * id + 0.5f)));
      const int q1 = std::min(15, int(int8_t((src[j + 16] - mn) * id + 0.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}
}  // namespace

extern const Format kFormatQ4_1{DType::Q4_1, ActType::Q8_1, dequantize,
                                dot_bytes<BlockQ4_1, BlockQ8_1, dot>, quantize};

}  // namespace attnsparse::ops::quant
