// Internal: x86 SIMD kernels, written once as templates over an "Arch" traits struct and
// compiled twice: by matmul_avx2.cpp (AVX2+FMA+F16C) and matmul_avx512.cpp (AVX-512),
// each under its own `#pragma GCC target`, inside an anonymous namespace. Include only
// from those two files, after the pragma.
//
// Arch provides:
//   using vec;  static constexpr int W (floats per vec), NR (weight rows per GEMM tile)
//   zero(), loadu(p), loadu_n(p, n) (n < W, zero-filled), set1(f), fmadd(a, b, c),
//   hsum(v), storeu(p, v), cvt_row(dtype, src, dst, n), round_acts(dtype, x, xr, n),
//   static constexpr bool kVnni; dot_i8(ax_u8, sy_s8) (8 int32 sums of 4 u8*s8 products)

// (<algorithm>, <vector> and <immintrin.h> must be included before the target pragma.)

namespace {

using attnsparse::DType;
using attnsparse::ops::WeightView;
using namespace attnsparse::ops::quant;

constexpr int64_t kKC = 256;  // GEMM k-block

// ---------------------------------------------------------------------------------------
// F32 / F16 / BF16 weights, small m (decode): R weight rows x NT tokens per tile; each
// weight vector is loaded and widened to f32 in registers (F16C / shift for bf16) and used
// for NT tokens, so the weights stream from memory exactly once and nothing is stored in
// between (a convert-to-buffer pass made this compute-bound at ~1/6 of the bandwidth).

template <class A, DType T>
inline typename A::vec load_w(const uint8_t* row, int64_t i) {
  if constexpr (T == DType::F32) return A::loadu(reinterpret_cast<const float*>(row) + i);
  else if constexpr (T == DType::F16) return A::load_f16(reinterpret_cast<const uint16_t*>(row) + i);
  else return A::load_bf16(reinterpret_cast<const uint16_t*>(row) + i);
}

template <DType T>
inline float scalar_w(const uint8_t* row, int64_t i) {
  if constexpr (T == DType::F32) return reinterpret_cast<const float*>(row)[i];
  else if constexpr (T == DType::F16) return attnsparse::fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
  else return attnsparse::bf16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
}

template <class A, DType T, int R, int NT>
inline void gemv_tile(const uint8_t* const* rows, const float* const* xs, int64_t n, float* out) {
  using V = typename A::vec;
  V acc[R][NT];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = A::zero();
  int64_t i = 0;
  for (; i + A::W <= n; i += A::W) {
    V xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = A::loadu(xs[t] + i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V wv = load_w<A, T>(rows[r], i);
      for (int t = 0; t < NT; ++t) acc[r][t] = A::fmadd(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) {
      float s = A::hsum(acc[r][t]);
      for (int64_t j = i; j < n; ++j) s += scalar_w<T>(rows[r], j) * xs[t][j];
      out[r * NT + t] = s;
    }
}

// One token: one weight row at a time, four independent accumulators along the row. The
// weights are then read as one sequential stream (rows are contiguous), which the hardware
// prefetchers follow across page boundaries; eight interleaved row streams (the tile
// above) left F16 decode at 25-28 GB/s per core against 30-32 for this loop, and
// 36-38 against 42-43 GB/s on two cores (bench_matmul, one TinyLlama layer). F32 rows were
// slower this way (39-40 vs 43-51 GB/s), so only F16 uses it.
template <class A, DType T>
inline float gemv_row(const uint8_t* row, const float* x, int64_t n) {
  using V = typename A::vec;
  constexpr int U = 4;
  V acc[U];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u) acc[u] = A::zero();
  int64_t i = 0;
  for (; i + U * A::W <= n; i += U * A::W) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u)
      acc[u] = A::fmadd(load_w<A, T>(row, i + u * A::W), A::loadu(x + i + u * A::W), acc[u]);
  }
  for (; i + A::W <= n; i += A::W) acc[0] = A::fmadd(load_w<A, T>(row, i), A::loadu(x + i), acc[0]);
  float s = A::hsum(A::add(A::add(acc[0], acc[1]), A::add(acc[2], acc[3])));
  for (; i < n; ++i) s += scalar_w<T>(row, i) * x[i];
  return s;
}

