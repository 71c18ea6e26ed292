// MXFP4 (OCP microscaling): 32 E2M1 values sharing an E8M0 exponent; dot with Q8_0
// activations, using the doubled E2M1 integers and half the scale (as ggml).
#include <cmath>

#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockMXFP4*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = e8m0_to_fp32_half(blk[b].e);
    for (int j = 0; j < 16; ++j) {
      dst[b * 32 + j] = kValuesMXFP4[blk[b].qs[j] & 0x0F] * d;
      dst[b * 32 + j + 16] = kValuesMXFP4[blk[b].qs[j] >> 4] * d;
    }
  }
}

// Blocks are summed in order with one f32 FMA each, as llama.cpp's repacked x86 kernels
// (used for MXFP4 on AVX2 machines) do: its logits match more rows that way than with
// 8-lane partial sums or a double sum (measured on the quant reference files).
double dot(const BlockMXFP4* w, const BlockQ8_0* a, int64_t n) {
  float acc = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j)
      s += int32_t(kValuesMXFP4[w[b].qs[j] & 0x0F]) * a[b].qs[j] + int32_t(kValuesMXFP4[w[b].qs[j] >> 4]) * a[b].qs[j + 16];
    acc = std::fma(float(s), load_f16(a[b].d) * e8m0_to_fp32_half(w[b].e), acc);
  }
  return acc;
}
}  // namespace

extern const Format kFormatMXFP4{DType::MXFP4, ActType::Q8_0, dequantize,
                                 dot_bytes<BlockMXFP4, BlockQ8_0, dot>, nullptr};

}  // namespace attnsparse::ops::quant
