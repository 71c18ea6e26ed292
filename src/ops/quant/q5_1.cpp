// Q5_1: 32 5-bit values q, x = d * q + m; dot with Q8_1 activations.
#include <algorithm>
#include <cfloat>

#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
inline int q5(const uint8_t* qs, uint32_t qh, int j) {
  const int nib = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
  return nib | int((qh >> j) & 1) << 4;
}

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ5_1*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = load_f16(blk[b].d), m = load_f16(blk[b].m);
    uint32_t qh;
    std::memcpy(&qh, blk[b].qh, 4);
    for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * q5(blk[b].qs, qh, j) + m;
  }
}

double dot(const BlockQ5_1* w, const BlockQ8_1* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    uint32_t qh;
    std::memcpy(&qh, w[b].qh, 4);
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += q5(w[b].qs, qh, j) * a[b].qs[j];
    sum += double(float(s) * (load_f16(w[b].d) * load_f16(a[b].d))) + double(load_f16(w[b].m) * load_f16(a[b].s));
  }
  return sum;
}

// llama.cpp's quantize_row_q5_1_ref: d = (max - min)/31, m = min,
// q = trunc((x - min)/d + 0.5) (no clamp: it cannot exceed 31).
void quantize(const float* src, uint8_t* dst, int64_t n) {
  auto* y = reinterpret_cast<BlockQ5_1*>(dst);
  for (int64_t b = 0; b < n / kQK8_0; ++b, src += kQK8_0) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < kQK8_0; ++j) {
      mn = std::min(mn, src[j]);
      mx = std::max(mx, src[j]);
    }
    const float d = (mx - mn) / 31;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = fp32_to_fp16(d);
    y[b].m = fp32_to_fp16(mn);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = uint8_t((src[j] - mn) * id + 0.5f);
      const int q1 = uint8_t((src[j + 16] - mn) * id + 0.5f);
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= uint32_t((q0 >> 4) & 1) << j;
      qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[b].qh, &qh, 4);
  }
}
}  // namespace

extern const Format kFormatQ5_1{DType::Q5_1, ActType::Q8_1, dequantize,
                                dot_bytes<BlockQ5_1, BlockQ8_1, dot>, quantize};

}  // namespace attnsparse::ops::quant
