#include "analysis/row_metrics.h"
#include "core/cpu.h"
#include "core/scratch.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <immintrin.h>

namespace attnsparse::analysis {

double RowMetrics::norm_entropy() const {
  const int64_t v = visible_keys();
  return v > 1 ? entropy / std::log(double(v)) : 0.0;
}

template <typename T>
void mass_widths_inplace(T* a, int64_t n, const double* levels, int n_levels, int64_t* out) {
  // Weighted quickselect. Invariant: a[0, lo) holds the lo largest entries (in some order)
  // with total mass `taken`; everything in [lo, n) is <= all of them. Each level extends
  // the prefix, so four levels cost about as much as one selection (O(n) expected).
  int64_t lo = 0;
  double taken = 0;
  for (int li = 0; li < n_levels; ++li) {
    const double p = levels[li];
    int64_t hi = n;
    bool done = taken >= p;
    while (!done && lo < n) {
      if (lo == hi) hi = n;  // the narrowed block ran out (rounding): widen to the rest
      if (hi - lo <= 24) {
        std::sort(a + lo, a + hi, [](T x, T y) { return x > y; });
        while (lo < hi) {
          taken += a[lo++];
          if (taken >= p) { done = true; break; }
        }
        continue;
      }
      // Median-of-three pivot, three-way partition: [lo, gt) > pivot, [gt, eq) == pivot.
      const T x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
      const T pivot = std::max(std::min(x, y), std::min(std::max(x, y), z));
      int64_t gt = lo, i = lo, lt = hi;
      while (i < lt) {
        const T v = a[i];
        if (v > pivot) { std::swap(a[gt++], a[i++]); }
        else if (v < pivot) { std::swap(a[i], a[--lt]); }
        else { ++i; }
      }
      double sum_gt = 0;
      for (int64_t j = lo; j < gt; ++j) sum_gt += a[j];
      if (taken + sum_gt >= p) {
        hi = gt;  // the answer lies inside the strictly larger block
        continue;
      }
      taken += sum_gt;
      lo = gt;
      while (lo < lt) {  // equal block: take one at a time
        taken += a[lo++];
        if (taken >= p) { done = true; break; }
      }
    }
    out[li] = done ? lo : n;
  }
}
template void mass_widths_inplace<float>(float*, int64_t, const double*, int, int64_t*);
template void mass_widths_inplace<double>(double*, int64_t, const double*, int, int64_t*);

void widths_quickselect(const float* probs, int64_t n, const double* levels, int n_levels,
                        int32_t* out, std::vector<float>& scratch) {
  scratch.assign(probs, probs + n);
  int64_t w[8];
  for (int start = 0; start < n_levels; start += 8) {
    const int nl = std::min(8, n_levels - start);
    mass_widths_inplace(scratch.data(), n, levels + start, nl, w);
    for (int i = 0; i < nl; ++i) out[start + i] = static_cast<int32_t>(w[i]);
  }
}

namespace {

// ---- Widths by histogram selection ----
// The k largest entries of a row are found bucket by bucket: a histogram of mass and count
// over 256 buckets of the float bit pattern (monotone in the value for x >= 0) locates,
// for every level, the bucket where the cumulative mass crosses it; only that bucket's
// entries are examined further (a second histogram on the next 8 bits, then an exact
// quickselect). Cost is a few passes over the row whatever its shape; quickselect alone
// is slow on flat rows. Masses are summed in double, as in the definition.

constexpr int kMaxBins = 1024;
constexpr int64_t kSmall = 96;  // rows this short go straight to the quickselect
constexpr int64_t kTiny = 32;   // ... and this short to an insertion sort

struct SelectScratch {
  std::vector<uint16_t> ids;
  std::vector<double> mass;  // 2 x bins
  // Level 0 (select_top): kCopies histograms, all zero between calls, and their sum.
  std::vector<double> copies, folded;
  std::vector<float> gathered[2];  // per level: one region per boundary bucket, + a dummy cell
  std::vector<float> quick;
  std::vector<int32_t> stage;  // level 0: the boundary buckets' entries (indices), before they are dealt
};

inline uint32_t float_bits(float x) { return std::bit_cast<uint32_t>(x); }

// Level-1 bucket ids inside one level-0 bucket: the 8 bits of the bit pattern below
// `shift`, 0 = the largest values.
__attribute__((target_clones("avx512f", "avx2", "default")))
void sub_bucket_ids(const float* v, int64_t m, int shift, uint16_t* ids) {
  for (int64_t j = 0; j < m; ++j) ids[j] = static_cast<uint16_t>(255u - ((float_bits(v[j]) >> shift) & 0xffu));
}

// For up to four buckets b[s] at once: how many ids are below b[s] (entries in buckets of
// larger values) and how many equal it. One vectorised pass.
__attribute__((target_clones("avx512f", "avx2", "default")))
void count_buckets(const uint16_t* ids, int64_t m, const uint16_t* b, int64_t* below, int64_t* equal) {
  int32_t lo0 = 0, lo1 = 0, lo2 = 0, lo3 = 0, eq0 = 0, eq1 = 0, eq2 = 0, eq3 = 0;
  const uint16_t b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
  for (int64_t j = 0; j < m; ++j) {
    const uint16_t id = ids[j];
    lo0 += id < b0;
    lo1 += id < b1;
    lo2 += id < b2;
    lo3 += id < b3;
    eq0 += id == b0;
    eq1 += id == b1;
    eq2 += id == b2;
    eq3 += id == b3;
  }
  below[0] = lo0, below[1] = lo1, below[2] = lo2, below[3] = lo3;
  equal[0] = eq0, equal[1] = eq1, equal[2] = eq2, equal[3] = eq3;
}

// Copies the entries of bucket b to out (which has 16 floats of slack); returns how many.
// AVX-512 compresses in registers (a compressing store is slow on some CPUs).
// (GCC 12 warns about an uninitialised variable inside its own intrinsic headers.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512vl")))
int64_t gather_bucket_avx512(const float* v, const uint16_t* ids, int64_t m, uint16_t b, float* out) {
  int64_t k = 0, j = 0;
  const __m512i want = _mm512_set1_epi32(b);
  for (; j + 16 <= m; j += 16) {
    const __m512i id = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ids + j)));
    const __mmask16 hit = _mm512_cmpeq_epi32_mask(id, want);
    if (!hit) continue;
    _mm512_storeu_ps(out + k, _mm512_maskz_compress_ps(hit, _mm512_loadu_ps(v + j)));
    k += __builtin_popcount(hit);
  }
  for (; j < m; ++j)
    if (ids[j] == b) out[k++] = v[j];
  return k;
}
#pragma GCC diagnostic pop