template <class A, DType T, int NT>
void gemv_tokens(const WeightView& w, const float* const* xs, float* const* ys, int64_t o0,
                 int64_t o1) {
  if constexpr (NT == 1 && T == DType::F16) {  // (F32 rows measured slower this way)
    const int64_t rb = w.row_bytes(), n = w.n_in;
    for (int64_t o = o0; o < o1; ++o) ys[0][o] = gemv_row<A, T>(w.data + o * rb, xs[0], n);
    return;
  }
  // More rows per tile when fewer tokens share each weight vector (enough independent
  // FMA chains, within the register file).
  constexpr int R = NT == 1 ? 8 : 4;
  const int64_t rb = w.row_bytes(), n = w.n_in;
  float out[R * NT];
  int64_t o = o0;
  for (; o + R <= o1; o += R) {
    const uint8_t* rows[R];
    for (int r = 0; r < R; ++r) rows[r] = w.data + (o + r) * rb;
    gemv_tile<A, T, R, NT>(rows, xs, n, out);
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t) ys[t][o + r] = out[r * NT + t];
  }
  for (; o < o1; ++o) {
    const uint8_t* row = w.data + o * rb;
    gemv_tile<A, T, 1, NT>(&row, xs, n, out);
    for (int t = 0; t < NT; ++t) ys[t][o] = out[t];
  }
}

template <class A, DType T>
void float_rows_t(const WeightView& w, const float* xr, int64_t m, float* y, int64_t o0, int64_t o1) {
  const int64_t n = w.n_in;
  for (int64_t t0 = 0; t0 < m; t0 += A::kGemvTokens) {
    const int nt = static_cast<int>(std::min<int64_t>(A::kGemvTokens, m - t0));
    const float* xs[4];
    float* ys[4];
    for (int j = 0; j < nt; ++j) {
      xs[j] = xr + (t0 + j) * n;
      ys[j] = y + (t0 + j) * w.n_out;
    }
    switch (nt) {
      case 1: gemv_tokens<A, T, 1>(w, xs, ys, o0, o1); break;
      case 2: gemv_tokens<A, T, 2>(w, xs, ys, o0, o1); break;
      case 3: gemv_tokens<A, T, 3>(w, xs, ys, o0, o1); break;
      default: gemv_tokens<A, T, 4>(w, xs, ys, o0, o1); break;
    }
  }
}

template <class A>
void float_rows(const WeightView& w, const float* xr, int64_t m, float* y, int64_t o0, int64_t o1) {
  switch (w.dtype) {
    case DType::F32: float_rows_t<A, DType::F32>(w, xr, m, y, o0, o1); return;
    case DType::F16: float_rows_t<A, DType::F16>(w, xr, m, y, o0, o1); return;
    default: float_rows_t<A, DType::BF16>(w, xr, m, y, o0, o1); return;
  }
}

