// Helpers for attention benchmarks: the machine's fp32 FMA peak measured with a register
// FMA loop (the yardstick for the core's GFLOP/s), and the FLOPs of causal attention.
#pragma once
#include <cstdint>

namespace attnsparse::ops {

// GFLOP/s of independent fp32 FMA chains on `threads` threads (0 = OpenMP default) in the
// widest SIMD the CPU runs (AVX-512, AVX2+FMA or SSE2 mul+add), for about `seconds`.
double measure_fma_peak_gflops(int threads, double seconds = 0.3);

// FLOPs of attention where the queries visit `visited_keys` (query, key) pairs in total,
// per query head: 2 * head_dim for q.k and 2 * head_dim for p*v per pair.
inline double attention_flops(double visited_keys, int head_dim) { return 4.0 * head_dim * visited_keys; }

// Causal pairs of a prefill of n tokens: n (n + 1) / 2.
inline double causal_pairs(int64_t n) { return 0.5 * static_cast<double>(n) * (n + 1); }

}  // namespace attnsparse::ops
