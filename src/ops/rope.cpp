#include "ops/rope.h"

#include <cmath>
#include <numbers>

namespace attnsparse::ops {

void rope_inplace(const RopeParams& p, float* x, int64_t n_tok, int64_t stride, int n_heads,
                  const int32_t* positions) {
  const int half = p.rope_dim / 2;
  const float theta_scale = std::pow(p.base, -2.0f / static_cast<float>(p.rope_dim));
  const float* ff = p.freq_factors.empty() ? nullptr : p.freq_factors.data();
#pragma omp parallel if (n_tok > 1)
  {
    std::vector<float> cos_t(half), sin_t(half);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tok; ++t) {
      float theta = static_cast<float>(positions[t]);
      for (int i = 0; i < half; ++i) {
        const float th = p.freq_scale * (ff ? theta / ff[i] : theta);
        cos_t[i] = std::cos(th);
        sin_t[i] = std::sin(th);
        theta *= theta_scale;
      }
      float* xt = x + t * stride;
      for (int h = 0; h < n_heads; ++h) {
        float* v = xt + static_cast<int64_t>(h) * p.head_dim;
        for (int i = 0; i < half; ++i) {
          const int a = p.half_split ? i : 2 * i;
          const int b = p.half_split ? i + half : 2 * i + 1;
          const float x0 = v[a], x1 = v[b];
          v[a] = x0 * cos_t[i] - x1 * sin_t[i];
          v[b] = x0 * sin_t[i] + x1 * cos_t[i];
        }
      }
    }
  }
}

std::vector<float> llama3_freq_factors(int rope_dim, float base, float factor,
                                       float low_freq_factor, float high_freq_factor,
                                       int64_t original_context) {
  const double low_freq_wavelen = static_cast<double>(original_context) / low_freq_factor;
  const double high_freq_wavelen = static_cast<double>(original_context) / high_freq_factor;
  std::vector<float> out(rope_dim / 2);
  for (int i = 0; i < rope_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(static_cast<double>(base), 2.0 * i / rope_dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    double f;
    if (wavelen < high_freq_wavelen) {
      f = 1.0;
    } else if (wavelen > low_freq_wavelen) {
      f = factor;
    } else {
      const double smooth = (original_context / wavelen - low_freq_factor) /
                            (high_freq_factor - low_freq_factor);
      f = 1.0 / ((1 - smooth) / factor + smooth);
    }
    out[i] = static_cast<float>(f);
  }
  return out;
}

}  // namespace attnsparse::ops
