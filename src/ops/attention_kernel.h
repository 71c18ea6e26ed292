// The tiled online-softmax attention kernel, written once with GCC vector extensions and
// compiled several times (attention.cpp includes this file under different
// `#pragma GCC target` settings with ATTN_NS / ATTN_W defined): AVX-512 (16 lanes),
// AVX2+FMA (8 lanes) and baseline SSE2 (4 lanes). No include guard on purpose.
//
// Per job (a KV head x a block of query tokens, all query heads of the group together so
// each K/V tile is loaded once per group): for each tile of 64 keys, classify every row
// (skip / full / partial), compute S = Q K^T for the block, mask partial rows, update
// the running max and sum (log2 domain, queries pre-scaled by scale*log2(e)), rescale
// and accumulate O += P V. With Observe, every row's visited scores are kept (O(n_kv)
// per row) and normalised probabilities are emitted once the row's max/sum are final.

namespace attnsparse::ops::ATTN_NS {

using namespace attnsparse::ops::detail;

constexpr int W = ATTN_W;

#include "ops/attention_transpose.h"

typedef float vf __attribute__((vector_size(ATTN_W * 4)));
typedef float vfu __attribute__((vector_size(ATTN_W * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(ATTN_W * 4)));

static inline vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
static inline void store(float* p, vf x) { *reinterpret_cast<vfu*>(p) = x; }
// x - 0 is exact for every x (also -0), so this folds to a plain broadcast; x + 0 does not.
static inline vf bcast(float x) { return x - vf{}; }

// 2^f for f in [-0.5, 0.5]: degree-5 Chebyshev fit, relative error 2.3e-7 evaluated
// in f32 (about f32 rounding; the probabilities need no more).
static inline vf exp2_poly(vf f) {
  vf p = bcast(0.0013390863364533504f);
  p = p * f + 0.009676031918326564f;
  p = p * f + 0.05550357114219461f;
  p = p * f + 0.24022107485308208f;
  p = p * f + 0.6931471880262287f;
  return p * f + 1.0000000754548972f;
}

// 2^x; exactly 0 for x < -126 (including -inf), so masked keys get no weight.
#if ATTN_W == 16
static inline vf exp2v(vf x) {
  // AVX-512: round and scale by 2^n in single instructions.
  const __m512 xx = (__m512)x;
  const __mmask16 live = _mm512_cmp_ps_mask(xx, _mm512_set1_ps(-126.f), _CMP_GE_OQ);
  const __m512 c = _mm512_min_ps(_mm512_max_ps(xx, _mm512_set1_ps(-126.f)), _mm512_set1_ps(126.f));
  const __m512 n = _mm512_roundscale_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf p = exp2_poly((vf)c - (vf)n);
  return (vf)_mm512_maskz_scalef_ps(live, (__m512)p, n);
}
#else
static inline vf exp2v(vf x) {
  const vf lo = bcast(-126.f), hi = bcast(126.f);
  const vi under = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vf magic = bcast(12582912.f);  // 1.5 * 2^23: round to nearest integer
  const vf n = (x + magic) - magic;
  const vf p = exp2_poly(x - n);
  const vi ni = __builtin_convertvector(n, vi);
  const vf scale = (vf)((ni + 127) << 23);
  const vf r = p * scale;
  return under ? vf{} : r;
}
#endif

// Horizontal max / sum by halving (log2(W) shuffles instead of W scalar steps).
typedef float vf4 __attribute__((vector_size(16)));
static inline vf4 max4(vf4 a, vf4 b) { return a > b ? a : b; }
#if ATTN_W == 16
typedef float vf8 __attribute__((vector_size(32)));
static inline vf4 quarter_fold_max(vf x) {
  const vf8 a0 = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7);
  const vf8 a1 = __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
  const vf8 a = a0 > a1 ? a0 : a1;
  return max4(__builtin_shufflevector(a, a, 0, 1, 2, 3), __builtin_shufflevector(a, a, 4, 5, 6, 7));
}
static inline vf4 quarter_fold_sum(vf x) {
  const vf8 a = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
  return __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
}
#elif ATTN_W == 8
static inline vf4 quarter_fold_max(vf x) {
  return max4(__builtin_shufflevector(x, x, 0, 1, 2, 3), __builtin_shufflevector(x, x, 4, 5, 6, 7));
}
static inline vf4 quarter_fold_sum(vf x) {
  return __builtin_shufflevector(x, x, 0, 1, 2, 3) + __builtin_shufflevector(x, x, 4, 5, 6, 7);
}
#else
static inline vf4 quarter_fold_max(vf x) { return x; }
static inline vf4 quarter_fold_sum(vf x) { return x; }
#endif
static inline float hmax(vf x) {
  vf4 b = quarter_fold_max(x);
  b = max4(b, __builtin_shufflevector(b, b, 2, 3, 0, 1));
  b = max4(b, __builtin_shufflevector(b, b, 1, 0, 3, 2));
  return b[0];
}
static inline float hsum(vf x) {
  vf4 b = quarter_fold_sum(x);
  b += __builtin_shufflevector(b, b, 2, 3, 0, 1);
  b += __builtin_shufflevector(b, b, 1, 0, 3, 2);
  return b[0];
}

constexpr int kRowsQK = W == 16 ? 4 : 2;  // register block: rows x 4 vectors
constexpr int kRowsPV = W == 16 ? 4 : 2;
constexpr int kQkChunk = 64;  // head_dim rows of the K tile per pass (16 KB)

// S[r][c0*W .. (c0+4)*W) (+)= sum_{d in [d0, d1)} Q[r][d] * Kt[d][...], NR rows; the
// first chunk (d0 == 0) starts from zero.
template <int NR>
static inline void qk_micro(const float* q, int64_t dp, const float* kt, int d0, int d1, int c0,
                            float* s) {
  vf acc[NR][4];
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) acc[r][c] = d0 == 0 ? vf{} : load(s + r * kTileKeys + (c0 + c) * W);
  for (int d = d0; d < d1; ++d) {
    const float* krow = kt + d * kTileKeys + c0 * W;
    vf kv[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) kv[c] = load(krow + c * W);
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) {
      const vf qb = bcast(q[r * dp + d]);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) acc[r][c] += qb * kv[c];
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) store(s + r * kTileKeys + (c0 + c) * W, acc[r][c]);
}

