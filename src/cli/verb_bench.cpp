// attnsparse bench MODEL [-p 512] [-n 128] [--threads T] [--reps R]: prefill and decode
// speed, measured as llama.cpp's llama-bench does (pp: one batch of p tokens from an empty
// cache; tg: n tokens decoded one at a time from an empty cache).
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/verb.h"
#include "core/error.h"
#include "io/tensor_source.h"
#include "model/model.h"
#include "model/profile.h"
#include "ops/matmul.h"

namespace attnsparse::cli {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU seconds of the whole process (all threads): with wall time it shows whether the
// run had its cores to itself (cpu ~= threads x wall) or shared them.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Stats {
  double mean = 0, sd = 0;
};
Stats rate_stats(const std::vector<double>& secs, int64_t tokens) {
  Stats s;
  if (secs.empty()) return s;
  for (double t : secs) s.mean += tokens / t;
  s.mean /= static_cast<double>(secs.size());
  for (double t : secs) s.sd += (tokens / t - s.mean) * (tokens / t - s.mean);
  s.sd = secs.size() > 1 ? std::sqrt(s.sd / static_cast<double>(secs.size() - 1)) : 0.0;
  return s;
}

double run_prefill(const Model& m, const std::vector<int32_t>& toks) {
  KVCache cache = m.make_cache(static_cast<int64_t>(toks.size()));
  ForwardOptions opts;
  opts.logit_rows = {static_cast<int64_t>(toks.size()) - 1};
  std::vector<float> logits;
  const auto t0 = clock_type::now();
  m.forward(toks, cache, opts, logits);
  return seconds_since(t0);
}

double run_decode(const Model& m, const std::vector<int32_t>& toks) {
  KVCache cache = m.make_cache(static_cast<int64_t>(toks.size()));
  ForwardOptions opts;
  opts.logit_rows = {0};
  std::vector<float> logits;
  const auto t0 = clock_type::now();
  for (const int32_t t : toks) m.forward(std::span<const int32_t>(&t, 1), cache, opts, logits);
  return seconds_since(t0);
}

