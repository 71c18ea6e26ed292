// F32, F16 and BF16 weights: plain element arrays; the matmul rounds activations to the
// weight's type and multiplies in f32 (no integer dot).
#include <cstring>

#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {
void dequantize_f32(const uint8_t* src, float* dst, int64_t n) { std::memcpy(dst, src, n * 4); }
void quantize_f32(const float* src, uint8_t* dst, int64_t n) { std::memcpy(dst, src, n * 4); }

void dequantize_f16(const uint8_t* src, float* dst, int64_t n) {
  const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
}
void quantize_f16(const float* src, uint8_t* dst, int64_t n) {
  uint16_t* d = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
}

void dequantize_bf16(const uint8_t* src, float* dst, int64_t n) {
  const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
}
void quantize_bf16(const float* src, uint8_t* dst, int64_t n) {
  uint16_t* d = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
}
}  // namespace

extern const Format kFormatF32{DType::F32, ActType::F32, dequantize_f32, nullptr, quantize_f32};
extern const Format kFormatF16{DType::F16, ActType::F16, dequantize_f16, nullptr, quantize_f16};
extern const Format kFormatBF16{DType::BF16, ActType::BF16, dequantize_bf16, nullptr, quantize_bf16};

}  // namespace attnsparse::ops::quant
