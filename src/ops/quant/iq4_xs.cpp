// IQ4_XS: super-blocks of 256 in 8 sub-blocks of 32, each with a 6-bit scale (stored +32)
// and 4-bit indices into kValuesIQ4NL; dot with Q8_K activations.
#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
inline int sub_scale(const BlockIQ4_XS& blk, int ib) {
  const int lo = (blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
  const int hi = (blk.scales_h >> (2 * ib)) & 3;
  return (lo | (hi << 4)) - 32;
}

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockIQ4_XS*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d);
    for (int ib = 0; ib < 8; ++ib) {
      const float dl = d * sub_scale(blk[b], ib);
      const uint8_t* qs = blk[b].qs + 16 * ib;
      float* y = dst + b * kQK_K + 32 * ib;
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * kValuesIQ4NL[qs[j] & 0xF];
        y[j + 16] = dl * kValuesIQ4NL[qs[j] >> 4];
      }
    }
  }
}

double dot(const BlockIQ4_XS* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sumi = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const uint8_t* qs = w[b].qs + 16 * ib;
      const int8_t* q8 = a[b].qs + 32 * ib;
      int32_t s = 0;
      for (int j = 0; j < 16; ++j) s += int32_t(kValuesIQ4NL[qs[j] & 0xF]) * q8[j] + int32_t(kValuesIQ4NL[qs[j] >> 4]) * q8[j + 16];
      sumi += sub_scale(w[b], ib) * s;
    }
    sum += double((load_f16(w[b].d) * a[b].d) * float(sumi));
  }
  return sum;
}
}  // namespace

extern const Format kFormatIQ4_XS{DType::IQ4_XS, ActType::Q8_K, dequantize,
                                  dot_bytes<BlockIQ4_XS, BlockQ8_K, dot>, nullptr};

}  // namespace attnsparse::ops::quant