int64_t gather_bucket(const float* v, const uint16_t* ids, int64_t m, uint16_t b, float* out) {
  if (cpu::active_at_least(cpu::Level::Avx512)) return gather_bucket_avx512(v, ids, m, b, out);
  int64_t k = 0;
  for (int64_t j = 0; j < m; ++j) {
    out[k] = v[j];
    k += ids[j] == b;
  }
  return k;
}

// v[0..m) (m <= kTiny) sorted descending into a. AVX-512: each entry's rank is counted
// against all entries at once (those larger, and equal ones before it), with no
// data-dependent branches; otherwise insertion sort.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512vl")))
void sort_tiny_avx512(const float* v, int64_t m, float* a) {
  static_assert(kTiny == 32);
  const __mmask16 in0 = m >= 16 ? __mmask16(0xffff) : __mmask16((1u << m) - 1);
  const __mmask16 in1 = m >= 32 ? __mmask16(0xffff) : m <= 16 ? __mmask16(0) : __mmask16((1u << (m - 16)) - 1);
  const __m512 x0 = _mm512_maskz_loadu_ps(in0, v), x1 = _mm512_maskz_loadu_ps(in1, v + 16);
  for (int64_t i = 0; i < m; ++i) {
    const __m512 xi = _mm512_set1_ps(v[i]);
    // lanes before i: bits 0..i-1 over the 32 entries
    const uint32_t before = uint32_t((uint64_t(1) << i) - 1);
    const uint32_t gt = uint32_t(_mm512_mask_cmp_ps_mask(in0, x0, xi, _CMP_GT_OQ)) |
                        (uint32_t(_mm512_mask_cmp_ps_mask(in1, x1, xi, _CMP_GT_OQ)) << 16);
    const uint32_t eq = uint32_t(_mm512_mask_cmp_ps_mask(in0, x0, xi, _CMP_EQ_OQ)) |
                        (uint32_t(_mm512_mask_cmp_ps_mask(in1, x1, xi, _CMP_EQ_OQ)) << 16);
    a[__builtin_popcount(gt) + __builtin_popcount(eq & before)] = v[i];
  }
}
#pragma GCC diagnostic pop

void sort_tiny(const float* v, int64_t m, float* a) {
  if (cpu::active_at_least(cpu::Level::Avx512)) return sort_tiny_avx512(v, m, a);
  for (int64_t j = 0; j < m; ++j) {
    const float x = v[j];
    int64_t k = j;
    for (; k > 0 && a[k - 1] < x; --k) a[k] = a[k - 1];
    a[k] = x;
  }
}

