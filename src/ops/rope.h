// Rotary position embeddings, computed as llama.cpp does (per-pair angles pos * base^(-2i/d)
// built by repeated multiplication, optional per-pair frequency divisors for Llama 3
// scaling, linear position scaling).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace attnsparse::ops {

struct RopeParams {
  int head_dim = 0;
  int rope_dim = 0;           // rotated dimensions per head (<= head_dim, even)
  float base = 10000.f;
  float freq_scale = 1.f;     // 1 / linear scaling factor
  bool half_split = false;    // pairs (i, i + rope_dim/2) instead of (2i, 2i+1)
  std::vector<float> freq_factors;  // rope_dim/2 divisors of the angle (empty = none)
  // YaRN (ext_factor 0 = off): pair i's angle mixes the interpolated angle
  // freq_scale * theta with the original theta by ramp(i) * ext_factor, where ramp is 1
  // below corr_low, 0 above corr_high; cos and sin are scaled by
  // attn_factor * (1 + 0.1 ln(1 / freq_scale)).
  float ext_factor = 0.f;
  float attn_factor = 1.f;
  float corr_low = 0.f, corr_high = 0.f;
};

// Rotates, in place, `n_heads` heads of `head_dim` floats for each of n_tok tokens; token t
// starts at x + t * stride and has absolute position positions[t].
void rope_inplace(const RopeParams& p, float* x, int64_t n_tok, int64_t stride, int n_heads,
                  const int32_t* positions);

// Llama 3 frequency divisors (as llama.cpp's converter writes rope_freqs.weight).
std::vector<float> llama3_freq_factors(int rope_dim, float base, float factor,
                                       float low_freq_factor, float high_freq_factor,
                                       int64_t original_context);

// YaRN's correction range [low, high] of pair indices for a model trained on
// `original_context` positions: the pairs that turn beta_fast resp. beta_slow times over it.
std::pair<float, float> yarn_corr_dims(int rope_dim, int64_t original_context, float base,
                                       float beta_fast, float beta_slow);

}  // namespace attnsparse::ops
