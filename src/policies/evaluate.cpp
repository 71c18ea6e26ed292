// Policy evaluation against dense attention (evaluate.h).
#include "policies/evaluate.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/corpus.h"
#include "model/arch.h"
#include "model/documents.h"
#include "model/generate.h"
#include "policies/oracle.h"
#include "policies/session.h"

namespace attnsparse::policies {

namespace {

using clock_type = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

const char* kDefaultPolicies[] = {
    "window=64", "sink=4,window=60", "strided=16", "bigbird=global:4,window:32,random:28,seed:1",
    "topk=64", "dyntopk=alpha:2,C:0.5", "topp=0.9", "quest=page:16,pages:4",
    "h2o=budget:64,recent:16", "tova=budget:64", "snapkv=budget:64,window:16,pool:5",
};

// Next-token statistics of one pass over a document.
struct Predictions {
  double nll = 0;  // summed over predicted positions (nats)
  int64_t count = 0;
  std::vector<int32_t> argmax;  // per predicted position
};

// Runs `tokens` through `forward(chunk, logits)` chunk by chunk and scores every
// position t < n - 1 against token t + 1.
template <typename Forward>
Predictions predict(const std::vector<int32_t>& tokens, int64_t chunk, int64_t n_vocab, Forward&& forward) {
  Predictions p;
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::vector<float> logits;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t len = std::min(chunk, n - start);
    forward(std::span<const int32_t>(tokens.data() + start, len), logits);
    for (int64_t r = 0; r < len; ++r) {
      const int64_t t = start + r;
      if (t + 1 >= n) break;
      int32_t best = 0;
      const double nll = token_nll(logits.data() + r * n_vocab, n_vocab, tokens[t + 1], &best);
      if (!std::isfinite(nll)) fail("non-finite log-likelihood at position {} (the model produced NaN/inf logits)", t);
      p.nll += nll;
      ++p.count;
      p.argmax.push_back(best);
    }
  }
  return p;
}

struct DecodeTotals {
  double seconds = 0;
  int64_t tokens = 0, docs = 0, cache_bytes = 0, peak_cache_bytes = 0;
  std::optional<DecodeResult> result() const {
    if (docs == 0) return std::nullopt;
    DecodeResult r;
    r.tokens = tokens;
    r.ms_per_token = 1e3 * seconds / tokens;
    r.cache_bytes_mean = static_cast<double>(cache_bytes) / docs;
    r.cache_bytes_peak = peak_cache_bytes;
    return r;
  }
};

struct PolicyTotals {
  double nll = 0, wall = 0;
  int64_t count = 0, agree = 0;
  double kv_slots = 0, kv_slots_dense = 0;
  int64_t kv_bytes_max = 0;
  DecodeTotals decode;
};

// Real execution: the document's prompt (all but the last `steps` tokens) as one
// prefill, then the rest decoded one token at a time with real eviction. Adds the
// decode time and the bytes the KV cache really holds at the end.
void real_decode(const Model& model, const PolicyMap& map, const std::vector<int32_t>& toks, int64_t steps,
                 DecodeTotals& tot) {
  const int64_t n = static_cast<int64_t>(toks.size());
  if (steps <= 0 || n <= steps) return;
  PolicySession session(model, map, n);
  ForwardOptions prompt_opts;
  prompt_opts.no_logits = true;
  std::vector<float> logits;
  session.forward(std::span<const int32_t>(toks.data(), n - steps), prompt_opts, logits);
  ForwardOptions step_opts;
  step_opts.logit_rows = {0};
  const auto t0 = clock_type::now();
  for (int64_t t = n - steps; t < n; ++t) session.forward(std::span<const int32_t>(toks.data() + t, 1), step_opts, logits);
  tot.seconds += seconds_since(t0);
  tot.tokens += steps;
  tot.docs += 1;
  tot.cache_bytes += session.cache_bytes();
  tot.peak_cache_bytes = std::max(tot.peak_cache_bytes, session.peak_cache_bytes());
}

// "policy 'topk=0': k must be >= 1 (...)" -> "k must be >= 1 (...)".
std::string without_policy_prefix(const std::string& message) {
  if (message.rfind("policy '", 0) != 0) return message;
  const size_t end = message.find("': ");
  return end == std::string::npos ? message : message.substr(end + 3);
}

json decode_json(const std::optional<DecodeResult>& d) {
  if (!d) return nullptr;
  return {{"tokens", d->tokens},
          {"ms_per_token", d->ms_per_token},
          {"cache_bytes_mean", d->cache_bytes_mean},
          {"cache_bytes_peak", d->cache_bytes_peak}};
}

}  // namespace

