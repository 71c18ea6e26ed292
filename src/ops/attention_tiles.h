// Internal to the attention core: per-row, per-tile decisions about which keys a query
// visits (skip the tile, take it whole, or mask inside it), shared by all SIMD variants.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#include "ops/attention.h"
#include "ops/keyset.h"

namespace attnsparse::ops::detail {

enum TileClass : int8_t { kSkip = 0, kFull = 1, kPartial = 2 };

constexpr int kTileKeys = 64;  // keys per tile

// A tile of cache slots [j0, j1) whose positions lie in [pmin, pmax].
struct Tile {
  int64_t j0, j1, pmin, pmax;
};

// ks is already the set of the row's head (never PerHead). Conservative: kPartial is
// always correct, kSkip/kFull only when certain.
inline TileClass classify(const KeySet* ks, int head, int64_t i, int64_t t, const Tile& tile) {
  if (tile.pmin > t) return kSkip;
  const bool causal_full = tile.pmax <= t;
  if (ks == nullptr) return causal_full ? kFull : kPartial;
  switch (ks->kind()) {
    case KeySet::Kind::All: return causal_full ? kFull : kPartial;
    case KeySet::Kind::Range: {
      const int64_t g = ks->sink(), w = ks->window_size();
      if (w <= 0) return causal_full ? kFull : kPartial;
      const bool none = tile.pmin >= g && tile.pmax <= t - w;
      if (none) return kSkip;
      const bool every = tile.pmax < g || tile.pmin > t - w;
      return every && causal_full ? kFull : kPartial;
    }
    case KeySet::Kind::Dilated: {
      const int64_t r = ks->rate(), w = ks->window_size();
      if (t - tile.pmax > r * (w - 1)) return kSkip;
      if (r == 1 && t - tile.pmin <= w - 1 && causal_full) return kFull;
      return kPartial;
    }
    case KeySet::Kind::Strided: {
      const int64_t l = ks->rate();
      if ((l == 1 || t - tile.pmin < l) && causal_full) return kFull;
      return kPartial;
    }
    case KeySet::Kind::BlockLocal: {
      const int64_t lo = t / ks->rate() * ks->rate();  // first position of t's block
      if (tile.pmax < lo) return kSkip;
      return tile.pmin >= lo && causal_full ? kFull : kPartial;
    }
    case KeySet::Kind::BlockMask: {
      const int64_t qb = t / ks->q_block() - ks->q_base();
      const int64_t kb0 = tile.j0 / ks->k_block(), kb1 = (tile.j1 - 1) / ks->k_block();
      int64_t set = 0;
      for (int64_t kb = kb0; kb <= kb1; ++kb) set += ks->block_bit(head, qb, kb);
      if (set == 0) return kSkip;
      return set == kb1 - kb0 + 1 && causal_full ? kFull : kPartial;
    }
    case KeySet::Kind::IndexList: {
      const int32_t* b = ks->row_begin(head, i);
      const int32_t* e = ks->row_end(head, i);
      const int32_t* x = std::lower_bound(b, e, static_cast<int32_t>(tile.j0));
      return x != e && *x < tile.j1 ? kPartial : kSkip;
    }
    case KeySet::Kind::PerHead: return kPartial;
  }
  return kPartial;
}

// The class of a tile after the layer's native sliding window (keys at p visible from t
// only if t - p < window) is intersected with the row's class `c`.
inline TileClass window_class(TileClass c, int64_t t, const Tile& tile, int64_t window) {
  if (c == kSkip || t - tile.pmax >= window) return kSkip;
  return t - tile.pmin >= window ? kPartial : c;
}

// Sets s[jj] = -inf for the slots j0 + jj (jj < n) outside the native window of t.
inline void mask_window(int64_t t, int64_t j0, int64_t n, const int32_t* key_pos, int64_t window,
                        float* s) {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t jj = 0; jj < n; ++jj)
    if (t - (key_pos ? key_pos[j0 + jj] : j0 + jj) >= window) s[jj] = ninf;
}

// A range of slots [lo, hi) that no query at positions [t_lo, t_hi] visits (empty when
// lo >= hi). Only for a set shared by all heads with slot j = position j.
struct KeySetGap {
  int64_t lo = 0, hi = 0;
};
inline KeySetGap job_gap(const KeySet* ks, const int32_t* key_pos, int64_t t_lo, int64_t t_hi,
                         int64_t window = 0) {
  KeySetGap g;
  if (key_pos != nullptr) return g;
  if (window > 0) g.hi = t_lo - window + 1;  // slots [0, hi) are outside every row's window
  if (ks != nullptr) switch (ks->kind()) {
    case KeySet::Kind::Range:
      if (ks->window_size() > 0) {
        const int64_t hi = t_lo - ks->window_size() + 1;
        // The set's gap [sink, hi) joined with the window's [0, g.hi) when they touch.
        if (ks->sink() <= g.hi) {
          g.hi = std::max(g.hi, hi);
        } else if (hi > g.hi) {
          g.lo = ks->sink();
          g.hi = hi;
        }
      }
      break;
    case KeySet::Kind::BlockLocal: g.hi = std::max(g.hi, t_lo / ks->rate() * ks->rate()); break;
    case KeySet::Kind::Dilated: g.hi = std::max(g.hi, t_lo - ks->rate() * (ks->window_size() - 1)); break;
    default: break;
  }
  // Round inwards to whole tiles.
  g.lo = (std::max<int64_t>(g.lo, 0) + kTileKeys - 1) / kTileKeys * kTileKeys;
  g.hi = g.hi / kTileKeys * kTileKeys;
  (void)t_hi;
  return g;
}

