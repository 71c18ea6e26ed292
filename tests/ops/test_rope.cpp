// RoPE at long positions (8K-128K) against the closed form of the rotation, computed here
// in double from the published definitions: plain (angle pos * base^(-2i/d)), linear
// (pos / factor), Llama 3 (transformers' _compute_llama3_parameters: per-frequency
// divisors 1, factor, or the smooth blend by wavelength) and YaRN (transformers'
// _compute_yarn_parameters: interpolated and extrapolated inverse frequencies blended by
// a linear ramp over the correction range, cos/sin scaled by 0.1 ln(factor) + 1).
//
// Tolerance, per rotated pair: the kernel (like llama.cpp's) forms pair i's angle in
// float by i repeated multiplications with base^(-2/d), so its angle carries a relative
// error of at most ~(i + 4) float ulps; at position 131,071 that is up to ~0.02 rad for
// the fastest-turning pairs. The bound below is that error times the pair's norm, plus
// 1e-6 of rounding in the rotation itself; a wrong scaling rule misses it by orders of
// magnitude (checked by the last test).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>
#include <vector>

#include "ops/rope.h"

namespace attnsparse::ops {
namespace {

struct Scaling {
  enum Kind { None, Linear, Llama3, Yarn } kind = None;
  double factor = 1, lo = 1, hi = 4, beta_fast = 32, beta_slow = 1;
  double original = 8192;
};

// Inverse frequency of pair i and the cos/sin scale, in double, from the definitions.
double inv_freq(const Scaling& s, int i, int d, double base) {
  const double f = std::pow(base, -2.0 * i / d);
  switch (s.kind) {
    case Scaling::None: return f;
    case Scaling::Linear: return f / s.factor;
    case Scaling::Llama3: {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen < s.original / s.hi) return f;
      if (wavelen > s.original / s.lo) return f / s.factor;
      const double smooth = (s.original / wavelen - s.lo) / (s.hi - s.lo);
      return (1 - smooth) * f / s.factor + smooth * f;
    }
    case Scaling::Yarn: {
      const auto corr = [&](double rot) {
        return d * std::log(s.original / (rot * 2 * std::numbers::pi)) / (2 * std::log(base));
      };
      const double low = std::max(0.0, std::floor(corr(s.beta_fast)));
      double high = std::min(static_cast<double>(d - 1), std::ceil(corr(s.beta_slow)));
      if (high == low) high += 0.001;
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      const double extrap = 1 - ramp;  // share of the original frequency
      return (f / s.factor) * (1 - extrap) + f * extrap;
    }
  }
  return f;
}

double mscale(const Scaling& s) {
  return s.kind == Scaling::Yarn ? 0.1 * std::log(s.factor) + 1 : 1.0;
}

RopeParams params_for(const Scaling& s, int d, double base, bool half_split) {
  RopeParams p;
  p.head_dim = d;
  p.rope_dim = d;
  p.base = static_cast<float>(base);
  p.half_split = half_split;
  if (s.kind == Scaling::Linear || s.kind == Scaling::Yarn) p.freq_scale = static_cast<float>(1 / s.factor);
  if (s.kind == Scaling::Llama3)
    p.freq_factors = llama3_freq_factors(d, p.base, static_cast<float>(s.factor), static_cast<float>(s.lo),
                                         static_cast<float>(s.hi), static_cast<int64_t>(s.original));
  if (s.kind == Scaling::Yarn) {
    p.ext_factor = 1;
    std::tie(p.corr_low, p.corr_high) =
        yarn_corr_dims(d, static_cast<int64_t>(s.original), p.base, static_cast<float>(s.beta_fast),
                       static_cast<float>(s.beta_slow));
  }
  return p;
}

// Max over pairs of |kernel - closed form| / bound (<= 1 passes).
// `kernel` configures rope_inplace, `s` the closed form (the same rule except in the
// test that shows the bound tells rules apart).
double worst_ratio(const Scaling& kernel, const Scaling& s, int d, double base, bool half_split,
                   double* max_abs = nullptr) {
  const std::vector<int32_t> positions = {8193, 16384, 32768, 65537, 100000, 131071};
  const int heads = 2;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(positions.size() * heads * d);
  for (float& v : x) v = nd(rng);
  std::vector<float> y = x;
  const RopeParams p = params_for(kernel, d, base, half_split);
  rope_inplace(p, y.data(), static_cast<int64_t>(positions.size()), heads * d, heads, positions.data());
  double worst = 0, worst_abs = 0;
  const int half = d / 2;
  for (size_t t = 0; t < positions.size(); ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < half; ++i) {
        const size_t o = (t * heads + h) * d;
        const int a = half_split ? i : 2 * i, b = half_split ? i + half : 2 * i + 1;
        const double th = positions[t] * inv_freq(s, i, d, base), m = mscale(s);
        const double x0 = x[o + a], x1 = x[o + b];
        const double r0 = m * (x0 * std::cos(th) - x1 * std::sin(th));
        const double r1 = m * (x0 * std::sin(th) + x1 * std::cos(th));
        const double err = std::hypot(y[o + a] - r0, y[o + b] - r1);
        const double norm = std::hypot(x0, x1);
        const double bound = norm * (m * (i + 4) * 1.2e-7 * th + 1e-6);
        worst = std::max(worst, err / bound);
        worst_abs = std::max(worst_abs, err / norm);
      }
  if (max_abs) *max_abs = worst_abs;
  return worst;
}

struct Case {
  const char* name;
  Scaling s;
  double base;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"plain", {}, 10000},
      {"linear x4", {Scaling::Linear, 4}, 10000},
      {"llama3 (Llama 3.1: x8, 1..4, 8192)", {Scaling::Llama3, 8, 1, 4, 32, 1, 8192}, 500000},
      {"yarn (Qwen2.5: x4, 32768)", {Scaling::Yarn, 4, 1, 4, 32, 1, 32768}, 1000000},
      {"yarn (x8, 4096, beta 16/2)", {Scaling::Yarn, 8, 1, 4, 16, 2, 4096}, 10000},
  };
  return c;
}

