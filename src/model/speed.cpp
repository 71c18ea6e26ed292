#include "model/speed.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <random>
#include <span>

#include "core/error.h"
#include "model/profile.h"

namespace attnsparse {

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

}  // namespace

RateStats rate_stats(const std::vector<double>& seconds, int64_t tokens) {
  RateStats s;
  if (seconds.empty()) return s;
  for (double t : seconds) s.mean += tokens / t;
  s.mean /= static_cast<double>(seconds.size());
  for (double t : seconds) s.sd += (tokens / t - s.mean) * (tokens / t - s.mean);
  s.sd = seconds.size() > 1 ? std::sqrt(s.sd / static_cast<double>(seconds.size() - 1)) : 0.0;
  return s;
}

SpeedRuns measure_speed(const Model& model, const SpeedOptions& o,
                        const std::function<void(int reps_done, const SpeedRuns& runs)>& progress) {
  if (o.n_prompt < 0 || o.n_gen < 0) fail_usage("-p and -n must not be negative");
  if (o.n_prompt == 0 && o.n_gen == 0) fail_usage("-p and -n are both 0: nothing to measure");
  if (o.reps < 1) fail_usage("--reps must be at least 1, got {}", o.reps);
  const ModelConfig& c = model.config();
  if (std::max(o.n_prompt, o.n_gen) > c.n_ctx)
    fail_usage("-p/-n of {} exceed the model's context of {}", std::max(o.n_prompt, o.n_gen), c.n_ctx);
  std::mt19937 rng(o.seed);
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(c.n_vocab));
    return t;
  };
  const std::vector<int32_t> prompt = random_tokens(o.n_prompt), gen = random_tokens(o.n_gen);
  SpeedRuns runs;
  if (progress) progress(0, runs);
  if (o.n_prompt > 0) run_prefill(model, prompt);
  if (o.n_gen > 0)
    run_decode(model, std::vector<int32_t>(gen.begin(), gen.begin() + std::min<int64_t>(o.n_gen, 8)));
  profile::reset();
  for (int r = 0; r < o.reps; ++r) {
    const double c0 = process_cpu_seconds();
    if (o.n_prompt > 0) runs.prefill_seconds.push_back(run_prefill(model, prompt));
    const double c1 = process_cpu_seconds();
    if (o.n_gen > 0) runs.decode_seconds.push_back(run_decode(model, gen));
    runs.prefill_cpu_seconds += c1 - c0;
    runs.decode_cpu_seconds += process_cpu_seconds() - c1;
    if (progress) progress(r + 1, runs);
  }
  return runs;
}

}  // namespace attnsparse
