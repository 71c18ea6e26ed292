// Integer GEMM / GEMV over packed quantised weights (ops/quant/packed.h) with 512-bit
// VNNI dot products. Compiled for AVX512-VNNI only; ops::matmul calls these after a CPUID
// check. A tile is one group of 16 weight rows (one zmm of per-row sums) times up to T
// tokens; the group's unpacked nibbles of one block are shared by the T tokens. Every
// (row, token) output is one f32 chain over the blocks in order, the same arithmetic as
// the scalar Format::dot of the type, whatever the tile: decode and prefill agree.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/matmul_kernels.h"
#include "ops/quant.h"
#include "ops/quant/packed.h"

#pragma GCC push_options
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")

namespace attnsparse::ops::kern {
namespace {

using namespace quant;

inline __m512i bcast32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __mmask64 load_mask(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return static_cast<__mmask64>(v);
}

inline __m512 load_f16x16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline __m512i load512(const uint8_t* p) { return _mm512_loadu_si512(reinterpret_cast<const void*>(p)); }

// Output pointers of a tile: token t's 16 outputs at out[t], `rows` of them valid.
template <int T>
inline void store_tile(float* const* out, const __m512* acc, int rows) {
  if (rows == kPackRows) {
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(out[t], acc[t]);
  } else {
    const __mmask16 k = static_cast<__mmask16>((1u << rows) - 1);
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(out[t], k, acc[t]);
  }
}

// ---- Q4_0 / IQ4_NL / MXFP4 x Q8_0: 4-bit indices q; per block, int sum = sum(u[q] a) -
// off sum(a) with u[q] = q (Q4_0, off 8) or codebook value + 128 (off 128), then one FMA.
template <DType Type>
struct Nibble32Kernel {
  static constexpr int kMaxT = 8;
  static constexpr bool kMx = Type == DType::MXFP4;
  static constexpr int64_t kV = kMx ? 64 : 32;
  static __m512i table() {
    alignas(16) uint8_t t[16];
    for (int i = 0; i < 16; ++i)
      t[i] = static_cast<uint8_t>(Type == DType::IQ4_NL ? kValuesIQ4NL[i] + 128 : kValuesMXFP4[i] + 128);
    return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
  }
  static __m512 scales(const uint8_t* blk) {
    if constexpr (kMx) return _mm512_loadu_ps(blk);
    else return load_f16x16(blk);
  }
  template <int T>
  static void tile(const uint8_t* grp, int64_t nb, int64_t bb, const PackedActs& x, int64_t t0,
                   float* const* out, int rows) {
    const auto* a = reinterpret_cast<const BlockQ8_0*>(x.a);
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    [[maybe_unused]] const __m512i tab = Type == DType::Q4_0 ? m4 : table();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = grp + b * bb;
      const __m512 dw = scales(blk);
      __m512i q[8];
      for (int c = 0; c < 4; ++c) {
        const __m512i v = load512(blk + kV + 64 * c);
        q[2 * c] = _mm512_and_si512(v, m4);
        q[2 * c + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        if constexpr (Type != DType::Q4_0) {
          q[2 * c] = _mm512_shuffle_epi8(tab, q[2 * c]);
          q[2 * c + 1] = _mm512_shuffle_epi8(tab, q[2 * c + 1]);
        }
      }
      for (int t = 0; t < T; ++t) {
        const int64_t i = (t0 + t) * nb + b;
        const int8_t* qs = a[i].qs;
        // Few tokens: two independent integer chains (exact sums), not one of 8 steps.
        constexpr int S = T <= 2 ? 2 : 1;
        __m512i s[S];
        s[0] = _mm512_set1_epi32(x.aux[i]);
        if constexpr (S > 1) s[1] = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) {
          s[c % S] = _mm512_dpbusd_epi32(s[c % S], q[2 * c], bcast32(qs + 4 * c));
          s[c % S] = _mm512_dpbusd_epi32(s[c % S], q[2 * c + 1], bcast32(qs + 16 + 4 * c));
        }
        if constexpr (S > 1) s[0] = _mm512_add_epi32(s[0], s[1]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[0]), _mm512_mul_ps(dw, _mm512_set1_ps(x.ad[i])), acc[t]);
      }
    }
    store_tile<T>(out, acc, rows);
  }
};