TEST(Rope, LongPositionsMatchTheClosedForm) {
  for (const Case& c : cases())
    for (bool half : {false, true}) {
      double rel = 0;
      const double r = worst_ratio(c.s, c.s, 128, c.base, half, &rel);
      std::printf("[ measured ] %s %s: max |err|/|pair| %.3g, %.3g of the bound\n", c.name,
                  half ? "half-split" : "adjacent", rel, r);
      EXPECT_LE(r, 1.0) << c.name << (half ? " half-split" : " adjacent");
    }
}

// The bound is tight enough to tell the rules apart: the kernel run with one rule misses
// the closed form of each other rule by far at these positions.
TEST(Rope, TheBoundSeparatesScalingRules) {
  const auto& c = cases();
  for (size_t i = 0; i < c.size(); ++i)
    for (size_t j = 0; j < c.size(); ++j) {
      if (i == j || c[i].base != c[j].base) continue;
      const double r = worst_ratio(c[i].s, c[j].s, 128, c[j].base, false);
      EXPECT_GT(r, 100.0) << c[i].name << " vs " << c[j].name;
    }
  // Same rule, other parameters: YaRN's mscale and ramp matter.
  Scaling y = c[3].s, y2 = y;
  y2.beta_fast = 16;
  EXPECT_GT(worst_ratio(y2, y, 128, c[3].base, false), 100.0);
  y2 = y;
  y2.factor = 2;
  EXPECT_GT(worst_ratio(y2, y, 128, c[3].base, false), 100.0);
}

TEST(Rope, YarnCorrectionRange) {
  // Qwen2.5 (d 128, base 1e6, 32768 positions): pairs turning more than 32 times over the
  // context keep their angle, fewer than once are interpolated.
  const auto [lo, hi] = yarn_corr_dims(128, 32768, 1e6f, 32, 1);
  const auto dim = [](double rot) {
    return 128 * std::log(32768 / (rot * 2 * std::numbers::pi)) / (2 * std::log(1e6));
  };
  EXPECT_EQ(lo, std::floor(dim(32)));
  EXPECT_EQ(hi, std::ceil(dim(1)));
  EXPECT_LT(lo, hi);
  // Clamped to [0, d - 1].
  const auto [lo2, hi2] = yarn_corr_dims(16, 1000000000, 10.f, 32, 1);
  EXPECT_GE(lo2, 0.f);
  EXPECT_LE(hi2, 15.f);
}

}  // namespace
}  // namespace attnsparse::ops