// O[r][d0 .. d0 + NC*W) += sum_jj P[r][jj] * V[jj][...], NR rows.
template <int NR, int NC>
static inline void pv_micro(const float* p, const float* v, int64_t v_stride, int nk, int d0,
                            float* o, int64_t dp) {
  vf acc[NR][NC];
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[r][c] = load(o + r * dp + d0 + c * W);
  for (int jj = 0; jj < nk; ++jj) {
    const float* vrow = v + jj * v_stride + d0;
    vf vv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) vv[c] = load(vrow + c * W);
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) {
      const vf pb = bcast(p[r * kTileKeys + jj]);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] += pb * vv[c];
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) store(o + r * dp + d0 + c * W, acc[r][c]);
}

// O += P V for `rows` rows over output columns [c*W, (c+nc)*W): the V sub-block
// (nk x nc*W floats) stays in L1 while every row block uses it.
template <int NC>
static inline void pv_columns(const float* p, const float* v, int64_t v_stride, int nk, int c, int64_t rows,
                              float* o, int64_t dp) {
  int64_t r = 0;
  for (; r + kRowsPV <= rows; r += kRowsPV)
    pv_micro<kRowsPV, NC>(p + r * kTileKeys, v, v_stride, nk, c * W, o + r * dp, dp);
  for (; r < rows; ++r) pv_micro<1, NC>(p + r * kTileKeys, v, v_stride, nk, c * W, o + r * dp, dp);
}

static inline void pv_all(const float* p, const float* v, int64_t v_stride, int nk, int nvec, int64_t rows,
                          float* o, int64_t dp) {
  int c = 0;
  for (; c + 4 <= nvec; c += 4) pv_columns<4>(p, v, v_stride, nk, c, rows, o, dp);
  switch (nvec - c) {
    case 3: pv_columns<3>(p, v, v_stride, nk, c, rows, o, dp); break;
    case 2: pv_columns<2>(p, v, v_stride, nk, c, rows, o, dp); break;
    case 1: pv_columns<1>(p, v, v_stride, nk, c, rows, o, dp); break;
    default: break;
  }
}