// ---------------------------------------------------------------------------------------
// F32 / F16 / BF16 GEMM. Activations are packed (pack_xT) into blocks of TB = 2*W tokens
// x kKC inputs, transposed ([k][TB]); a panel of NR weight rows x kKC is converted to f32
// ([NR][kKC]); the micro-kernel keeps NR x TB outputs in 2*NR vector registers and does
// one broadcast of a weight per row and k. Partial sums across k-blocks live in a
// per-thread tile buffer.
template <class A, int TV>
inline void micro_kernel(const float* xb, const float* wp, int64_t kl, float* c, bool accumulate) {
  using V = typename A::vec;
  constexpr int NR = A::NR, W = A::W, TB = 2 * A::W;
  V acc[NR][TV];
  if (accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < TV; ++v) acc[r][v] = A::loadu(c + r * TB + v * W);
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < TV; ++v) acc[r][v] = A::zero();
  }
  for (int64_t k = 0; k < kl; ++k) {
    V xv[TV];
    for (int v = 0; v < TV; ++v) xv[v] = A::loadu(xb + k * TB + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      const V b = A::set1(wp[r * kKC + k]);
      for (int v = 0; v < TV; ++v) acc[r][v] = A::fmadd(b, xv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < TV; ++v) A::storeu(c + r * TB + v * W, acc[r][v]);
}

template <class A>
void pack_xT(const float* xr, int64_t m, int64_t k, float* xT, int64_t b0, int64_t b1) {
  attnsparse::ops::kern::pack_xT_scalar(xr, m, k, xT, b0, b1, 2 * A::W, kKC);
}

template <class A>
void float_gemm(const WeightView& w, const float* xT, int64_t m, float* y, int64_t o0, int64_t o1) {
  constexpr int NR = A::NR, TB = 2 * A::W;
  const int64_t n = w.n_in;
  const int64_t n_tb = (m + TB - 1) / TB;
  const int64_t n_kc = (n + kKC - 1) / kKC;
  const int64_t n_pan = (o1 - o0 + NR - 1) / NR;
  thread_local std::vector<float> panel, cbuf;
  panel.assign(NR * kKC, 0.f);
  cbuf.resize(n_pan * n_tb * NR * TB);
  const int64_t rb = w.row_bytes();
  const int64_t elem = w.dtype == DType::F32 ? 4 : 2;
  for (int64_t c = 0; c < n_kc; ++c) {
    const int64_t k0 = c * kKC, kl = std::min(kKC, n - k0);
    for (int64_t p = 0; p < n_pan; ++p) {
      const int64_t r0 = o0 + p * NR, nr = std::min<int64_t>(NR, o1 - r0);
      for (int64_t r = 0; r < nr; ++r)
        A::cvt_row(w.dtype, w.data + (r0 + r) * rb + k0 * elem, panel.data() + r * kKC, kl);
      for (int64_t r = nr; r < NR; ++r) std::fill_n(panel.data() + r * kKC, kKC, 0.f);
      for (int64_t b = 0; b < n_tb; ++b) {
        const float* xb = xT + (c * n_tb + b) * kKC * TB;
        float* tile = cbuf.data() + (p * n_tb + b) * NR * TB;
        if (m - b * TB > A::W)
          micro_kernel<A, 2>(xb, panel.data(), kl, tile, c > 0);
        else
          micro_kernel<A, 1>(xb, panel.data(), kl, tile, c > 0);
      }
    }
  }
  for (int64_t p = 0; p < n_pan; ++p) {
    const int64_t r0 = o0 + p * NR, nr = std::min<int64_t>(NR, o1 - r0);
    for (int64_t b = 0; b < n_tb; ++b) {
      const float* tile = cbuf.data() + (p * n_tb + b) * NR * TB;
      const int64_t nt = std::min<int64_t>(TB, m - b * TB);
      for (int64_t t = 0; t < nt; ++t) {
        float* yt = y + (b * TB + t) * w.n_out + r0;
        for (int64_t r = 0; r < nr; ++r) yt[r] = tile[r * TB + t];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Integer kernels on 256-bit vectors (shared by both ISAs; dot_i8 is VNNI or maddubs).

[[maybe_unused]] inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// 32 signed weights x 32 signed activations -> 8 int32 partial sums (sign trick).
template <class A>
inline __m256i dot_s8(__m256i w, __m256i x) {
  const __m256i ax = _mm256_sign_epi8(w, w);
  const __m256i sy = _mm256_sign_epi8(x, w);
  return A::dot_i8(ax, sy);
}

inline __m256i unpack_q4_0(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i lo = _mm_and_si128(t, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(t, 4), _mm_set1_epi8(0x0F));
  return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

// 32 bits (little-endian u32 at p) as 32 bytes: 0xFF where bit j is set, else 0.
inline __m256i bits_to_byte_mask(const uint8_t* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  // Byte j takes bit j: spread the 32 bits over the bytes, test each byte's own bit.
  const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                                          0x0303030303030303);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask);
}

// The fifth bits of a Q5_0 / Q5_1 block as bytes: 0x10 where bit j of qh is set.
inline __m256i q5_high_bits(const uint8_t* qh) {
  return _mm256_and_si256(bits_to_byte_mask(qh), _mm256_set1_epi8(0x10));
}

// 32 nibbles (element j low nibble of qs[j], j+16 high nibble) as bytes 0..15.
inline __m256i nibbles_32(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i lo = _mm_and_si128(t, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(t, 4), _mm_set1_epi8(0x0F));
  return _mm256_set_m128i(hi, lo);
}

// Signed weights of one 32-element block paired with Q8_0 activations.
enum class Q80Kind { Q8_0, Q4_0, Q5_0, IQ4_NL, MXFP4 };

template <Q80Kind K>
inline __m256i signed_weights(const uint8_t* blk, float* dw) {
  if constexpr (K == Q80Kind::Q4_0) {
    const auto* b = reinterpret_cast<const BlockQ4_0*>(blk);
    *dw = _cvtsh_ss(b->d);
    return unpack_q4_0(b->qs);
  } else if constexpr (K == Q80Kind::Q8_0) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(blk);
    *dw = _cvtsh_ss(b->d);
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
  } else if constexpr (K == Q80Kind::Q5_0) {
    const auto* b = reinterpret_cast<const BlockQ5_0*>(blk);
    *dw = _cvtsh_ss(b->d);
    return _mm256_sub_epi8(_mm256_or_si256(nibbles_32(b->qs), q5_high_bits(b->qh)), _mm256_set1_epi8(16));
  } else if constexpr (K == Q80Kind::MXFP4) {
    const auto* b = reinterpret_cast<const BlockMXFP4*>(blk);
    *dw = e8m0_to_fp32_half(b->e);
    const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesMXFP4));
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(table), nibbles_32(b->qs));
  } else {
    const auto* b = reinterpret_cast<const BlockIQ4_NL*>(blk);
    *dw = _cvtsh_ss(b->d);
    const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesIQ4NL));
    const __m256i idx = nibbles_32(b->qs);
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(table), idx);
  }
}

