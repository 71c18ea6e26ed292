// Q3_K: super-blocks of 256 with 3-bit values (2 low bits as Q2_K, the high bit in
// hmask, clear meaning -4) and 6-bit scales per 16 (stored +32), x = d * sc * q; dot with
// Q8_K activations.
#include "ops/quant/blocks.h"
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
}  // namespace

extern const Format kFormatQ3_K{DType::Q3_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ3_K, BlockQ8_K, dot>, nullptr};

}  // namespace attnsparse::ops::quant
