// The activation quantisers (see ops/quant.h for the rounding rules they reproduce).
#include <algorithm>
#include <cmath>

#include "ops/quant.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// amax of a 32-element block and q = round-half-even(x * 127/amax); returns the f32 d.
float q8_block(const float* x, int8_t* q) {
  float amax = 0.f;
  for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float id = amax != 0.f ? 127.f / amax : 0.f;
  // nearbyint rounds half to even in the default rounding mode, like _mm256_round_ps.
  for (int j = 0; j < kQK8_0; ++j) q[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
  return amax / 127.f;
}
}  // namespace

void quantize_act_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) y[b].d = fp32_to_fp16(q8_block(x, y[b].qs));
}

void quantize_act_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    const float d = q8_block(x, y[b].qs);
    int32_t sum = 0;
    for (int j = 0; j < kQK8_0; ++j) sum += y[b].qs[j];
    y[b].d = fp32_to_fp16(d);
    y[b].s = fp32_to_fp16(d * static_cast<float>(sum));
  }
}

void quantize_act_q8_K(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float max = 0.f, amax = 0.f;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.f) {
      y[b].d = 0.f;
      std::memset(y[b].qs, 0, sizeof(y[b].qs));
      std::memset(y[b].bsums, 0, sizeof(y[b].bsums));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = static_cast<int>(std::nearbyint(iscale * x[j]));
      y[b].qs[j] = static_cast<int8_t>(std::min(127, v));
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += y[b].qs[g * 16 + i];
      y[b].bsums[g] = static_cast<int16_t>(sum);
    }
    y[b].d = 1.f / iscale;
  }
}

void quantize_act_q8_0_bytes(const float* x, uint8_t* y, int64_t n) {
  quantize_act_q8_0(x, reinterpret_cast<BlockQ8_0*>(y), n);
}
void quantize_act_q8_1_bytes(const float* x, uint8_t* y, int64_t n) {
  quantize_act_q8_1(x, reinterpret_cast<BlockQ8_1*>(y), n);
}
void quantize_act_q8_K_bytes(const float* x, uint8_t* y, int64_t n) {
  quantize_act_q8_K(x, reinterpret_cast<BlockQ8_K*>(y), n);
}

}  // namespace attnsparse::ops::quant