std::vector<EvalPolicy> parse_eval_policies(const std::string& text) {
  std::vector<EvalPolicy> out;
  for (SweepItem& item : expand_sweep(text)) {
    if (!item.sweep) {
      out.push_back({PolicyMap::parse(item.text), std::nullopt});
      continue;
    }
    try {
      out.push_back({PolicyMap::parse(item.text), item.sweep});
    } catch (const UsageError& e) {
      fail_usage("policy '{}', {} = {}: {}", item.sweep->spec, item.sweep->field, item.sweep->value,
                 without_policy_prefix(e.what()));
    }
  }
  return out;
}

std::vector<EvalPolicy> default_eval_policies() {
  std::vector<EvalPolicy> out;
  for (const char* p : kDefaultPolicies) out.push_back({PolicyMap::parse(p), std::nullopt});
  return out;
}

int64_t document_token_limit(const Model& model, int64_t max_tokens) {
  const ModelConfig& c = model.config();
  return arch_info(c.arch).learned_positions ? std::min(max_tokens, c.n_ctx) : max_tokens;
}

std::vector<EvalDocument> prepare_evaluation(const Model& model, const std::vector<EvalPolicy>& policies,
                                             const std::vector<Document>& docs, int64_t max_tokens,
                                             const std::vector<std::string>& data_paths,
                                             std::vector<std::string>* skipped) {
  const ModelConfig& c = model.config();
  for (const auto& p : policies) p.map.validate(static_cast<int>(c.n_layer), static_cast<int>(c.n_head));
  std::vector<EvalDocument> documents =
      prepare_documents(model, docs, document_token_limit(model, max_tokens), skipped);
  if (documents.empty()) fail_usage("no document with at least 2 tokens in {}", fmt::join(data_paths, ", "));
  return documents;
}

std::vector<EvalDocument> prepare_documents(const Model& model, const std::vector<Document>& docs, int64_t limit,
                                            std::vector<std::string>* skipped) {
  std::vector<EvalDocument> out;
  for (const auto& d : docs) {
    std::vector<int32_t> t = prepare_document(model, d, limit).tokens;
    if (t.size() < 2) {
      if (skipped) skipped->push_back(fmt::format("{} ({} token)", d.id, t.size()));
      continue;
    }
    out.push_back({d.id, std::move(t)});
  }
  return out;
}

