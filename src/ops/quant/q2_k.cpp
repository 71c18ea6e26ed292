// Q2_K: super-blocks of 256 with 2-bit values and 4-bit scale / min per 16,
// x = d * sc * q - dmin * mn; dot with Q8_K activations.
#include "ops/quant/blocks.h"
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
}  // namespace

extern const Format kFormatQ2_K{DType::Q2_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ2_K, BlockQ8_K, dot>, nullptr};

}  // namespace attnsparse::ops::quant
