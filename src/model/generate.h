// Text generation and perplexity on a loaded Model: sampling (greedy, temperature, top-p
// with a seed), the decode loop on the KV cache, sliding-window perplexity.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

#include "model/model.h"

namespace attnsparse {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy (argmax, lowest id on ties)
  float top_p = 0.95f;       // nucleus: keep the most probable tokens up to this mass
  uint64_t seed = 1;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks the next token from one row of logits. Throws Error on NaN logits.
  int32_t sample(const float* logits, int64_t n_vocab);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // the new tokens (EOS excluded)
  bool stopped_at_eos = false;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Evaluates the prompt as one batch, then samples up to n_new tokens one at a time,
// stopping early at the tokenizer's EOS. on_token sees each new token as it is chosen.
GenerateResult generate(const Model& model, std::span<const int32_t> prompt, int64_t n_new,
                        const SamplingParams& params,
                        const std::function<void(int32_t)>& on_token = {});

// Next-token negative log-likelihood (nats) of `target` under one row of logits:
// log-sum-exp in double around the row's maximum, minus the target's logit. When argmax
// is given it receives the row's arg-max (the lowest id on ties). Non-finite logits give
// a non-finite result (callers report it).
double token_nll(const float* logits, int64_t n_vocab, int32_t target, int32_t* argmax = nullptr);

struct PerplexityResult {
  int64_t tokens = 0;   // tokens of the input
  int64_t scored = 0;   // tokens predicted (all but the first)
  int64_t windows = 0;
  double nll_sum = 0;   // nats
  double nll_per_token() const { return scored > 0 ? nll_sum / scored : 0.0; }
};

// Sliding windows (as Hugging Face's perplexity recipe): window w covers tokens
// [w*stride, min(w*stride + ctx, n)) and is evaluated from an empty cache; it scores the
// tokens that no earlier window scored, except its own first token (nothing precedes it
// in the window), each predicted from every token before it in the window. With
// stride < ctx every token but the very first is scored exactly once, with at least
// ctx - stride tokens of context after the first window; with stride == ctx the windows
// are disjoint and each window's first token goes unscored.
// Needs 2 <= n, 1 <= stride <= ctx. progress(done, total) after each window.
PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens, int64_t ctx,
                            int64_t stride,
                            const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace attnsparse