EvalResult evaluate_policies(const Model& model, const std::vector<EvalDocument>& docs,
                             const std::vector<EvalPolicy>& policies, const EvalOptions& options,
                             const EvalProgressFn& progress) {
  const ModelConfig& c = model.config();
  const int n_layer = static_cast<int>(c.n_layer), n_head = static_cast<int>(c.n_head);
  if (docs.empty()) fail_usage("no document with at least 2 tokens to evaluate");
  if (options.chunk < 1) fail_usage("--chunk must be at least 1, got {}", options.chunk);
  if (options.decode_tokens < 0) fail_usage("--decode-tokens must not be negative, got {}", options.decode_tokens);
  std::vector<PolicyMap> maps;
  for (const auto& p : policies) {
    p.map.validate(n_layer, n_head);
    maps.push_back(p.map);
  }
  for (const auto& d : docs) {
    if (d.tokens.size() < 2) fail_usage("document {} has fewer than 2 tokens", d.id);
    for (size_t i = 0; i < d.tokens.size(); ++i)
      if (d.tokens[i] < 0 || d.tokens[i] >= c.n_vocab)
        fail_usage("document {}: token id {} at index {} is out of range (vocabulary size {})", d.id, d.tokens[i], i,
                   c.n_vocab);
  }
  const int64_t chunk = options.chunk, decode_tokens = options.decode_tokens;
  auto report = [&](EvalProgress::Stage stage, size_t di, size_t m = 0) {
    if (progress) progress({stage, di, docs.size(), &docs[di], m});
  };

  {
    // Warm-up (weights paged in, threads started) so the first timed pass is not penalised.
    KVCache warm = model.make_cache(8);
    std::vector<float> logits;
    const size_t len = std::min<size_t>(8, docs[0].tokens.size());
    model.forward(std::span<const int32_t>(docs[0].tokens.data(), len), warm, {}, logits);
  }
  OracleHooks oracle(c, maps);
  Predictions dense_total;
  double dense_wall = 0;
  int64_t total_tokens = 0;
  std::vector<PolicyTotals> totals(maps.size());
  DecodeTotals dense_decode;
  const int64_t slot_bytes = 2 * c.n_layer * c.n_kv_head * c.head_dim * static_cast<int64_t>(sizeof(float));
  for (size_t di = 0; di < docs.size(); ++di) {
    const auto& toks = docs[di].tokens;
    const int64_t n = static_cast<int64_t>(toks.size());
    total_tokens += n;
    // Dense: plain forward (time, perplexity, reference predictions).
    report(EvalProgress::Stage::Dense, di);
    KVCache cache = model.make_cache(n);
    auto t0 = clock_type::now();
    const Predictions dense = predict(toks, chunk, c.n_vocab, [&](std::span<const int32_t> part, std::vector<float>& logits) {
      model.forward(part, cache, {}, logits);
    });
    dense_wall += seconds_since(t0);
    dense_total.nll += dense.nll;
    dense_total.count += dense.count;
    // Oracle: dense again, every layer's inputs through every policy.
    report(EvalProgress::Stage::Oracle, di);
    oracle.reset();
    KVCache oracle_cache = model.make_cache(n);
    ForwardOptions oracle_opts;
    oracle_opts.hooks = &oracle;
    oracle_opts.no_logits = true;
    std::vector<float> none;
    for (int64_t start = 0; start < n; start += chunk)
      model.forward(std::span<const int32_t>(toks.data() + start, std::min(chunk, n - start)), oracle_cache,
                    oracle_opts, none);
    // Each policy through the whole model.
    for (size_t m = 0; m < maps.size(); ++m) {
      report(EvalProgress::Stage::Policy, di, m);
      PolicySession session(model, maps[m], n, PolicySession::Eviction::Simulated);
      t0 = clock_type::now();
      const Predictions pol = predict(toks, chunk, c.n_vocab, [&](std::span<const int32_t> part, std::vector<float>& logits) {
        session.forward(part, {}, logits);
      });
      PolicyTotals& tot = totals[m];
      tot.wall += seconds_since(t0);
      tot.nll += pol.nll;
      tot.count += pol.count;
      for (size_t x = 0; x < pol.argmax.size(); ++x) tot.agree += pol.argmax[x] == dense.argmax[x];
      const int64_t slots = kv_slots_needed(maps[m], n_layer, n_head, n);
      tot.kv_slots += static_cast<double>(slots);
      tot.kv_slots_dense += static_cast<double>(n);
      tot.kv_bytes_max = std::max(tot.kv_bytes_max, slots * slot_bytes);
      real_decode(model, maps[m], toks, decode_tokens, tot.decode);
    }
    if (decode_tokens > 0) {
      report(EvalProgress::Stage::RealDecodeDense, di);
      real_decode(model, PolicyMap(), toks, decode_tokens, dense_decode);
    }
    report(EvalProgress::Stage::DocumentDone, di);
  }

  EvalResult res;
  res.options = options;
  res.documents = docs.size();
  res.tokens = total_tokens;
  res.predicted_tokens = dense_total.count;
  res.dense_ppl = std::exp(dense_total.nll / dense_total.count);
  res.dense_nll_per_token = dense_total.nll / dense_total.count;
  res.dense_wall_s = dense_wall;
  int64_t longest = 0;
  for (const auto& d : docs) longest = std::max<int64_t>(longest, static_cast<int64_t>(d.tokens.size()));
  res.kv_bytes_longest_document = longest * slot_bytes;
  res.dense_decode = dense_decode.result();
  const auto& stats = oracle.stats();
  for (size_t m = 0; m < maps.size(); ++m) {
    const PolicyTotals& tot = totals[m];
    PolicyResult r;
    r.policy = maps[m].spec();
    r.sweep = policies[m].sweep;
    OracleLayerStats all;
    double rel_mean = 0;
    for (int l = 0; l < n_layer; ++l) {
      const auto& st = stats[m][l];
      all.merge(st);
      rel_mean += st.relative_l2() / n_layer;
      r.layers.push_back({l, st.relative_l2(), st.rows ? st.tau / st.rows : 0.0,
                          st.visible ? double(st.kept) / st.visible : 1.0});
    }
    r.ppl = std::exp(tot.nll / tot.count);
    r.kept_fraction = all.visible ? double(all.kept) / all.visible : 1.0;
    r.tau_mean = all.rows ? all.tau / all.rows : 0.0;
    r.kv_bytes_relative = tot.kv_slots / tot.kv_slots_dense;
    r.kv_bytes_peak = tot.kv_bytes_max;
    r.kv_bytes_dense_peak = longest * slot_bytes;
    r.rel_l2_mean = rel_mean;
    r.rel_l2_all_layers = all.relative_l2();
    r.delta_ppl = r.ppl - res.dense_ppl;
    r.top1_agreement = double(tot.agree) / tot.count;
    r.wall_s = tot.wall;
    r.wall_relative = dense_wall > 0 ? tot.wall / dense_wall : 0.0;
    r.real_decode = tot.decode.result();
    res.policies.push_back(std::move(r));
  }
  return res;
}

