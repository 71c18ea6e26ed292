// AVX2 + FMA + F16C kernels (compiled for that target only; called after a CPUID check).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "ops/matmul_kernels.h"
#include "ops/quant.h"

#pragma GCC push_options
// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (_mm512_undefined_*).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx2,fma,f16c")

#include "ops/matmul_x86_impl.h"

namespace {

struct Avx2 {
  using vec = __m256;
  static constexpr int W = 8;
  static constexpr int NR = 6;  // 6 rows x 16 tokens = 12 accumulators (of 16 ymm)
  static vec zero() { return _mm256_setzero_ps(); }
  static vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static vec loadu_n(const float* p, int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
    return _mm256_maskload_ps(p, mask);
  }
  static constexpr int kGemvTokens = 2;  // 16 ymm registers: 4 rows x 2 tokens of accumulators
  static vec load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static vec load_bf16(const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static vec set1(float f) { return _mm256_set1_ps(f); }
  static vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static float hsum(vec v) { return hsum256(v); }
  static void storeu(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static void cvt_row(DType type, const uint8_t* src, float* dst, int64_t n) {
    const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
    int64_t i = 0;
    if (type == DType::F32) {
      std::memcpy(dst, src, n * 4);
      return;
    }
    if (type == DType::F16) {
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
      for (; i < n; ++i) dst[i] = attnsparse::fp16_to_fp32(s[i]);
    } else {
      for (; i + 8 <= n; i += 8) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
      }
      for (; i < n; ++i) dst[i] = attnsparse::bf16_to_fp32(s[i]);
    }
  }
  static void round_acts(DType type, const float* x, float* xr, int64_t n) {
    int64_t i = 0;
    if (type == DType::F16) {
      for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_ps(xr + i, _mm256_cvtph_ps(h));
      }
      for (; i < n; ++i) xr[i] = attnsparse::round_to_fp16(x[i]);
    } else if (type == DType::BF16) {
      const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
      const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
      for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), hi);
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
        const __m256i qnan = _mm256_or_si256(_mm256_and_si256(u, hi), _mm256_set1_epi32(64 << 16));
        _mm256_storeu_ps(xr + i, _mm256_castsi256_ps(_mm256_blendv_epi8(r, qnan, nan)));
      }
      for (; i < n; ++i) xr[i] = attnsparse::bf16_to_fp32(attnsparse::fp32_to_bf16(x[i]));
    } else {
      std::memcpy(xr, x, n * 4);
    }
  }
  static __m256i dot_i8(__m256i ax, __m256i sy) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
  }
};

}  // namespace

#pragma GCC pop_options
#pragma GCC diagnostic pop

namespace attnsparse::ops::kern {

const Kernels& avx2_kernels() {
  static const Kernels k = [] {
    Kernels k{"avx2", Avx2::round_acts, float_rows<Avx2>, 16, 2 * Avx2::W, kKC, pack_xT<Avx2>,
              float_gemm<Avx2>};
    k.set(DType::Q8_0, rows_bytes<BlockQ8_0, q8_0_rows<Avx2, false>>);
    k.set(DType::Q4_0, rows_bytes<BlockQ8_0, q8_0_rows<Avx2, true>>);
    k.set(DType::Q4_K, rows_bytes<BlockQ8_K, q4_K_rows<Avx2>>);
    k.set(DType::Q6_K, rows_bytes<BlockQ8_K, q6_K_rows<Avx2>>);
    k.set(DType::Q5_0, rows_bytes<BlockQ8_0, q8_0_rows_k<Avx2, Q80Kind::Q5_0>>);
    k.set(DType::IQ4_NL, rows_bytes<BlockQ8_0, q8_0_rows_k<Avx2, Q80Kind::IQ4_NL>>);
    k.set(DType::Q4_1, rows_bytes<BlockQ8_1, q8_1_rows<Avx2, false>>);
    k.set(DType::Q5_1, rows_bytes<BlockQ8_1, q8_1_rows<Avx2, true>>);
    k.set(DType::Q5_K, rows_bytes<BlockQ8_K, q5_K_rows<Avx2>>);
    k.set(DType::Q2_K, rows_bytes<BlockQ8_K, q2_K_rows<Avx2>>);
    k.set(DType::Q3_K, rows_bytes<BlockQ8_K, q3_K_rows<Avx2>>);
    k.set(DType::IQ4_XS, rows_bytes<BlockQ8_K, iq4_xs_rows<Avx2>>);
    k.set(DType::MXFP4, rows_bytes<BlockQ8_0, q8_0_rows_k<Avx2, Q80Kind::MXFP4>>);
    k.set(DType::TQ2_0, rows_bytes<BlockQ8_K, tq2_0_rows<Avx2>>);
    k.set(DType::IQ3_S, rows_bytes<BlockQ8_K, iq3_s_rows<Avx2>>);
    return k;
  }();
  return k;
}

}  // namespace attnsparse::ops::kern