template <Q80Kind K>
constexpr int64_t q80_block_bytes() {
  return K == Q80Kind::Q8_0 ? 34 : K == Q80Kind::Q5_0 ? 22 : K == Q80Kind::MXFP4 ? 17 : 18;
}

// The row kernels' loop order: rows in chunks of kRowChunk, and within a chunk every
// tile of up to 4 tokens passes over the chunk's rows. A tile's quantised activations
// (~9 KB for 4 tokens of 2048) and the chunk's weight rows then stay in L1 between uses;
// one row at a time over all the tokens streamed every token's activations from L2 once
// per weight row, which bounded prefill of these types (Q5_0 at 0.75-0.8x llama.cpp).
// Every (row, token) output is computed exactly as before.
template <class F>
inline void for_row_chunks_and_token_tiles(int64_t o0, int64_t o1, int64_t m, F&& f) {
  constexpr int64_t kRowChunk = 16;
  for (int64_t c0 = o0; c0 < o1; c0 += kRowChunk) {
    const int64_t c1 = std::min(o1, c0 + kRowChunk);
    for (int64_t t0 = 0; t0 < m; t0 += 4) {
      const int nt = static_cast<int>(std::min<int64_t>(4, m - t0));
      for (int64_t o = c0; o < c1; ++o) f(o, t0, nt);
    }
  }
}

// Activation block scales (f16 in the blocks) are widened once per call into ads[t][b]:
// converting them inside the row loop cost one software f16 conversion per row x token x
// block. Weight scales use F16C. The products dw * da are the same f32 values either way.
template <class A, Q80Kind K, int NT>
inline void q8_0_row_tokens(const uint8_t* wrow, const BlockQ8_0* const* as,
                            const float* const* ads, int64_t nb, float* out) {
  __m256 acc[NT];
  float seq[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    seq[t] = 0.f;
  }
  for (int64_t b = 0; b < nb; ++b) {
    float dw;
    const __m256i qw = signed_weights<K>(wrow + b * q80_block_bytes<K>(), &dw);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_0& a = as[t][b];
      const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs));
      if constexpr (K == Q80Kind::IQ4_NL) {
        // The block's exact integer sum, then one f32 FMA per block in order (as the
        // scalar Format::dot; see iq4_nl.cpp).
        seq[t] = std::fma(float(hsum_epi32(dot_s8<A>(qw, qa))), dw * ads[t][b], seq[t]);
      } else if constexpr (K == Q80Kind::MXFP4) {
        seq[t] = std::fma(float(hsum_epi32(dot_s8<A>(qw, qa))), ads[t][b] * dw, seq[t]);
      } else {
        const __m256 d = _mm256_set1_ps(dw * ads[t][b]);
        acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_s8<A>(qw, qa)), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    out[t] = K == Q80Kind::IQ4_NL || K == Q80Kind::MXFP4 ? seq[t] : hsum256(acc[t]);
}

template <class A, Q80Kind K>
void q8_0_rows_k(const WeightView& w, const BlockQ8_0* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  const int64_t nb = w.n_in / kQK8_0;
  thread_local std::vector<float> ad;
  ad.resize(m * nb);
  for (int64_t i = 0; i < m * nb; ++i) ad[i] = _cvtsh_ss(a[i].d);
  for_row_chunks_and_token_tiles(o0, o1, m, [&](int64_t o, int64_t t0, int nt) {
    const uint8_t* wr = w.data + o * w.row_bytes();
    const BlockQ8_0* as[4];
    const float* ads[4];
    for (int j = 0; j < nt; ++j) {
      as[j] = a + (t0 + j) * nb;
      ads[j] = ad.data() + (t0 + j) * nb;
    }
    float out[4];
    switch (nt) {
      case 1: q8_0_row_tokens<A, K, 1>(wr, as, ads, nb, out); break;
      case 2: q8_0_row_tokens<A, K, 2>(wr, as, ads, nb, out); break;
      case 3: q8_0_row_tokens<A, K, 3>(wr, as, ads, nb, out); break;
      default: q8_0_row_tokens<A, K, 4>(wr, as, ads, nb, out); break;
    }
    for (int j = 0; j < nt; ++j) y[(t0 + j) * w.n_out + o] = out[j];
  });
}

