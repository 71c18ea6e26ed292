// Prefill and decode speed, measured as llama.cpp's llama-bench does: prefill is one batch
// of n_prompt random tokens from an empty cache (logits of the last one), decode is n_gen
// tokens evaluated one at a time from an empty cache (logits of each). One untimed warm-up
// of each first (it pages the memory-mapped weights in and sizes the buffers), then `reps`
// timed runs. The engine of the bench verb.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace attnsparse {

struct SpeedOptions {
  int64_t n_prompt = 512;  // 0: no prefill
  int64_t n_gen = 128;     // 0: no decode
  int reps = 3;
  uint32_t seed = 1234;    // of the random tokens
};

struct SpeedRuns {
  std::vector<double> prefill_seconds, decode_seconds;  // one per rep (empty when skipped)
  double prefill_cpu_seconds = 0, decode_cpu_seconds = 0;  // process CPU time, summed over reps
};

// Mean and sample standard deviation of tokens / seconds over the runs.
struct RateStats {
  double mean = 0, sd = 0;
};
RateStats rate_stats(const std::vector<double>& seconds, int64_t tokens);

// Throws UsageError for negative or all-zero sizes, reps < 1, or sizes beyond the model's
// context. progress(0, runs) comes before the warm-up, progress(r, runs) after timed rep r.
// profile::reset() is called after the warm-up: ATTNSPARSE_PROFILE counts the timed runs.
SpeedRuns measure_speed(const Model& model, const SpeedOptions& options,
                        const std::function<void(int reps_done, const SpeedRuns& runs)>& progress = {});

}  // namespace attnsparse
