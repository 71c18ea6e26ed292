#include "theory/normal.h"

#include <bit>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace attnsparse::theory {

double norm_q(double x) { return 0.5 * std::erfc(x / std::numbers::sqrt2); }
double norm_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

// Wichura, "Algorithm AS 241: The percentage points of the normal distribution",
// Applied Statistics 37 (1988), PPND16.
double norm_inv(double p) {
  if (!(p > 0.0 && p < 1.0)) fail("norm_inv: probability {} is outside (0, 1)", p);
  const double q = p - 0.5;
  if (std::fabs(q) <= 0.425) {
    const double r = 0.180625 - q * q;
    return q *
           (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r +
                 6.7265770927008700853e+4) * r + 4.5921953931549871457e+4) * r +
               1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r +
             1.3314166789178437745e+2) * r + 3.3871328727963666080e0) /
           (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r +
                 3.9307895800092710610e+4) * r + 2.1213794301586595867e+4) * r +
               5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r +
             4.2313330701600911252e+1) * r + 1.0);
  }
  double r = q < 0 ? p : 1.0 - p;
  r = std::sqrt(-std::log(r));
  double val;
  if (r <= 5.0) {
    r -= 1.6;
    val = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r +
                2.41780725177450611770e-1) * r + 1.27045825245236838258e0) * r +
              3.64784832476320460504e0) * r + 5.76949722146069140550e0) * r +
            4.63033784615654529590e0) * r + 1.42343711074968357734e0) /
          (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r +
                1.51986665636164571966e-2) * r + 1.48103976427480074590e-1) * r +
              6.89767334985100004550e-1) * r + 1.67638483018380384940e0) * r +
            2.05319162663775882187e0) * r + 1.0);
  } else {
    r -= 5.0;
    val = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r +
                1.24266094738807843860e-3) * r + 2.65321895265761230930e-2) * r +
              2.96560571828504891230e-1) * r + 1.78482653991729133580e0) * r +
            5.46378491116411436990e0) * r + 6.65790464350110377720e0) /
          (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r +
                1.84631831751005468180e-5) * r + 7.86869131145613259100e-4) * r +
              1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r +
            5.99832206555887937690e-1) * r + 1.0);
  }
  return q < 0 ? -val : val;
}

uint64_t stream_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
  k = mix64(k ^ (a + 0x632be59bd9b4e019ULL));
  k = mix64(k ^ (b + 0x85157af5ULL * 0x100000001ULL));
  k = mix64(k ^ (c + 0x2545f4914f6cdd1dULL));
  return k;
}

namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// One Box–Muller pair from 64 random bits, in float with polynomial log and sin/cos.
// Written branch-free on plain floats/ints so the block loop below vectorises.
inline void box_muller_bits(uint64_t h, float& z0, float& z1) {
  // u1 in (0, 1]: 24 bits; the angle: a quadrant (2 bits) and a uniform offset in
  // [-pi/4, pi/4) (24 bits), together a uniform angle on the circle.
  const uint32_t hi = static_cast<uint32_t>(h >> 32);
  const uint32_t lo = static_cast<uint32_t>(h);
  const float u1 = static_cast<float>(static_cast<int32_t>((hi >> 8) + 1u)) * (1.0f / 16777216.0f);
  const uint32_t quad = lo & 3u;
  const float phi = (static_cast<float>(static_cast<int32_t>(lo >> 8)) * (1.0f / 16777216.0f) - 0.5f) *
                    (std::numbers::pi_v<float> * 0.5f);
  // log(u1): u1 = m * 2^e with m in [sqrt(1/2), sqrt(2)), Cephes logf polynomial.
  // Branch-free (integer masks) so that the loop vectorises.
  const uint32_t bits = std::bit_cast<uint32_t>(u1);
  const int32_t e0 = static_cast<int32_t>((bits >> 23) & 0xffu) - 126;  // m in [0.5, 1)
  const float m = std::bit_cast<float>((bits & 0x7fffffu) | 0x3f000000u);
  const int32_t small = -static_cast<int32_t>(m < 0.70710678118654752f);  // 0 or -1
  const int32_t e = e0 + small;
  const float m2 = std::bit_cast<float>(std::bit_cast<uint32_t>(m) + (static_cast<uint32_t>(small) & 0x00800000u));
  const float x = m2 - 1.0f;  // m2 = 2m where m < sqrt(1/2), else m
  const float z = x * x;
  float y = ((((((((7.0376836292E-2f * x - 1.1514610310E-1f) * x + 1.1676998740E-1f) * x -
                 1.2420140846E-1f) * x + 1.4249322787E-1f) * x - 1.6668057665E-1f) * x +
              2.0000714765E-1f) * x - 2.4999993993E-1f) * x + 3.3333331174E-1f) * x * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  const float logu = x + y + 0.693359375f * fe;
  // r = sqrt(-2 log u1) as y * rsqrt(y) with three Newton steps (a libm sqrt call
  // would keep an errno branch in the loop and stop it vectorising). y = 0 gives 0.
  const float yy = -2.0f * logu;
  float rs = std::bit_cast<float>(0x5f3759dfu - (std::bit_cast<uint32_t>(yy) >> 1));
  rs = rs * (1.5f - 0.5f * yy * rs * rs);
  rs = rs * (1.5f - 0.5f * yy * rs * rs);
  rs = rs * (1.5f - 0.5f * yy * rs * rs);
  const float r = yy * rs;
  // sin/cos on [-pi/4, pi/4] (Taylor to degree 7/8; error < 4e-7).
  const float p2 = phi * phi;
  const float s = phi * (1.0f + p2 * (-1.0f / 6 + p2 * (1.0f / 120 + p2 * (-1.0f / 5040))));
  const float c = 1.0f + p2 * (-0.5f + p2 * (1.0f / 24 + p2 * (-1.0f / 720 + p2 * (1.0f / 40320))));
  // rotate by quad * pi/2: 0:(c,s) 1:(-s,c) 2:(-c,-s) 3:(s,-c)
  const uint32_t swap = 0u - (quad & 1u);
  const uint32_t cb = std::bit_cast<uint32_t>(c), sb = std::bit_cast<uint32_t>(s);
  const uint32_t ccb = ((sb & swap) | (cb & ~swap)) ^ (((quad ^ (quad >> 1)) & 1u) << 31);
  const uint32_t ssb = ((cb & swap) | (sb & ~swap)) ^ ((quad >> 1) << 31);
  const float cc = std::bit_cast<float>(ccb), ss = std::bit_cast<float>(ssb);
  z0 = r * cc;
  z1 = r * ss;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void normals_block(uint64_t key, uint64_t first_pair, float* out, int64_t n_pairs) {
  for (int64_t i = 0; i < n_pairs; ++i) {
    const uint64_t h = mix64(key + (first_pair + static_cast<uint64_t>(i)) * kGolden);
    float z0, z1;
    box_muller_bits(h, z0, z1);
    out[2 * i] = z0;
    out[2 * i + 1] = z1;
  }
}

}  // namespace

void normals_f32(uint64_t key, uint64_t first_pair, float* out, int64_t n_pairs) {
  normals_block(key, first_pair, out, n_pairs);
}

std::pair<float, float> normal_pair_f32(uint64_t key, uint64_t pair) {
  float z0, z1;
  box_muller_bits(mix64(key + pair * kGolden), z0, z1);
  return {z0, z1};
}

std::pair<double, double> normal_pair_f64(uint64_t key, uint64_t pair) {
  const uint64_t h1 = mix64(key + (2 * pair) * kGolden);
  const uint64_t h2 = mix64(key + (2 * pair + 1) * kGolden);
  const double u1 = (static_cast<double>(h1 >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = static_cast<double>(h2 >> 11) * 0x1.0p-53;          // [0, 1)
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double a = 2.0 * std::numbers::pi * u2;
  return {r * std::cos(a), r * std::sin(a)};
}

}  // namespace attnsparse::theory