// (Q8_0 and Q4_0 as before.)
template <class A, bool Q4>
void q8_0_rows(const WeightView& w, const BlockQ8_0* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  q8_0_rows_k<A, Q4 ? Q80Kind::Q4_0 : Q80Kind::Q8_0>(w, a, m, y, o0, o1);
}

// ---------------------------------------------------------------------------------------
// Q4_1 / Q5_1 weights (unsigned values q, x = d q + m) with Q8_1 activations:
// d_w d_a sum(q q8) by maddubs on 8 lanes, plus m_w s_a per block.
template <class A, bool Q5, int NT>
inline void q8_1_row_tokens(const uint8_t* wrow, const BlockQ8_1* const* as, const float* const* ads,
                            const float* const* ass, int64_t nb, float* out) {
  __m256 acc[NT];
  float summs[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    summs[t] = 0.f;
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i qw;
    float dw, mw;
    if constexpr (Q5) {
      const auto* blk = reinterpret_cast<const BlockQ5_1*>(wrow) + b;
      qw = _mm256_or_si256(nibbles_32(blk->qs), q5_high_bits(blk->qh));
      dw = _cvtsh_ss(blk->d);
      mw = _cvtsh_ss(blk->m);
    } else {
      const auto* blk = reinterpret_cast<const BlockQ4_1*>(wrow) + b;
      qw = nibbles_32(blk->qs);
      dw = _cvtsh_ss(blk->d);
      mw = _cvtsh_ss(blk->m);
    }
    for (int t = 0; t < NT; ++t) {
      const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(as[t][b].qs));
      const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qa), ones);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * ads[t][b]), _mm256_cvtepi32_ps(s32), acc[t]);
      summs[t] += mw * ass[t][b];
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]) + summs[t];
}

template <class A, bool Q5>
void q8_1_rows(const WeightView& w, const BlockQ8_1* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  const int64_t nb = w.n_in / kQK8_0;
  thread_local std::vector<float> ad, as_;
  ad.resize(m * nb);
  as_.resize(m * nb);
  for (int64_t i = 0; i < m * nb; ++i) {
    ad[i] = _cvtsh_ss(a[i].d);
    as_[i] = _cvtsh_ss(a[i].s);
  }
  for_row_chunks_and_token_tiles(o0, o1, m, [&](int64_t o, int64_t t0, int nt) {
    const uint8_t* wr = w.data + o * w.row_bytes();
    const BlockQ8_1* as[4];
    const float* ads[4];
    const float* ass[4];
    for (int j = 0; j < nt; ++j) {
      as[j] = a + (t0 + j) * nb;
      ads[j] = ad.data() + (t0 + j) * nb;
      ass[j] = as_.data() + (t0 + j) * nb;
    }
    float out[4];
    switch (nt) {
      case 1: q8_1_row_tokens<A, Q5, 1>(wr, as, ads, ass, nb, out); break;
      case 2: q8_1_row_tokens<A, Q5, 2>(wr, as, ads, ass, nb, out); break;
      case 3: q8_1_row_tokens<A, Q5, 3>(wr, as, ads, ass, nb, out); break;
      default: q8_1_row_tokens<A, Q5, 4>(wr, as, ads, ass, nb, out); break;
    }
    for (int j = 0; j < nt; ++j) y[(t0 + j) * w.n_out + o] = out[j];
  });
}

// unsigned 8-bit weights x signed activations -> 16 int16 pair sums (maddubs), then
// times a per-lane int16 scale -> 8 int32.
inline __m256i scaled_pairs(__m256i wu, __m256i x, __m256i scale16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(wu, x), scale16);
}

