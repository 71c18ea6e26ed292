// Q5_K: as Q4_K with a fifth bit per value in qh, x = d * sc * q - dmin * mn; dot with
// Q8_K activations.
#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// The 5-bit value of element e (sub-block j = e/32) of a Q5_K block.
inline int q5k(const BlockQ5_K& blk, int e) {
  const int j = e / 32, l = e % 32;
  const int lo = (blk.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0xF;
  return lo | (((blk.qh[l] >> j) & 1) << 4);
}

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ5_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d), dmin = load_f16(blk[b].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      get_scale_min_k4(j, blk[b].scales, &sc, &mn);
      const float d1 = d * sc, m1 = dmin * mn;
      for (int l = 0; l < 32; ++l) dst[b * kQK_K + j * 32 + l] = d1 * q5k(blk[b], j * 32 + l) - m1;
    }
  }
}

double dot(const BlockQ5_K* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      get_scale_min_k4(j, w[b].scales, &sc, &mn);
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += q5k(w[b], j * 32 + l) * a[b].qs[j * 32 + l];
      sumi += int32_t(sc) * s;
      summ += int32_t(mn) * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    const float d = load_f16(w[b].d) * a[b].d, dmin = load_f16(w[b].dmin) * a[b].d;
    sum += double(d * float(sumi)) - double(dmin * float(summ));
  }
  return sum;
}
}  // namespace

extern const Format kFormatQ5_K{DType::Q5_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ5_K, BlockQ8_K, dot>, nullptr};

}  // namespace attnsparse::ops::quant