json to_json(const EvalResult& res) {
  const EvalOptions& o = res.options;
  json report;
  report["model"] = o.model_path;
  report["data"] = o.data_paths;
  report["documents"] = res.documents;
  report["tokens"] = res.tokens;
  report["predicted_tokens"] = res.predicted_tokens;
  report["max_tokens"] = o.max_tokens;
  report["chunk"] = o.chunk;
  report["threads"] = o.threads;
  report["dense"] = {{"ppl", res.dense_ppl},
                     {"nll_per_token", res.dense_nll_per_token},
                     {"wall_s", res.dense_wall_s},
                     {"kv_bytes_longest_document", res.kv_bytes_longest_document}};
  report["decode_tokens"] = o.decode_tokens;
  report["dense"]["real_decode"] = decode_json(res.dense_decode);
  json rows = json::array();
  for (const PolicyResult& r : res.policies) {
    json per_layer = json::array();
    for (const LayerResult& l : r.layers)
      per_layer.push_back({{"layer", l.layer},
                           {"rel_l2", l.rel_l2},
                           {"tau_mean", l.tau_mean},
                           {"kept_fraction", l.kept_fraction}});
    json row = {{"policy", r.policy},
                {"kept_fraction", r.kept_fraction},
                {"kv_bytes_relative", r.kv_bytes_relative},
                {"kv_bytes_peak", r.kv_bytes_peak},
                {"kv_bytes_dense_peak", r.kv_bytes_dense_peak},
                {"tau_mean", r.tau_mean},
                {"rel_l2_mean", r.rel_l2_mean},
                {"rel_l2_all_layers", r.rel_l2_all_layers},
                {"layers", per_layer},
                {"ppl", r.ppl},
                {"delta_ppl", r.delta_ppl},
                {"top1_agreement", r.top1_agreement},
                {"wall_s", r.wall_s},
                {"wall_relative", r.wall_relative},
                {"real_decode", decode_json(r.real_decode)}};
    if (r.sweep) {
      json value = std::isfinite(r.sweep->number) ? json(r.sweep->number) : json(r.sweep->value);
      if (std::isfinite(r.sweep->number) && r.sweep->number == std::round(r.sweep->number) &&
          std::fabs(r.sweep->number) < 9e15)
        value = static_cast<int64_t>(r.sweep->number);
      row["sweep"] = {{"spec", r.sweep->spec}, {"field", r.sweep->field}, {"value", value}, {"index", r.sweep->index}};
    }
    rows.push_back(std::move(row));
  }
  report["policies"] = rows;
  report["definitions"] = {
      {"kept_fraction", "sum |G_t| / sum (t+1) over layers, heads, query rows (dense hidden states)"},
      {"kv_bytes_relative", "peak KV slots needed decoding token by token with real eviction / dense (n), mean over documents"},
      {"tau_mean", "mean over rows of 1 - sum_{j in G_t} a_j (dense probabilities)"},
      {"rel_l2_mean", "mean over layers of ||O - O_G||_F / ||O||_F, oracle mode (same q/k/v as dense)"},
      {"ppl", "exp(mean next-token NLL) with the policy through the whole model"},
      {"top1_agreement", "share of positions whose arg-max next token equals dense's"},
      {"wall_s", "wall time of the policy's forward passes (evicting: simulated token by token)"},
      {"real_decode", "--decode-tokens N: prompt prefilled, last N tokens decoded one by one with real eviction; "
                      "cache bytes = K and V really held at the end (mean over documents)"}};
  return report;
}

