// GGML block layouts (ops/quant/blocks.h), the table of weight formats
// (ops/quant/formats.h), and the typed scalar arithmetic shared by the matmul kernels
// and the tests: llama.cpp's activation quantisers and the reference dot products.
#pragma once
#include <cstdint>

#include "ops/quant/blocks.h"
#include "ops/quant/formats.h"

namespace attnsparse::ops::quant {

// Activation quantisers, bit-exact with what llama.cpp's CPU backend does on x86:
// - Q8_0 (before Q8_0/Q4_0/Q5_0/IQ4_NL/MXFP4 matmuls; quantize_row_q8_0, AVX path):
//   d = amax/127 stored as f16, q = round-half-even(x * (127/amax)).
// - Q8_1 (before Q4_1/Q5_1; quantize_row_q8_1, AVX path): d and q as Q8_0, and
//   s = f16(d * sum(q)) with d the f32 value before rounding to f16.
// - Q8_K (before every K-quant, IQ4_XS, IQ3_S, TQ2_0; quantize_row_q8_K_ref):
//   iscale = -127/max where max is the signed element of largest magnitude,
//   q = min(127, round-half-even(iscale*x)), d = 1/iscale (f32), bsums over 16.
// n must be a multiple of the block size.
void quantize_act_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_act_q8_1(const float* x, BlockQ8_1* y, int64_t n);
void quantize_act_q8_K(const float* x, BlockQ8_K* y, int64_t n);

// llama.cpp's quantize_row_q8_0_ref (used when writing Q8_0 tensors): d = amax/127,
// id = d ? 1/d : 0, q = roundf(x*id) (half away from zero).
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);

// Scalar dot products of one weight row (n elements) with one quantised activation row
// (the Format::dot of each type, typed; Q4_0 sums its blocks in order with f32 FMAs).
double dot_q8_0_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t n);
double dot_q4_0_q8_0(const BlockQ4_0* w, const BlockQ8_0* a, int64_t n);
double dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, int64_t n);
double dot_q6_K_q8_K(const BlockQ6_K* w, const BlockQ8_K* a, int64_t n);

// Per-block integer parts (exposed so the SIMD kernels share the scalar tail code).
// For Q4_K: sumi = sum_j scale_j * dot(q4_j, q8_j), summ = sum_j min_j * sum(q8_j).
void q4_K_block_ints(const BlockQ4_K& w, const BlockQ8_K& a, int32_t* sumi, int32_t* summ);
int32_t q6_K_block_int(const BlockQ6_K& w, const BlockQ8_K& a);

}  // namespace attnsparse::ops::quant