template <int NT>
inline void q4_K_row_tokens(const BlockQ4_K* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  float accm[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    accm[t] = 0.f;
  }
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ4_K& blk = wb[b];
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) get_scale_min_k4(j, blk.scales, &sc[j], &mn[j]);
    const float dw = _cvtsh_ss(blk.d), dmw = _cvtsh_ss(blk.dmin);
    __m256i lo[4], hi[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * j));
      lo[j] = _mm256_and_si256(q, m4);
      hi[j] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    }
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i sumi = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 64 * j));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 64 * j + 32));
        sumi = _mm256_add_epi32(sumi, scaled_pairs(lo[j], x0, _mm256_set1_epi16(sc[2 * j])));
        sumi = _mm256_add_epi32(sumi, scaled_pairs(hi[j], x1, _mm256_set1_epi16(sc[2 * j + 1])));
      }
      int32_t summ = 0;
      for (int j = 0; j < 8; ++j) summ += int32_t(mn[j]) * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), _mm256_cvtepi32_ps(sumi), acc[t]);
      accm[t] += (dmw * a.d) * float(summ);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]) - accm[t];
}

// Q5_K: as Q4_K with the fifth bit of element e at bit e/32 of qh[e%32].
template <int NT>
inline void q5_K_row_tokens(const BlockQ5_K* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  float accm[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    accm[t] = 0.f;
  }
  const __m256i m4 = _mm256_set1_epi8(0x0F), bit = _mm256_set1_epi8(0x10);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ5_K& blk = wb[b];
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) get_scale_min_k4(j, blk.scales, &sc[j], &mn[j]);
    const float dw = _cvtsh_ss(blk.d), dmw = _cvtsh_ss(blk.dmin);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh));
    __m256i lo[4], hi[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * j));
      // bit 2j of qh -> 0x10 for sub-block 2j, bit 2j+1 for 2j+1.
      const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * j), 4), bit);
      const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * j + 1), 4), bit);
      lo[j] = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
      hi[j] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
    }
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i sumi = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 64 * j));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 64 * j + 32));
        sumi = _mm256_add_epi32(sumi, scaled_pairs(lo[j], x0, _mm256_set1_epi16(sc[2 * j])));
        sumi = _mm256_add_epi32(sumi, scaled_pairs(hi[j], x1, _mm256_set1_epi16(sc[2 * j + 1])));
      }
      int32_t summ = 0;
      for (int j = 0; j < 8; ++j) summ += int32_t(mn[j]) * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), _mm256_cvtepi32_ps(sumi), acc[t]);
      accm[t] += (dmw * a.d) * float(summ);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]) - accm[t];
}

template <int NT>
inline void q6_K_row_tokens(const BlockQ6_K* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  const __m256i k32 = _mm256_set1_epi8(32);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ6_K& blk = wb[b];
    __m256i q[8], scale[8];
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = blk.ql + 64 * half;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * half));
      q[4 * half + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
      q[4 * half + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
      q[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
      q[4 * half + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                        _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
      const int8_t* sc = blk.scales + 8 * half;
      for (int g = 0; g < 4; ++g)
        scale[4 * half + g] = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]), _mm_set1_epi16(sc[2 * g]));
    }
    const float dw = _cvtsh_ss(blk.d);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i sumi = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * g));
        const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[g], x), _mm256_maddubs_epi16(k32, x));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale[g]));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), _mm256_cvtepi32_ps(sumi), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]);
}

template <class WBlock, void (*F1)(const WBlock*, const BlockQ8_K* const*, int64_t, float*),
          void (*F2)(const WBlock*, const BlockQ8_K* const*, int64_t, float*),
          void (*F3)(const WBlock*, const BlockQ8_K* const*, int64_t, float*),
          void (*F4)(const WBlock*, const BlockQ8_K* const*, int64_t, float*)>
void k_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  const int64_t nb = w.n_in / kQK_K;
  for_row_chunks_and_token_tiles(o0, o1, m, [&](int64_t o, int64_t t0, int nt) {
    const auto* wr = reinterpret_cast<const WBlock*>(w.data + o * w.row_bytes());
    const BlockQ8_K* as[4];
    for (int j = 0; j < nt; ++j) as[j] = a + (t0 + j) * nb;
    float out[4];
    switch (nt) {
      case 1: F1(wr, as, nb, out); break;
      case 2: F2(wr, as, nb, out); break;
      case 3: F3(wr, as, nb, out); break;
      default: F4(wr, as, nb, out); break;
    }
    for (int j = 0; j < nt; ++j) y[(t0 + j) * w.n_out + o] = out[j];
  });
}