void register_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "Measure prefill and decode speed (tokens/s)");
  sub->footer(
      "prefill: -p random tokens evaluated as one batch from an empty cache (logits of the\n"
      "last one); decode: -n tokens evaluated one at a time from an empty cache (logits of\n"
      "each). One untimed warm-up of each first, then --reps timed runs: mean and std.\n"
      "Prints a table and then one JSON line (--json: only the JSON) with prefill_tok_s,\n"
      "decode_tok_s, their std, reps, threads, simd and the model's shape.\n"
      "ATTNSPARSE_PROFILE=1 adds a per-op time breakdown on stderr. On a machine whose cores\n"
      "are shared, run with OMP_WAIT_POLICY=passive: spinning OpenMP threads otherwise burn\n"
      "the time their partner needs (3-5x slower decode under load; cpu/wall shows it).\n"
      "Example: attnsparse bench tinyllama-synth.gguf -p 512 -n 128 --threads 2 --reps 3");
  static std::string model_path;
  static int64_t n_prompt = 512, n_gen = 128;
  static int reps = 3, threads = 0;
  static bool json_only = false;
  add_model_options(sub, model_path);
  sub->add_option("-p,--n-prompt", n_prompt, "prompt tokens for prefill (0: skip; default 512)");
  sub->add_option("-n,--n-gen", n_gen, "tokens to decode (0: skip; default 128)");
  sub->add_option("--reps,-r", reps, "timed repetitions (default 3)");
  sub->add_flag("--json", json_only, "print only the JSON object");
  add_threads_option(sub, &threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([] {
    apply_threads(threads);
    if (n_prompt < 0 || n_gen < 0) fail_usage("-p and -n must not be negative");
    if (n_prompt == 0 && n_gen == 0) fail_usage("-p and -n are both 0: nothing to measure");
    if (reps < 1) fail_usage("--reps must be at least 1, got {}", reps);
    auto model = load_model(model_path);
    const ModelConfig& c = model->config();
    if (std::max(n_prompt, n_gen) > c.n_ctx)
      fail_usage("-p/-n of {} exceed the model's context of {}", std::max(n_prompt, n_gen), c.n_ctx);
    std::mt19937 rng(1234);
    auto random_tokens = [&](int64_t n) {
      std::vector<int32_t> t(n);
      for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(c.n_vocab));
      return t;
    };
    const std::vector<int32_t> prompt = random_tokens(n_prompt), gen = random_tokens(n_gen);
    // Warm-up: pages the memory-mapped weights in and sizes the buffers.
    fmt::print(stderr, "bench: warm-up\n");
    if (n_prompt > 0) run_prefill(*model, prompt);
    if (n_gen > 0) run_decode(*model, std::vector<int32_t>(gen.begin(), gen.begin() + std::min<int64_t>(n_gen, 8)));
    profile::reset();
    std::vector<double> pp, tg;
    double pp_cpu = 0, tg_cpu = 0;
    for (int r = 0; r < reps; ++r) {
      double c0 = process_cpu_seconds();
      if (n_prompt > 0) pp.push_back(run_prefill(*model, prompt));
      double c1 = process_cpu_seconds();
      if (n_gen > 0) tg.push_back(run_decode(*model, gen));
      pp_cpu += c1 - c0;
      tg_cpu += process_cpu_seconds() - c1;
      fmt::print(stderr, "bench: rep {}/{}{}{}\n", r + 1, reps,
                 n_prompt > 0 ? fmt::format("  pp{} {:.1f} tok/s", n_prompt, n_prompt / pp.back()) : "",
                 n_gen > 0 ? fmt::format("  tg{} {:.1f} tok/s", n_gen, n_gen / tg.back()) : "");
    }
    const Stats ps = rate_stats(pp, n_prompt), ts = rate_stats(tg, n_gen);

    // The dominant weight dtype (by bytes) and the parameter count.
    std::map<std::string, int64_t> bytes_by_dtype;
    int64_t params = 0, weight_bytes = 0;
    for (const TensorInfo& t : model->weights().tensors()) {
      bytes_by_dtype[dtype_name(t.dtype)] += t.nbytes;
      params += t.numel();
      weight_bytes += t.nbytes;
    }
    std::string dtype;
    int64_t best = -1;
    for (const auto& [name, b] : bytes_by_dtype)
      if (b > best) best = b, dtype = name;
    const int n_threads = omp_get_max_threads();

    nlohmann::json j;
    j["model"] = model_path;
    if (n_prompt > 0) {
      j["prefill_tok_s"] = ps.mean;
      j["prefill_tok_s_std"] = ps.sd;
      j["prefill_seconds"] = pp;
      j["prefill_cpu_seconds_per_rep"] = pp_cpu / reps;
    } else {
      j["prefill_tok_s"] = nullptr;
    }
    if (n_gen > 0) {
      j["decode_tok_s"] = ts.mean;
      j["decode_tok_s_std"] = ts.sd;
      j["decode_seconds"] = tg;
      j["decode_cpu_seconds_per_rep"] = tg_cpu / reps;
    } else {
      j["decode_tok_s"] = nullptr;
    }
    j["n_prompt"] = n_prompt;
    j["n_gen"] = n_gen;
    j["reps"] = reps;
    j["threads"] = n_threads;
    j["simd"] = ops::simd_level_name();
    j["kv_type"] = dtype_name(default_kv_type());
    j["ubatch"] = default_ubatch();
    // The OpenMP wait policy in effect: on shared cores OMP_WAIT_POLICY=passive (or a small
    // GOMP_SPINCOUNT) avoids threads spinning away their partner's time slice.
    const char* wp = std::getenv("OMP_WAIT_POLICY");
    const char* sc = std::getenv("GOMP_SPINCOUNT");
    j["omp_wait"] = wp ? std::string("OMP_WAIT_POLICY=") + wp
                       : sc ? std::string("GOMP_SPINCOUNT=") + sc : std::string("libgomp default");
    j["shape"] = {{"arch", c.arch},       {"n_layer", c.n_layer}, {"n_embd", c.n_embd},
                  {"n_head", c.n_head},   {"n_kv_head", c.n_kv_head}, {"n_ff", c.n_ff},
                  {"n_vocab", c.n_vocab}, {"weight_dtype", dtype},  {"parameters", params},
                  {"weight_bytes", weight_bytes}};
    if (!json_only) {
      fmt::print("model: {} ({} {}, {} layers, n_embd {}, {:.0f} M params, {:.2f} GB {})\n",
                 model_path, c.arch, c.name, c.n_layer, c.n_embd, params / 1e6, weight_bytes / 1e9, dtype);
      fmt::print("threads: {}, simd: {}, reps: {}\n", n_threads, ops::simd_level_name(), reps);
      // cpu/wall near the thread count: the run had its cores; far below: they were shared.
      auto mean = [](const std::vector<double>& v) {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? 0.0 : s / static_cast<double>(v.size());
      };
      fmt::print("| {:<8} | {:>14} | {:>8} | {:>8} |\n", "test", "tok/s", "std", "cpu/wall");
      fmt::print("| {:-<8} | {:->14} | {:->8} | {:->8} |\n", "", "", "", "");
      if (n_prompt > 0)
        fmt::print("| {:<8} | {:>14.2f} | {:>8.2f} | {:>8.2f} |\n", fmt::format("pp{}", n_prompt), ps.mean,
                   ps.sd, pp_cpu / reps / mean(pp));
      if (n_gen > 0)
        fmt::print("| {:<8} | {:>14.2f} | {:>8.2f} | {:>8.2f} |\n", fmt::format("tg{}", n_gen), ts.mean,
                   ts.sd, tg_cpu / reps / mean(tg));
    }
    fmt::print("{}\n", j.dump());
    const std::string prof = profile::report();
    if (!prof.empty()) fmt::print(stderr, "{}", prof);
  });
}
ATTNSPARSE_VERB(register_bench);

}  // namespace
}  // namespace attnsparse::cli
