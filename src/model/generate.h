// Text generation, perplexity and logits on a loaded Model: sampling (greedy, temperature,
// top-p with a seed), the decode loop on the KV cache, the text of a continuation as it
// grows, sliding-window perplexity, the logits of one causal batch. The engines of the
// generate, perplexity and logits verbs and of the Python Model.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string>
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

// How many tokens generate() may add after a prompt of `prompt_tokens` tokens: n_new, or
// fewer so that prompt and continuation stay within the model's context (the caller says
// so when it is fewer). Throws UsageError for an empty prompt or one that fills the context.
int64_t generation_budget(const ModelConfig& config, int64_t prompt_tokens, int64_t n_new);

// The text of a continuation while it grows: the tokens are decoded with the prompt in
// front (so the first new token keeps its leading space), and push() hands back the
// bytes that became final, holding back an incomplete UTF-8 sequence at the end until
// the next token completes it (a terminal never sees half a character).
class ContinuationText {
 public:
  ContinuationText(const Tokenizer& tokenizer, std::span<const int32_t> prompt);
  std::string push(int32_t token);  // the new final bytes (may be empty)
  std::string finish();             // whatever is still held back
  // The continuation decoded at once (what push() and finish() hand out in total).
  static std::string of(const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                        std::span<const int32_t> continuation);

 private:
  const Tokenizer& tokenizer_;
  std::vector<int32_t> all_;
  std::string decoded_;
  size_t given_ = 0;  // bytes of decoded_ handed out or belonging to the prompt
};

// Bytes at the end of s that start an incomplete UTF-8 sequence (0 when s ends complete).
size_t incomplete_utf8_tail(const std::string& s);

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

// The windows when the caller gives none: ctx = min(512, the model's context), and a
// stride of half of ctx (at least 1).
int64_t default_perplexity_ctx(const ModelConfig& config);
int64_t default_perplexity_stride(int64_t ctx);
// The summed NLL in bits per byte of a text of `bytes` bytes (its scored tokens' share).
double bits_per_byte(const PerplexityResult& r, int64_t bytes);

// Logits of `tokens` evaluated as one causal batch from position 0: [rows x n_vocab] for
// the requested rows (indices into tokens; empty = every row), in the order given.
// Throws UsageError for a row out of range. hooks: as ForwardOptions::hooks.
std::vector<float> causal_logits(const Model& model, std::span<const int32_t> tokens,
                                 const std::vector<int64_t>& rows = {}, AttentionHooks* hooks = nullptr);

}  // namespace attnsparse