// ---- Q4_K / Q5_K x Q8_K: per super-block, sumi = sum_j sc_j dot_j, summ = sum_j mn_j
// asum_j, then acc += sumi * (d da), accm += summ * (dmin da); output acc - accm.
template <bool Q5>
struct K4Kernel {
  static constexpr int kMaxT = 4;
  static constexpr int64_t kSc = 64, kMn = 64 + 128, kV = 64 + 128 + 256, kMask = kV + 32 * 64;
  template <int T>
  static void tile(const uint8_t* grp, int64_t nb, int64_t bb, const PackedActs& x, int64_t t0,
                   float* const* out, int rows) {
    const auto* a = reinterpret_cast<const BlockQ8_K*>(x.a);
    __m512 acc[T], accm[T];
    for (int t = 0; t < T; ++t) acc[t] = accm[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), c16 = _mm512_set1_epi8(16);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = grp + b * bb;
      const BlockQ8_K* at[T];
      for (int t = 0; t < T; ++t) at[t] = a + (t0 + t) * nb + b;
      __m512i isum[T];
      for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
      // Few tokens: S independent integer chains per sub-block (exact sums).
      constexpr int S = T == 1 ? 4 : T == 2 ? 2 : 1;
      for (int i = 0; i < 4; ++i) {
        __m512i alo[T][S], ahi[T][S];
        for (int t = 0; t < T; ++t)
          for (int u = 0; u < S; ++u) alo[t][u] = ahi[t][u] = _mm512_setzero_si512();
        for (int c = 0; c < 8; ++c) {
          const __m512i v = load512(blk + kV + 64 * (8 * i + c));
          __m512i lo = _mm512_and_si512(v, m4);
          __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
          if constexpr (Q5) {
            const uint8_t* mk = blk + kMask + 16 * (8 * i + c);
            lo = _mm512_mask_add_epi8(lo, load_mask(mk), lo, c16);
            hi = _mm512_mask_add_epi8(hi, load_mask(mk + 8), hi, c16);
          }
          for (int t = 0; t < T; ++t) {
            alo[t][c % S] = _mm512_dpbusd_epi32(alo[t][c % S], lo, bcast32(at[t]->qs + 64 * i + 4 * c));
            ahi[t][c % S] = _mm512_dpbusd_epi32(ahi[t][c % S], hi, bcast32(at[t]->qs + 64 * i + 32 + 4 * c));
          }
        }
        for (int t = 0; t < T; ++t)
          for (int u = 1; u < S; ++u) {
            alo[t][0] = _mm512_add_epi32(alo[t][0], alo[t][u]);
            ahi[t][0] = _mm512_add_epi32(ahi[t][0], ahi[t][u]);
          }
        const __m512i sc_lo =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * (2 * i))));
        const __m512i sc_hi =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * (2 * i + 1))));
        for (int t = 0; t < T; ++t)
          isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(alo[t][0], sc_lo),
                                                               _mm512_mullo_epi32(ahi[t][0], sc_hi)));
      }
      const __m512 dw = load_f16x16(blk), dmw = load_f16x16(blk + 32);
      for (int t = 0; t < T; ++t) {
        const int32_t* pairs = x.aux + ((t0 + t) * nb + b) * 4;
        __m512i summ = _mm512_setzero_si512();
        for (int q = 0; q < 4; ++q) summ = _mm512_dpwssd_epi32(summ, load512(blk + kMn + 64 * q), _mm512_set1_epi32(pairs[q]));
        const __m512 da = _mm512_set1_ps(at[t]->d);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, da), acc[t]);
        accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(summ), _mm512_mul_ps(dmw, da), accm[t]);
      }
    }
    for (int t = 0; t < T; ++t) acc[t] = _mm512_sub_ps(acc[t], accm[t]);
    store_tile<T>(out, acc, rows);
  }
};

