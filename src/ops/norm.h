// Row normalisations of f32 activations, computed as llama.cpp does (sums in double).
#pragma once
#include <cstdint>

namespace attnsparse::ops {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight   (weight may be nullptr)
void rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
              float* out);

// out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias  (weight/bias may be nullptr)
void layer_norm(const float* x, int64_t rows, int64_t dim, const float* weight,
                const float* bias, float eps, float* out);

}  // namespace attnsparse::ops
