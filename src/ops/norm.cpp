#include "ops/norm.h"

#include <cmath>

namespace attnsparse::ops {

void rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
              float* out) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    double sum = 0;
    for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i] * xr[i]);
    const float mean = static_cast<float>(sum / dim);
    const float scale = 1.0f / std::sqrt(mean + eps);
    if (weight) {
      for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * scale) * weight[i];
    } else {
      for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale;
    }
  }
}

void layer_norm(const float* x, int64_t rows, int64_t dim, const float* weight,
                const float* bias, float eps, float* out) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    double sum = 0;
    for (int64_t i = 0; i < dim; ++i) sum += xr[i];
    const float mean = static_cast<float>(sum / dim);
    double sum2 = 0;
    for (int64_t i = 0; i < dim; ++i) {
      const float d = xr[i] - mean;
      yr[i] = d;
      sum2 += static_cast<double>(d * d);
    }
    const float variance = static_cast<float>(sum2 / dim);
    const float scale = 1.0f / std::sqrt(variance + eps);
    for (int64_t i = 0; i < dim; ++i) {
      float v = yr[i] * scale;
      if (weight) v *= weight[i];
      if (bias) v += bias[i];
      yr[i] = v;
    }
  }
}

}  // namespace attnsparse::ops
