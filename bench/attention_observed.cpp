// Cost of observing attention rows, at the attention core alone (no matmuls): causal
// prefill of n random tokens at a TinyLlama-like shape (32 query heads, 4 KV heads,
// head_dim 64), three ways in the same process:
//   Plain        ops::attention with no observer,
//   Observed     an observer that only receives each row (the kernel's observed path:
//                the probabilities of every row written out, and their entropy),
//   Widths       an observer that computes analysis::widths alone on each row,
//   RowMetrics   an observer that computes analysis::compute_row_metrics on each row
//                (widths, entropy, sink, recency: what `analyze` computes per row).
// ns_per_key is per (row, visible key); compare Observed and RowMetrics with Plain of the
// same n to see the observer's share, e.g.
//   OMP_NUM_THREADS=1 build/attention_observed --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "analysis/row_metrics.h"
#include "ops/attention.h"

namespace {

using namespace attnsparse;

constexpr int kHeads = 32, kKvHeads = 4, kDim = 64;

struct Inputs {
  std::vector<float> q, k, v, out;
  explicit Inputs(int64_t n) {
    std::mt19937 rng(11);
    std::normal_distribution<float> z(0.f, 1.f);
    q.resize(size_t(n * kHeads * kDim));
    k.resize(size_t(n * kKvHeads * kDim));
    v.resize(k.size());
    out.resize(q.size());
    for (float& x : q) x = z(rng);
    for (float& x : k) x = z(rng);
    for (float& x : v) x = z(rng);
  }
};

class NullObserver : public ops::RowObserver {
 public:
  void on_row(int, int64_t, const float*, const int32_t*, int64_t) override {}
};

class MetricsObserver : public ops::RowObserver {
 public:
  void on_row(int, int64_t query_pos, const float* probs, const int32_t* keys, int64_t n) override {
    metrics(query_pos, probs, keys, n, nullptr);
  }
  // The kernel's blocks, with each row's entropy and largest probability (as the collector
  // takes them).
  void on_rows(int, int64_t query_pos0, int n_rows, const float* const* probs, const int32_t* const* keys,
               const int64_t* n, const double* entropy, const float* largest) override {
    for (int k = 0; k < n_rows; ++k)
      metrics(query_pos0 + k, probs[k], keys[k], n[k], entropy ? entropy + k : nullptr, largest ? largest + k : nullptr);
  }

 private:
  static void metrics(int64_t query_pos, const float* probs, const int32_t* keys, int64_t n, const double* entropy,
                      const float* largest = nullptr) {
    thread_local std::vector<float> scratch;
    benchmark::DoNotOptimize(analysis::compute_row_metrics(probs, keys, n, query_pos, scratch, entropy, 0, largest));
  }
};

class WidthsObserver : public ops::RowObserver {
 public:
  void on_row(int, int64_t, const float* probs, const int32_t*, int64_t n) override { widths(probs, n, nullptr); }
  void on_rows(int, int64_t, int n_rows, const float* const* probs, const int32_t* const*, const int64_t* n,
               const double*, const float* largest) override {
    for (int k = 0; k < n_rows; ++k) widths(probs[k], n[k], largest ? largest + k : nullptr);
  }

 private:
  static void widths(const float* probs, int64_t n, const float* largest) {
    thread_local std::vector<float> scratch;
    int32_t w[4];
    analysis::widths(probs, n, analysis::kWidthLevels.data(), 4, w, scratch, largest);
    benchmark::DoNotOptimize(w);
  }
};

template <int Kind>
void BM_prefill(benchmark::State& state) {
  const int64_t n = state.range(0);
  Inputs in(n);
  ops::AttentionShape s;
  s.n_q = n;
  s.n_kv = n;
  s.n_head = kHeads;
  s.n_kv_head = kKvHeads;
  s.head_dim = kDim;
  s.scale = 0.125f;
  ops::AttentionArgs a;
  a.q = in.q.data();
  a.q_stride = kHeads * kDim;
  a.k = in.k.data();
  a.v = in.v.data();
  a.k_stride = a.v_stride = kKvHeads * kDim;
  a.out = in.out.data();
  a.out_stride = kHeads * kDim;
  NullObserver null_observer;
  MetricsObserver metrics_observer;
  WidthsObserver widths_observer;
  ops::RowObserver* observer = Kind == 0   ? nullptr
                               : Kind == 1 ? static_cast<ops::RowObserver*>(&null_observer)
                               : Kind == 2 ? static_cast<ops::RowObserver*>(&metrics_observer)
                                           : &widths_observer;
  for (auto _ : state) {
    ops::attention(s, a, nullptr, observer);
    benchmark::ClobberMemory();
  }
  const double keys = double(kHeads) * double(n) * double(n + 1) / 2;
  state.counters["ns_per_key"] =
      benchmark::Counter(double(state.iterations()) * keys, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(BM_prefill<0>)->Name("Plain")->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill<1>)->Name("Observed")->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill<3>)->Name("Widths")->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill<2>)->Name("RowMetrics")->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
