// IQ4_NL: 32 4-bit indices into the non-linear codebook kValuesIQ4NL, x = d * value;
// dot with Q8_0 activations.
#include <cmath>

#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockIQ4_NL*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = load_f16(blk[b].d);
    for (int j = 0; j < 16; ++j) {
      dst[b * 32 + j] = d * kValuesIQ4NL[blk[b].qs[j] & 0x0F];
      dst[b * 32 + j + 16] = d * kValuesIQ4NL[blk[b].qs[j] >> 4];
    }
  }
}

// Blocks are summed in order with one f32 FMA each, as llama.cpp's repacked x86 kernels
// (used for IQ4_NL on AVX2 machines) do: its logits match more rows that way than with
// 8-lane partial sums or a double sum (measured on the quant reference files).
double dot(const BlockIQ4_NL* w, const BlockQ8_0* a, int64_t n) {
  float acc = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j)
      s += int32_t(kValuesIQ4NL[w[b].qs[j] & 0x0F]) * a[b].qs[j] + int32_t(kValuesIQ4NL[w[b].qs[j] >> 4]) * a[b].qs[j + 16];
    acc = std::fma(float(s), load_f16(w[b].d) * load_f16(a[b].d), acc);
  }
  return acc;
}
}  // namespace

extern const Format kFormatIQ4_NL{DType::IQ4_NL, ActType::Q8_0, dequantize,
                                  dot_bytes<BlockIQ4_NL, BlockQ8_0, dot>, nullptr};

}  // namespace attnsparse::ops::quant
