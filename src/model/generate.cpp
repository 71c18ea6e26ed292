#include "model/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace attnsparse {

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) {
  if (!(p_.top_p > 0.f && p_.top_p <= 1.f)) fail_usage("--top-p must be in (0, 1], got {}", p_.top_p);
  if (std::isnan(p_.temperature)) fail_usage("--temp must be a number");
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
  if (n_vocab <= 0) fail("sampler: empty logits");
  int32_t best = 0;
  for (int64_t i = 0; i < n_vocab; ++i) {
    if (std::isnan(logits[i])) fail("sampler: the model produced NaN logits (token {})", i);
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  if (p_.temperature <= 0.f) return best;
  // Softmax at the temperature (shifted by the max), then the nucleus.
  const float inv_t = 1.f / p_.temperature;
  const float mx = logits[best];
  cand_.resize(n_vocab);
  double total = 0;
  for (int64_t i = 0; i < n_vocab; ++i) {
    const float w = std::exp((logits[i] - mx) * inv_t);
    cand_[i] = {w, static_cast<int32_t>(i)};
    total += w;
  }
  std::sort(cand_.begin(), cand_.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  size_t keep = 0;
  double mass = 0;
  const double target = p_.top_p * total;
  while (keep < cand_.size()) {
    mass += cand_[keep].first;
    ++keep;
    if (mass >= target) break;
  }
  // u in [0, mass): 53 random bits, independent of the standard library's distributions.
  const double u = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0) * mass;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += cand_[i].first;
    if (u < acc) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

GenerateResult generate(const Model& model, std::span<const int32_t> prompt, int64_t n_new,
                        const SamplingParams& params, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail_usage("generate: the prompt has no tokens");
  if (n_new < 0) fail_usage("generate: -n must not be negative");
  const ModelConfig& c = model.config();
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  Sampler sampler(params);
  KVCache cache = model.make_cache(n_prompt + std::max<int64_t>(n_new, 1));
  GenerateResult res;
  if (n_new == 0) return res;
  const int32_t eos = model.tokenizer().eos_id();
  ForwardOptions opts;
  opts.logit_rows = {n_prompt - 1};
  std::vector<float> logits;
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  model.forward(prompt, cache, opts, logits);
  res.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  t0 = clock::now();
  opts.logit_rows = {0};
  for (int64_t i = 0; i < n_new; ++i) {
    const int32_t next = sampler.sample(logits.data(), c.n_vocab);
    if (next == eos) {
      res.stopped_at_eos = true;
      break;
    }
    res.tokens.push_back(next);
    if (on_token) on_token(next);
    if (i + 1 == n_new) break;
    model.forward(std::span<const int32_t>(&next, 1), cache, opts, logits);
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return res;
}

double token_nll(const float* row, int64_t n_vocab, int32_t target, int32_t* argmax) {
  int32_t best = 0;
  float mx = row[0];
  for (int64_t v = 1; v < n_vocab; ++v)
    if (row[v] > mx) {
      mx = row[v];
      best = static_cast<int32_t>(v);
    }
  double sum = 0;
  for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  if (argmax) *argmax = best;
  return static_cast<double>(mx) + std::log(sum) - row[target];
}

PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens, int64_t ctx,
                            int64_t stride, const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) fail_usage("perplexity needs at least 2 tokens, got {}", n);
  if (ctx < 2) fail_usage("--ctx must be at least 2, got {}", ctx);
  if (stride < 1 || stride > ctx) fail_usage("--stride must be in 1..ctx ({}), got {}", ctx, stride);
  const int64_t V = model.config().n_vocab;
  PerplexityResult res;
  res.tokens = n;
  // Number of windows: the last one is the first whose end reaches n.
  const int64_t total = n <= ctx ? 1 : (n - ctx + stride - 1) / stride + 1;
  int64_t scored_end = 1;  // tokens [1, scored_end) are scored
  std::vector<float> logits;
  for (int64_t w = 0; w < total; ++w) {
    const int64_t begin = w * stride;
    const int64_t end = std::min(begin + ctx, n);
    const int64_t first = std::max(scored_end, begin + 1);
    ForwardOptions opts;
    for (int64_t t = first; t < end; ++t) opts.logit_rows.push_back(t - 1 - begin);
    // Rows arrive micro-batch by micro-batch in increasing order (one micro-batch of
    // logits in memory, not the window's).
    opts.on_logits = [&](int64_t row, const float* lg) {
      const int64_t t = begin + row + 1;
      const double nll = token_nll(lg, V, tokens[t]);
      if (!std::isfinite(nll)) fail("perplexity: non-finite log-likelihood at token {}", t);
      res.nll_sum += nll;
      ++res.scored;
    };
    KVCache cache = model.make_cache(end - begin);
    model.forward(tokens.subspan(begin, end - begin), cache, opts, logits);
    scored_end = end;
    ++res.windows;
    if (progress) progress(w + 1, total);
  }
  return res;
}

}  // namespace attnsparse
