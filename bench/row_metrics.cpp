// Per-row metric cost (ns per key) on softmax rows of Gaussian logits with standard deviation
// sigma (0.1: nearly uniform, 8: a few keys hold the mass; the third argument 1: plus an
// attention sink holding ~20%): widths by histogram selection (also with the row's largest
// entry given, as the attention kernel hands it over) against the weighted quickselect
// baseline, entropy, and all metrics of a row.
//
//   build/row_metrics --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "analysis/row_metrics.h"

using namespace attnsparse::analysis;

namespace {

// Softmax rows of Gaussian logits; with `sink`, key 0's logit is raised so that it holds
// about a fifth of the mass (the attention-sink shape of real models: one large entry,
// the rest flat).
std::vector<std::vector<float>> rows(int64_t n, double sigma, bool sink = false) {
  std::vector<std::vector<float>> out(16, std::vector<float>(size_t(n)));
  std::mt19937_64 rng(7);
  std::normal_distribution<double> z(0.0, sigma);
  for (auto& row : out) {
    std::vector<double> l(static_cast<size_t>(n));
    double mx = -1e300, total = 0;
    for (double& x : l) x = z(rng);
    if (sink) l[0] = std::log(double(n) / 4.0) + sigma * sigma / 2;
    for (double x : l) mx = std::max(mx, x);
    for (double& x : l) total += (x = std::exp(x - mx));
    for (int64_t j = 0; j < n; ++j) row[size_t(j)] = float(l[size_t(j)] / total);
  }
  return out;
}

template <int Kind>
void BM_row(benchmark::State& state) {
  const int64_t n = state.range(0);
  const double sigma = double(state.range(1)) / 10.0;
  const auto data = rows(n, sigma, state.range(2) != 0);
  std::vector<float> largest;  // each row's largest entry, as the attention kernel hands it over
  for (const auto& r : data) largest.push_back(*std::max_element(r.begin(), r.end()));
  std::vector<float> scratch;
  int32_t w[4];
  size_t i = 0;
  for (auto _ : state) {
    const size_t k = i++ % data.size();
    const float* row = data[k].data();
    if constexpr (Kind == 0) widths(row, n, kWidthLevels.data(), 4, w, scratch);
    if constexpr (Kind == 4) widths(row, n, kWidthLevels.data(), 4, w, scratch, &largest[k]);
    if constexpr (Kind == 1) widths_quickselect(row, n, kWidthLevels.data(), 4, w, scratch);
    if constexpr (Kind == 2) benchmark::DoNotOptimize(entropy(row, n));
    if constexpr (Kind == 3) benchmark::DoNotOptimize(compute_row_metrics(row, nullptr, n, n - 1, scratch));
    benchmark::DoNotOptimize(w);
  }
  state.counters["ns_per_key"] =
      benchmark::Counter(double(state.iterations()) * double(n), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t n : {512, 2048, 4096}) {
    for (int64_t sigma10 : {1, 10, 15, 30, 80}) b->Args({n, sigma10, 0});
    b->Args({n, 5, 1});  // a sink over a flat row
  }
}

}  // namespace

BENCHMARK(BM_row<0>)->Name("widths_histogram")->Apply(args);
BENCHMARK(BM_row<4>)->Name("widths_histogram_largest_given")->Apply(args);
BENCHMARK(BM_row<1>)->Name("widths_quickselect")->Apply(args);
BENCHMARK(BM_row<2>)->Name("entropy")->Apply(args);
BENCHMARK(BM_row<3>)->Name("all_row_metrics")->Apply(args);

BENCHMARK_MAIN();
