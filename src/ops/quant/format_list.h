// Internal: one Format per file of this folder, collected by formats.cpp.
#pragma once
#include "ops/quant/formats.h"

namespace attnsparse::ops::quant {

extern const Format kFormatF32, kFormatF16, kFormatBF16;
extern const Format kFormatQ4_0, kFormatQ4_1, kFormatQ5_0, kFormatQ5_1, kFormatQ8_0;
extern const Format kFormatQ2_K, kFormatQ3_K, kFormatQ4_K, kFormatQ5_K, kFormatQ6_K;
extern const Format kFormatIQ4_NL, kFormatIQ4_XS, kFormatIQ3_S, kFormatTQ2_0, kFormatMXFP4;

// Activation quantisers (act.cpp).
void quantize_act_q8_0_bytes(const float* x, uint8_t* y, int64_t n);
void quantize_act_q8_1_bytes(const float* x, uint8_t* y, int64_t n);
void quantize_act_q8_K_bytes(const float* x, uint8_t* y, int64_t n);

// Typed adapters: a Format's byte-pointer functions from block-typed ones.
template <class W, class A, double (*F)(const W*, const A*, int64_t)>
double dot_bytes(const uint8_t* w, const uint8_t* a, int64_t n) {
  return F(reinterpret_cast<const W*>(w), reinterpret_cast<const A*>(a), n);
}

}  // namespace attnsparse::ops::quant
