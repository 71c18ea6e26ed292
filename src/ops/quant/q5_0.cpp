// Q5_0: 32 5-bit values q (nibble + fifth bit from qh), x = d * (q - 16); dot with Q8_0
// activations.
#include <algorithm>
#include <cmath>

#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// Element j (0..31) of a Q5_0 / Q5_1 block, 0..31.
inline int q5(const uint8_t* qs, uint32_t qh, int j) {
  const int nib = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
  return nib | int((qh >> j) & 1) << 4;
}

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ5_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = load_f16(blk[b].d);
    uint32_t qh;
    std::memcpy(&qh, blk[b].qh, 4);
    for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * (q5(blk[b].qs, qh, j) - 16);
  }
}

double dot(const BlockQ5_0* w, const BlockQ8_0* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    uint32_t qh;
    std::memcpy(&qh, w[b].qh, 4);
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += (q5(w[b].qs, qh, j) - 16) * a[b].qs[j];
    sum += double(float(s) * (load_f16(w[b].d) * load_f16(a[b].d)));
  }
  return sum;
}

// llama.cpp's quantize_row_q5_0_ref: d = max / -16, q = min(31, trunc(x/d + 16.5)).
void quantize(const float* src, uint8_t* dst, int64_t n) {
  auto* y = reinterpret_cast<BlockQ5_0*>(dst);
  for (int64_t b = 0; b < n / kQK8_0; ++b, src += kQK8_0) {
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < kQK8_0; ++j)
      if (amax < std::fabs(src[j])) {
        amax = std::fabs(src[j]);
        max = src[j];
      }
    const float d = max / -16;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(31, int(int8_t(src[j] * id + 16.5f)));
      const int q1 = std::min(31, int(int8_t(src[j + 16] * id + 16.5f)));
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= uint32_t((q0 >> 4) & 1) << j;
      qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[b].qh, &qh, 4);
  }
}
}  // namespace

extern const Format kFormatQ5_0{DType::Q5_0, ActType::Q8_0, dequantize,
                                dot_bytes<BlockQ5_0, BlockQ8_0, dot>, quantize};

}  // namespace attnsparse::ops::quant
