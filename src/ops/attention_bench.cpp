// The fp32 FMA peak: each thread runs 12 independent FMA chains (enough to cover the
// FMA latency on two pipes) in registers, no memory traffic.
#include "ops/attention_bench.h"
#include "core/cpu.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace attnsparse::ops {

namespace {

constexpr int kChains = 12;

// The same loop at three widths (GCC vector extensions need a literal vector size).
#define ATTN_FMA_LOOP(NAME, W, TARGET)                                           \
  TARGET double NAME(int64_t iters, float* sink) {                               \
    typedef float vec __attribute__((vector_size(W * 4)));                       \
    vec acc[kChains];                                                            \
    const vec a = vec{} + 0.999999f, b = vec{} + 1e-7f;                          \
    for (int c = 0; c < kChains; ++c) acc[c] = vec{} + static_cast<float>(c);    \
    for (int64_t it = 0; it < iters; ++it) {                                     \
      _Pragma("GCC unroll 12") for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b; \
    }                                                                            \
    vec s = acc[0];                                                              \
    for (int c = 1; c < kChains; ++c) s += acc[c];                               \
    float total = 0;                                                             \
    for (int l = 0; l < W; ++l) total += s[l];                                   \
    *sink = total;                                                               \
    return 2.0 * W * kChains * static_cast<double>(iters);                       \
  }

ATTN_FMA_LOOP(fma_avx512, 16, __attribute__((target("avx512f,fma"))))
ATTN_FMA_LOOP(fma_avx2, 8, __attribute__((target("avx2,fma"))))
ATTN_FMA_LOOP(fma_sse2, 4, )
#undef ATTN_FMA_LOOP

double run(int64_t iters, float* sink) {
  if (cpu::active_at_least(cpu::Level::Avx512)) return fma_avx512(iters, sink);
  if (cpu::active_at_least(cpu::Level::Avx2)) return fma_avx2(iters, sink);
  return fma_sse2(iters, sink);
}

}  // namespace

double measure_fma_peak_gflops(int threads, double seconds) {
  const int n_threads = threads > 0 ? threads : omp_get_max_threads();
  // Calibrate the iteration count on one thread.
  float sink = 0;
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    run(iters, &sink);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0.02) {
      iters = static_cast<int64_t>(iters * seconds / dt) + 1;
      break;
    }
    iters *= 4;
  }
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double flops = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(n_threads) reduction(+ : flops)
    {
      float local = 0;
      flops += run(iters, &local);
      if (local == 12345.f) sink += local;
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, flops / dt / 1e9);
  }
  (void)sink;
  return best;
}

}  // namespace attnsparse::ops