// kt[d][jj] = k[jj][d] for jj < nk, zero for nk <= jj < kTileKeys: W x W blocks with
// SIMD shuffles (attention_transpose.h), the ragged edges one by one.
static inline void transpose_k_tile(const float* k, int64_t k_stride, int nk, int D, float* kt) {
  const int nk_full = nk / W * W, d_full = D / W * W;
  for (int j0 = 0; j0 < nk_full; j0 += W)
    for (int d0 = 0; d0 < d_full; d0 += W) transpose_block(k + j0 * k_stride + d0, k_stride, kt + d0 * kTileKeys + j0, kTileKeys);
  for (int d = 0; d < D; ++d) {
    float* row = kt + d * kTileKeys;
    const int jj0 = d < d_full ? nk_full : 0;  // rows d < d_full: only the ragged keys remain
    for (int jj = jj0; jj < nk; ++jj) row[jj] = k[jj * k_stride + d];
    for (int jj = nk; jj < kTileKeys; ++jj) row[jj] = 0.f;
  }
}

// transpose_k_tile for the listed slots (rows k + list[jj] * k_stride).
static inline void gather_k_tile(const float* k, int64_t k_stride, const int32_t* list, int nk, int D, float* kt) {
  const int nk_full = nk / W * W, d_full = D / W * W;
  const float* rows[W];
  for (int j0 = 0; j0 < nk_full; j0 += W) {
    for (int x = 0; x < W; ++x) rows[x] = k + list[j0 + x] * k_stride;
    for (int d0 = 0; d0 < d_full; d0 += W) transpose_rows(rows, d0, kt + d0 * kTileKeys + j0, kTileKeys);
  }
  for (int d = 0; d < D; ++d) {
    float* row = kt + d * kTileKeys;
    for (int jj = d < d_full ? nk_full : 0; jj < nk; ++jj) row[jj] = k[list[jj] * k_stride + d];
    for (int jj = nk; jj < kTileKeys; ++jj) row[jj] = 0.f;
  }
}

// pack_v_tile for the listed slots.
static inline void gather_v_tile(const float* v, int64_t v_stride, const int32_t* list, int nk, int D, int64_t dp,
                                 float* vp) {
  for (int jj = 0; jj < nk; ++jj) {
    float* dst = vp + jj * dp;
    const float* src = v + list[jj] * v_stride;
    int d = 0;
    for (; d + W <= D; d += W) store(dst + d, load(src + d));
    for (; d < D; ++d) dst[d] = src[d];
    for (int64_t x = D; x < dp; ++x) dst[x] = 0.f;
  }
}

// vp[jj][0..dp) = v[jj][0..D) padded with zeros.
static inline void pack_v_tile(const float* v, int64_t v_stride, int nk, int D, int64_t dp, float* vp) {
  for (int jj = 0; jj < nk; ++jj) {
    float* dst = vp + jj * dp;
    const float* src = v + jj * v_stride;
    for (int d = 0; d < D; ++d) dst[d] = src[d];
    for (int64_t d = D; d < dp; ++d) dst[d] = 0.f;
  }
}

// Packs one K and V tile of KV head g (keys tile * kTileKeys ...), so the query blocks of
// a prefill share it (and V rows become contiguous: cache rows with a power-of-two stride
// would map onto a few L1 sets and evict each other): kp [head_dim][kTileKeys], vp
// [kTileKeys][dp] (vp may be null when V is read in place). A typed cache (a.typed) is
// decoded here, tile by tile, into `tmp` (2 x kTileKeys x head_dim floats).
void pack_kv_tile(const AttentionShape& s, const AttentionArgs& a, int g, int64_t tile, float* kp, float* vp,
                  float* tmp) {
  const int D = s.head_dim;
  const int64_t dp = (D + W - 1) / W * W;
  const int64_t j0 = tile * kTileKeys;
  const int nk = static_cast<int>(std::min<int64_t>(kTileKeys, s.n_kv - j0));
  const float* k = a.k ? a.k + j0 * a.k_stride + static_cast<int64_t>(g) * D : nullptr;
  const float* v = a.v ? a.v + j0 * a.v_stride + static_cast<int64_t>(g) * D : nullptr;
  int64_t k_stride = a.k_stride, v_stride = a.v_stride;
  if (a.typed) {
    const TypedKV& t = *a.typed;
    float* kd = tmp;
    float* vd = tmp + kTileKeys * D;
    for (int jj = 0; jj < nk; ++jj) {
      const int64_t off = (j0 + jj) * t.row_bytes + static_cast<int64_t>(g) * t.head_bytes;
      t.decode(t.type, t.k + off, kd + jj * D, D);
      if (vp) t.decode(t.type, t.v + off, vd + jj * D, D);
    }
    k = kd;
    v = vd;
    k_stride = v_stride = D;
  }
  transpose_k_tile(k, k_stride, nk, D, kp);
  if (vp) pack_v_tile(v, v_stride, nk, D, dp, vp);
}