// For each target (ascending), the smallest k such that the k largest entries of v sum to
// at least the target; m + 1 when all of v does not reach it.
// The entries of one level-0 bucket (select_top): level 1 buckets them by the 8 bits below
// `shift`; level 2 (and any short input) is the exact weighted quickselect.
void select_counts(const float* v, int64_t m, const double* targets, int nt, int64_t* out, int level, int shift,
                   SelectScratch& sc) {
  if (m <= kTiny) {
    // A boundary bucket of a few entries (the usual case: 4-30 on rows of 4,096 keys):
    // sorted (descending), then summed from the largest.
    float a[kTiny];
    sort_tiny(v, m, a);
    int i = 0;
    while (i < nt && targets[i] <= 0) out[i++] = 0;
    double cum = 0;
    for (int64_t k = 0; k < m && i < nt; ++k) {
      cum += a[k];
      while (i < nt && cum >= targets[i]) out[i++] = k + 1;
    }
    for (; i < nt; ++i) out[i] = m + 1;
    return;
  }
  if (m <= kSmall || level == 2) {
    // Exact weighted quickselect (handles equal values in linear time).
    int32_t w[4];
    widths_quickselect(v, m, targets, nt, w, sc.quick);
    for (int i = 0; i < nt; ++i) {
      double total = 0;
      if (w[i] == m) {  // reached only with everything, or never: tell the two apart
        for (int64_t j = 0; j < m; ++j) total += v[j];
        out[i] = total >= targets[i] ? m : m + 1;
      } else {
        out[i] = w[i];
      }
    }
    return;
  }
  constexpr int bins = 256;
  grow(sc.ids, m);
  sub_bucket_ids(v, m, shift, sc.ids.data());
  // Mass per bucket; two interleaved copies break the dependency chain of neighbours that
  // fall into one bucket (flat rows).
  sc.mass.assign(size_t(2 * bins), 0.0);
  double* mass0 = sc.mass.data();
  double* mass1 = mass0 + bins;
  const uint16_t* ids = sc.ids.data();
  int64_t j = 0;
  for (; j + 2 <= m; j += 2) {
    mass0[ids[j]] += v[j];
    mass1[ids[j + 1]] += v[j + 1];
  }
  for (; j < m; ++j) mass0[ids[j]] += v[j];
  // Boundary bucket of each target, and the mass strictly above it.
  int bucket[4];
  double above_mass[4];
  {
    double cum = 0;
    int i = 0;
    // Blocks of 8 buckets that cannot hold the next crossing are skipped with one chained
    // add (a pairwise sum of the block), not eight: the running sum's add latency was the
    // cost of this scan on long-tailed rows. The margin keeps the skip test safe against
    // the few ulps by which pairwise and sequential sums of a block can differ.
    constexpr int kBlock = 8;
    int b = 0;
    while (b < bins && i < nt) {
      if (b + kBlock <= bins) {
        const double* p0 = mass0 + b;
        const double* p1 = mass1 + b;
        const double blk = ((p0[0] + p1[0]) + (p0[1] + p1[1]) + ((p0[2] + p1[2]) + (p0[3] + p1[3]))) +
                           ((p0[4] + p1[4]) + (p0[5] + p1[5]) + ((p0[6] + p1[6]) + (p0[7] + p1[7])));
        if (cum + blk < targets[i] * (1 - 1e-12)) {
          cum += blk;
          b += kBlock;
          continue;
        }
      }
      const double bm = mass0[b] + mass1[b];
      while (i < nt && bm > 0 && cum + bm >= targets[i]) {
        bucket[i] = b;
        above_mass[i] = cum;
        ++i;
      }
      cum += bm;
      ++b;
    }
    for (; i < nt; ++i) {
      bucket[i] = -1;  // not reached
      out[i] = m + 1;
    }
  }
  // The distinct boundary buckets ("slots"), their sizes and the counts above them.
  int n_slots = 0, slot_bucket[4], slot_of_target[4];
  for (int i = 0; i < nt; ++i) {
    if (bucket[i] < 0) continue;
    int s = 0;
    while (s < n_slots && slot_bucket[s] != bucket[i]) ++s;
    if (s == n_slots) slot_bucket[n_slots++] = bucket[i];
    slot_of_target[i] = s;
  }
  int64_t slot_size[4], slot_above[4], above_count[4];
  {
    uint16_t b[4] = {0, 0, 0, 0};
    for (int s = 0; s < n_slots; ++s) b[s] = uint16_t(slot_bucket[s]);
    count_buckets(ids, m, b, slot_above, slot_size);
    for (int i = 0; i < nt; ++i)
      if (bucket[i] >= 0) above_count[i] = slot_above[slot_of_target[i]];
  }
  if (n_slots == 0) return;
  // Gather each boundary bucket's entries, unless one bucket holds every entry.
  const bool whole = n_slots == 1 && slot_size[0] == m;
  int64_t offset[5];
  offset[0] = 0;
  for (int s = 0; s < n_slots; ++s) offset[s + 1] = offset[s] + slot_size[s] + 16;  // + slack
  std::vector<float>& gathered = sc.gathered[1];  // ([0]: select_top's, still in use)
  if (!whole) {
    grow(gathered, offset[n_slots]);
    for (int s = 0; s < n_slots; ++s)
      gather_bucket(v, ids, m, uint16_t(slot_bucket[s]), gathered.data() + offset[s]);
  }
  for (int s = 0; s < n_slots; ++s) {
    double sub_targets[4];
    int which[4], k = 0;
    for (int i = 0; i < nt; ++i)
      if (bucket[i] == slot_bucket[s]) {
        which[k] = i;
        sub_targets[k++] = targets[i] - above_mass[i];
      }
    int64_t sub_out[4];
    select_counts(whole ? v : gathered.data() + offset[s], slot_size[s], sub_targets, k, sub_out,
                  2, shift - 8, sc);
    for (int x = 0; x < k; ++x) {
      const int i = which[x];
      out[i] = sub_out[x] <= slot_size[s] ? above_count[i] + sub_out[x] : -1;  // -1: rounding, redo
    }
  }
}


