// The attention core: tiled online softmax (flash style) over key tiles with GQA, sparse
// key sets and an optional row observer, dispatched at run time to an AVX-512, AVX2 or
// SSE2 build of the same kernel (ops/attention_kernel.h). attention_reference is the
// naive definition the tests compare against.
#include "ops/attention.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "core/scratch.h"
#include "ops/attention_tiles.h"
#include "ops/keyset.h"
#include "ops/matmul.h"

// ---- The kernel, three times. ----
// GCC 12 warns about _mm512_undefined_ps() inside its own shuffle intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#define ATTN_NS isa_avx512
#define ATTN_W 16
#include "ops/attention_kernel.h"
#undef ATTN_NS
#undef ATTN_W
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define ATTN_NS isa_avx2
#define ATTN_W 8
#include "ops/attention_kernel.h"
#undef ATTN_NS
#undef ATTN_W
#pragma GCC pop_options

#define ATTN_NS isa_sse2
#define ATTN_W 4
#include "ops/attention_kernel.h"
#undef ATTN_NS
#undef ATTN_W
#pragma GCC diagnostic pop

namespace attnsparse::ops {

namespace {

using detail::Job;
using detail::Scratch;

enum class Isa { Avx512 = 0, Avx2 = 1, Sse2 = 2 };

// The kernel variant of the active level (core/cpu.h).
Isa current_isa() {
  const cpu::Level l = cpu::active();
  return l >= cpu::Level::Avx512 ? Isa::Avx512 : l == cpu::Level::Avx2 ? Isa::Avx2 : Isa::Sse2;
}

void validate(const AttentionShape& s, const AttentionArgs& a, const KeySet* keys) {
  if (s.n_q < 0 || s.n_kv < 0) fail("attention: negative sizes (n_q {}, n_kv {})", s.n_q, s.n_kv);
  if (s.n_head < 1 || s.n_kv_head < 1 || s.n_head % s.n_kv_head != 0)
    fail("attention: {} query heads are not a multiple of {} kv heads", s.n_head, s.n_kv_head);
  if (s.head_dim < 1 || s.head_dim > 256) fail("attention: head_dim {} outside 1..256", s.head_dim);
  if (s.q_pos0 < 0) fail("attention: negative query position {}", s.q_pos0);
  if (s.n_q > 0 && (a.q == nullptr || a.out == nullptr)) fail("attention: null q or out");
  if (s.n_kv > 0 && (a.k == nullptr || a.v == nullptr) &&
      (a.typed == nullptr || a.typed->k == nullptr || a.typed->v == nullptr || a.typed->decode == nullptr))
    fail("attention: null k or v");
  if (!std::isfinite(s.scale)) fail("attention: scale is not finite");
  if (!(s.softcap >= 0.f) || !std::isfinite(s.softcap))
    fail("attention: softcap must be a finite number >= 0, got {}", s.softcap);
  if (s.window < 0) fail("attention: negative window {}", s.window);
  if (keys) keys->validate(s.n_head, s.n_q);
}

constexpr int kTargetRows = 32;  // rows (heads of a group x tokens) per job
// Observed jobs take twice the rows while their score rows stay within kObservedBudget
// bytes per thread: each job streams every K/V tile of its KV head, and the observed
// path's per-row buffers (n_kv scores per row) already push those tiles out of L2, so
// fewer, larger jobs read them half as often.
constexpr int kObservedRows = 64;
constexpr int64_t kObservedBudget = int64_t{32} << 20;

int64_t rows_target(int64_t n_kv, bool observe) {
  if (observe && int64_t{kObservedRows} * n_kv * int64_t(sizeof(float) + sizeof(int32_t)) <= kObservedBudget)
    return kObservedRows;
  return kTargetRows;
}

// Whether a call of about `macs` multiply-adds is worth a parallel region: tiny calls
// (a decode step of a small model, one query of the eviction simulator) run faster on the
// calling thread than waking the others, and do not stall when the machine is busy.
bool worth_threads(double macs) { return macs >= 1 << 18; }

// This thread's buffers for jobs of `rows` rows. They outlive the call (OpenMP keeps its
// threads): decode steps and small chunks would otherwise pay an allocation, page faults
// and zeroing each time. Nothing relies on their previous contents.
Scratch& thread_scratch(int64_t rows, int64_t dp, int64_t n_kv, bool observe) {
  const int64_t tk = detail::kTileKeys;
  static thread_local std::vector<float> buf, obs_s, probs;
  static thread_local std::vector<int8_t> cls, obs_dense;
  static thread_local std::vector<int32_t> obs_j, iota;
  static thread_local std::vector<int64_t> obs_n;
  static thread_local Scratch sc;
  grow(buf, rows * dp * 2 + rows * tk + dp * tk + tk * dp + rows * 2 + 64);
  grow(cls, rows);
  float* p = buf.data();
  sc.q = p; p += rows * dp;
  sc.o = p; p += rows * dp;
  sc.s = p; p += rows * tk;
  sc.kt = p; p += dp * tk;
  sc.vp = p; p += tk * dp;
  sc.m = p; p += rows;
  sc.l = p; p += rows;
  sc.cls = cls.data();
  if (observe) {
    grow(obs_s, rows * n_kv + 1);
    grow(obs_j, rows * n_kv + 1);
    grow(obs_n, rows);
    grow(obs_dense, rows);
    const int64_t stride = (n_kv + 31) / 16 * 16;
    grow(probs, RowObserver::kObservedBlock * stride);
    sc.probs_stride = stride;
    if (static_cast<int64_t>(iota.size()) < n_kv) {
      const int64_t from = static_cast<int64_t>(iota.size());
      iota.resize(n_kv);
      for (int64_t j = from; j < n_kv; ++j) iota[j] = static_cast<int32_t>(j);
    }
    sc.obs_s = obs_s.data();
    sc.obs_j = obs_j.data();
    sc.obs_n = obs_n.data();
    sc.obs_dense = obs_dense.data();
    sc.iota = iota.data();
    sc.probs = probs.data();
  }
  return sc;
}

void run_job(Isa isa, const Job& job, Scratch& sc) {
  switch (isa) {
    case Isa::Avx512: job.observer ? isa_avx512::job_observed(job, sc) : isa_avx512::job_plain(job, sc); break;
    case Isa::Avx2: job.observer ? isa_avx2::job_observed(job, sc) : isa_avx2::job_plain(job, sc); break;
    case Isa::Sse2: job.observer ? isa_sse2::job_observed(job, sc) : isa_sse2::job_plain(job, sc); break;
  }
}

void run_tiled(const AttentionShape& s, const AttentionArgs& a, const KeySet* keys,
               RowObserver* observer) {
  const int group = s.n_head / s.n_kv_head;
  const int64_t nt = std::max<int64_t>(1, rows_target(s.n_kv, observer != nullptr) / group);
  const int64_t nblocks = (s.n_q + nt - 1) / nt;
  const int64_t rows = group * nt;
  const int64_t dp = (s.head_dim + 15) / 16 * 16;
  const Isa isa = current_isa();
  // Prefill: several query blocks read every K/V tile, so the tiles are packed once for
  // all of them, one KV head at a time (the packed copy is 1/n_kv_head of the layer's K/V,
  // not all of it). A typed cache is always read through packed tiles (decoded there);
  // a decode step of one query packs every head at once (one job per head).
  const int64_t n_tiles = (s.n_kv + detail::kTileKeys - 1) / detail::kTileKeys;
  const bool pack = (nblocks > 1 || a.typed) && n_tiles > 0;
  const int heads_per_pack = pack && nblocks > 1 ? 1 : s.n_kv_head;
  const int w = isa == Isa::Avx512 ? isa_avx512::simd_width() : isa == Isa::Avx2 ? isa_avx2::simd_width() : isa_sse2::simd_width();
  const int64_t dpw = (s.head_dim + w - 1) / w * w;
  // V is packed when its rows are not SIMD-aligned in place or not f32.
  const bool pack_v = pack;
  const int64_t k_tile = int64_t(s.head_dim) * detail::kTileKeys, v_tile = detail::kTileKeys * dpw;
  std::vector<float> k_packed, v_packed;
  if (pack) {
    k_packed.resize(static_cast<size_t>(heads_per_pack) * n_tiles * k_tile);
    if (pack_v) v_packed.resize(static_cast<size_t>(heads_per_pack) * n_tiles * v_tile);
  }
  const int64_t items = nblocks * heads_per_pack;
#pragma omp parallel if ((items > 1 || pack) && worth_threads(static_cast<double>(s.n_q) * s.n_head * s.n_kv * s.head_dim))
  {
    Scratch& sc = thread_scratch(rows, dp, s.n_kv, observer != nullptr);
    static thread_local std::vector<float> decoded;  // a typed tile's K and V rows
    if (a.typed) grow(decoded, 2 * k_tile);
    for (int g0 = 0; g0 < s.n_kv_head; g0 += heads_per_pack) {
      if (pack) {
#pragma omp for schedule(static)
        for (int64_t x = 0; x < heads_per_pack * n_tiles; ++x) {
          const int g = g0 + static_cast<int>(x / n_tiles);
          const int64_t tile = x % n_tiles;
          float* kp = k_packed.data() + x * k_tile;
          float* vp = pack_v ? v_packed.data() + x * v_tile : nullptr;
          switch (isa) {
            case Isa::Avx512: isa_avx512::pack_kv_tile(s, a, g, tile, kp, vp, decoded.data()); break;
            case Isa::Avx2: isa_avx2::pack_kv_tile(s, a, g, tile, kp, vp, decoded.data()); break;
            case Isa::Sse2: isa_sse2::pack_kv_tile(s, a, g, tile, kp, vp, decoded.data()); break;
          }
        }
      }
      // (The barrier ending the loop above: every tile is packed before a job reads it; the
      // one ending the loop below: no job still reads them when the next head's replace them.)
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < items; ++item) {
        // Latest query blocks (the most keys) first.
        const int64_t b = nblocks - 1 - item / heads_per_pack;
        Job job{&s, &a, keys, observer, g0 + static_cast<int>(item % heads_per_pack), b * nt,
                std::min(s.n_q, (b + 1) * nt)};
        if (pack) {
          job.k_packed = k_packed.data();
          job.v_packed = pack_v ? v_packed.data() : nullptr;
          job.n_tiles = n_tiles;
          job.packed_kvh0 = g0;
        }
        run_job(isa, job, sc);
      }
    }
  }
}

// Index lists shared by all heads: one job per (query, KV head) runs the GQA group's
// heads together over tiles gathered from the query's list (the same micro-kernels as
// dense tiles; the keys are read once per group instead of once per head).
void run_shared_lists(const AttentionShape& s, const AttentionArgs& a, const KeySet& keys, RowObserver* observer) {
  const int group = s.n_head / s.n_kv_head;
  const int64_t items = s.n_q * s.n_kv_head;
  const int64_t dp = (s.head_dim + 15) / 16 * 16;
  const Isa isa = current_isa();
#pragma omp parallel if (items > 1 && worth_threads(static_cast<double>(keys.list_entries()) * s.n_head * s.head_dim))
  {
    Scratch& sc = thread_scratch(group, dp, s.n_kv, observer != nullptr);
    static thread_local std::vector<int32_t> list;
    grow(list, s.n_kv + 1);
#pragma omp for schedule(dynamic, 4)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t i = item / s.n_kv_head;
      Job job{&s, &a, &keys, observer, static_cast<int>(item % s.n_kv_head), i, i + 1};
      int64_t n = 0;
      switch (isa) {
        case Isa::Avx512: n = isa_avx512::visible_list(s, a, keys, i, list.data()); break;
        case Isa::Avx2: n = isa_avx2::visible_list(s, a, keys, i, list.data()); break;
        case Isa::Sse2: n = isa_sse2::visible_list(s, a, keys, i, list.data()); break;
      }
      job.list = list.data();
      job.list_len = n;
      run_job(isa, job, sc);
    }
  }
}

