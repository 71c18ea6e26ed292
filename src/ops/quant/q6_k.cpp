// Q6_K: super-blocks of 256 with 6-bit values (4 low bits in ql, 2 high in qh) and
// int8 scales per 16, x = d * sc * (q - 32); dot with Q8_K activations.
#include <algorithm>
#include <cmath>

#include "ops/quant.h"
#include "ops/quant/kquant_search.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

int32_t q6_K_block_int(const BlockQ6_K& w, const BlockQ8_K& a) {
  int32_t total = 0;
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = w.ql + half * 64;
    const uint8_t* qh = w.qh + half * 32;
    const int8_t* sc = w.scales + half * 8;
    const int8_t* q8 = a.qs + half * 128;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      total += sc[is + 0] * q1 * q8[l] + sc[is + 2] * q2 * q8[l + 32] +
               sc[is + 4] * q3 * q8[l + 64] + sc[is + 6] * q4 * q8[l + 96];
    }
  }
  return total;
}

// One f32 chain over the super-blocks in order, one FMA per super-block (the packed VNNI
// kernel's order).
double dot_q6_K_q8_K(const BlockQ6_K* w, const BlockQ8_K* a, int64_t n) {
  float acc = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b)
    acc = std::fma(float(q6_K_block_int(w[b], a[b])), load_f16(w[b].d) * a[b].d, acc);
  return acc;
}

namespace {
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockQ6_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d);
    const uint8_t* ql = blk[b].ql;
    const uint8_t* qh = blk[b].qh;
    const int8_t* sc = blk[b].scales;
    float* y = dst + b * kQK_K;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

// llama.cpp's quantize_row_q6_K_ref: a weighted symmetric search per 16 for the scales,
// the scales to int8 against the largest, then the 6-bit levels against the rounded scales.
void quantize(const float* x, uint8_t* dst, int64_t n) {
  using namespace ksearch;
  auto* y = reinterpret_cast<BlockQ6_K*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    int8_t L[kQK_K];
    float scales[16];
    float max_scale = 0, max_abs = 0;
    for (int g = 0; g < 16; ++g) {
      scales[g] = symmetric_levels(16, 32, x + 16 * g, L + 16 * g, 1);
      if (std::fabs(scales[g]) > max_abs) {
        max_abs = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    if (max_abs < 1e-15f) {
      std::memset(&y[b], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[b].d = fp32_to_fp16(1 / iscale);
    for (int g = 0; g < 16; ++g) y[b].scales[g] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[g])));
    for (int g = 0; g < 16; ++g) {
      const float d = load_f16(y[b].d) * y[b].scales[g];
      if (d == 0.f) continue;
      for (int i = 0; i < 16; ++i) L[16 * g + i] = static_cast<int8_t>(std::max(-32, std::min(31, nearest_int(x[16 * g + i] / d))) + 32);
    }
    for (int h = 0; h < 2; ++h) {
      uint8_t* ql = y[b].ql + 64 * h;
      uint8_t* qh = y[b].qh + 32 * h;
      const int8_t* Lh = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}
}  // namespace

extern const Format kFormatQ6_K{DType::Q6_K, ActType::Q8_K, dequantize,
                                dot_bytes<BlockQ6_K, BlockQ8_K, dot_q6_K_q8_K>, quantize};

}  // namespace attnsparse::ops::quant