// ---- Level 0: bucket ids, a scattered mass histogram, one gathering pass ----
// 1. the row's largest and smallest bit patterns (vectorised);
// 2. a 16-bit bucket id per entry (vectorised): steps of 2^(shift-23) octaves below the
//    maximum's bucket; an entry of the catch-all last bucket gets one of kTailCells cells
//    past the buckets, rotating, so that a row of mostly tiny values does not chain every
//    add on one cell;
// 3. the mass histogram, a plain load-add-store per entry: entry j adds to copy
//    j mod kCopies, so that neighbours sharing a bucket (flat rows) do not wait for each
//    other's add;
// 4. the copies summed bucket by bucket (vectorised) and set back to zero: only the
//    buckets the row reached were touched, so nothing is cleared before the next row;
// 5. one vectorised pass over the ids that, for every boundary bucket at once, gathers its
//    entries and counts the entries above it.

constexpr int kCopies = 8;
constexpr int kTailCells = 16;
constexpr int64_t kCopyStride = kMaxBins + kTailCells;  // per copy: up to kMaxBins buckets, then the tail cells
// One histogram when fewer than 1 in kOneCopyRatio entries share their neighbour's bucket.
constexpr int64_t kOneCopyRatio = 16;

// The row's largest bit pattern (entries >= 0: integer order = float order).
__attribute__((target_clones("avx512f", "avx2", "default")))
uint32_t max_bits(const float* v, int64_t m) {
  uint32_t mx = 0;
  for (int64_t j = 0; j < m; ++j) {
    const uint32_t b = float_bits(v[j]);
    mx = b > mx ? b : mx;
  }
  return mx;
}

// What the id pass learns besides the ids.
struct IdStats {
  int64_t same = 0;      // entries in the bucket of the entry before them (catch-all excepted)
  uint32_t deepest = 0;  // the largest bucket below the catch-all that holds an entry
  bool tail = false;     // some entry is in the catch-all
};

// Bucket id of entry j: top - (bits >> shift) below `last`; else a tail cell
// last + 1 + j mod kTailCells (the catch-all bucket `last` itself is never used).
inline uint16_t level0_id(float x, int64_t j, uint32_t top, int shift, uint32_t last) {
  const uint32_t d = top - (float_bits(x) >> shift);
  return static_cast<uint16_t>(d < last ? d : last + 1 + (j & (kTailCells - 1)));
}

// The ids of entries j0..m-1 (scalar), adding to st.
void level0_ids_from(const float* v, int64_t j0, int64_t m, uint32_t top, int shift, uint32_t last, uint16_t* ids,
                     IdStats& st) {
  for (int64_t j = j0; j < m; ++j) {
    ids[j] = level0_id(v[j], j, top, shift, last);
    const bool inside = ids[j] < last;
    st.same += j > 0 && inside && ids[j] == ids[j - 1];
    if (inside) st.deepest = std::max<uint32_t>(st.deepest, ids[j]);
    st.tail |= !inside;
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512vl")))
IdStats level0_ids_avx512(const float* v, int64_t m, uint32_t top, int shift, uint32_t last, uint16_t* ids) {
  const __m512i vtop = _mm512_set1_epi32(int(top));
  const __m512i vlast = _mm512_set1_epi32(int(last));
  const __m512i vcell0 = _mm512_set1_epi32(int(last + 1));
  const __m512i cells = _mm512_set1_epi32(kTailCells - 1);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t j = 0, same = 0;
  __m512i prev_d = _mm512_set1_epi32(-1);
  __m512i deepest = _mm512_setzero_si512();
  __mmask16 tail = 0;
  for (; j + 16 <= m; j += 16) {
    const __m512i x = _mm512_loadu_si512(v + j);
    const __m512i d = _mm512_sub_epi32(vtop, _mm512_srli_epi32(x, unsigned(shift)));
    const __m512i jj = _mm512_add_epi32(_mm512_set1_epi32(int(j)), lane);
    const __m512i cell = _mm512_add_epi32(vcell0, _mm512_and_si512(jj, cells));
    const __mmask16 inside = _mm512_cmplt_epu32_mask(d, vlast);
    deepest = _mm512_mask_max_epu32(deepest, inside, deepest, d);
    tail |= __mmask16(~inside);
    const __m512i id = _mm512_mask_mov_epi32(cell, inside, d);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ids + j), _mm512_cvtepi32_epi16(id));
    // Entries whose bucket is that of the entry before (the catch-all's rotating cells do
    // not count: neighbours there add to different cells).
    same += __builtin_popcount(_mm512_mask_cmpeq_epi32_mask(inside, d, _mm512_alignr_epi32(d, prev_d, 15)));
    prev_d = d;
  }
  IdStats st;
  st.same = same;
  uint32_t lanes[16];  // (GCC 12's _mm512_reduce_max_epu32 warns inside its own header)
  _mm512_storeu_si512(lanes, deepest);
  for (uint32_t x : lanes) st.deepest = std::max(st.deepest, x);
  st.tail = tail != 0;
  level0_ids_from(v, j, m, top, shift, last, ids, st);
  return st;
}
#pragma GCC diagnostic pop