int simd_width() { return W; }

template <bool Observe>
static void run_job(const Job& job, Scratch& sc) {
  const AttentionShape& s = *job.s;
  const AttentionArgs& a = *job.a;
  const int D = s.head_dim;
  const int64_t dp = (D + W - 1) / W * W;
  const int nvec = static_cast<int>(dp / W);
  const int group = s.n_head / s.n_kv_head;
  const int64_t nt = job.i1 - job.i0;
  const int64_t rows = group * nt;
  // Softcapped scores are transformed in the natural-log domain: queries are scaled by
  // `scale` alone (as llama.cpp scales Q), and the cap maps s to c tanh(s / c) log2(e).
  const bool capped = s.softcap > 0.f;
  const float qscale = capped ? s.scale : s.scale * 1.4426950408889634f;
  const float cap_inv = capped ? 1.f / s.softcap : 0.f, cap_out = s.softcap * 1.4426950408889634f;
  constexpr float ninf = -std::numeric_limits<float>::infinity();

  // Gather and pre-scale the queries; zero the accumulators.
  for (int64_t r = 0; r < rows; ++r) {
    const int head = job.kvh * group + static_cast<int>(r / nt);
    const int64_t i = job.i0 + r % nt;
    const float* q = a.q + i * a.q_stride + static_cast<int64_t>(head) * D;
    float* qs = sc.q + r * dp;
    for (int d = 0; d < D; ++d) qs[d] = q[d] * qscale;
    for (int64_t d = D; d < dp; ++d) qs[d] = 0.f;
    float* o = sc.o + r * dp;
    for (int64_t d = 0; d < dp; ++d) o[d] = 0.f;
    sc.m[r] = ninf;
    sc.l[r] = 0.f;
    if constexpr (Observe) {
      sc.obs_n[r] = 0;
      sc.obs_dense[r] = job.list == nullptr;  // (a gathered list names its own slots)
    }
  }
  const int64_t t_lo = s.q_pos0 + job.i0, t_hi = s.q_pos0 + job.i1 - 1;
  const bool pack_v = (D % W) != 0;
  // (A typed cache has no f32 rows: its jobs always read packed tiles.)
  const float* kbase = a.k ? a.k + static_cast<int64_t>(job.kvh) * D : nullptr;
  const float* vbase = a.v ? a.v + static_cast<int64_t>(job.kvh) * D : nullptr;

  // Slots [gap_lo, gap_hi) no row of the job visits (positional sets, slot = position):
  // whole tiles inside are skipped without asking every row.
  const bool listed = job.list != nullptr;  // tiles are chunks of a gathered slot list
  const KeySetGap gap = listed ? KeySetGap{} : job_gap(job.keys, a.key_pos, t_lo, t_hi, s.window);
  const int64_t n_cols = listed ? job.list_len : s.n_kv;
  for (int64_t j0 = 0; j0 < n_cols; j0 += kTileKeys) {
    if (j0 >= gap.lo && j0 + kTileKeys <= gap.hi) {
      j0 = gap.hi - kTileKeys;  // the loop step continues at gap.hi
      continue;
    }
    const int64_t j1 = std::min<int64_t>(n_cols, j0 + kTileKeys);
    const int nk = static_cast<int>(j1 - j0);
    const float* kt_tile = sc.kt;
    const float* vt = vbase ? vbase + j0 * a.v_stride : nullptr;
    int64_t vt_stride = a.v_stride;
    if (listed) {
      // Every row visits every listed key (the list holds only visible slots).
      for (int64_t r = 0; r < rows; ++r) sc.cls[r] = kFull;
      gather_k_tile(kbase, a.k_stride, job.list + j0, nk, D, sc.kt);
      gather_v_tile(vbase, a.v_stride, job.list + j0, nk, D, dp, sc.vp);
      vt = sc.vp;
      vt_stride = dp;
    } else {
      Tile tile{j0, j1, j0, j1 - 1};
      if (a.key_pos) {
        tile.pmin = tile.pmax = a.key_pos[j0];
        for (int64_t j = j0 + 1; j < j1; ++j) {
          tile.pmin = std::min<int64_t>(tile.pmin, a.key_pos[j]);
          tile.pmax = std::max<int64_t>(tile.pmax, a.key_pos[j]);
        }
      }
      if (tile.pmin > t_hi) continue;  // causal: no row sees this tile
      bool any = false;
      for (int64_t r = 0; r < rows; ++r) {
        const int head = job.kvh * group + static_cast<int>(r / nt);
        const int64_t i = job.i0 + r % nt;
        const KeySet* ks = job.keys ? &job.keys->for_head(head) : nullptr;
        sc.cls[r] = classify(ks, head, i, s.q_pos0 + i, tile);
        if (s.window > 0) sc.cls[r] = window_class(static_cast<TileClass>(sc.cls[r]), s.q_pos0 + i, tile, s.window);
        any |= sc.cls[r] != kSkip;
      }
      if (!any) continue;

      // K tile transposed (zero columns past the end), V tile packed if needed: taken
      // from the call's packed copy when there is one (prefill), else made here (decode).
      const int64_t tile_index = static_cast<int64_t>(job.kvh - job.packed_kvh0) * job.n_tiles + j0 / kTileKeys;
      if (job.k_packed) {
        kt_tile = job.k_packed + tile_index * D * kTileKeys;
      } else {
        transpose_k_tile(kbase + j0 * a.k_stride, a.k_stride, nk, D, sc.kt);
      }
      if (job.v_packed) {
        vt = job.v_packed + tile_index * kTileKeys * dp;
        vt_stride = dp;
      } else if (pack_v) {
        pack_v_tile(vt, a.v_stride, nk, D, dp, sc.vp);
        vt = sc.vp;
        vt_stride = dp;
      }
    }

    // S = Q K^T for all rows of the block, in chunks of head_dim so that the K sub-block
    // (kQkChunk x kTileKeys floats) stays in L1 while every row block uses it.
    for (int d0 = 0; d0 < D; d0 += kQkChunk) {
      const int d1 = std::min(D, d0 + kQkChunk);
      for (int c0 = 0; c0 < kTileKeys / W; c0 += 4) {
        int64_t r = 0;
        for (; r + kRowsQK <= rows; r += kRowsQK)
          qk_micro<kRowsQK>(sc.q + r * dp, dp, kt_tile, d0, d1, c0, sc.s + r * kTileKeys);
        for (; r < rows; ++r) qk_micro<1>(sc.q + r * dp, dp, kt_tile, d0, d1, c0, sc.s + r * kTileKeys);
      }
    }

    // Mask, online softmax update, probabilities into S.
    for (int64_t r = 0; r < rows; ++r) {
      float* srow = sc.s + r * kTileKeys;
      if (sc.cls[r] == kSkip) {
        for (int jj = 0; jj < kTileKeys; jj += W) store(srow + jj, vf{});
        continue;
      }
      const int head = job.kvh * group + static_cast<int>(r / nt);
      const int64_t i = job.i0 + r % nt;
      if (capped)
        for (int jj = 0; jj < nk; ++jj) srow[jj] = cap_out * std::tanh(srow[jj] * cap_inv);
      if (sc.cls[r] == kPartial) {
        const KeySet* ks = job.keys ? &job.keys->for_head(head) : nullptr;
        mask_partial(ks, head, i, s.q_pos0 + i, j0, nk, a.key_pos, srow);
        if (s.window > 0 && !listed) mask_window(s.q_pos0 + i, j0, nk, a.key_pos, s.window, srow);
      }
      for (int jj = nk; jj < kTileKeys; ++jj) srow[jj] = ninf;
      vf mx = bcast(ninf);
      for (int jj = 0; jj < kTileKeys; jj += W) {
        const vf x = load(srow + jj);
        mx = x > mx ? x : mx;
      }
      const float mt = hmax(mx);
      if (mt == ninf) {  // nothing visited in this tile
        for (int jj = 0; jj < kTileKeys; jj += W) store(srow + jj, vf{});
        continue;
      }
      if constexpr (Observe) {
        float* os = sc.obs_s + r * s.n_kv;
        int32_t* oj = sc.obs_j + r * s.n_kv;
        int64_t n = sc.obs_n[r];
        bool dense = sc.obs_dense[r];
        // The row stops being dense: its slots so far (0..n-1) are written out.
        auto undense = [&] {
          std::memcpy(oj, sc.iota, static_cast<size_t>(n) * sizeof(int32_t));
          dense = false;
        };
        if (sc.cls[r] == kFull) {
          // No mask in this tile: every key is visited (bulk copy, vectorised index fill).
          if (nk == kTileKeys) {
            for (int jj = 0; jj < kTileKeys; jj += W) store(os + n + jj, load(srow + jj));
          } else {
            std::memcpy(os + n, srow, static_cast<size_t>(nk) * sizeof(float));
          }
          if (dense && j0 != n) undense();
          if (listed) {
            std::memcpy(oj + n, job.list + j0, static_cast<size_t>(nk) * sizeof(int32_t));
          } else if (!dense) {
            const int32_t base = static_cast<int32_t>(j0);
            for (int jj = 0; jj < nk; ++jj) oj[n + jj] = base + jj;
          }
          n += nk;
        } else {
          for (int jj = 0; jj < nk; ++jj) {
            if (srow[jj] != ninf) {
              os[n] = srow[jj];
              if (dense && j0 + jj != n) undense();
              if (!dense) oj[n] = listed ? job.list[j0 + jj] : static_cast<int32_t>(j0 + jj);
              ++n;
            }
          }
        }
        sc.obs_n[r] = n;
        sc.obs_dense[r] = dense;
      }
      const float m_old = sc.m[r];
      const float m_new = m_old > mt ? m_old : mt;
      const vf mb = bcast(m_new);
      vf sum = vf{};
      for (int jj = 0; jj < kTileKeys; jj += W) {
        const vf p = exp2v(load(srow + jj) - mb);
        store(srow + jj, p);
        sum += p;
      }
      if (m_new != m_old) {
        const float alpha = m_old == ninf ? 0.f : exp2v(bcast(m_old - m_new))[0];
        sc.l[r] *= alpha;
        float* o = sc.o + r * dp;
        const vf ab = bcast(alpha);
        for (int64_t d = 0; d < dp; d += W) store(o + d, load(o + d) * ab);
        sc.m[r] = m_new;
      }
      sc.l[r] += hsum(sum);
    }

    // O += P V.
    pv_all(sc.s, vt, vt_stride, nk, nvec, rows, sc.o, dp);
  }

  // Normalise and write out; emit observed rows, a head's consecutive queries in blocks.
  constexpr int kBlock = RowObserver::kObservedBlock;
  [[maybe_unused]] const float* blk_probs[kBlock];
  [[maybe_unused]] const int32_t* blk_slots[kBlock];
  [[maybe_unused]] int64_t blk_n[kBlock];
  [[maybe_unused]] double blk_entropy[kBlock];
  [[maybe_unused]] float blk_largest[kBlock];
  [[maybe_unused]] int blk = 0;
  // Observed rows: jobs of odd query blocks hand their heads over from the middle of the
  // group, so that two threads on neighbouring blocks of one KV head are seldom on the same
  // head at once (an observer's per-head sums, such as analyze's persistence buckets, would
  // otherwise bounce between the cores' caches and wait on one lock). A head's queries
  // still come in order.
  const int64_t r_shift = Observe && ((job.i0 / nt) & 1) ? (group / 2) * nt : 0;
  for (int64_t rr = 0; rr < rows; ++rr) {
    const int64_t r = rr + r_shift < rows ? rr + r_shift : rr + r_shift - rows;
    const int head = job.kvh * group + static_cast<int>(r / nt);
    const int64_t i = job.i0 + r % nt;
    float* out = a.out + i * a.out_stride + static_cast<int64_t>(head) * D;
    const float l = sc.l[r];
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const float* o = sc.o + r * dp;
    for (int d = 0; d < D; ++d) out[d] = o[d] * inv;
    if constexpr (Observe) {
      const int64_t n = sc.obs_n[r];
      const float* os = sc.obs_s + r * s.n_kv;
      const vf mb = bcast(sc.m[r]);
      const vf ib = bcast(inv);
      // p = 2^(s - m) / l, and on the way sum p and sum p (s - m) for the entropy:
      // -sum p ln p = ln(l) sum p - ln(2) sum p (s - m).
      vf psum = vf{}, pd = vf{}, pmax = vf{};
      float* probs = sc.probs + blk * sc.probs_stride;
      int64_t x = 0;
      for (; x + W <= n; x += W) {
        const vf d = load(os + x) - mb;
        const vf p = exp2v(d) * ib;
        store(probs + x, p);
        psum += p;
        pd += p * d;
        pmax = p > pmax ? p : pmax;
      }
      double psum_t = hsum(psum), pd_t = hsum(pd);
      float largest = hmax(pmax);
      for (; x < n; ++x) {
        const float d = os[x] - sc.m[r];
        const float p = exp2v(bcast(d))[0] * inv;
        probs[x] = p;
        psum_t += p;
        pd_t += double(p) * d;
        largest = p > largest ? p : largest;
      }
      blk_probs[blk] = probs;
      blk_slots[blk] = sc.obs_dense[r] ? sc.iota : sc.obs_j + r * s.n_kv;
      blk_n[blk] = n;
      blk_entropy[blk] = n > 0 && l > 0.f ? std::log(double(l)) * psum_t - 0.6931471805599453 * pd_t : 0.0;
      blk_largest[blk] = largest;
      ++blk;
      // The block ends when full or with the head's last query of this job.
      if (blk == kBlock || r % nt == nt - 1) {
        job.observer->on_rows(head, s.q_pos0 + i - (blk - 1), blk, blk_probs, blk_slots, blk_n, blk_entropy,
                              blk_largest);
        blk = 0;
      }
    }
  }
}

