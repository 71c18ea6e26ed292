#include "ops/activation.h"

#include <cmath>
#include <vector>

#include "core/dtype.h"

namespace attnsparse::ops {

void swiglu(float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoefA = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoefA * x * x)));
}

namespace {
// 64K entries: GELU of every f16 value, as f16 (llama.cpp's ggml_table_gelu_f16).
const std::vector<uint16_t>& gelu_table() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(1 << 16);
    for (uint32_t i = 0; i < (1u << 16); ++i)
      t[i] = fp32_to_fp16(gelu_tanh(fp16_to_fp32(static_cast<uint16_t>(i))));
    return t;
  }();
  return table;
}
}  // namespace

void gelu_f16_table(float* x, int64_t n) {
  const uint16_t* table = gelu_table().data();
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (v <= -10.0f) {
      x[i] = 0.0f;
    } else if (v >= 10.0f) {
      x[i] = v;
    } else {
      x[i] = fp16_to_fp32(table[fp32_to_fp16(v)]);
    }
  }
}

void geglu_f16_table(float* gate, const float* up, int64_t n) {
  const uint16_t* table = gelu_table().data();
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    float gelu;
    if (g <= -10.0f) gelu = 0.0f;
    else if (g >= 10.0f) gelu = g;
    else gelu = fp16_to_fp32(table[fp32_to_fp16(g)]);
    gate[i] = gelu * up[i];
  }
}

}  // namespace attnsparse::ops
