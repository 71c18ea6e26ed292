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

namespace attnsparse {

int64_t generation_budget(const ModelConfig& config, int64_t prompt_tokens, int64_t n_new) {
  if (n_new < 0) fail_usage("the number of new tokens must not be negative, got {}", n_new);
  if (prompt_tokens <= 0) fail_usage("the prompt encodes to no tokens (give some text)");
  if (prompt_tokens >= config.n_ctx)
    fail_usage("the prompt has {} tokens; the model's context is {}", prompt_tokens, config.n_ctx);
  return std::min(n_new, config.n_ctx - prompt_tokens);
}

size_t incomplete_utf8_tail(const std::string& s) {
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

ContinuationText::ContinuationText(const Tokenizer& tokenizer, std::span<const int32_t> prompt)
    : tokenizer_(tokenizer), all_(prompt.begin(), prompt.end()), decoded_(tokenizer.decode(all_)),
      given_(decoded_.size()) {}

std::string ContinuationText::push(int32_t token) {
  all_.push_back(token);
  decoded_ = tokenizer_.decode(all_);
  const size_t ready = decoded_.size() - incomplete_utf8_tail(decoded_);
  if (ready <= given_) return {};
  std::string out = decoded_.substr(given_, ready - given_);
  given_ = ready;
  return out;
}

std::string ContinuationText::finish() {
  if (decoded_.size() <= given_) return {};
  std::string out = decoded_.substr(given_);
  given_ = decoded_.size();
  return out;
}

std::string ContinuationText::of(const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                                 std::span<const int32_t> continuation) {
  std::vector<int32_t> all(prompt.begin(), prompt.end());
  const std::string before = tokenizer.decode(all);
  all.insert(all.end(), continuation.begin(), continuation.end());
  const std::string after = tokenizer.decode(all);
  return after.substr(std::min(before.size(), after.size()));
}

int64_t default_perplexity_ctx(const ModelConfig& config) { return std::min<int64_t>(512, config.n_ctx); }

int64_t default_perplexity_stride(int64_t ctx) { return std::max<int64_t>(1, ctx / 2); }

double bits_per_byte(const PerplexityResult& r, int64_t bytes) {
  return r.nll_sum / std::log(2.0) / static_cast<double>(bytes);
}

std::vector<float> causal_logits(const Model& model, std::span<const int32_t> tokens,
                                 const std::vector<int64_t>& rows, AttentionHooks* hooks) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int64_t r : rows)
    if (r < 0 || r >= n) fail_usage("row {} is out of range ({} tokens)", r, n);
  KVCache cache = model.make_cache(n);
  ForwardOptions opts;
  opts.logit_rows = rows;
  opts.hooks = hooks;
  std::vector<float> logits;
  model.forward(tokens, cache, opts, logits);
  return logits;
}

}  // namespace attnsparse
