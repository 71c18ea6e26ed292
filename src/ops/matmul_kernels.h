// Internal: the per-ISA kernel tables behind ops::matmul (not for use outside src/ops).
#pragma once
#include <array>
#include <cstdint>

#include "ops/matmul.h"
#include "ops/quant.h"
#include "ops/quant/packed.h"

namespace attnsparse::ops::kern {

// Rows [o0, o1) of y for every token; x already rounded ("xr") or quantised ("a").
using FloatRowsFn = void (*)(const WeightView& w, const float* xr, int64_t m, float* y,
                             int64_t o0, int64_t o1);
using Q80RowsFn = void (*)(const WeightView& w, const quant::BlockQ8_0* a, int64_t m, float* y,
                           int64_t o0, int64_t o1);
using Q8KRowsFn = void (*)(const WeightView& w, const quant::BlockQ8_K* a, int64_t m, float* y,
                           int64_t o0, int64_t o1);
// Any quantised type: `a` holds m rows of activations in the type's act format
// (quant::format(w.dtype).act), each act_format.row_bytes(n_in) bytes.
using QuantRowsFn = void (*)(const WeightView& w, const uint8_t* a, int64_t m, float* y,
                             int64_t o0, int64_t o1);

// A typed rows kernel as a QuantRowsFn.
template <class ABlock, void (*F)(const WeightView&, const ABlock*, int64_t, float*, int64_t, int64_t)>
void rows_bytes(const WeightView& w, const uint8_t* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  F(w, reinterpret_cast<const ABlock*>(a), m, y, o0, o1);
}

struct Kernels {
  const char* name;
  // Activation rounding for F16 / BF16 weights (x -> f32 values exactly representable in
  // the weight's type, round to nearest even); n elements.
  void (*round_acts)(DType type, const float* x, float* xr, int64_t n);
  FloatRowsFn float_rows;  // small m (GEMV-style, weights read once per row)
  // GEMM for F32/F16/BF16 weights, used when m >= gemm_min_m (0: none). The activations
  // are first packed by pack_xT (token blocks [b0, b1) of gemm_tokens tokens each).
  int64_t gemm_min_m;
  int64_t gemm_tokens;
  int64_t gemm_kc;
  void (*pack_xT)(const float* xr, int64_t m, int64_t k, float* xT, int64_t b0, int64_t b1);
  void (*float_gemm)(const WeightView& w, const float* xT, int64_t m, float* y, int64_t o0,
                     int64_t o1);
  // Quantised types by GGML id; null: the portable kernel (Format::dot per row).
  std::array<QuantRowsFn, kGgmlTypeSlots> quant_rows{};
  QuantRowsFn quant(DType t) const { return quant_rows[static_cast<uint32_t>(t)]; }
  void set(DType t, QuantRowsFn fn) { quant_rows[static_cast<uint32_t>(t)] = fn; }
};

// BF16 weights times bf16-rounded activations with AVX512-BF16 dot products
// (matmul_avx512_bf16.cpp). The activations are converted to bf16 bits by to_bf16; n_in
// must be even for the GEMM (pairs along k).
struct Bf16DotKernels {
  void (*to_bf16)(const float* x, uint16_t* xb, int64_t n);
  void (*rows)(const WeightView& w, const uint16_t* xb, int64_t m, float* y, int64_t o0, int64_t o1);
  int64_t gemm_min_m;
  int64_t gemm_tokens;
  int64_t gemm_kc;
  void (*pack)(const uint16_t* xb, int64_t m, int64_t n, uint32_t* xp, int64_t b0, int64_t b1);
  void (*gemm)(const WeightView& w, const uint32_t* xp, int64_t m, float* y, int64_t o0, int64_t o1);
};
// Only call when the CPU has AVX512-BF16.
const Bf16DotKernels& avx512_bf16_dot_kernels();

const Kernels& portable_kernels();
// Defined in matmul_avx2.cpp / matmul_avx512.cpp; only call when the CPU supports them.
const Kernels& avx2_kernels();
const Kernels& avx512_kernels(bool vnni);
// Q8_0 / Q4_0 rows with AVX512-VNNI dot products (matmul_avx512_vnni.cpp).
extern const QuantRowsFn avx512_vnni_q8_0_rows;
extern const QuantRowsFn avx512_vnni_q4_0_rows;

// Activations for the packed-weight kernels (ops/quant/packed.h): m rows of the type's
// act blocks (Q8_0 or Q8_K), plus per block: `ad` the f32 scale (Q8_0) and `aux` the
// integer corrections: Q4_0 -8 sum(q) (1 per block); Q4_K / Q5_K the eight 32-element
// sums as four int16 pairs (4 per super-block); Q6_K -32 times the sixteen 16-element
// sums (16 per super-block).
struct PackedActs {
  const uint8_t* a = nullptr;
  const float* ad = nullptr;
  const int32_t* aux = nullptr;
};
// Rows of groups [g0, g1) (16 rows each) for m tokens into y[t * n_out + o].
using PackedFn = void (*)(const PackedWeights& p, const PackedActs& x, int64_t m, float* y, int64_t g0,
                          int64_t g1);
// The AVX512-VNNI kernel for a packed type (matmul_packed_avx512.cpp); null for others.
// Only call when the CPU has AVX512-VNNI.
PackedFn avx512_vnni_packed_kernel(DType t);
// Q8_0 rows on the stored layout, two rows per 512-bit vector with llama.cpp's 8-lane
// sums (matmul_packed_avx512.cpp; AVX512-VNNI only).
void avx512_vnni_q8_0_gemm(const WeightView& w, const uint8_t* a, int64_t m, float* y, int64_t o0, int64_t o1);

// Shared scalar helper: packed-activation buffer size in floats for the GEMM.
inline int64_t packed_x_floats(int64_t m, int64_t k, int64_t tokens, int64_t kc) {
  const int64_t n_tb = (m + tokens - 1) / tokens;
  const int64_t n_kc = (k + kc - 1) / kc;
  return n_tb * n_kc * kc * tokens;
}

// Scalar transpose-pack shared by all ISAs: block (kc, b) holds [kc][tokens] floats,
// zero for tokens past m.
void pack_xT_scalar(const float* xr, int64_t m, int64_t k, float* xT, int64_t b0, int64_t b1,
                    int64_t tokens, int64_t kc);

}  // namespace attnsparse::ops::kern
