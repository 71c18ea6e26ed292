// Normal-distribution helpers for the theory simulator: the upper tail Q, the inverse
// CDF Φ⁻¹ (Wichura's AS241, ~1e-16 relative), and a fast counter-based normal generator.
//
// The generator is counter-based (splitmix64 of key + counter) so any normal can be
// regenerated from (key, index) without storing it, and blocks vectorise: Box–Muller
// with our own float log and sin/cos polynomials (relative error ~1e-7) on 24-bit
// uniforms, so |z| <= 5.9 (P(|z| > 5.9) ~ 4e-9). Where extreme tails matter (the i.i.d.
// logit regime) use normal_pair_f64 (53-bit uniforms, |z| <= 8.6).
#pragma once
#include <cstdint>
#include <utility>

namespace attnsparse::theory {

// Upper normal tail Q(x) = P(Z > x) = erfc(x / sqrt 2) / 2.
double norm_q(double x);
// Normal CDF Φ(x) = 1 - Q(x).
double norm_cdf(double x);
// Φ⁻¹(p) for p in (0, 1); throws Error otherwise.
double norm_inv(double p);

// splitmix64 finaliser (a bijective 64-bit mix).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
// A stream key from a seed and up to three labels.
uint64_t stream_key(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);

// out[0 .. 2*n_pairs): standard normals of pairs first_pair .. first_pair + n_pairs - 1
// of the stream `key` (pair p gives out[2(p - first_pair)] and out[2(p - first_pair) + 1]).
void normals_f32(uint64_t key, uint64_t first_pair, float* out, int64_t n_pairs);

// The same stream element by element in scalar code (reference for tests).
std::pair<float, float> normal_pair_f32(uint64_t key, uint64_t pair);

// A double-precision pair (53-bit uniforms, std::log / std::sin / std::cos).
std::pair<double, double> normal_pair_f64(uint64_t key, uint64_t pair);

}  // namespace attnsparse::theory