template <class A>
void q4_K_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockQ4_K, q4_K_row_tokens<1>, q4_K_row_tokens<2>, q4_K_row_tokens<3>, q4_K_row_tokens<4>>(
      w, a, m, y, o0, o1);
}
// Q2_K: 2-bit unsigned values with a 4-bit scale and min per 16 elements.
// Byte shuffles that put Q2_K scale 2k (low lane) and 2k + 1 (high lane) into every
// int16 of a vector (odd bytes zero), built once at compile time.
struct Q2KPick {
  alignas(32) int8_t v[8][32];
  constexpr Q2KPick() : v{} {
    for (int k = 0; k < 8; ++k)
      for (int i = 0; i < 16; ++i) {
        v[k][i] = i % 2 == 0 ? int8_t(2 * k) : int8_t(-128);
        v[k][16 + i] = i % 2 == 0 ? int8_t(2 * k + 1) : int8_t(-128);
      }
  }
};
inline constexpr Q2KPick kQ2KPickTable{};
inline constexpr const int8_t (&kQ2KPick)[8][32] = kQ2KPickTable.v;

template <int NT>
inline void q2_K_row_tokens(const BlockQ2_K* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  float accm[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    accm[t] = 0.f;
  }
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0xF);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ2_K& blk = wb[b];
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_and_si128(sc, m4));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
    __m256i q[8], scale[8];
    for (int h = 0; h < 2; ++h) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * h));
      for (int j = 0; j < 4; ++j) {
        q[4 * h + j] = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
        scale[4 * h + j] = _mm256_shuffle_epi8(scales, _mm256_load_si256(reinterpret_cast<const __m256i*>(kQ2KPick[4 * h + j])));
      }
    }
    const float dw = _cvtsh_ss(blk.d), dmw = _cvtsh_ss(blk.dmin);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i sumi = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * g));
        sumi = _mm256_add_epi32(sumi, scaled_pairs(q[g], x, scale[g]));
      }
      // sum over the 16 sub-blocks of min * bsum, exact in int32 (as the scalar loop was)
      const int32_t summ =
          hsum_epi32(_mm256_madd_epi16(mins, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums))));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * dw), _mm256_cvtepi32_ps(sumi), acc[t]);
      accm[t] += (a.d * dmw) * float(summ);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]) - accm[t];
}

// Q3_K: u = low 2 bits + 4 * high bit in 0..7, q = u - 4; signed 6-bit scales per 16.
template <int NT>
inline void q3_K_row_tokens(const BlockQ3_K* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), k4 = _mm256_set1_epi8(4);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ3_K& blk = wb[b];
    int8_t sc[16];
    q3_K_scales(blk.scales, sc);
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.hmask));
    __m256i q[8], scale[8];
    for (int h = 0; h < 2; ++h) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * h));
      for (int j = 0; j < 4; ++j) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), one);
        q[4 * h + j] = _mm256_add_epi8(lo, _mm256_slli_epi16(hb, 2));
        const int g = 8 * h + 2 * j;
        scale[4 * h + j] = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
      }
    }
    const float dw = _cvtsh_ss(blk.d);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i sumi = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * g));
        const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[g], x), _mm256_maddubs_epi16(k4, x));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale[g]));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), _mm256_cvtepi32_ps(sumi), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]);
}

// IQ4_XS: codebook values (signed) with a signed 6-bit scale per 32.
template <class A, int NT>
inline void iq4_xs_row_tokens(const BlockIQ4_XS* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesIQ4NL)));
  for (int64_t b = 0; b < nb; ++b) {
    const BlockIQ4_XS& blk = wb[b];
    __m256i q[8];
    int32_t ls[8];
    for (int ib = 0; ib < 8; ++ib) {
      q[ib] = _mm256_shuffle_epi8(table, nibbles_32(blk.qs + 16 * ib));
      ls[ib] = (((blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((blk.scales_h >> (2 * ib)) & 3) << 4)) - 32;
    }
    const float dw = _cvtsh_ss(blk.d);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i sumi = _mm256_setzero_si256();
      for (int ib = 0; ib < 8; ++ib) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * ib));
        sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(dot_s8<A>(q[ib], x), _mm256_set1_epi32(ls[ib])));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), _mm256_cvtepi32_ps(sumi), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]);
}

// TQ2_0: u = 2-bit value in 0..2, x = d (u - 1). As llama.cpp's AVX2 kernel: int16 lanes
// of sum u q8 minus the 16 group sums, pairs to int32, then acc += f32(lanes) * d (no FMA),
// which matched llama.cpp in all 20 rows of the TQ2_0 random case (an 8-lane FMA order: 12).
template <int NT>
inline void tq2_0_row_tokens(const BlockTQ2_0* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockTQ2_0& blk = wb[b];
    __m256i q[8];
    for (int h = 0; h < 2; ++h) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * h));
      for (int j = 0; j < 4; ++j) q[4 * h + j] = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
    }
    const float dw = _cvtsh_ss(blk.d);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i s16 = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * g));
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(q[g], x));
      }
      s16 = _mm256_sub_epi16(s16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)));
      const __m256i s32 = _mm256_madd_epi16(s16, ones);
      acc[t] = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s32), _mm256_set1_ps(a.d * dw)), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]);
}