// Writes the ids; returns how many entries share the bucket of the entry before them
// (the catch-all bucket excepted; a first entry counts as not sharing), the deepest bucket
// used below the catch-all, and whether the catch-all holds any entry.
IdStats level0_ids(const float* v, int64_t m, uint32_t top, int shift, uint32_t last, uint16_t* ids) {
  if (cpu::active_at_least(cpu::Level::Avx512)) return level0_ids_avx512(v, m, top, shift, last, ids);
  IdStats st;
  level0_ids_from(v, 0, m, top, shift, last, ids, st);
  return st;
}

// The mass histogram: entry j adds its value to bucket ids[j] of copy j mod C.
template <int C>
void accumulate(const float* v, const uint16_t* ids, int64_t m, double* h) {
  int64_t j = 0;
  if constexpr (C == 1) {
    for (; j + 8 <= m; j += 8) {
      uint64_t w0, w1;
      std::memcpy(&w0, ids + j, 8);
      std::memcpy(&w1, ids + j + 4, 8);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) h[(w0 >> (16 * c)) & 0xffff] += v[j + c];
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) h[(w1 >> (16 * c)) & 0xffff] += v[j + 4 + c];
    }
  }
  for (; j + C <= m; j += C) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) h[c * kCopyStride + ids[j + c]] += v[j + c];
  }
  for (; j < m; ++j) h[(j % C) * kCopyStride + ids[j]] += v[j];
}

// The same adds, in the same order (so the same sums), with AVX-512 doing the float to
// double conversions 16 at a time into a small buffer: the scalar loop is left with a
// load, an add and a store per entry (its conversions were a third of its instructions;
// 0.80x the time on rows of 4,096 keys).
// (GCC 12 warns about an uninitialised variable inside its own _mm512_cvtps_pd.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <int C>
__attribute__((target("avx512f,avx512bw,avx512vl")))
void accumulate_avx512(const float* v, const uint16_t* ids, int64_t m, double* h) {
  alignas(64) double wide[16];
  int64_t j = 0;
  for (; j + 16 <= m; j += 16) {
    _mm512_store_pd(wide, _mm512_cvtps_pd(_mm256_loadu_ps(v + j)));
    _mm512_store_pd(wide + 8, _mm512_cvtps_pd(_mm256_loadu_ps(v + j + 8)));
    uint64_t w[4];
    std::memcpy(w, ids + j, sizeof w);
#pragma GCC unroll 16
    for (int c = 0; c < 16; ++c) h[(c % C) * kCopyStride + ((w[c / 4] >> (16 * (c % 4))) & 0xffff)] += wide[c];
  }
  accumulate<C>(v + j, ids + j, m - j, h);  // the last entries (j is a multiple of C)
}
#pragma GCC diagnostic pop

void accumulate_any(int copies, const float* v, const uint16_t* ids, int64_t m, double* h) {
  static_assert(16 % kCopies == 0);  // entry j goes to copy j mod kCopies in both loops
  const bool wide = cpu::active_at_least(cpu::Level::Avx512);
  if (copies == 1) return wide ? accumulate_avx512<1>(v, ids, m, h) : accumulate<1>(v, ids, m, h);
  return wide ? accumulate_avx512<kCopies>(v, ids, m, h) : accumulate<kCopies>(v, ids, m, h);
}

// folded[b] = the mass of bucket b for b <= reach (< last), folded[last] = the tail cells';
// the copies are left zero.
__attribute__((target_clones("avx512f", "avx2", "default")))
void fold_copies(double* copies, uint32_t reach, uint32_t last, double* folded) {
  for (uint32_t b = 0; b <= reach; ++b) {
    folded[b] = copies[b];
    copies[b] = 0;
  }
  for (int c = 1; c < kCopies; ++c) {
    double* h = copies + c * kCopyStride;
    for (uint32_t b = 0; b <= reach; ++b) {
      folded[b] += h[b];
      h[b] = 0;
    }
  }
  double tail = 0;
  for (int c = 0; c < kCopies; ++c)
    for (int t = 0; t < kTailCells; ++t) {
      tail += copies[c * kCopyStride + last + 1 + t];
      copies[c * kCopyStride + last + 1 + t] = 0;
    }
  folded[last] = tail;
}