// ---- Q6_K x Q8_K: per 16-element sub-block (dot - 32 asum) times its int8 scale, summed
// over the super-block, then one FMA.
struct Q6Kernel {
  static constexpr int kMaxT = 4;
  static constexpr int64_t kV = 0, kMask = 32 * 64, kSc = kMask + 32 * 32, kD = kSc + 256;
  template <int T>
  static void tile(const uint8_t* grp, int64_t nb, int64_t bb, const PackedActs& x, int64_t t0,
                   float* const* out, int rows) {
    const auto* a = reinterpret_cast<const BlockQ8_K*>(x.a);
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), c16 = _mm512_set1_epi8(16), c32 = _mm512_set1_epi8(32);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = grp + b * bb;
      const BlockQ8_K* at[T];
      const int32_t* n32[T];  // -32 * bsums of the 16 sub-blocks
      for (int t = 0; t < T; ++t) {
        at[t] = a + (t0 + t) * nb + b;
        n32[t] = x.aux + ((t0 + t) * nb + b) * 16;
      }
      __m512i isum[T];
      for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
      for (int h = 0; h < 4; ++h) {
        const int half = h / 2, s = h % 2;
        for (int cc = 0; cc < 2; ++cc) {
          const int sb_lo = 8 * half + 2 * s + cc, sb_hi = sb_lo + 4;
          constexpr int S = T == 1 ? 2 : 1;  // independent integer chains for one token
          __m512i alo[T][S], ahi[T][S];
          for (int t = 0; t < T; ++t) {
            alo[t][0] = _mm512_set1_epi32(n32[t][sb_lo]);
            ahi[t][0] = _mm512_set1_epi32(n32[t][sb_hi]);
            for (int u = 1; u < S; ++u) alo[t][u] = ahi[t][u] = _mm512_setzero_si512();
          }
          for (int c = 4 * cc; c < 4 * cc + 4; ++c) {
            const int v = 8 * h + c;
            const __m512i q = load512(blk + kV + 64 * v);
            const uint8_t* mk = blk + kMask + 32 * v;
            __m512i lo = _mm512_and_si512(q, m4);
            lo = _mm512_mask_add_epi8(lo, load_mask(mk), lo, c16);
            lo = _mm512_mask_add_epi8(lo, load_mask(mk + 8), lo, c32);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            hi = _mm512_mask_add_epi8(hi, load_mask(mk + 16), hi, c16);
            hi = _mm512_mask_add_epi8(hi, load_mask(mk + 24), hi, c32);
            const int e = 128 * half + 32 * s + 4 * c;
            for (int t = 0; t < T; ++t) {
              alo[t][c % S] = _mm512_dpbusd_epi32(alo[t][c % S], lo, bcast32(at[t]->qs + e));
              ahi[t][c % S] = _mm512_dpbusd_epi32(ahi[t][c % S], hi, bcast32(at[t]->qs + e + 64));
            }
          }
          for (int t = 0; t < T; ++t)
            for (int u = 1; u < S; ++u) {
              alo[t][0] = _mm512_add_epi32(alo[t][0], alo[t][u]);
              ahi[t][0] = _mm512_add_epi32(ahi[t][0], ahi[t][u]);
            }
          const __m512i sc_lo =
              _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * sb_lo)));
          const __m512i sc_hi =
              _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kSc + 16 * sb_hi)));
          for (int t = 0; t < T; ++t)
            isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(alo[t][0], sc_lo),
                                                                 _mm512_mullo_epi32(ahi[t][0], sc_hi)));
        }
      }
      const __m512 dw = load_f16x16(blk + kD);
      for (int t = 0; t < T; ++t)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, _mm512_set1_ps(at[t]->d)), acc[t]);
    }
    store_tile<T>(out, acc, rows);
  }
};