// out[d0 .. d0 + NC*W) = sum_y p[y] * v[slot[y]][d0 ..], accumulated in registers.
template <int NC>
static inline void gather_pv(const float* p, const int32_t* slots, int64_t n, const float* v, int64_t v_stride,
                             int d0, float* out) {
  vf acc[NC];
#pragma GCC unroll 4
  for (int c = 0; c < NC; ++c) acc[c] = vf{};
  for (int64_t y = 0; y < n; ++y) {
    const float* row = v + slots[y] * v_stride + d0;
    const vf pb = bcast(p[y]);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[c] += pb * load(row + c * W);
  }
#pragma GCC unroll 4
  for (int c = 0; c < NC; ++c) store(out + d0 + c * W, acc[c]);
}

// Sparse rows given as index lists: gather the listed keys, two passes over them.
template <bool Observe>
static void run_gather_row(const AttentionShape& s, const AttentionArgs& a, const KeySet& ks,
                           RowObserver* observer, int head, int64_t i, float* scores,
                           int32_t* slots) {
  const int D = s.head_dim;
  const int group = s.n_head / s.n_kv_head;
  const int kvh = head / group;
  const int64_t t = s.q_pos0 + i;
  const float* q = a.q + i * a.q_stride + static_cast<int64_t>(head) * D;
  int64_t n = 0;
  float mx = -std::numeric_limits<float>::infinity();
  // The visible listed slots, then their scores four keys at a time (independent
  // accumulators keep the FMA pipes busy).
  const int32_t* list_end = ks.row_end(head, i);
  for (const int32_t* x = ks.row_begin(head, i); x != list_end; ++x) {
    const int64_t j = *x;
    const int64_t p = j < s.n_kv ? (a.key_pos ? a.key_pos[j] : j) : t + 1;
    if (p > t || (s.window > 0 && t - p >= s.window)) continue;
    slots[n++] = static_cast<int32_t>(j);
  }
  const float* kbase = a.k + static_cast<int64_t>(kvh) * D;
  const bool capped = s.softcap > 0.f;
  const float qscale = capped ? s.scale : s.scale * 1.4426950408889634f;
  const float cap_inv = capped ? 1.f / s.softcap : 0.f, cap_out = s.softcap * 1.4426950408889634f;
  const int dv = D / W * W;
  int64_t y = 0;
  for (; y + 4 <= n; y += 4) {
    const float* k0 = kbase + slots[y] * a.k_stride;
    const float* k1 = kbase + slots[y + 1] * a.k_stride;
    const float* k2 = kbase + slots[y + 2] * a.k_stride;
    const float* k3 = kbase + slots[y + 3] * a.k_stride;
    vf a0 = vf{}, a1 = vf{}, a2 = vf{}, a3 = vf{};
    for (int d = 0; d < dv; d += W) {
      const vf qv = load(q + d);
      a0 += qv * load(k0 + d);
      a1 += qv * load(k1 + d);
      a2 += qv * load(k2 + d);
      a3 += qv * load(k3 + d);
    }
    float dot[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
    for (int d = dv; d < D; ++d) {
      dot[0] += q[d] * k0[d];
      dot[1] += q[d] * k1[d];
      dot[2] += q[d] * k2[d];
      dot[3] += q[d] * k3[d];
    }
    for (int u = 0; u < 4; ++u) {
      scores[y + u] = dot[u] * qscale;
      if (capped) scores[y + u] = cap_out * std::tanh(scores[y + u] * cap_inv);
      mx = scores[y + u] > mx ? scores[y + u] : mx;
    }
  }
  for (; y < n; ++y) {
    const float* k = kbase + slots[y] * a.k_stride;
    vf acc = vf{};
    for (int d = 0; d < dv; d += W) acc += load(q + d) * load(k + d);
    float dot = hsum(acc);
    for (int d = dv; d < D; ++d) dot += q[d] * k[d];
    scores[y] = dot * qscale;
    if (capped) scores[y] = cap_out * std::tanh(scores[y] * cap_inv);
    mx = scores[y] > mx ? scores[y] : mx;
  }
  float sum = 0.f;
  int64_t x = 0;
  const vf mb = bcast(mx);
  for (; x + W <= n; x += W) {
    const vf p = exp2v(load(scores + x) - mb);
    store(scores + x, p);
    sum += hsum(p);
  }
  for (; x < n; ++x) {
    scores[x] = exp2v(bcast(scores[x] - mx))[0];
    sum += scores[x];
  }
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int64_t y = 0; y < n; ++y) scores[y] *= inv;
  // O = sum_y p_y v_y, accumulated in registers a few vectors of the head at a time (an
  // in-memory accumulator would chain every key through a store and a reload).
  float* out = a.out + i * a.out_stride + static_cast<int64_t>(head) * D;
  const float* vbase = a.v + static_cast<int64_t>(kvh) * D;
  const int nvec = D / W;
  int c = 0;
  for (; c + 4 <= nvec; c += 4) gather_pv<4>(scores, slots, n, vbase, a.v_stride, c * W, out);
  switch (nvec - c) {
    case 3: gather_pv<3>(scores, slots, n, vbase, a.v_stride, c * W, out); break;
    case 2: gather_pv<2>(scores, slots, n, vbase, a.v_stride, c * W, out); break;
    case 1: gather_pv<1>(scores, slots, n, vbase, a.v_stride, c * W, out); break;
    default: break;
  }
  for (int d = nvec * W; d < D; ++d) {
    float acc = 0.f;
    for (int64_t y = 0; y < n; ++y) acc += scores[y] * vbase[slots[y] * a.v_stride + d];
    out[d] = acc;
  }
  if constexpr (Observe) observer->on_row(head, t, scores, slots, n);
}

int64_t visible_list(const AttentionShape& s, const AttentionArgs& a, const KeySet& ks, int64_t i, int32_t* out) {
  const int64_t t = s.q_pos0 + i;
  int64_t n = 0;
  const int32_t* e = ks.row_end(0, i);
  for (const int32_t* x = ks.row_begin(0, i); x != e; ++x) {
    if (*x >= s.n_kv) continue;
    const int64_t p = a.key_pos ? a.key_pos[*x] : *x;
    if (p <= t && (s.window <= 0 || t - p < s.window)) out[n++] = *x;
  }
  return n;
}

void job_plain(const Job& job, Scratch& sc) { run_job<false>(job, sc); }
void job_observed(const Job& job, Scratch& sc) { run_job<true>(job, sc); }
void gather_row(const AttentionShape& s, const AttentionArgs& a, const KeySet& ks,
                RowObserver* observer, int head, int64_t i, float* scores, int32_t* slots) {
  if (observer) run_gather_row<true>(s, a, ks, observer, head, i, scores, slots);
  else run_gather_row<false>(s, a, ks, observer, head, i, scores, slots);
}

}  // namespace attnsparse::ops::ATTN_NS