// Entries of bucket b[s] (s < ns; tail cells count as bucket `last`) to out[s] (each with
// 16 floats of slack), their number to size[s], and the number of entries in buckets of
// larger values to above[s]. `stage` has room for m + 32 indices.
// AVX-512, branch free per 32 ids: the counts of ids below each b[s] in 16-bit lanes, and
// the indices of any boundary bucket's entries compressed to `stage` (the row itself is
// not read); the staged entries (few) are then dealt to their buckets by their ids.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <int NS>
__attribute__((target("avx512f,avx512bw,avx512vl")))
void gather_level0_avx512(const float* v, const uint16_t* ids, int64_t m, uint32_t last, const uint32_t* b,
                          float* const* out, int64_t* size, int64_t* above, int32_t* stage) {
  const __m512i vlast = _mm512_set1_epi16(short(last));
  const __m512i minus1 = _mm512_set1_epi16(-1);
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i sixteen = _mm512_set1_epi32(16);
  __m512i want[NS], cnt[NS];
  int64_t up[NS];
  for (int s = 0; s < NS; ++s) want[s] = _mm512_set1_epi16(short(b[s])), up[s] = 0;
  int64_t k = 0, j = 0;
  constexpr int64_t kBlock = 32 * 32767;  // 16-bit lanes (summed as signed): at most 32,767 counts each
  while (j + 32 <= m) {
    const int64_t j_end = std::min(m, j + kBlock);
    for (int s = 0; s < NS; ++s) cnt[s] = _mm512_setzero_si512();
    for (; j + 32 <= j_end; j += 32) {
      const __m512i id = _mm512_min_epu16(_mm512_loadu_si512(ids + j), vlast);
      __mmask32 hit = 0;
#pragma GCC unroll 4
      for (int s = 0; s < NS; ++s) {
        cnt[s] = _mm512_mask_sub_epi16(cnt[s], _mm512_cmplt_epu16_mask(id, want[s]), cnt[s], minus1);
        hit |= _mm512_cmpeq_epi16_mask(id, want[s]);
      }
      const __mmask16 h0 = __mmask16(hit), h1 = __mmask16(hit >> 16);
      const __m512i jj = _mm512_add_epi32(_mm512_set1_epi32(int(j)), lane);
      _mm512_storeu_si512(stage + k, _mm512_maskz_compress_epi32(h0, jj));
      k += __builtin_popcount(h0);
      _mm512_storeu_si512(stage + k, _mm512_maskz_compress_epi32(h1, _mm512_add_epi32(jj, sixteen)));
      k += __builtin_popcount(h1);
    }
    for (int s = 0; s < NS; ++s) up[s] += _mm512_reduce_add_epi32(_mm512_madd_epi16(cnt[s], ones));
  }
  for (; j < m; ++j) {
    const uint32_t id = std::min<uint32_t>(ids[j], last);
    bool any = false;
    for (int s = 0; s < NS; ++s) {
      up[s] += id < b[s];
      any |= id == b[s];
    }
    stage[k] = int32_t(j);
    k += any;
  }
  int64_t n[NS];
  for (int s = 0; s < NS; ++s) n[s] = 0;
  for (int64_t x = 0; x < k; ++x) {
    const float val = v[stage[x]];
    const uint32_t id = std::min<uint32_t>(ids[stage[x]], last);
#pragma GCC unroll 4
    for (int s = 0; s < NS; ++s) {
      out[s][n[s]] = val;
      n[s] += id == b[s];
    }
  }
  for (int s = 0; s < NS; ++s) size[s] = n[s], above[s] = up[s];
}
#pragma GCC diagnostic pop

void gather_level0(const float* v, const uint16_t* ids, int64_t m, uint32_t last, const uint32_t* b, int ns,
                   float* const* out, int64_t* size, int64_t* above, int32_t* stage) {
  if (cpu::active_at_least(cpu::Level::Avx512)) {
    switch (ns) {
      case 1: return gather_level0_avx512<1>(v, ids, m, last, b, out, size, above, stage);
      case 2: return gather_level0_avx512<2>(v, ids, m, last, b, out, size, above, stage);
      case 3: return gather_level0_avx512<3>(v, ids, m, last, b, out, size, above, stage);
      default: return gather_level0_avx512<4>(v, ids, m, last, b, out, size, above, stage);
    }
  }
  int64_t k[4] = {0, 0, 0, 0}, up[4] = {0, 0, 0, 0};
  for (int64_t j = 0; j < m; ++j) {
    const uint32_t id = std::min<uint32_t>(ids[j], last);
    for (int s = 0; s < ns; ++s) {
      up[s] += id < b[s];
      out[s][k[s]] = v[j];
      k[s] += id == b[s];
    }
  }
  for (int s = 0; s < ns; ++s) size[s] = k[s], above[s] = up[s];
}

