// Element types of weight tensors, with GGML's numeric ids (as stored in GGUF files),
// block geometry of the quantised types, and scalar f16/bf16 conversions.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <span>
#include <string_view>

namespace attnsparse {

// Only the types we can compute with; the value is the GGML type id.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ4_XS = 23,
  BF16 = 30,
  TQ2_0 = 35,
  MXFP4 = 39,
};
constexpr uint32_t kGgmlTypeSlots = 40;  // GGML ids of DType values are below this

struct DTypeTraits {
  const char* name;
  int64_t block_size;   // elements per block (1 for plain floats)
  int64_t block_bytes;  // bytes per block
};

// nullopt for GGML type ids we do not read (IQ1_*, IQ2_*, IQ3_XXS, TQ1_0, Q8_1 and Q8_K
// as storage, integer types, ...).
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
const DTypeTraits& dtype_traits(DType type);
inline const char* dtype_name(DType type) { return dtype_traits(type).name; }
// "f32", "q8_0", "Q4_K", "iq4_xs", ... (case-insensitive).
std::optional<DType> dtype_from_name(std::string_view name);
// Every DType, in GGML id order.
std::span<const DType> all_dtypes();
// Name of any GGML type id, including the ones we do not read ("q5_k", "type 99").
std::string ggml_type_name(uint32_t ggml_type);

// Bytes for `n` elements of a row; n must be a multiple of the block size.
inline int64_t dtype_row_bytes(DType type, int64_t n) {
  const auto& t = dtype_traits(type);
  return n / t.block_size * t.block_bytes;
}

// ---- scalar conversions (IEEE half and bfloat16) ----
inline float fp32_from_bits(uint32_t w) {
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}
inline uint32_t fp32_to_bits(float f) {
  uint32_t w;
  std::memcpy(&w, &f, 4);
  return w;
}

// Exact half -> float (handles subnormals, inf, nan).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = 0xE0u << 23;
  const float exp_scale = fp32_from_bits(0x7800000u);
  const float normalized = fp32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
  const uint32_t magic_mask = 126u << 23;
  const float magic_bias = 0.5f;
  const float denormalized = fp32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
  const uint32_t denormalized_cutoff = 1u << 27;
  const uint32_t result =
      sign | (two_w < denormalized_cutoff ? fp32_to_bits(denormalized) : fp32_to_bits(normalized));
  return fp32_from_bits(result);
}

// Float -> half, round to nearest even (as F16C's _cvtss_sh with rounding mode 0).
inline uint16_t fp32_to_fp16(float f) {
  const float scale_to_inf = fp32_from_bits(0x77800000u);
  const float scale_to_zero = fp32_from_bits(0x08800000u);
  float base = (f < 0 ? -f : f) * scale_to_inf * scale_to_zero;
  const uint32_t w = fp32_to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = fp32_from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = fp32_to_bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(static_cast<uint32_t>(h) << 16); }

// Float -> bfloat16, round to nearest even; NaN stays NaN.
inline uint16_t fp32_to_bf16(float f) {
  uint32_t u = fp32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Round-trip helpers used to mimic llama.cpp's activation rounding.
inline float round_to_fp16(float f) { return fp16_to_fp32(fp32_to_fp16(f)); }

}  // namespace attnsparse