template <class A>
void tq2_0_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockTQ2_0, tq2_0_row_tokens<1>, tq2_0_row_tokens<2>, tq2_0_row_tokens<3>, tq2_0_row_tokens<4>>(
      w, a, m, y, o0, o1);
}

// IQ3_S: per 32 elements 8 grid points (4 magnitudes each) with sign bits and a scale
// 1 + 2 s; integer lanes summed over the super-block, one f32 FMA per super-block.
template <class A, int NT>
inline void iq3_s_row_tokens(const BlockIQ3_S* wb, const BlockQ8_K* const* as, int64_t nb, float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const uint32_t* grid = iq3s_grid();
  for (int64_t b = 0; b < nb; ++b) {
    const BlockIQ3_S& blk = wb[b];
    __m256i q[8];
    int32_t ls[8];
    for (int ib = 0; ib < 8; ++ib) {
      const uint8_t* qs = blk.qs + 8 * ib;
      const int h = blk.qh[ib];
      const __m256i mag = _mm256_setr_epi32(
          static_cast<int>(grid[qs[0] | ((h << 8) & 256)]), static_cast<int>(grid[qs[1] | ((h << 7) & 256)]),
          static_cast<int>(grid[qs[2] | ((h << 6) & 256)]), static_cast<int>(grid[qs[3] | ((h << 5) & 256)]),
          static_cast<int>(grid[qs[4] | ((h << 4) & 256)]), static_cast<int>(grid[qs[5] | ((h << 3) & 256)]),
          static_cast<int>(grid[qs[6] | ((h << 2) & 256)]), static_cast<int>(grid[qs[7] | ((h << 1) & 256)]));
      const __m256i neg = bits_to_byte_mask(blk.signs + 4 * ib);
      q[ib] = _mm256_sub_epi8(_mm256_xor_si256(mag, neg), neg);
      ls[ib] = 1 + 2 * ((blk.scales[ib / 2] >> (4 * (ib % 2))) & 0xF);
    }
    const float dw = _cvtsh_ss(blk.d);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& a = as[t][b];
      __m256i sumi = _mm256_setzero_si256();
      for (int ib = 0; ib < 8; ++ib) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * ib));
        sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(dot_s8<A>(q[ib], x), _mm256_set1_epi32(ls[ib])));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), _mm256_cvtepi32_ps(sumi), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum256(acc[t]);
}

template <class A>
void iq3_s_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockIQ3_S, iq3_s_row_tokens<A, 1>, iq3_s_row_tokens<A, 2>, iq3_s_row_tokens<A, 3>,
         iq3_s_row_tokens<A, 4>>(w, a, m, y, o0, o1);
}

template <class A>
void q2_K_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockQ2_K, q2_K_row_tokens<1>, q2_K_row_tokens<2>, q2_K_row_tokens<3>, q2_K_row_tokens<4>>(
      w, a, m, y, o0, o1);
}
template <class A>
void q3_K_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockQ3_K, q3_K_row_tokens<1>, q3_K_row_tokens<2>, q3_K_row_tokens<3>, q3_K_row_tokens<4>>(
      w, a, m, y, o0, o1);
}
template <class A>
void iq4_xs_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockIQ4_XS, iq4_xs_row_tokens<A, 1>, iq4_xs_row_tokens<A, 2>, iq4_xs_row_tokens<A, 3>,
         iq4_xs_row_tokens<A, 4>>(w, a, m, y, o0, o1);
}

template <class A>
void q5_K_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockQ5_K, q5_K_row_tokens<1>, q5_K_row_tokens<2>, q5_K_row_tokens<3>, q5_K_row_tokens<4>>(
      w, a, m, y, o0, o1);
}
template <class A>
void q6_K_rows(const WeightView& w, const BlockQ8_K* a, int64_t m, float* y, int64_t o0, int64_t o1) {
  k_rows<BlockQ6_K, q6_K_row_tokens<1>, q6_K_row_tokens<2>, q6_K_row_tokens<3>, q6_K_row_tokens<4>>(
      w, a, m, y, o0, o1);
}

}  // namespace