// select_counts at level 0 (same contract), for rows longer than kSmall. largest_bits:
// the bit pattern of v's largest entry.
void select_top(const float* v, int64_t m, const double* targets, int nt, int64_t* out, int shift, SelectScratch& sc,
                uint32_t largest_bits) {
  const uint32_t bins = 1u << (27 - shift), last = bins - 1;
  const uint32_t top = largest_bits >> shift;
  grow(sc.ids, m);
  uint16_t* ids = sc.ids.data();
  const IdStats st = level0_ids(v, m, top, shift, last, ids);
  // Buckets 0..reach hold entries (reach < last: the catch-all bucket stays empty).
  const uint32_t reach = st.tail ? last : st.deepest;
  // (Both allocated before any add: nothing may throw while the copies hold this row.)
  if (sc.copies.empty()) sc.copies.assign(size_t(kCopies * kCopyStride), 0.0);  // zero from here on
  sc.folded.resize(size_t(kMaxBins));
  double* h = sc.copies.data();
  const uint32_t reach0 = std::min(reach, last - 1);  // buckets below the catch-all
  // Rows whose neighbours rarely share a bucket add to one histogram (no copies to sum);
  // the others spread their adds over kCopies copies, summed afterwards.
  const bool one_copy = st.same * kOneCopyRatio < m;
  double* mass;
  if (one_copy) {
    accumulate_any(1, v, ids, m, h);
    double tail = 0;
    for (int t = 0; t < kTailCells; ++t) {
      tail += h[last + 1 + t];
      h[last + 1 + t] = 0;
    }
    h[last] = tail;  // (no id is `last`)
    mass = h;
  } else {
    accumulate_any(kCopies, v, ids, m, h);
    fold_copies(h, reach0, last, sc.folded.data());
    mass = sc.folded.data();
  }
  auto bucket_mass = [&](uint32_t b) { return mass[b]; };
  // Boundary bucket of each target, and the mass strictly above it.
  int bucket[4];
  double above_mass[4];
  {
    double cum = 0;
    int i = 0;
    // Blocks of 8 buckets that cannot hold the next crossing are skipped with one chained
    // add; the margin keeps the skip safe against the few ulps by which the block's
    // pairwise sum and a sequential one can differ.
    constexpr uint32_t kBlock = 8;
    uint32_t b = 0;
    while (b <= reach && i < nt) {
      if (b + kBlock <= reach) {
        const double* p = mass + b;
        const double blk = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        if (cum + blk < targets[i] * (1 - 1e-12)) {
          cum += blk;
          b += kBlock;
          continue;
        }
      }
      const double bm = bucket_mass(b);
      while (i < nt && bm > 0 && cum + bm >= targets[i]) {
        bucket[i] = int(b);
        above_mass[i] = cum;
        ++i;
      }
      cum += bm;
      ++b;
    }
    if (i < nt && reach < last) {  // the catch-all bucket (tail cells) may still cross
      const double bm = bucket_mass(last);
      while (i < nt && bm > 0 && cum + bm >= targets[i]) {
        bucket[i] = int(last);
        above_mass[i] = cum;
        ++i;
      }
    }
    for (; i < nt; ++i) {
      bucket[i] = -1;  // not reached
      out[i] = m + 1;
    }
  }
  if (one_copy) {  // leave the histogram zero for the next row
    std::fill_n(h, reach0 + 1, 0.0);
    h[last] = 0;
  }
  int n_slots = 0, slot_of_target[4];
  uint32_t slot_bucket[4];
  for (int i = 0; i < nt; ++i) {
    if (bucket[i] < 0) continue;
    int s = 0;
    while (s < n_slots && slot_bucket[s] != uint32_t(bucket[i])) ++s;
    if (s == n_slots) slot_bucket[n_slots++] = uint32_t(bucket[i]);
    slot_of_target[i] = s;
  }
  if (n_slots == 0) return;
  // Gather every boundary bucket in one pass (room for all of the row in each: a bucket
  // can hold every entry).
  int64_t slot_size[4], slot_above[4];
  std::vector<float>& gathered = sc.gathered[0];
  grow(gathered, int64_t(n_slots) * (m + 16));
  float* dst[4];
  for (int s = 0; s < n_slots; ++s) dst[s] = gathered.data() + size_t(s) * size_t(m + 16);
  grow(sc.stage, m + 32);
  gather_level0(v, ids, m, last, slot_bucket, n_slots, dst, slot_size, slot_above, sc.stage.data());
  for (int s = 0; s < n_slots; ++s) {
    double sub_targets[4];
    int which[4], k = 0;
    for (int i = 0; i < nt; ++i)
      if (bucket[i] >= 0 && slot_of_target[i] == s) {
        which[k] = i;
        sub_targets[k++] = targets[i] - above_mass[i];
      }
    int64_t sub_out[4];
    // The catch-all bucket is not ordered by the next bits: exact select (level 2).
    select_counts(dst[s], slot_size[s], sub_targets, k, sub_out, slot_bucket[s] == last ? 2 : 1, shift - 8, sc);
    for (int x = 0; x < k; ++x) {
      const int i = which[x];
      out[i] = sub_out[x] <= slot_size[s] ? slot_above[s] + sub_out[x] : -1;  // -1: rounding, redo
    }
  }
}

}  // namespace

void widths(const float* probs, int64_t n, const double* levels, int n_levels, int32_t* out,
            std::vector<float>& scratch, const float* largest) {
  if (n <= kSmall) {
    widths_quickselect(probs, n, levels, n_levels, out, scratch);
    return;
  }
  thread_local SelectScratch sc;
  // (One pass over the row when the caller does not know its largest entry, for all levels.)
  const uint32_t largest_bits = largest ? float_bits(*largest) : max_bits(probs, n);
  int64_t counts[4];
  for (int start = 0; start < n_levels; start += 4) {
    const int nt = std::min(4, n_levels - start);
    // Finer level-0 buckets pay for clearing their histogram only on longer rows.
    select_top(probs, n, levels + start, nt, counts, n >= 1024 ? 17 : 19, sc, largest_bits);
    bool redo = false;
    for (int i = 0; i < nt; ++i) {
      redo |= counts[i] < 0;
      out[start + i] = static_cast<int32_t>(std::min<int64_t>(counts[i] < 0 ? n : counts[i], n));
    }
    // A bucket's double sum and the same entries summed inside it may differ in the last
    // bit; when that makes a level unreachable inside its bucket, decide on the whole row.
    if (redo) widths_quickselect(probs, n, levels + start, nt, out + start, scratch);
  }
}

