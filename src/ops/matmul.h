// Weight-times-activation products for every weight dtype, and (de)quantisation.
// Kernels take raw pointers and shapes; they know nothing of models or files.
#pragma once
#include <cstdint>
#include <memory>

#include "core/dtype.h"

namespace attnsparse::ops {

// A weight matrix as stored: n_out rows of n_in elements each (row-major, quantised
// blocks along the row), i.e. PyTorch's nn.Linear weight layout.
struct PackedWeights;  // ops/quant/packed.h

struct WeightView {
  DType dtype = DType::F32;
  const uint8_t* data = nullptr;
  int64_t n_out = 0;
  int64_t n_in = 0;
  // Optional: the same weights re-laid out for this CPU's integer GEMM (pack_weights);
  // `data` stays the truth and is read whenever those kernels are not used.
  const PackedWeights* packed = nullptr;
  int64_t row_bytes() const { return dtype_row_bytes(dtype, n_in); }
};

// The weights re-laid out for the integer GEMM kernels of this CPU (with AVX512-VNNI:
// Q4_0, Q4_K, Q5_K and Q6_K), or nullptr when its kernels read the stored layout (other
// types, other CPUs, levels below avx512vnni). Set the result as the view's
// `packed`. It takes as much memory as the stored weights.
std::unique_ptr<PackedWeights> pack_weights(const WeightView& w);

// y[t, o] = sum_i x[t, i] * W[o, i] for t < m (x is [m, n_in], y is [m, n_out], both
// row-major f32). Like llama.cpp, activations are first rounded to the weight's
// "vec-dot" type (quant::format(dtype).act): f16 for F16 weights, bf16 for BF16, Q8_0
// blocks for Q8_0/Q4_0/Q5_0/IQ4_NL/MXFP4, Q8_1 for Q4_1/Q5_1 and Q8_K for the K-quants,
// IQ4_XS, IQ3_S and TQ2_0; F32 weights use f32 activations. Multi-threaded (OpenMP).
void matmul(const WeightView& w, const float* x, int64_t m, float* y);

// While an enabled ScopedBatchInvariant lives on the calling thread (the innermost one
// decides; a disabled one turns it off for its scope), F32/F16/BF16
// products take the large-batch (GEMM) kernels for every m, whose sum for each output is
// one chain over the inputs in order: the result of a token's row is then the same bits
// whatever the other rows of the call are (micro-batched prefill). Quantised products
// already compute each (row, token) dot product on its own.
class ScopedBatchInvariant {
 public:
  explicit ScopedBatchInvariant(bool enable);
  ~ScopedBatchInvariant();
  ScopedBatchInvariant(const ScopedBatchInvariant&) = delete;
  ScopedBatchInvariant& operator=(const ScopedBatchInvariant&) = delete;

 private:
  bool prev_;
};

// Scalar reference of matmul with the same activation rounding (for tests).
void matmul_reference(const WeightView& w, const float* x, int64_t m, float* y);

// Row conversions. dequantize works for every DType; quantize for the types whose format
// has a quantiser (quant::format(dtype).quantize; others throw). n must be a multiple of
// the dtype's block size.
void dequantize_row(DType type, const uint8_t* src, float* dst, int64_t n);
void quantize_row(DType type, const float* src, uint8_t* dst, int64_t n);

// The instruction-set level the kernels use (core/cpu.h: "portable", "avx2", "avx512",
// "avx512vnni", "avx512bf16"); ATTNSPARSE_SIMD or cpu::set_override lower it.
const char* simd_level_name();

}  // namespace attnsparse::ops
