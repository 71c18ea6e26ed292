// attnsparse bench-attention --n N --head-dim D --heads H --kv-heads KV --policy P:
// dense vs sparse attention on the same kernel and random inputs, timed in the same run.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/verb.h"
#include "core/error.h"
#include "model/model_util.h"
#include "ops/attention.h"
#include "ops/attention_bench.h"
#include "policies/bench.h"
#include "policies/policy.h"

namespace attnsparse::cli {
namespace {

using clock_type = std::chrono::steady_clock;

template <typename F>
double time_ms(F&& f) {
  const auto t0 = clock_type::now();
  f();
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

struct Timing {
  std::vector<double> ms;
  double min() const { return *std::min_element(ms.begin(), ms.end()); }
  double median() const {
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
  }
};

struct BenchAttentionOptions {
  policies::BenchShape shape;
  std::string policy_text = "dense", out_path;
  int threads = 0, repeat = 3;
  bool json_stdout = false, fma_peak = false;
};

void register_bench_attention(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "bench-attention", "Time dense vs sparse attention (one call, random inputs) on the same kernel");
  sub->footer(std::string(
                  "Dense and sparse calls alternate in one run; times are the minimum over --repeat\n"
                  "calls (the median is reported too). Prefill: n queries over n keys. --decode: one\n"
                  "query at position n-1 over n keys; evicting policies then run a full decode step\n"
                  "(attention over budget+1 cached keys with score collection, eviction, compaction).\n"
                  "speedup = dense_ms / sparse_ms; ideal_speedup = 1 / kept_fraction. sparse_ms\n"
                  "includes planning (plan_ms), which for topk/topp/dyntopk is a dense scoring pass.\n"
                  "--policy takes the per-layer/per-head syntax too (layer 0 applies).\n\n") +
              policies::policy_help() +
              "\nExample: attnsparse bench-attention --n 16384 --head-dim 64 --heads 32 --kv-heads 4 "
              "--policy sink=64,window=960 --threads 2");
  auto options = std::make_shared<BenchAttentionOptions>();
  auto& [shape, policy_text, out_path, threads, repeat, json_stdout, fma_peak] = *options;
  sub->add_option("--n", shape.n, "context length (keys)")->required()->check(positive_integer());
  sub->add_option("--head-dim", shape.head_dim, "head dimension (1..256)")->required()->check(CLI::Range(1, 256));
  sub->add_option("--heads", shape.heads, "query heads")->required()->check(positive_integer());
  sub->add_option("--kv-heads", shape.kv_heads, "key/value heads (divides --heads)")->required()->check(positive_integer());
  sub->add_option("--policy", policy_text, "policy spec (see below)")->required();
  sub->add_flag("--decode", shape.decode, "time one decode step instead of a prefill");
  sub->add_option("--repeat", repeat, "timed calls of each kind (default 3)")->check(CLI::Range(1, 1000));
  sub->add_option("--seed", shape.seed, "random inputs seed");
  sub->add_flag("--fma-peak", fma_peak, "also measure the fp32 FMA peak and report fractions of it");
  sub->add_flag("--json", json_stdout, "print the JSON result instead of the table");
  sub->add_option("--out", out_path, "also write the JSON result to this file");
  add_threads_option(sub, &threads);
  sub->callback([options] {
    auto& [shape, policy_text, out_path, threads, repeat, json_stdout, fma_peak] = *options;
    apply_threads(threads);
    if (shape.heads % shape.kv_heads != 0)
      fail_usage("--heads {} is not a multiple of --kv-heads {}", shape.heads, shape.kv_heads);
    const policies::PolicyMap map = policies::PolicyMap::parse(policy_text);
    fmt::print(stderr, "bench-attention: preparing n={} head_dim={} heads={}/{} {} policy {}\n", shape.n,
               shape.head_dim, shape.heads, shape.kv_heads, shape.decode ? "decode" : "prefill", map.spec());
    policies::AttentionCase bench(shape, map);
    // Warm-up (page faults, thread start), then alternate.
    bench.dense();
    bench.plan();
    bench.run_sparse();
    Timing dense, plan, run;
    for (int r = 0; r < repeat; ++r) {
      dense.ms.push_back(time_ms([&] { bench.dense(); }));
      plan.ms.push_back(time_ms([&] { bench.plan(); }));
      run.ms.push_back(time_ms([&] { bench.run_sparse(); }));
    }
    Timing sparse;
    for (int r = 0; r < repeat; ++r) sparse.ms.push_back(plan.ms[r] + run.ms[r]);
    const double kept = bench.kept_fraction();
    const double dense_ms = dense.min(), sparse_ms = sparse.min();
    const double flops_dense = ops::attention_flops(bench.dense_pairs(), shape.head_dim) * shape.heads;
    const double flops_sparse = ops::attention_flops(bench.sparse_pairs(), shape.head_dim) * shape.heads;
    nlohmann::json j;
    j["n"] = shape.n;
    j["head_dim"] = shape.head_dim;
    j["heads"] = shape.heads;
    j["kv_heads"] = shape.kv_heads;
    j["mode"] = shape.decode ? "decode" : "prefill";
    j["policy"] = map.spec();
    j["threads"] = omp_get_max_threads();
    j["isa"] = ops::attention_isa();
    j["repeat"] = repeat;
    j["dense_ms"] = dense_ms;
    j["sparse_ms"] = sparse_ms;
    j["plan_ms"] = plan.min();
    j["run_ms"] = run.min();
    j["dense_ms_median"] = dense.median();
    j["sparse_ms_median"] = sparse.median();
    j["kept_fraction"] = kept;
    j["speedup"] = dense_ms / sparse_ms;
    j["ideal_speedup"] = 1.0 / kept;
    j["speedup_vs_ideal"] = (dense_ms / sparse_ms) * kept;
    j["dense_gflops"] = flops_dense / dense_ms / 1e6;
    j["sparse_gflops"] = flops_sparse / run.min() / 1e6;
    if (fma_peak) {
      const double peak = ops::measure_fma_peak_gflops(0);
      j["fma_peak_gflops"] = peak;
      j["dense_fraction_of_peak"] = flops_dense / dense_ms / 1e6 / peak;
    }
    const std::string text = j.dump(2) + "\n";
    if (!out_path.empty()) write_file_atomic(out_path, text.data(), text.size());
    if (json_stdout) {
      fmt::print("{}", text);
      return;
    }
    fmt::print("{:<28} {}\n", "policy", map.spec());
    fmt::print("{:<28} {} n={} head_dim={} heads={}/{} threads={} isa={}\n", "shape",
               shape.decode ? "decode" : "prefill", shape.n, shape.head_dim, shape.heads, shape.kv_heads,
               omp_get_max_threads(), ops::attention_isa());
    fmt::print("{:<28} {:.3f} (median {:.3f})  {:.1f} GFLOP/s\n", "dense ms", dense_ms, dense.median(),
               j["dense_gflops"].get<double>());
    fmt::print("{:<28} {:.3f} (median {:.3f}) = plan {:.3f} + run {:.3f}\n", "sparse ms", sparse_ms,
               sparse.median(), plan.min(), run.min());
    fmt::print("{:<28} {:.4f}\n", "kept fraction", kept);
    fmt::print("{:<28} {:.2f}x (ideal {:.2f}x, {:.0f}% of ideal)\n", "speedup", dense_ms / sparse_ms, 1.0 / kept,
               100.0 * (dense_ms / sparse_ms) * kept);
    if (fma_peak)
      fmt::print("{:<28} {:.1f} GFLOP/s; dense reaches {:.0f}%\n", "fp32 FMA peak", j["fma_peak_gflops"].get<double>(),
                 100.0 * j["dense_fraction_of_peak"].get<double>());
  });
}
ATTNSPARSE_VERB(register_bench_attention);

}  // namespace
}  // namespace attnsparse::cli