// Groups [g0, g1) for all m tokens. Groups are taken in chunks whose packed weights fit
// in about half of a 1 MiB L2, and every token tile runs over a chunk before the next.
template <class K>
void run_packed(const PackedWeights& p, const PackedActs& x, int64_t m, float* y, int64_t g0, int64_t g1) {
  constexpr int TM = K::kMaxT;
  const int64_t nb = p.blocks, bb = p.block_bytes;
  const int64_t group_bytes = nb * bb;
  const int64_t chunk = std::max<int64_t>(1, (int64_t{512} << 10) / group_bytes);
  for (int64_t c0 = g0; c0 < g1; c0 += chunk) {
    const int64_t c1 = std::min(g1, c0 + chunk);
    for (int64_t t0 = 0; t0 < m; t0 += TM) {
      const int nt = static_cast<int>(std::min<int64_t>(TM, m - t0));
      for (int64_t g = c0; g < c1; ++g) {
        const int rows = static_cast<int>(std::min<int64_t>(kPackRows, p.n_out - g * kPackRows));
        float* out[TM];
        for (int t = 0; t < nt; ++t) out[t] = y + (t0 + t) * p.n_out + g * kPackRows;
        const uint8_t* grp = p.group(g);
        switch (nt) {
          case 1: K::template tile<1>(grp, nb, bb, x, t0, out, rows); break;
          case 2: K::template tile<2>(grp, nb, bb, x, t0, out, rows); break;
          case 3: K::template tile<3>(grp, nb, bb, x, t0, out, rows); break;
          case 4: K::template tile<4>(grp, nb, bb, x, t0, out, rows); break;
          default:
            if constexpr (TM > 4) {
              switch (nt) {
                case 5: K::template tile<(TM > 4 ? 5 : 1)>(grp, nb, bb, x, t0, out, rows); break;
                case 6: K::template tile<(TM > 4 ? 6 : 1)>(grp, nb, bb, x, t0, out, rows); break;
                case 7: K::template tile<(TM > 4 ? 7 : 1)>(grp, nb, bb, x, t0, out, rows); break;
                default: K::template tile<TM>(grp, nb, bb, x, t0, out, rows); break;
              }
            }
            break;
        }
      }
    }
  }
}

// ---- Q8_0 x Q8_0 on the stored layout (no packing): one zmm holds two rows' blocks,
// lane j of each half the sum of elements 4j..4j+3, as llama.cpp's Q8_0 kernels keep
// them: each lane is an f32 chain over the blocks, the 8 lanes of a row summed at the
// end in the order of hsum256 (the same bits as the 256-bit row kernels). The signed
// weights become unsigned by +128 (xor 0x80); the activation side subtracts 128 times
// its 4-element sums, kept per (token, block) in `corr`.
inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int P, int T>
void q8_0_tile(const uint8_t* const* rows /* 2P rows */, int64_t nb, const BlockQ8_0* a, const float* ad,
               const int32_t* corr, int64_t t0, float* y, int64_t ldy, int64_t o, int n_rows) {
  __m512 acc[P][T];
  for (int p = 0; p < P; ++p)
    for (int t = 0; t < T; ++t) acc[p][t] = _mm512_setzero_ps();
  const __m512i x80 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    __m512i wu[P];
    __m512 dw[P];
    for (int p = 0; p < P; ++p) {
      const auto* b0 = reinterpret_cast<const BlockQ8_0*>(rows[2 * p]) + b;
      const auto* b1 = reinterpret_cast<const BlockQ8_0*>(rows[2 * p + 1]) + b;
      const __m512i w = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0->qs))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1->qs)), 1);
      wu[p] = _mm512_xor_si512(w, x80);
      dw[p] = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(b0->d)), _mm256_set1_ps(_cvtsh_ss(b1->d)), 1);
    }
    for (int t = 0; t < T; ++t) {
      const int64_t i = (t0 + t) * nb + b;
      const __m512i x = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs)));
      const __m512i c = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 8 * i)));
      const __m512 da = _mm512_set1_ps(ad[i]);
      for (int p = 0; p < P; ++p)
        acc[p][t] = _mm512_fmadd_ps(_mm512_mul_ps(dw[p], da), _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wu[p], x)),
                                    acc[p][t]);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int t = 0; t < T; ++t) {
      float* yt = y + (t0 + t) * ldy + o + 2 * p;
      if (2 * p < n_rows) yt[0] = hsum8(_mm512_castps512_ps256(acc[p][t]));
      if (2 * p + 1 < n_rows) yt[1] = hsum8(_mm512_extractf32x8_ps(acc[p][t], 1));
    }
}

