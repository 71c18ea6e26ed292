// Q8_0: 32 int8 values and an f16 scale; dot with Q8_0 activations.
#include <algorithm>
#include <cmath>

#include "ops/quant.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    float amax = 0.f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

double dot_q8_0_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < kQK8_0; ++j) s += int32_t(w[b].qs[j]) * a[b].qs[j];
    sum += double(float(s) * (load_f16(w[b].d) * load_f16(a[b].d)));
  }
  return sum;
}

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ8_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = load_f16(blk[b].d);
    for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * blk[b].qs[j];
  }
}
void quantize(const float* src, uint8_t* dst, int64_t n) {
  quantize_row_q8_0_ref(src, reinterpret_cast<BlockQ8_0*>(dst), n);
}
}  // namespace

extern const Format kFormatQ8_0{DType::Q8_0, ActType::Q8_0, dequantize,
                                dot_bytes<BlockQ8_0, BlockQ8_0, dot_q8_0_q8_0>, quantize};

}  // namespace attnsparse::ops::quant
