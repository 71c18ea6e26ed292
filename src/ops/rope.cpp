#include "ops/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace attnsparse::ops {

void rope_inplace(const RopeParams& p, float* x, int64_t n_tok, int64_t stride, int n_heads,
                  const int32_t* positions) {
  const int half = p.rope_dim / 2;
  const float theta_scale = std::pow(p.base, -2.0f / static_cast<float>(p.rope_dim));
  const float* ff = p.freq_factors.empty() ? nullptr : p.freq_factors.data();
  const bool yarn = p.ext_factor != 0.f;
  const float mscale =
      yarn ? p.attn_factor * (1.0f + 0.1f * std::log(1.0f / p.freq_scale)) : p.attn_factor;
  const float ramp_den = std::max(0.001f, p.corr_high - p.corr_low);
#pragma omp parallel if (n_tok > 1)
  {
    std::vector<float> cos_t(half), sin_t(half);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tok; ++t) {
      float theta = static_cast<float>(positions[t]);
      for (int i = 0; i < half; ++i) {
        const float extrap = ff ? theta / ff[i] : theta;
        float th = p.freq_scale * extrap;
        if (yarn) {
          const float y = (static_cast<float>(i) - p.corr_low) / ramp_den;
          const float mix = (1.0f - std::min(1.0f, std::max(0.0f, y))) * p.ext_factor;
          th = th * (1.0f - mix) + extrap * mix;
        }
        cos_t[i] = std::cos(th) * mscale;
        sin_t[i] = std::sin(th) * mscale;
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

std::pair<float, float> yarn_corr_dims(int rope_dim, int64_t original_context, float base,
                                       float beta_fast, float beta_slow) {
  const auto corr_dim = [&](float beta) {
    return static_cast<float>(rope_dim) *
           std::log(static_cast<float>(original_context) / (beta * 2.0f * std::numbers::pi_v<float>)) /
           (2.0f * std::log(base));
  };
  const float low = std::floor(corr_dim(beta_fast));
  const float high = std::ceil(corr_dim(beta_slow));
  return {std::max(0.0f, low), std::min(static_cast<float>(rope_dim - 1), high)};
}

}  // namespace attnsparse::ops
