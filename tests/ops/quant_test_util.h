// Helpers for the quantised-type tests: random weight blocks of every DType with sane
// scale fields, and decoding quantised activations back to floats.
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "ops/matmul.h"
#include "ops/quant.h"

namespace attnsparse::testing {

// Byte offsets of the f16 scale fields (d, dmin / m) in one block of `type`, from
// ggml-common.h's structs (written out here, independently of blocks.h's structs).
inline std::vector<int> f16_scale_offsets(DType type) {
  switch (type) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL:
    case DType::IQ4_XS: case DType::IQ3_S: return {0};
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::Q6_K: return {208};
    case DType::TQ2_0: return {64};
    default: return {};
  }
}

// Random bytes (every byte pattern is a block the decoders accept) with the f16 scales
// set to values in [lo, hi) and MXFP4's E8M0 exponent to 120..131 (scales 2^-8 .. 2^3).
inline std::vector<uint8_t> random_blocks(DType type, int64_t n_elems, uint32_t seed,
                                          float lo = 0.001f, float hi = 0.01f) {
  const auto& tr = dtype_traits(type);
  const int64_t nb = n_elems / tr.block_size;
  std::vector<uint8_t> data(nb * tr.block_bytes);
  std::mt19937 rng(seed);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> ud(lo, hi);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = data.data() + b * tr.block_bytes;
    for (int off : f16_scale_offsets(type)) {
      const uint16_t h = fp32_to_fp16(ud(rng));
      std::memcpy(blk + off, &h, 2);
    }
    if (type == DType::MXFP4) blk[0] = static_cast<uint8_t>(120 + rng() % 12);
  }
  return data;
}

// The activations of one row as the type's dot product sees them (decoded from its
// quantised act format); for Q8_1 also the per-block stored sums s.
inline std::vector<float> decoded_acts(DType type, const float* x, int64_t n, std::vector<float>* s = nullptr) {
  using namespace ops::quant;
  std::vector<float> out(n);
  switch (format(type).act) {
    case ActType::F32: std::memcpy(out.data(), x, n * 4); break;
    case ActType::F16: for (int64_t i = 0; i < n; ++i) out[i] = round_to_fp16(x[i]); break;
    case ActType::BF16: for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(fp32_to_bf16(x[i])); break;
    case ActType::Q8_0: {
      std::vector<BlockQ8_0> a(n / 32);
      quantize_act_q8_0(x, a.data(), n);
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(a[i / 32].d) * a[i / 32].qs[i % 32];
      break;
    }
    case ActType::Q8_1: {
      std::vector<BlockQ8_1> a(n / 32);
      quantize_act_q8_1(x, a.data(), n);
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(a[i / 32].d) * a[i / 32].qs[i % 32];
      if (s) for (const auto& blk : a) s->push_back(fp16_to_fp32(blk.s));
      break;
    }
    case ActType::Q8_K: {
      std::vector<BlockQ8_K> a(n / 256);
      quantize_act_q8_K(x, a.data(), n);
      for (int64_t i = 0; i < n; ++i) out[i] = a[i / 256].d * a[i / 256].qs[i % 256];
      break;
    }
  }
  return out;
}

inline std::vector<DType> quantised_dtypes() {
  std::vector<DType> out;
  for (DType t : all_dtypes())
    if (dtype_traits(t).block_size > 1) out.push_back(t);
  return out;
}

}  // namespace attnsparse::testing
