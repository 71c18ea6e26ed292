// GGML block layouts as stored in GGUF files (ggml-common.h), the activation blocks
// llama.cpp quantises activations into before its integer dot products (Q8_0, Q8_1,
// Q8_K; never stored in files here), and small decoding helpers shared by the scalar
// kernels and the SIMD ones.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace attnsparse::ops::quant {

constexpr int kQK8_0 = 32;  // elements per block of the 32-element types
constexpr int kQK_K = 256;  // elements per K-quant super-block (and IQ4_XS, IQ3_S, TQ2_0)

// ---- 32-element blocks ----
struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;      // f16 scale; x = d * (q - 8)
  uint8_t qs[16];  // element j in the low nibble of qs[j], element j+16 in the high one
};
struct BlockQ4_1 {
  uint16_t d, m;   // f16 scale and min; x = d * q + m
  uint8_t qs[16];  // nibbles as Q4_0
};
struct BlockQ5_0 {
  uint16_t d;      // x = d * (q - 16), q = nibble | (bit << 4)
  uint8_t qh[4];   // fifth bits: bit j of the little-endian u32 is element j's
  uint8_t qs[16];  // nibbles as Q4_0
};
struct BlockQ5_1 {
  uint16_t d, m;  // x = d * q + m
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockIQ4_NL {
  uint16_t d;      // x = d * kvalues_iq4nl[nibble]
  uint8_t qs[16];  // nibbles as Q4_0
};
struct BlockMXFP4 {
  uint8_t e;       // E8M0 shared exponent; x = 2^(e-128) * kvalues_mxfp4[nibble]
  uint8_t qs[16];  // nibbles as Q4_0
};

// ---- 256-element super-blocks ----
struct BlockQ2_K {
  uint8_t scales[16];  // per 16 elements: low nibble scale, high nibble min
  uint8_t qs[64];      // 2-bit quants: element e in qs[(e/128)*32 + e%32] >> 2*((e%128)/32)
  uint16_t d, dmin;    // f16 super-scales of the scales and of the mins
};
struct BlockQ3_K {
  uint8_t hmask[32];   // high bit of element e: bit e/32 of hmask[e%32] (clear: subtract 4)
  uint8_t qs[64];      // low 2 bits, laid out as Q2_K
  uint8_t scales[12];  // 16 6-bit scales (stored +32)
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d;          // f16 super-block scale of the 6-bit scales
  uint16_t dmin;       // f16 super-block scale of the 6-bit mins
  uint8_t scales[12];  // 8 scales and 8 mins, 6 bits each (get_scale_min_k4)
  uint8_t qs[128];     // 4-bit quants
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];  // as Q4_K
  uint8_t qh[32];      // fifth bit of element e: bit e/32 of qh[e%32]
  uint8_t qs[128];     // low 4 bits, laid out as Q4_K
};
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits
  uint8_t qh[64];     // high 2 bits
  int8_t scales[16];  // 8-bit scales of 16-element groups
  uint16_t d;         // f16 super-block scale
};
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;   // high 2 bits of the eight 6-bit sub-block scales (stored +32)
  uint8_t scales_l[4];  // low 4 bits
  uint8_t qs[128];     // per 32-element sub-block: 16 bytes of nibbles as Q4_0
};
struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[64];      // low 8 bits of the 9-bit grid index of each group of 4
  uint8_t qh[8];       // ninth bits: bit k of qh[ib] for group k of sub-block ib
  uint8_t signs[32];   // one sign bit per element (set: negative)
  uint8_t scales[4];   // 4-bit sub-block scales s; x = d * (1 + 2 s) * grid * sign
};
struct BlockTQ2_0 {
  uint8_t qs[64];  // 2-bit values q in {0,1,2}: x = d * (q - 1)
  uint16_t d;
};

// Activations for K-quant dot products.
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];  // sums of qs over groups of 16
};
// Activations for Q4_1 / Q5_1 dot products.
struct BlockQ8_1 {
  uint16_t d;  // f16 scale
  uint16_t s;  // f16 of d * sum(qs) (d the unrounded f32 scale)
  int8_t qs[32];
};

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockMXFP4) == 17);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockIQ3_S) == 110);
static_assert(sizeof(BlockTQ2_0) == 66);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockQ8_1) == 36);

inline float load_f16(const uint16_t& h) { return fp16_to_fp32(h); }

// ggml's get_scale_min_k4: the j-th (0..7) 6-bit scale and min of a Q4_K / Q5_K block.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// The 16 6-bit scales of a Q3_K block, minus 32 (range -32..31). Scale j has its low 4
// bits in nibble (j/8) of scales[j%8] and its high 2 bits in bits 2*(j/4) of scales[8+j%4].
inline void q3_K_scales(const uint8_t* s, int8_t* out) {
  for (int j = 0; j < 16; ++j) {
    const int lo = (s[j % 8] >> (4 * (j / 8))) & 0xF;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

// The non-linear 4-bit codebook of IQ4_NL / IQ4_XS.
inline constexpr int8_t kValuesIQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};
// E2M1 (FP4) values times two: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
inline constexpr int8_t kValuesMXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// Half of the E8M0 scale 2^(e-127), i.e. 2^(e-128), exactly (e = 0, 1 are subnormal).
inline float e8m0_to_fp32_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return fp32_from_bits(bits);
}

// The IQ3_S grid: 512 points of 4 odd magnitudes 1..15, one per group of 4 elements;
// byte j (little-endian) of entry i is the magnitude of element j (iq3_s.cpp).
const uint32_t* iq3s_grid();

}  // namespace attnsparse::ops::quant
