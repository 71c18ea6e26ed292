// The activation quantisers (see ops/quant.h for the rounding rules they reproduce).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/quant.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
// Non-finite activations. llama.cpp converts x * (127/amax) to integers whatever it is, so
// a NaN or Inf element becomes -128 and the block's products come out as finite numbers
// (and in C++ that conversion is undefined behaviour). Here a block holding NaN or Inf
// gets the scale NaN and zero quants, so every product with it is NaN and the NaN
// reaches the model's finite checks. Blocks of finite values are quantised exactly as
// llama.cpp does; a block so small that 127/amax overflows (amax < 127/FLT_MAX, all
// subnormal) gets zero quants, which llama.cpp's f16 scale of 0 makes equivalent.
constexpr float kMinAmax = 127.f / std::numeric_limits<float>::max();

// amax of a 32-element block and q = round-half-even(x * 127/amax); returns the f32 d.
float q8_block(const float* x, int8_t* q) {
  float amax = 0.f;
  bool finite = true;
  for (int j = 0; j < kQK8_0; ++j) {
    const float ax = std::fabs(x[j]);
    amax = std::max(amax, ax);
    finite &= ax <= std::numeric_limits<float>::max();  // false for NaN and Inf
  }
  if (!finite || amax < kMinAmax) {
    std::memset(q, 0, kQK8_0);
    return finite ? amax / 127.f : std::numeric_limits<float>::quiet_NaN();
  }
  const float id = 127.f / amax;
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
    bool finite = true;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      finite &= ax <= std::numeric_limits<float>::max();  // false for NaN and Inf
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (!finite || amax < kMinAmax) {  // see q8_block; d = 1/(-127/max) = -0 for tiny max
      y[b].d = !finite ? std::numeric_limits<float>::quiet_NaN() : amax == 0.f ? 0.f : -0.f * max;
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