std::string eval_table(const EvalResult& res) {
  std::string out;
  out += fmt::format("{:<44} {:>7} {:>7} {:>8} {:>9} {:>10} {:>9} {:>7} {:>8}\n", "policy", "kept", "kv", "tau",
                     "rel_l2", "ppl", "d_ppl", "top1", "time_s");
  out += fmt::format("{:<44} {:>7.4f} {:>7.4f} {:>8.5f} {:>9.2e} {:>10.4f} {:>+9.4f} {:>7.4f} {:>8.2f}\n", "dense", 1.0,
                     1.0, 0.0, 0.0, res.dense_ppl, 0.0, 1.0, res.dense_wall_s);
  for (const PolicyResult& r : res.policies)
    out += fmt::format("{:<44} {:>7.4f} {:>7.4f} {:>8.5f} {:>9.2e} {:>10.4f} {:>+9.4f} {:>7.4f} {:>8.2f}\n",
                       r.policy.substr(0, 44), r.kept_fraction, r.kv_bytes_relative, r.tau_mean, r.rel_l2_mean, r.ppl,
                       r.delta_ppl, r.top1_agreement, r.wall_s);
  if (res.dense_decode) {
    out += fmt::format("\nreal decoding of the last {} tokens per document (prompt prefilled, then one token at a time):\n",
                       res.options.decode_tokens);
    out += fmt::format("{:<44} {:>12} {:>14} {:>10}\n", "policy", "ms/token", "cache bytes", "vs dense");
    const double dense_bytes = res.dense_decode->cache_bytes_mean;
    auto line = [&](const std::string& name, const DecodeResult& d) {
      out += fmt::format("{:<44} {:>12.2f} {:>14.0f} {:>10.4f}\n", name.substr(0, 44), d.ms_per_token,
                         d.cache_bytes_mean, d.cache_bytes_mean / dense_bytes);
    };
    line("dense", *res.dense_decode);
    for (const PolicyResult& r : res.policies)
      if (r.real_decode) line(r.policy, *r.real_decode);
  }
  return out;
}

}  // namespace attnsparse::policies
