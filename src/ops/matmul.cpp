// Provisional scalar implementation (correct, slow); the SIMD kernels replace it.
#include "ops/matmul.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace attnsparse::ops {

void dequantize_row(DType type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    case DType::Q8_0: {
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = src + b * 34;
        uint16_t dh;
        std::memcpy(&dh, blk, 2);
        float d = fp16_to_fp32(dh);
        const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
        for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * q[j];
      }
      return;
    }
    case DType::Q4_0: {
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = src + b * 18;
        uint16_t dh;
        std::memcpy(&dh, blk, 2);
        float d = fp16_to_fp32(dh);
        const uint8_t* q = blk + 2;
        for (int j = 0; j < 16; ++j) {
          dst[b * 32 + j] = d * (static_cast<int>(q[j] & 0x0F) - 8);
          dst[b * 32 + j + 16] = d * (static_cast<int>(q[j] >> 4) - 8);
        }
      }
      return;
    }
    default: fail("dequantize_row: {} not implemented yet", dtype_name(type));
  }
}

void quantize_row(DType type, const float* src, uint8_t* dst, int64_t n) {
  switch (type) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      return;
    }
    case DType::Q8_0: {
      for (int64_t b = 0; b < n / 32; ++b) {
        const float* x = src + b * 32;
        float amax = 0.f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        uint8_t* blk = dst + b * 34;
        uint16_t dh = fp32_to_fp16(d);
        std::memcpy(blk, &dh, 2);
        int8_t* q = reinterpret_cast<int8_t*>(blk + 2);
        for (int j = 0; j < 32; ++j) q[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
      }
      return;
    }
    default: fail("quantize_row: cannot write {} tensors", dtype_name(type));
  }
}

void matmul_reference(const WeightView& w, const float* x, int64_t m, float* y) {
  std::vector<float> row(w.n_in);
  for (int64_t o = 0; o < w.n_out; ++o) {
    dequantize_row(w.dtype, w.data + o * w.row_bytes(), row.data(), w.n_in);
    for (int64_t t = 0; t < m; ++t) {
      double acc = 0;
      for (int64_t i = 0; i < w.n_in; ++i) acc += static_cast<double>(row[i]) * x[t * w.n_in + i];
      y[t * w.n_out + o] = static_cast<float>(acc);
    }
  }
}

void matmul(const WeightView& w, const float* x, int64_t m, float* y) {
#pragma omp parallel
  {
    std::vector<float> row(w.n_in);
#pragma omp for schedule(static)
    for (int64_t o = 0; o < w.n_out; ++o) {
      dequantize_row(w.dtype, w.data + o * w.row_bytes(), row.data(), w.n_in);
      for (int64_t t = 0; t < m; ++t) {
        float acc = 0;
        const float* xt = x + t * w.n_in;
        for (int64_t i = 0; i < w.n_in; ++i) acc += row[i] * xt[i];
        y[t * w.n_out + o] = acc;
      }
    }
  }
}

const char* simd_level_name() { return "portable"; }

}  // namespace attnsparse::ops