void run_gather(const AttentionShape& s, const AttentionArgs& a, const KeySet& keys,
                RowObserver* observer) {
  const Isa isa = current_isa();
  const int64_t rows = s.n_q * s.n_head;
#pragma omp parallel if (rows > 1 && worth_threads(static_cast<double>(keys.list_entries()) * (keys.heads() == 1 ? s.n_head : 1) * s.head_dim))
  {
    static thread_local std::vector<float> scores;
    static thread_local std::vector<int32_t> slots;
    grow(scores, s.n_kv + 16);
    grow(slots, s.n_kv + 16);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const int head = static_cast<int>(r % s.n_head);
      const int64_t i = r / s.n_head;
      switch (isa) {
        case Isa::Avx512: isa_avx512::gather_row(s, a, keys, observer, head, i, scores.data(), slots.data()); break;
        case Isa::Avx2: isa_avx2::gather_row(s, a, keys, observer, head, i, scores.data(), slots.data()); break;
        case Isa::Sse2: isa_sse2::gather_row(s, a, keys, observer, head, i, scores.data(), slots.data()); break;
      }
    }
  }
}

}  // namespace

const char* attention_isa() {
  switch (current_isa()) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Sse2: return "sse2";
  }
  return "?";
}

void attention_reference(const AttentionShape& s, const AttentionArgs& a, const KeySet* keys,
                         RowObserver* observer) {
  validate(s, a, keys);
  if (s.n_kv > 0 && (a.k == nullptr || a.v == nullptr)) fail("internal: attention_reference needs f32 K/V rows");
  const int group = s.n_head / s.n_kv_head;
#pragma omp parallel
  {
    std::vector<float> p(s.n_kv);
    std::vector<int32_t> slots(s.n_kv);
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int h = 0; h < s.n_head; ++h) {
      for (int64_t i = 0; i < s.n_q; ++i) {
        const int64_t pos = s.q_pos0 + i;
        const float* q = a.q + i * a.q_stride + h * s.head_dim;
        const int kvh = h / group;
        int64_t n = 0;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < s.n_kv; ++j) {
          const int64_t kp = a.key_pos ? a.key_pos[j] : j;
          const bool in = (keys ? keys->contains(h, i, pos, j, kp) : kp <= pos) &&
                          (s.window <= 0 || pos - kp < s.window);
          if (!in) continue;  // the -inf mask: exp(-inf) = 0, dropped from the row
          const float* k = a.k + j * a.k_stride + kvh * s.head_dim;
          double dot = 0;
          for (int d = 0; d < s.head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
          float score = static_cast<float>(dot * s.scale);
          if (s.softcap > 0.f) score = s.softcap * std::tanh(score / s.softcap);
          p[n] = score;
          slots[n] = static_cast<int32_t>(j);
          mx = std::max(mx, p[n]);
          ++n;
        }
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(p[j]) - mx);
        std::vector<double> o(s.head_dim, 0.0);
        for (int64_t j = 0; j < n; ++j) {
          p[j] = static_cast<float>(std::exp(static_cast<double>(p[j]) - mx) / sum);
          const float* v = a.v + slots[j] * a.v_stride + kvh * s.head_dim;
          for (int d = 0; d < s.head_dim; ++d) o[d] += static_cast<double>(p[j]) * v[d];
        }
        float* out = a.out + i * a.out_stride + h * s.head_dim;
        for (int d = 0; d < s.head_dim; ++d) out[d] = static_cast<float>(o[d]);
        if (observer) observer->on_row(h, pos, p.data(), slots.data(), n);
      }
    }
  }
}

void attention(const AttentionShape& s, const AttentionArgs& args, const KeySet* keys,
               RowObserver* observer) {
  validate(s, args, keys);
  if (s.n_q == 0) return;
  // A cache whose slot j holds position j (no eviction yet) takes the faster paths.
  AttentionArgs a = args;
  if (a.key_pos) {
    bool identity = true;
    for (int64_t j = 0; j < s.n_kv && identity; ++j) identity = a.key_pos[j] == j;
    if (identity) a.key_pos = nullptr;
  }
  if (keys && keys->kind() == KeySet::Kind::IndexList) {
    if (a.k == nullptr || a.v == nullptr) fail("internal: attention on index lists needs f32 K/V rows");
    if (keys->heads() == 1) run_shared_lists(s, a, *keys, observer);
    else run_gather(s, a, *keys, observer);
    return;
  }
  run_tiled(s, a, keys, observer);
}

}  // namespace attnsparse::ops
