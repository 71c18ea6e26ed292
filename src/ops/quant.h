// GGML block layouts and the scalar (reference) quantisation arithmetic shared by the
// matmul kernels: weight blocks (Q8_0, Q4_0, Q4_K, Q6_K) as stored in GGUF files and the
// activation blocks llama.cpp quantises activations into (Q8_0, Q8_K).
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace attnsparse::ops::quant {

constexpr int kQK8_0 = 32;  // elements per Q8_0 / Q4_0 block
constexpr int kQK_K = 256;  // elements per K-quant super-block

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;      // f16 scale
  uint8_t qs[16];  // element j in the low nibble of qs[j], element j+16 in the high one
};
struct BlockQ4_K {
  uint16_t d;          // f16 super-block scale of the 6-bit scales
  uint16_t dmin;       // f16 super-block scale of the 6-bit mins
  uint8_t scales[12];  // 8 scales and 8 mins, 6 bits each (get_scale_min_k4)
  uint8_t qs[128];     // 4-bit quants
};
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits
  uint8_t qh[64];     // high 2 bits
  int8_t scales[16];  // 8-bit scales of 16-element groups
  uint16_t d;         // f16 super-block scale
};
// Activations for K-quant dot products (never stored in files).
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];  // sums of qs over groups of 16
};
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

inline float load_f16(const uint16_t& h) { return fp16_to_fp32(h); }

// ggml's get_scale_min_k4: the j-th (0..7) 6-bit scale and min of a Q4_K block.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// Activation quantisers, bit-exact with what llama.cpp's CPU backend does on x86 before
// a Q8_0/Q4_0 matmul (quantize_row_q8_0, AVX path: d = amax/127 stored as f16,
// q = round-half-even(x * (127/amax))) and before a K-quant matmul
// (quantize_row_q8_K_ref: iscale = -127/max where max is the signed element of largest
// magnitude, q = min(127, round-half-even(iscale*x)), d = 1/iscale, bsums).
// n must be a multiple of the block size.
void quantize_act_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_act_q8_K(const float* x, BlockQ8_K* y, int64_t n);

// llama.cpp's quantize_row_q8_0_ref (used when writing Q8_0 tensors): d = amax/127,
// id = d ? 1/d : 0, q = roundf(x*id) (half away from zero).
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);

// Scalar dot products of one weight row (n elements) with one quantised activation row,
// in the arithmetic of ggml's generic kernels: exact integer sums per block, scaled in
// f32, accumulated in double here (the reference).
double dot_q8_0_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t n);
double dot_q4_0_q8_0(const BlockQ4_0* w, const BlockQ8_0* a, int64_t n);
double dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, int64_t n);
double dot_q6_K_q8_K(const BlockQ6_K* w, const BlockQ8_K* a, int64_t n);

// Per-block integer parts (exposed so the SIMD kernels share the scalar tail code).
// For Q4_K: sumi = sum_j scale_j * dot(q4_j, q8_j), summ = sum_j min_j * sum(q8_j).
void q4_K_block_ints(const BlockQ4_K& w, const BlockQ8_K& a, int32_t* sumi, int32_t* summ);
int32_t q6_K_block_int(const BlockQ6_K& w, const BlockQ8_K& a);

}  // namespace attnsparse::ops::quant
