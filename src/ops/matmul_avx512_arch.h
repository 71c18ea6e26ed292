// Internal: the AVX-512 "Arch" traits for matmul_x86_impl.h. Include only after
// matmul_x86_impl.h, under an AVX-512 `#pragma GCC target`.
#pragma once

namespace {

template <bool kVnni>
struct Avx512 {
  using vec = __m512;
  static constexpr int W = 16;
  static constexpr int NR = 12;  // 12 rows x 32 tokens = 24 accumulators (of 32 zmm)
  static vec zero() { return _mm512_setzero_ps(); }
  static vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static vec loadu_n(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static constexpr int kGemvTokens = 4;  // 32 zmm registers: 4 rows x 4 tokens of accumulators
  static vec load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static vec load_bf16(const uint16_t* p) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
  static vec set1(float f) { return _mm512_set1_ps(f); }
  static vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
  static void storeu(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static void cvt_row(DType type, const uint8_t* src, float* dst, int64_t n) {
    const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
    if (type == DType::F32) {
      std::memcpy(dst, src, n * 4);
      return;
    }
    for (int64_t i = 0; i < n; i += 16) {
      const int64_t r = n - i < 16 ? n - i : 16;
      const __mmask16 mk = static_cast<__mmask16>((1u << r) - 1);
      const __m256i h = _mm256_maskz_loadu_epi16(mk, s + i);
      const __m512 f = type == DType::F16
                           ? _mm512_cvtph_ps(h)
                           : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      _mm512_mask_storeu_ps(dst + i, mk, f);
    }
  }
  static void round_acts(DType type, const float* x, float* xr, int64_t n) {
    if (type == DType::F32) {
      std::memcpy(xr, x, n * 4);
      return;
    }
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    for (int64_t i = 0; i < n; i += 16) {
      const int64_t r = n - i < 16 ? n - i : 16;
      const __mmask16 mk = static_cast<__mmask16>((1u << r) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
      __m512 out;
      if (type == DType::F16) {
        out = _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      } else {
        const __m512i u = _mm512_castps_si512(v);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        const __m512i rn = _mm512_and_si512(
            _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), hi);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                      _mm512_set1_epi32(0x7f800000));
        const __m512i qnan = _mm512_or_si512(_mm512_and_si512(u, hi), _mm512_set1_epi32(64 << 16));
        out = _mm512_castsi512_ps(_mm512_mask_blend_epi32(nan, rn, qnan));
      }
      _mm512_mask_storeu_ps(xr + i, mk, out);
    }
  }
  static __m256i dot_i8(__m256i ax, __m256i sy) {
    if constexpr (kVnni) {
      return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
    } else {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
    }
  }
};

}  // namespace
