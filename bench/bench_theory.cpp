// Kernels of the n^C-sparsity simulator: k_eps by quickselect against a full sort (the
// baseline), the k-th largest weight, and the counter-based normal generator.
//   build-*/bench_theory --benchmark_filter=KEps
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "theory/normal.h"
#include "theory/sparsity.h"

namespace {

using namespace attnsparse::theory;

// A row of the i.i.d.-logit regime with c = 0.5 (sigma_n^2 = ln n): typical of the sweep.
std::vector<double> row(int64_t n) {
  std::vector<double> w(n);
  const double sigma = std::sqrt(std::log(double(n)));
  const uint64_t key = stream_key(1, 2);
  for (int64_t j = 0; j < n; j += 2) {
    const auto [a, b] = normal_pair_f64(key, j / 2);
    w[j] = std::exp(sigma * a);
    if (j + 1 < n) w[j + 1] = std::exp(sigma * b);
  }
  return w;
}

void BM_KEpsQuickselect(benchmark::State& st) {
  const auto w = row(st.range(0));
  std::vector<double> work;
  for (auto _ : st) {
    work = w;
    benchmark::DoNotOptimize(k_eps_inplace(work, 0.05));
  }
  st.SetItemsProcessed(st.iterations() * st.range(0));
}
BENCHMARK(BM_KEpsQuickselect)->RangeMultiplier(8)->Range(1 << 10, 1 << 17);

void BM_KEpsFullSort(benchmark::State& st) {
  const auto w = row(st.range(0));
  std::vector<double> work;
  for (auto _ : st) {
    work = w;
    benchmark::DoNotOptimize(k_eps_sorted_inplace(work, 0.05));
  }
  st.SetItemsProcessed(st.iterations() * st.range(0));
}
BENCHMARK(BM_KEpsFullSort)->RangeMultiplier(8)->Range(1 << 10, 1 << 17);

void BM_KthLargest(benchmark::State& st) {
  const auto w = row(st.range(0));
  std::vector<double> work;
  const int64_t k = int64_t(std::pow(double(st.range(0)), 0.7));
  for (auto _ : st) {
    work = w;
    benchmark::DoNotOptimize(kth_largest_inplace(work, k, st.range(1) != 0));
  }
  st.SetItemsProcessed(st.iterations() * st.range(0));
  st.SetLabel(st.range(1) ? "full sort" : "nth_element");
}
BENCHMARK(BM_KthLargest)->Args({1 << 17, 0})->Args({1 << 17, 1});

void BM_NormalsF32(benchmark::State& st) {
  std::vector<float> out(2 * 4096);
  uint64_t first = 0;
  for (auto _ : st) {
    normals_f32(stream_key(3, 4), first, out.data(), 4096);
    first += 4096;
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * 2 * 4096);
}
BENCHMARK(BM_NormalsF32);

}  // namespace

BENCHMARK_MAIN();
