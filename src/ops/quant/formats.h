// The table of weight formats behind ops::matmul and the (de)quantisers: for every DType
// its activation ("vec-dot") format, dequantise-row, the scalar dot product of one weight
// row with one quantised activation row, and quantise-row where we can write the type.
// A new type is one file in this folder (its Format) plus one row in formats.cpp and in
// core/dtype.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace attnsparse::ops::quant {

// What llama.cpp's CPU backend turns the f32 activations into before the dot products.
enum class ActType { F32, F16, BF16, Q8_0, Q8_1, Q8_K };

struct ActFormat {
  ActType type;
  const char* name;
  int64_t block_size;   // elements per block (1 for plain floats)
  int64_t block_bytes;  // bytes per block
  // Quantises one row of n elements (a multiple of block_size); null for the float kinds
  // (rounding to f16 / bf16 is done by the matmul's float path).
  void (*quantize)(const float* x, uint8_t* y, int64_t n);
  int64_t row_bytes(int64_t n) const { return n / block_size * block_bytes; }
};

struct Format {
  DType type;
  ActType act;
  // n elements (a multiple of the block size) from their stored bytes.
  void (*dequantize)(const uint8_t* src, float* dst, int64_t n);
  // One weight row (n elements) times one activation row in the act format, in the
  // arithmetic of ggml's kernels: exact integer sums per block, scaled in f32, summed in
  // double (or, for the types llama.cpp repacks on x86, in order with f32 FMAs as it does).
  // Null for the float types.
  double (*dot)(const uint8_t* w, const uint8_t* a, int64_t n);
  // llama.cpp's reference quantiser without importance matrix (what llama-quantize
  // writes); null where we cannot write the type.
  void (*quantize)(const float* src, uint8_t* dst, int64_t n);
};

const Format& format(DType type);
// "f32, f16, ..., q6_k": the types with a quantiser, for help and error texts.
std::string writable_type_names();
const ActFormat& act_format(ActType type);
inline bool is_float_act(ActType t) { return t == ActType::F32 || t == ActType::F16 || t == ActType::BF16; }

}  // namespace attnsparse::ops::quant
