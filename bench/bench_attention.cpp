// Google Benchmark cases for the attention core and the policies (the same
// policies::AttentionCase as `attnsparse bench-attention`):
//   FmaPeak                    fp32 FMA peak of this machine (the yardstick)
//   DensePrefill/n/d           causal prefill, GFLOP/s and fraction of the FMA peak
//   SparsePrefill/...          sink+window, window, block, strided, topk at the same shape
//   Decode/...                 one decode step: dense over n keys vs h2o/tova/snapkv over
//                              a budget-sized cache (score collection + eviction included)
// Threads follow OMP_NUM_THREADS (use 2 at most on the shared 2-core machine), e.g.
//   OMP_NUM_THREADS=2 ./bench_attention --benchmark_filter='Dense|FmaPeak'
#include <benchmark/benchmark.h>
#include <omp.h>

#include <string>

#include "ops/attention_bench.h"
#include "policies/bench.h"

namespace {

using attnsparse::policies::AttentionCase;
using attnsparse::policies::BenchShape;
using attnsparse::policies::PolicyMap;

double fma_peak() {
  static const double peak = attnsparse::ops::measure_fma_peak_gflops(0, 0.5);
  return peak;
}

void FmaPeak(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(attnsparse::ops::measure_fma_peak_gflops(0, 0.2));
  state.counters["GFLOPs"] = attnsparse::ops::measure_fma_peak_gflops(0, 0.3);
  state.counters["threads"] = omp_get_max_threads();
}
BENCHMARK(FmaPeak)->Unit(benchmark::kMillisecond)->Iterations(1);

BenchShape shape(int64_t n, int d, int heads, int kv_heads, bool decode) {
  BenchShape s;
  s.n = n;
  s.head_dim = d;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.decode = decode;
  return s;
}

void report(benchmark::State& state, const AttentionCase& c, int heads, int d, bool sparse) {
  const double pairs = sparse ? c.sparse_pairs() : c.dense_pairs();
  const double flops = attnsparse::ops::attention_flops(pairs, d) * heads;
  state.counters["GFLOPs"] = benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["kept"] = c.kept_fraction();
  state.counters["threads"] = omp_get_max_threads();
}

// args: n, head_dim, heads, kv_heads
void DensePrefill(benchmark::State& state) {
  const int d = int(state.range(1)), heads = int(state.range(2));
  AttentionCase c(shape(state.range(0), d, heads, int(state.range(3)), false), PolicyMap::parse("dense"));
  for (auto _ : state) c.dense();
  report(state, c, heads, d, false);
  const double gflops = attnsparse::ops::attention_flops(c.dense_pairs(), d) * heads / 1e9;
  // Fraction of the FMA peak measured in this process (same threads).
  state.counters["peak_fraction"] = benchmark::Counter(gflops * state.iterations() / fma_peak(), benchmark::Counter::kIsRate);
}
BENCHMARK(DensePrefill)
    ->Args({4096, 128, 32, 8})
    ->Args({2048, 64, 32, 4})
    ->Args({2048, 80, 16, 16})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void SparsePrefill(benchmark::State& state, const std::string& policy) {
  const int64_t n = state.range(0);
  AttentionCase c(shape(n, 64, 32, 4, false), PolicyMap::parse(policy));
  for (auto _ : state) {
    c.plan();
    c.run_sparse();
  }
  report(state, c, 32, 64, true);
}
BENCHMARK_CAPTURE(SparsePrefill, sink64_window960, std::string("sink=64,window=960"))->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(SparsePrefill, window256, std::string("window=256"))->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(SparsePrefill, block64, std::string("block=64"))->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(SparsePrefill, strided64, std::string("strided=64"))->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(SparsePrefill, topk64, std::string("topk=64"))->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(SparsePrefill, dense, std::string("dense"))->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();

void Decode(benchmark::State& state, const std::string& policy) {
  const int64_t n = state.range(0);
  AttentionCase c(shape(n, 64, 32, 4, true), PolicyMap::parse(policy));
  const bool dense = policy == "dense";
  for (auto _ : state) {
    if (dense) c.dense();
    else c.run_sparse();
  }
  report(state, c, 32, 64, !dense);
}
BENCHMARK_CAPTURE(Decode, dense, std::string("dense"))->Arg(32768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(Decode, h2o_4096_256, std::string("h2o=budget:4096,recent:256"))->Arg(32768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(Decode, tova_4096, std::string("tova=budget:4096"))->Arg(32768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(Decode, snapkv_4096, std::string("snapkv=budget:4096,window:32,pool:7"))->Arg(32768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(Decode, window_4096, std::string("sink=4,window=4092"))->Arg(32768)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
