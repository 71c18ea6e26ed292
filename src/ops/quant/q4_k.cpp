// Q4_K: super-blocks of 256 in 8 sub-blocks of 32 with 6-bit scales and mins,
// x = d * sc * q - dmin * mn; dot with Q8_K activations.
#include "ops/quant.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

void q4_K_block_ints(const BlockQ4_K& w, const BlockQ8_K& a, int32_t* sumi, int32_t* summ) {
  int32_t si = 0, sm = 0;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    get_scale_min_k4(j, w.scales, &sc, &mn);
    const uint8_t* q = w.qs + (j / 2) * 32;
    const int shift = (j % 2) * 4;
    int32_t s = 0;
    for (int l = 0; l < 32; ++l) s += int32_t((q[l] >> shift) & 0xF) * a.qs[j * 32 + l];
    si += int32_t(sc) * s;
    sm += int32_t(mn) * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
  }
  *sumi = si;
  *summ = sm;
}

double dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sumi, summ;
    q4_K_block_ints(w[b], a[b], &sumi, &summ);
    const float d = load_f16(w[b].d) * a[b].d;
    const float dmin = load_f16(w[b].dmin) * a[b].d;
    sum += double(d * float(sumi)) - double(dmin * float(summ));
  }
  return sum;
}

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ4_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d), dmin = load_f16(blk[b].dmin);
    const uint8_t* q = blk[b].qs;
    float* y = dst + b * kQK_K;
    for (int j = 0; j < 4; ++j, q += 32) {
      uint8_t sc, mn;
      get_scale_min_k4(2 * j, blk[b].scales, &sc, &mn);
      const float d1 = d * sc, m1 = dmin * mn;
      get_scale_min_k4(2 * j + 1, blk[b].scales, &sc, &mn);
      const float d2 = d * sc, m2 = dmin * mn;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}
}  // namespace

extern const Format kFormatQ4_K{DType::Q4_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ4_K, BlockQ8_K, dot_q4_K_q8_K>, nullptr};

}  // namespace attnsparse::ops::quant
