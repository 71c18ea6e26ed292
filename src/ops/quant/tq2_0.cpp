// TQ2_0 (ternary): super-blocks of 256 values in {-1, 0, 1} stored as 2 bits (q - 1),
// x = d * (q - 1); dot with Q8_K activations.
#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// Element e: byte (e/128)*32 + e%32, bit pair (e%128)/32.
inline int tq2(const uint8_t* qs, int e) { return int((qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3) - 1; }

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockTQ2_0*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d);
    for (int e = 0; e < kQK_K; ++e) dst[b * kQK_K + e] = float(tq2(blk[b].qs, e)) * d;
  }
}

double dot(const BlockTQ2_0* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t s = 0;
    for (int e = 0; e < kQK_K; ++e) s += tq2(w[b].qs, e) * a[b].qs[e];
    sum += double(float(s) * (a[b].d * load_f16(w[b].d)));
  }
  return sum;
}
}  // namespace

extern const Format kFormatTQ2_0{DType::TQ2_0, ActType::Q8_K, dequantize,
                                 dot_bytes<BlockTQ2_0, BlockQ8_K, dot>, nullptr};

}  // namespace attnsparse::ops::quant
