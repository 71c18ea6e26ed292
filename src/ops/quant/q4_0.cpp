// Q4_0: 32 4-bit values q, x = d * (q - 8); dot with Q8_0 activations.
#include <algorithm>
#include <cmath>

#include "ops/quant.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

// Blocks are summed in order with one f32 FMA each, as llama.cpp's repacked x86 kernels
// (used for Q4_0 on AVX2 machines) do: its logits match more rows that way than with
// 8-lane partial sums or a double sum (measured on the quant reference files).
double dot_q4_0_q8_0(const BlockQ4_0* w, const BlockQ8_0* a, int64_t n) {
  float acc = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) {
      s += (int32_t(w[b].qs[j] & 0x0F) - 8) * a[b].qs[j];
      s += (int32_t(w[b].qs[j] >> 4) - 8) * a[b].qs[j + 16];
    }
    acc = std::fma(float(s), load_f16(w[b].d) * load_f16(a[b].d), acc);
  }
  return acc;
}

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ4_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = load_f16(blk[b].d);
    for (int j = 0; j < 16; ++j) {
      dst[b * 32 + j] = d * (static_cast<int>(blk[b].qs[j] & 0x0F) - 8);
      dst[b * 32 + j + 16] = d * (static_cast<int>(blk[b].qs[j] >> 4) - 8);
    }
  }
}

// llama.cpp's quantize_row_q4_0_ref: d = max / -8 (max the signed element of largest
// magnitude), q = min(15, trunc(x/d + 8.5)).
void quantize(const float* src, uint8_t* dst, int64_t n) {
  auto* y = reinterpret_cast<BlockQ4_0*>(dst);
  for (int64_t b = 0; b < n / kQK8_0; ++b, src += kQK8_0) {
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < kQK8_0; ++j)
      if (amax < std::fabs(src[j])) {
        amax = std::fabs(src[j]);
        max = src[j];
      }
    const float d = max / -8;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, int(int8_t(src[j] * id + 8.5f)));
      const int q1 = std::min(15, int(int8_t(src[j + 16] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}
}  // namespace

extern const Format kFormatQ4_0{DType::Q4_0, ActType::Q8_0, dequantize,
                                dot_bytes<BlockQ4_0, BlockQ8_0, dot_q4_0_q8_0>, quantize};

}  // namespace attnsparse::ops::quant