template <int P>
void q8_0_rows_p(const uint8_t* const* rows, int64_t nb, const BlockQ8_0* a, const float* ad, const int32_t* corr,
                 int64_t m, float* y, int64_t ldy, int64_t o, int n_rows) {
  constexpr int T = 6;
  int64_t t0 = 0;
  for (; t0 + T <= m; t0 += T) q8_0_tile<P, T>(rows, nb, a, ad, corr, t0, y, ldy, o, n_rows);
  switch (m - t0) {
    case 1: q8_0_tile<P, 1>(rows, nb, a, ad, corr, t0, y, ldy, o, n_rows); break;
    case 2: q8_0_tile<P, 2>(rows, nb, a, ad, corr, t0, y, ldy, o, n_rows); break;
    case 3: q8_0_tile<P, 3>(rows, nb, a, ad, corr, t0, y, ldy, o, n_rows); break;
    case 4: q8_0_tile<P, 4>(rows, nb, a, ad, corr, t0, y, ldy, o, n_rows); break;
    case 5: q8_0_tile<P, 5>(rows, nb, a, ad, corr, t0, y, ldy, o, n_rows); break;
    default: break;
  }
}

}  // namespace

void avx512_vnni_q8_0_gemm(const WeightView& w, const uint8_t* a_bytes, int64_t m, float* y, int64_t o0,
                           int64_t o1) {
  // One or two tokens (decode): the row kernel streams the weights with less overhead
  // per block; its sums are the same bits.
  if (m <= 2) {
    avx512_vnni_q8_0_rows(w, a_bytes, m, y, o0, o1);
    return;
  }
  const auto* a = reinterpret_cast<const BlockQ8_0*>(a_bytes);
  const int64_t nb = w.n_in / kQK8_0;
  thread_local std::vector<float> ad;
  thread_local std::vector<int32_t> corr;
  ad.resize(m * nb);
  corr.resize(m * nb * 8);
  const __m256i ones = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t i = 0; i < m * nb; ++i) {
    ad[i] = _cvtsh_ss(a[i].d);
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs));
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, x);  // 128 * 4-element sums
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr.data() + 8 * i), _mm256_sub_epi32(_mm256_setzero_si256(), s));
  }
  const int64_t rb = w.row_bytes();
  constexpr int P = 2;  // row pairs per tile
  // Row blocks of 64 rows: their weights stay in L2 while every token passes over them.
  for (int64_t ob = o0; ob < o1; ob += 64) {
    const int64_t ob1 = std::min(o1, ob + 64);
    for (int64_t o = ob; o < ob1; o += 2 * P) {
      const int n_rows = static_cast<int>(std::min<int64_t>(2 * P, ob1 - o));
      const uint8_t* rows[2 * P];
      for (int r = 0; r < 2 * P; ++r) rows[r] = w.data + std::min(o + r, o + n_rows - 1) * rb;
      q8_0_rows_p<P>(rows, nb, a, ad.data(), corr.data(), m, y, w.n_out, o, n_rows);
    }
  }
}

PackedFn avx512_vnni_packed_kernel(DType t) {
  switch (t) {
    case DType::Q4_0: return run_packed<Nibble32Kernel<DType::Q4_0>>;
    case DType::IQ4_NL: return run_packed<Nibble32Kernel<DType::IQ4_NL>>;
    case DType::MXFP4: return run_packed<Nibble32Kernel<DType::MXFP4>>;
    case DType::Q4_K: return run_packed<K4Kernel<false>>;
    case DType::Q5_K: return run_packed<K4Kernel<true>>;
    case DType::Q6_K: return run_packed<Q6Kernel>;
    default: return nullptr;
  }
}

}  // namespace attnsparse::ops::kern

#pragma GCC pop_options
#pragma GCC diagnostic pop
