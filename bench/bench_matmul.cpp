// Matmul kernels on TinyLlama-1.1B's shapes, against a baseline measured in the same run:
// streaming the same weight bytes with a plain vector sum (the memory-bandwidth roof for
// GEMV/decode). Report: bytes/s of each kernel and its ratio to the roof.
//   build-<you>/bench_matmul --benchmark_min_time=0.5
// Threads: OMP_NUM_THREADS (use 2 on the shared machine).
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <memory>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "ops/matmul.h"
#include "ops/quant/packed.h"

namespace {

using attnsparse::DType;
using attnsparse::ops::WeightView;

struct Weights {
  std::vector<uint8_t> bytes;
  WeightView view;
};

// n_out x n_in weights of `type` with random values.
Weights make_weights(DType type, int64_t n_out, int64_t n_in) {
  Weights w;
  w.view.dtype = type;
  w.view.n_out = n_out;
  w.view.n_in = n_in;
  w.bytes.resize(n_out * w.view.row_bytes());
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::vector<float> row(n_in);
  for (int64_t o = 0; o < n_out; ++o) {
    for (auto& v : row) v = nd(rng);
    attnsparse::ops::quantize_row(type, row.data(), w.bytes.data() + o * w.view.row_bytes(), n_in);
  }
  w.view.data = w.bytes.data();
  return w;
}

// The shapes of one TinyLlama layer's matmuls, all weights stacked: q, k, v, o, gate, up,
// down (~ 44 M weights = 88 MB in f16, larger than any cache).
struct Layer {
  std::vector<Weights> ws;
  explicit Layer(DType t) {
    for (auto [o, i] : std::vector<std::pair<int64_t, int64_t>>{
             {2048, 2048}, {256, 2048}, {256, 2048}, {2048, 2048}, {5632, 2048}, {5632, 2048}, {2048, 5632}})
      ws.push_back(make_weights(t, o, i));
  }
  int64_t bytes() const {
    int64_t b = 0;
    for (const auto& w : ws) b += static_cast<int64_t>(w.bytes.size());
    return b;
  }
};

// Sum of n floats with AVX2 (compiled for that target; the roof needs wide loads only).
__attribute__((target("avx2"))) float sum_floats(const float* p, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// Roof: read every weight byte once, split over the configured threads.
void BM_ReadRoof(benchmark::State& state) {
  Layer layer(DType::F16);
  for (auto _ : state) {
    float total = 0;
    for (const auto& w : layer.ws) {
      const float* p = reinterpret_cast<const float*>(w.bytes.data());
      const int64_t n = static_cast<int64_t>(w.bytes.size() / 4);
#pragma omp parallel reduction(+ : total)
      {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t chunk = (n / nt) / 32 * 32;
        const int64_t b = it * chunk, e = it == nt - 1 ? n : b + chunk;
        total += sum_floats(p + b, e - b);
      }
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(state.iterations() * layer.bytes());
}
BENCHMARK(BM_ReadRoof)->UseRealTime()->Unit(benchmark::kMillisecond);

// m tokens through all seven matmuls of a layer.
// Every matrix of `layer` times m tokens, timed; bytes and tokens per second counted.
void time_layer(benchmark::State& state, const Layer& layer, int64_t m) {
  std::vector<float> x(m * 5632), y(m * 5632);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.001f * static_cast<float>(i % 997) - 0.5f;
  for (auto _ : state) {
    for (const auto& w : layer.ws) attnsparse::ops::matmul(w.view, x.data(), m, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * layer.bytes());
  state.counters["tok/s/layer"] =
      benchmark::Counter(static_cast<double>(m) * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_Layer(benchmark::State& state, DType type) {
  const int64_t m = state.range(0);
  Layer layer(type);
  time_layer(state, layer, m);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * m * layer.bytes() / attnsparse::dtype_traits(type).block_bytes * state.iterations() *
          attnsparse::dtype_traits(type).block_size / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_Layer, f16, DType::F16)->Arg(1)->Arg(4)->Arg(128)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Layer, f32, DType::F32)->Arg(1)->Arg(128)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Layer, bf16, DType::BF16)->Arg(1)->Arg(128)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Layer, q8_0, DType::Q8_0)->Arg(1)->Arg(128)->UseRealTime()->Unit(benchmark::kMillisecond);

// Quantised layers with the weights packed for this CPU's integer GEMM (where the type
// has a packed layout and the CPU has AVX512-VNNI) against the stored layout in the same
// run (BM_Layer of the same type): the ratio of their times is the packing's gain.
void BM_LayerPacked(benchmark::State& state, DType type) {
  const int64_t m = state.range(0);
  Layer layer(type);
  std::vector<std::unique_ptr<attnsparse::ops::PackedWeights>> packed;
  for (auto& w : layer.ws) {
    packed.push_back(attnsparse::ops::pack_weights(w.view));
    w.view.packed = packed.back().get();
  }
  if (packed.front() == nullptr) {
    state.SkipWithError("no packed layout for this type on this CPU");
    return;
  }
  time_layer(state, layer, m);
}
BENCHMARK_CAPTURE(BM_Layer, q4_0, DType::Q4_0)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LayerPacked, q4_0, DType::Q4_0)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Layer, q4_k, DType::Q4_K)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LayerPacked, q4_k, DType::Q4_K)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Layer, q5_k, DType::Q5_K)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LayerPacked, q5_k, DType::Q5_K)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Layer, q6_k, DType::Q6_K)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LayerPacked, q6_k, DType::Q6_K)->Arg(1)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