// Sets s[jj] = -inf for the slots j0 + jj (jj < n) the row does not visit.
inline void mask_partial(const KeySet* ks, int head, int64_t i, int64_t t, int64_t j0, int64_t n,
                         const int32_t* key_pos, float* s) {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  if (ks != nullptr && ks->kind() == KeySet::Kind::IndexList) {
    const int32_t* b = ks->row_begin(head, i);
    const int32_t* e = ks->row_end(head, i);
    const int32_t* x = std::lower_bound(b, e, static_cast<int32_t>(j0));
    for (int64_t jj = 0; jj < n; ++jj) {
      const int64_t j = j0 + jj;
      while (x != e && *x < j) ++x;
      const bool in = x != e && *x == j && (key_pos ? key_pos[j] : j) <= t;
      if (!in) s[jj] = ninf;
    }
    return;
  }
  // Common kinds inline (this runs for every partial tile of every row).
  const KeySet::Kind kind = ks ? ks->kind() : KeySet::Kind::All;
  if (kind == KeySet::Kind::All || kind == KeySet::Kind::Range || kind == KeySet::Kind::BlockLocal) {
    int64_t sink = 0, lo = 0;  // visit p <= t and (p < sink or p >= lo)
    if (kind == KeySet::Kind::Range && ks->window_size() > 0) {
      sink = ks->sink();
      lo = t - ks->window_size() + 1;
    } else if (kind == KeySet::Kind::BlockLocal) {
      lo = t / ks->rate() * ks->rate();
    }
    for (int64_t jj = 0; jj < n; ++jj) {
      const int64_t p = key_pos ? key_pos[j0 + jj] : j0 + jj;
      if (!(p <= t && (p < sink || p >= lo))) s[jj] = ninf;
    }
    return;
  }
  if (kind == KeySet::Kind::Strided || kind == KeySet::Kind::Dilated) {
    const int64_t rate = ks->rate(), span = kind == KeySet::Kind::Dilated ? rate * (ks->window_size() - 1) : -1;
    const int64_t local = kind == KeySet::Kind::Strided ? rate : 1;  // strided: t - p < l always visits
    for (int64_t jj = 0; jj < n; ++jj) {
      const int64_t d = t - (key_pos ? key_pos[j0 + jj] : j0 + jj);
      const bool in = d >= 0 && (d < local || d % rate == 0) && (span < 0 || d <= span);
      if (!in) s[jj] = ninf;
    }
    return;
  }
  for (int64_t jj = 0; jj < n; ++jj) {
    const int64_t j = j0 + jj;
    const int64_t p = key_pos ? key_pos[j] : j;
    const bool in = ks->contains(head, i, t, j, p);
    if (!in) s[jj] = ninf;
  }
}

// Per-thread buffers of the tiled core (sized for one block of rows).
struct Scratch {
  float* q = nullptr;    // [rows][dp] queries, pre-scaled
  float* o = nullptr;    // [rows][dp] unnormalised outputs
  float* s = nullptr;    // [rows][kTileKeys] scores, then probabilities
  float* kt = nullptr;   // [head_dim][kTileKeys] the K tile, transposed
  float* vp = nullptr;   // [kTileKeys][dp] the V tile when it must be packed
  float* m = nullptr;    // [rows] running max (log2 domain)
  float* l = nullptr;    // [rows] running sum
  int8_t* cls = nullptr; // [rows] tile class of each row
  // Observer only: each row's visited slots and raw scores, O(n_kv) per row. A row whose
  // visited slots so far are exactly 0, 1, ..., n-1 (dense causal attention) writes no
  // slots (obs_dense[r] = 1) and is handed `iota` (slot j at index j) instead.
  float* obs_s = nullptr;
  int32_t* obs_j = nullptr;
  int64_t* obs_n = nullptr;
  int8_t* obs_dense = nullptr;
  const int32_t* iota = nullptr;  // [n_kv] 0, 1, 2, ...
  float* probs = nullptr;  // [kObservedBlock][probs_stride] rows' probabilities
  int64_t probs_stride = 0;
};

// One unit of work: a KV head and a block of query tokens [i0, i1); rows are the
// (head in group, token) pairs, row r = hh * (i1 - i0) + (i - i0).
struct Job {
  const AttentionShape* s;
  const AttentionArgs* a;
  const KeySet* keys;  // top-level set (may be PerHead or null)
  RowObserver* observer;
  int kvh;
  int64_t i0, i1;
  // Tiles packed once for all query blocks (nullptr: each job packs its own), for the KV
  // heads packed_kvh0, packed_kvh0 + 1, ...: [head - packed_kvh0][tile].
  const float* k_packed = nullptr;
  const float* v_packed = nullptr;
  int64_t n_tiles = 0;
  int packed_kvh0 = 0;
  // Index lists shared by the heads (one query per job): the visible listed slots, in
  // increasing order; tiles are chunks of this list.
  const int32_t* list = nullptr;
  int64_t list_len = 0;
};

}  // namespace attnsparse::ops::detail
