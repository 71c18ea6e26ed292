// attnsparse bench MODEL [-p 512] [-n 128] [--threads T] [--reps R]: prefill and decode
// speed, measured as llama.cpp's llama-bench does (model/speed.h).
#include <fmt/format.h>
#include <omp.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/verb.h"
#include "core/error.h"
#include "model/model.h"
#include "model/profile.h"
#include "model/speed.h"
#include "model/summary.h"
#include "ops/matmul.h"

namespace attnsparse::cli {
namespace {

struct BenchOptions {
  std::string model_path;
  SpeedOptions speed;
  int threads = 0;
  bool json_only = false;
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

void run_bench(const BenchOptions& o) {
  apply_threads(o.threads);
  const SpeedOptions& so = o.speed;
  const int64_t n_prompt = so.n_prompt, n_gen = so.n_gen;
  const int reps = so.reps;
  if (n_prompt < 0 || n_gen < 0) fail_usage("-p and -n must not be negative");
  if (n_prompt == 0 && n_gen == 0) fail_usage("-p and -n are both 0: nothing to measure");
  if (reps < 1) fail_usage("--reps must be at least 1, got {}", reps);
  auto model = load_model(o.model_path);
  const ModelConfig& c = model->config();
  const SpeedRuns runs = measure_speed(*model, so, [&](int done, const SpeedRuns& r) {
    if (done == 0) {
      fmt::print(stderr, "bench: warm-up\n");
      return;
    }
    fmt::print(stderr, "bench: rep {}/{}{}{}\n", done, reps,
               n_prompt > 0 ? fmt::format("  pp{} {:.1f} tok/s", n_prompt, n_prompt / r.prefill_seconds.back()) : "",
               n_gen > 0 ? fmt::format("  tg{} {:.1f} tok/s", n_gen, n_gen / r.decode_seconds.back()) : "");
  });
  const RateStats ps = rate_stats(runs.prefill_seconds, n_prompt), ts = rate_stats(runs.decode_seconds, n_gen);
  const WeightSummary weights = summarize_weights(*model);
  const std::string dtype = weights.dominant_dtype();
  const int n_threads = omp_get_max_threads();

  nlohmann::json j;
  j["model"] = o.model_path;
  if (n_prompt > 0) {
    j["prefill_tok_s"] = ps.mean;
    j["prefill_tok_s_std"] = ps.sd;
    j["prefill_seconds"] = runs.prefill_seconds;
    j["prefill_cpu_seconds_per_rep"] = runs.prefill_cpu_seconds / reps;
  } else {
    j["prefill_tok_s"] = nullptr;
  }
  if (n_gen > 0) {
    j["decode_tok_s"] = ts.mean;
    j["decode_tok_s_std"] = ts.sd;
    j["decode_seconds"] = runs.decode_seconds;
    j["decode_cpu_seconds_per_rep"] = runs.decode_cpu_seconds / reps;
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
  j["shape"] = {{"arch", c.arch},       {"n_layer", c.n_layer},   {"n_embd", c.n_embd},
                {"n_head", c.n_head},   {"n_kv_head", c.n_kv_head}, {"n_ff", c.n_ff},
                {"n_vocab", c.n_vocab}, {"weight_dtype", dtype},  {"parameters", weights.parameters},
                {"weight_bytes", weights.bytes}};
  if (!o.json_only) {
    fmt::print("model: {} ({} {}, {} layers, n_embd {}, {:.0f} M params, {:.2f} GB {})\n", o.model_path, c.arch,
               c.name, c.n_layer, c.n_embd, weights.parameters / 1e6, weights.bytes / 1e9, dtype);
    fmt::print("threads: {}, simd: {}, reps: {}\n", n_threads, ops::simd_level_name(), reps);
    // cpu/wall near the thread count: the run had its cores; far below: they were shared.
    fmt::print("| {:<8} | {:>14} | {:>8} | {:>8} |\n", "test", "tok/s", "std", "cpu/wall");
    fmt::print("| {:-<8} | {:->14} | {:->8} | {:->8} |\n", "", "", "", "");
    if (n_prompt > 0)
      fmt::print("| {:<8} | {:>14.2f} | {:>8.2f} | {:>8.2f} |\n", fmt::format("pp{}", n_prompt), ps.mean, ps.sd,
                 runs.prefill_cpu_seconds / reps / mean(runs.prefill_seconds));
    if (n_gen > 0)
      fmt::print("| {:<8} | {:>14.2f} | {:>8.2f} | {:>8.2f} |\n", fmt::format("tg{}", n_gen), ts.mean, ts.sd,
                 runs.decode_cpu_seconds / reps / mean(runs.decode_seconds));
  }
  fmt::print("{}\n", j.dump());
  const std::string prof = profile::report();
  if (!prof.empty()) fmt::print(stderr, "{}", prof);
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
  auto o = std::make_shared<BenchOptions>();
  add_model_options(sub, o->model_path);
  sub->add_option("-p,--n-prompt", o->speed.n_prompt, "prompt tokens for prefill (0: skip; default 512)");
  sub->add_option("-n,--n-gen", o->speed.n_gen, "tokens to decode (0: skip; default 128)");
  sub->add_option("--reps,-r", o->speed.reps, "timed repetitions (default 3)");
  sub->add_flag("--json", o->json_only, "print only the JSON object");
  add_threads_option(sub, &o->threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([o] { run_bench(*o); });
}
ATTNSPARSE_VERB(register_bench);

}  // namespace
}  // namespace attnsparse::cli
