// Internal: the scale searches of llama.cpp's reference K-quant quantisers (no importance
// matrix), reimplemented step for step so that a tensor we write matches llama-quantize's.
#pragma once
#include <cstdint>
#include <cstring>

namespace attnsparse::ops::quant::ksearch {

// Round to nearest, ties to even, for |v| < 2^22 (the 1.5 * 2^23 trick ggml uses).
inline int nearest_int(float v) {
  const float shifted = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &shifted, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// Symmetric: levels L[i] in [0, 2 nmax) for values l in [-nmax, nmax); returns the scale.
// rmse_type 1 weighs by x^2 and tries 18 scales around -nmax/max (make_qx_quants).
float symmetric_levels(int n, int nmax, const float* x, int8_t* L, int rmse_type);
// Q3_K's variant: levels refined coordinate-wise (make_q3_quants with do_rmse).
float symmetric_levels_refined(int n, int nmax, const float* x, int8_t* L);
// Affine: levels L[i] in [0, nmax], x ~ scale * L - min_out (min_out >= 0), searching
// nstep + 1 scales (make_qkx2_quants). Returns the scale.
float affine_levels(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* min_out,
                    uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

}  // namespace attnsparse::ops::quant::ksearch