namespace {
// ln(x) for normal positive floats, |error| < 1e-7 absolute on the mantissa part; branch
// free so that the entropy loop vectorises. x = 2^e * m with m in [sqrt(1/2), sqrt(2)).
inline float fast_log(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  int32_t e = int32_t((bits >> 23) & 0xff) - 127;
  uint32_t mbits = (bits & 0x7fffff) | 0x3f800000u;  // m in [1, 2)
  float m = std::bit_cast<float>(mbits);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float s = (m - 1.f) / (m + 1.f);
  const float s2 = s * s;
  const float poly = s * (2.f + s2 * (0.666666667f + s2 * (0.4f + s2 * (0.285714286f + s2 * 0.222222222f))));
  return float(e) * 0.693147181f + poly;
}
}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default")))
double entropy(const float* probs, int64_t n) {
  double h = 0;
#pragma omp simd reduction(+ : h)
  for (int64_t j = 0; j < n; ++j) {
    const float p = probs[j];
    // fast_log needs a normal input: entries <= 1e-30 (zeros, subnormals) are evaluated as
    // p ln(1e-30), which is 0 for p = 0 and below 7e-29 otherwise. Branch free, so the loop
    // vectorises (a conditional division would not).
    const float pl = p * fast_log(p > 1e-30f ? p : 1e-30f);
    h -= double(pl);
  }
  return h;
}

// The sum of v[0..n) in double (vectorised: the order of the adds is the SIMD level's).
__attribute__((target_clones("avx512f", "avx2", "default")))
double segment_sum(const float* v, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += double(v[j]);
  return s;
}

namespace {

// How many entries of v exceed x, counting no further than `enough` (blocks of 64 entries:
// a row's first few blocks usually settle it).
__attribute__((target_clones("avx512f", "avx2", "default")))
int64_t count_greater(const float* v, int64_t n, float x, int64_t enough) {
  int64_t c = 0, j = 0;
  for (; j + 64 <= n && c < enough; j += 64) {
    int32_t b = 0;
    for (int jj = 0; jj < 64; ++jj) b += v[j + jj] > x;
    c += b;
  }
  for (; j < n && c < enough; ++j) c += v[j] > x;
  return c;
}
}  // namespace

RowMetrics compute_row_metrics(const float* probs, const int32_t* key_pos, int64_t n,
                               int64_t query_pos, std::vector<float>& scratch, const double* known_entropy,
                               int64_t window, const float* largest) {
  RowMetrics m;
  m.query = static_cast<int32_t>(query_pos);
  m.n_keys = static_cast<int32_t>(n);
  m.visible = static_cast<int32_t>(visible_keys(query_pos, window));
  m.sink_visible = query_pos < m.visible;  // key 0 lies inside the window
  widths(probs, n, kWidthLevels.data(), int(kWidthLevels.size()), m.width.data(), scratch, largest);
  m.entropy = known_entropy ? *known_entropy : entropy(probs, n);
  auto pos = [&](int64_t j) -> int64_t { return key_pos ? key_pos[j] : j; };
  if (m.sink_visible && n > 0 && pos(0) == 0) {
    const float a0 = probs[0];
    m.sink_mass = a0;
    const int64_t larger = count_greater(probs + 1, n - 1, a0, 5);  // (only 0 and < 5 matter)
    m.sink_argmax = larger == 0;
    m.sink_top5 = larger < 5;
  }
  // Recency: keys with position > t - w.
  if (key_pos == nullptr && n - 1 <= query_pos) {
    // Slot j is position j: window w is the slots from t - w + 1 on, summed segment by
    // segment (vectorised) from the newest.
    double acc = 0;
    int64_t hi = n;
    for (size_t wi = 0; wi < kRecencyWindows.size(); ++wi) {
      const int64_t lo = std::clamp<int64_t>(query_pos - kRecencyWindows[wi] + 1, 0, hi);
      acc += segment_sum(probs + lo, hi - lo);
      m.recency[wi] = acc;
      hi = lo;
    }
    return m;
  }
  double acc = 0;
  size_t wi = 0;
  const int max_w = kRecencyWindows.back();
  int64_t j = n - 1;
  for (; j >= 0 && pos(j) > query_pos - max_w; --j) {
    while (wi < kRecencyWindows.size() && pos(j) <= query_pos - kRecencyWindows[wi])
      m.recency[wi++] = acc;
    acc += probs[j];
  }
  for (; wi < kRecencyWindows.size(); ++wi) m.recency[wi] = acc;
  return m;
}

}  // namespace attnsparse::analysis
