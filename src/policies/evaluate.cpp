// Policy evaluation against dense attention (evaluate.h).
#include "policies/evaluate.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "io/corpus.h"
#include "io/json_file.h"
#include "model/arch.h"
#include "model/documents.h"
#include "model/generate.h"
#include "model/model_util.h"
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

std::vector<EvalPolicy> eval_policies_from(const std::vector<std::string>& texts) {
  if (texts.empty()) return default_eval_policies();
  std::vector<EvalPolicy> out;
  for (const auto& t : texts)
    for (auto& e : parse_eval_policies(t)) out.push_back(std::move(e));
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

namespace {

// One document's contribution to the run's totals: the values one process adds to them,
// kept apart so that they can be added elsewhere (rank 0, a resumed run) in the same order
// and with the same roundings.
struct PolicyOutcome {
  double wall = 0, nll = 0;
  int64_t count = 0, agree = 0, slots = 0;
  DecodeTotals decode;  // docs == 0: no real decoding
};

struct DocumentOutcome {
  int64_t tokens = 0;
  double dense_nll = 0, dense_wall = 0;
  int64_t dense_count = 0;
  std::vector<std::vector<std::vector<OracleLayerStats>>> oracle;  // [map][layer][call]
  std::vector<PolicyOutcome> policies;
  DecodeTotals dense_decode;
};

// The run so far: sums over the documents done, in document order.
struct Totals {
  int64_t tokens = 0;
  double dense_nll = 0, dense_wall = 0;
  int64_t dense_count = 0;
  std::vector<PolicyTotals> policies;
  DecodeTotals dense_decode;
  std::vector<std::vector<OracleLayerStats>> oracle;  // [map][layer]
};

void add_decode(DecodeTotals& tot, const DecodeTotals& d) {
  if (d.docs == 0) return;
  tot.seconds += d.seconds;
  tot.tokens += d.tokens;
  tot.docs += d.docs;
  tot.cache_bytes += d.cache_bytes;
  tot.peak_cache_bytes = std::max(tot.peak_cache_bytes, d.peak_cache_bytes);
}

void add(Totals& t, const DocumentOutcome& o, int64_t slot_bytes) {
  t.tokens += o.tokens;
  t.dense_wall += o.dense_wall;
  t.dense_nll += o.dense_nll;
  t.dense_count += o.dense_count;
  for (size_t m = 0; m < o.oracle.size(); ++m)
    for (size_t l = 0; l < o.oracle[m].size(); ++l)
      for (const OracleLayerStats& call : o.oracle[m][l]) t.oracle[m][l].merge(call);
  for (size_t m = 0; m < o.policies.size(); ++m) {
    const PolicyOutcome& p = o.policies[m];
    PolicyTotals& tot = t.policies[m];
    tot.wall += p.wall;
    tot.nll += p.nll;
    tot.count += p.count;
    tot.agree += p.agree;
    tot.kv_slots += static_cast<double>(p.slots);
    tot.kv_slots_dense += static_cast<double>(o.tokens);
    tot.kv_bytes_max = std::max(tot.kv_bytes_max, p.slots * slot_bytes);
    add_decode(tot.decode, p.decode);
  }
  add_decode(t.dense_decode, o.dense_decode);
}

// The three passes over one document (evaluate.h). `oracle` is the run's hooks (reset here).
DocumentOutcome evaluate_document(const Model& model, const EvalDocument& doc, const std::vector<PolicyMap>& maps,
                                  OracleHooks& oracle, const EvalOptions& options,
                                  const std::function<void(EvalProgress::Stage, size_t)>& report) {
  const ModelConfig& c = model.config();
  const int n_layer = static_cast<int>(c.n_layer), n_head = static_cast<int>(c.n_head);
  const int64_t chunk = options.chunk, decode_tokens = options.decode_tokens;
  const auto& toks = doc.tokens;
  const int64_t n = static_cast<int64_t>(toks.size());
  DocumentOutcome out;
  out.tokens = n;
  // Dense: plain forward (time, perplexity, reference predictions).
  report(EvalProgress::Stage::Dense, 0);
  KVCache cache = model.make_cache(n);
  auto t0 = clock_type::now();
  const Predictions dense = predict(toks, chunk, c.n_vocab, [&](std::span<const int32_t> part, std::vector<float>& logits) {
    model.forward(part, cache, {}, logits);
  });
  out.dense_wall = seconds_since(t0);
  out.dense_nll = dense.nll;
  out.dense_count = dense.count;
  // Oracle: dense again, every layer's inputs through every policy.
  report(EvalProgress::Stage::Oracle, 0);
  oracle.reset();
  KVCache oracle_cache = model.make_cache(n);
  ForwardOptions oracle_opts;
  oracle_opts.hooks = &oracle;
  oracle_opts.no_logits = true;
  std::vector<float> none;
  for (int64_t start = 0; start < n; start += chunk)
    model.forward(std::span<const int32_t>(toks.data() + start, std::min(chunk, n - start)), oracle_cache,
                  oracle_opts, none);
  out.oracle = oracle.calls();
  // Each policy through the whole model.
  for (size_t m = 0; m < maps.size(); ++m) {
    report(EvalProgress::Stage::Policy, m);
    PolicySession session(model, maps[m], n, PolicySession::Eviction::Simulated);
    t0 = clock_type::now();
    const Predictions pol = predict(toks, chunk, c.n_vocab, [&](std::span<const int32_t> part, std::vector<float>& logits) {
      session.forward(part, {}, logits);
    });
    PolicyOutcome p;
    p.wall = seconds_since(t0);
    p.nll = pol.nll;
    p.count = pol.count;
    for (size_t x = 0; x < pol.argmax.size(); ++x) p.agree += pol.argmax[x] == dense.argmax[x];
    p.slots = kv_slots_needed(maps[m], n_layer, n_head, n);
    real_decode(model, maps[m], toks, decode_tokens, p.decode);
    out.policies.push_back(std::move(p));
  }
  if (decode_tokens > 0) {
    report(EvalProgress::Stage::RealDecodeDense, 0);
    real_decode(model, PolicyMap(), toks, decode_tokens, out.dense_decode);
  }
  report(EvalProgress::Stage::DocumentDone, 0);
  return out;
}

// Serialised (CBOR through nlohmann::json: doubles are stored exactly).
json stats_json(const OracleLayerStats& s) { return json::array({s.tau, s.diff2, s.ref2, s.rows, s.kept, s.visible}); }

OracleLayerStats stats_of(const json& j) {
  OracleLayerStats s;
  s.tau = j.at(0).get<double>();
  s.diff2 = j.at(1).get<double>();
  s.ref2 = j.at(2).get<double>();
  s.rows = j.at(3).get<int64_t>();
  s.kept = j.at(4).get<int64_t>();
  s.visible = j.at(5).get<int64_t>();
  return s;
}

json decode_totals_json(const DecodeTotals& d) {
  return json::array({d.seconds, d.tokens, d.docs, d.cache_bytes, d.peak_cache_bytes});
}

DecodeTotals decode_totals_of(const json& j) {
  DecodeTotals d;
  d.seconds = j.at(0).get<double>();
  d.tokens = j.at(1).get<int64_t>();
  d.docs = j.at(2).get<int64_t>();
  d.cache_bytes = j.at(3).get<int64_t>();
  d.peak_cache_bytes = j.at(4).get<int64_t>();
  return d;
}

json outcome_json(const DocumentOutcome& o) {
  json oracle = json::array();
  for (const auto& per_layer : o.oracle) {
    json layers = json::array();
    for (const auto& calls : per_layer) {
      json cs = json::array();
      for (const auto& s : calls) cs.push_back(stats_json(s));
      layers.push_back(std::move(cs));
    }
    oracle.push_back(std::move(layers));
  }
  json pols = json::array();
  for (const PolicyOutcome& p : o.policies)
    pols.push_back(json::array({p.wall, p.nll, p.count, p.agree, p.slots, decode_totals_json(p.decode)}));
  return {{"tokens", o.tokens},
          {"dense", json::array({o.dense_nll, o.dense_count, o.dense_wall})},
          {"oracle", std::move(oracle)},
          {"policies", std::move(pols)},
          {"dense_decode", decode_totals_json(o.dense_decode)}};
}

// `maps` x `layers`: the shape every rank's outcome must have.
DocumentOutcome outcome_of(const json& j, size_t maps, size_t layers) {
  DocumentOutcome o;
  o.tokens = j.at("tokens").get<int64_t>();
  const json& d = j.at("dense");
  o.dense_nll = d.at(0).get<double>();
  o.dense_count = d.at(1).get<int64_t>();
  o.dense_wall = d.at(2).get<double>();
  const json& oracle = j.at("oracle");
  const json& pols = j.at("policies");
  if (oracle.size() != maps || pols.size() != maps) fail("a document's outcome has {} policies, expected {}", pols.size(), maps);
  o.oracle.resize(maps);
  for (size_t m = 0; m < maps; ++m) {
    if (oracle[m].size() != layers) fail("a document's outcome has {} layers, expected {}", oracle[m].size(), layers);
    o.oracle[m].resize(layers);
    for (size_t l = 0; l < layers; ++l)
      for (const json& s : oracle[m][l]) o.oracle[m][l].push_back(stats_of(s));
    const json& p = pols[m];
    PolicyOutcome po;
    po.wall = p.at(0).get<double>();
    po.nll = p.at(1).get<double>();
    po.count = p.at(2).get<int64_t>();
    po.agree = p.at(3).get<int64_t>();
    po.slots = p.at(4).get<int64_t>();
    po.decode = decode_totals_of(p.at(5));
    o.policies.push_back(po);
  }
  o.dense_decode = decode_totals_of(j.at("dense_decode"));
  return o;
}

json totals_json(const Totals& t) {
  json oracle = json::array();
  for (const auto& per_layer : t.oracle) {
    json layers = json::array();
    for (const auto& s : per_layer) layers.push_back(stats_json(s));
    oracle.push_back(std::move(layers));
  }
  json pols = json::array();
  for (const PolicyTotals& p : t.policies)
    pols.push_back(json::array({p.wall, p.nll, p.count, p.agree, p.kv_slots, p.kv_slots_dense, p.kv_bytes_max,
                                decode_totals_json(p.decode)}));
  return {{"tokens", t.tokens},
          {"dense", json::array({t.dense_nll, t.dense_count, t.dense_wall})},
          {"oracle", std::move(oracle)},
          {"policies", std::move(pols)},
          {"dense_decode", decode_totals_json(t.dense_decode)}};
}

Totals totals_of(const json& j, size_t maps, size_t layers) {
  Totals t;
  t.tokens = j.at("tokens").get<int64_t>();
  const json& d = j.at("dense");
  t.dense_nll = d.at(0).get<double>();
  t.dense_count = d.at(1).get<int64_t>();
  t.dense_wall = d.at(2).get<double>();
  const json& oracle = j.at("oracle");
  const json& pols = j.at("policies");
  if (oracle.size() != maps || pols.size() != maps) fail("{} policies, expected {}", pols.size(), maps);
  t.oracle.resize(maps);
  for (size_t m = 0; m < maps; ++m) {
    if (oracle[m].size() != layers) fail("{} layers, expected {}", oracle[m].size(), layers);
    for (const json& s : oracle[m]) t.oracle[m].push_back(stats_of(s));
    const json& p = pols[m];
    PolicyTotals pt;
    pt.wall = p.at(0).get<double>();
    pt.nll = p.at(1).get<double>();
    pt.count = p.at(2).get<int64_t>();
    pt.agree = p.at(3).get<int64_t>();
    pt.kv_slots = p.at(4).get<double>();
    pt.kv_slots_dense = p.at(5).get<double>();
    pt.kv_bytes_max = p.at(6).get<int64_t>();
    pt.decode = decode_totals_of(p.at(7));
    t.policies.push_back(pt);
  }
  t.dense_decode = decode_totals_of(j.at("dense_decode"));
  return t;
}

constexpr const char* kCheckpointFormat = "attnsparse.eval-checkpoint/1";

// What the run is (model, documents, policies, options): a checkpoint must match it.
std::string fingerprint_of(const std::vector<EvalDocument>& docs, const std::vector<EvalPolicy>& policies,
                           const EvalOptions& o) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the documents' ids and tokens
  auto mix = [&h](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 0x100000001b3ull;
  };
  for (const EvalDocument& d : docs) {
    mix(d.id.data(), d.id.size() + 1);
    const uint64_t n = d.tokens.size();
    mix(&n, sizeof n);
    mix(d.tokens.data(), d.tokens.size() * sizeof(int32_t));
  }
  json pols = json::array();
  for (const EvalPolicy& p : policies) pols.push_back(p.map.spec());
  std::error_code ec;
  const std::filesystem::path model = std::filesystem::absolute(o.model_path, ec);
  const int64_t model_bytes = std::filesystem::is_regular_file(o.model_path, ec)
                                  ? static_cast<int64_t>(std::filesystem::file_size(o.model_path, ec))
                                  : 0;
  return json{{"model", model.string()}, {"model_bytes", model_bytes}, {"documents", docs.size()},
              {"tokens", fmt::format("{:016x}", h)}, {"policies", pols}, {"chunk", o.chunk},
              {"decode_tokens", o.decode_tokens}, {"max_tokens", o.max_tokens}}
      .dump();
}

void write_checkpoint(const std::string& path, const std::string& fingerprint, size_t next_doc, const Totals& t) {
  const json j{{"format", kCheckpointFormat}, {"fingerprint", fingerprint}, {"next_doc", next_doc},
               {"totals", totals_json(t)}};
  const std::vector<uint8_t> bytes = json::to_cbor(j);
  write_file_atomic(path, bytes.data(), bytes.size());
}

// The documents done and the totals after them.
size_t read_checkpoint(const std::string& path, const std::string& fingerprint, size_t documents, size_t maps,
                       size_t layers, Totals& t) {
  const std::string raw = read_input_file(path);
  size_t next = 0;
  try {
    const json j = json::from_cbor(std::vector<uint8_t>(raw.begin(), raw.end()));
    if (j.at("format") != kCheckpointFormat) fail_file(path, "not an eval-policy checkpoint");
    if (j.at("fingerprint") != fingerprint)
      fail_file(path,
                "the checkpoint belongs to a run with a different model, data, policies or options; rerun "
                "with the same arguments, or without --resume to start over");
    next = j.at("next_doc").get<size_t>();
    if (next > documents) fail_file(path, "the checkpoint does not fit this run");
    t = totals_of(j.at("totals"), maps, layers);
  } catch (const json::exception& e) {
    fail_file(path, "damaged checkpoint ({})", json_error_text(e));
  } catch (const FormatError& e) {
    if (std::string(e.what()).starts_with(path)) throw;
    fail_file(path, "damaged checkpoint ({})", e.what());
  } catch (const Error& e) {
    fail_file(path, "damaged checkpoint ({})", e.what());
  }
  return next;
}

// The report's numbers from the totals over all documents.
EvalResult result_of(const Totals& t, const std::vector<EvalDocument>& docs, const std::vector<PolicyMap>& maps,
                     const std::vector<EvalPolicy>& policies, const EvalOptions& options, int n_layer,
                     int64_t slot_bytes) {
  EvalResult res;
  res.options = options;
  res.documents = docs.size();
  res.tokens = t.tokens;
  res.predicted_tokens = t.dense_count;
  res.dense_ppl = std::exp(t.dense_nll / t.dense_count);
  res.dense_nll_per_token = t.dense_nll / t.dense_count;
  res.dense_wall_s = t.dense_wall;
  int64_t longest = 0;
  for (const auto& d : docs) longest = std::max<int64_t>(longest, static_cast<int64_t>(d.tokens.size()));
  res.kv_bytes_longest_document = longest * slot_bytes;
  res.dense_decode = t.dense_decode.result();
  for (size_t m = 0; m < maps.size(); ++m) {
    const PolicyTotals& tot = t.policies[m];
    PolicyResult r;
    r.policy = maps[m].spec();
    r.sweep = policies[m].sweep;
    OracleLayerStats all;
    double rel_mean = 0;
    for (int l = 0; l < n_layer; ++l) {
      const auto& st = t.oracle[m][l];
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
    r.wall_relative = t.dense_wall > 0 ? tot.wall / t.dense_wall : 0.0;
    r.real_decode = tot.decode.result();
    res.policies.push_back(std::move(r));
  }
  return res;
}

int64_t tokens_from(const std::vector<EvalDocument>& docs, size_t first) {
  int64_t n = 0;
  for (size_t d = first; d < docs.size(); ++d) n += static_cast<int64_t>(docs[d].tokens.size());
  return n;
}

}  // namespace

EvalResult evaluate_policies(const Model& model, const std::vector<EvalDocument>& docs,
                             const std::vector<EvalPolicy>& policies, const EvalOptions& options,
                             const EvalProgressFn& progress, const EvalRun& run) {
  const ModelConfig& c = model.config();
  const int n_layer = static_cast<int>(c.n_layer), n_head = static_cast<int>(c.n_head);
  if (docs.empty()) fail_usage("no document with at least 2 tokens to evaluate");
  if (options.chunk < 1) fail_usage("--chunk must be at least 1, got {}", options.chunk);
  if (options.decode_tokens < 0) fail_usage("--decode-tokens must not be negative, got {}", options.decode_tokens);
  // Real decoding prefills all but the last N tokens: a document needs more than N. When
  // none has, the run would report no decode at all (null) as if it had not been asked for.
  if (options.decode_tokens > 0) {
    int64_t longest = 0;
    for (const auto& d : docs) longest = std::max<int64_t>(longest, static_cast<int64_t>(d.tokens.size()));
    if (longest <= options.decode_tokens)
      fail_usage("--decode-tokens {}: no document is longer than that (the longest has {} tokens after "
                 "--max-tokens); real decoding needs at least one prompt token before the decoded ones",
                 options.decode_tokens, longest);
  }
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
  ShardComm* comm = run.comm;
  const int rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
  const bool root = rank == 0;
  const auto start = clock_type::now();
  const int64_t slot_bytes = 2 * c.n_layer * c.n_kv_head * c.head_dim * static_cast<int64_t>(sizeof(float));
  const std::string fingerprint = run.checkpoint_path.empty() && !comm ? "" : fingerprint_of(docs, policies, options);

  Totals totals;
  totals.policies.resize(maps.size());
  totals.oracle.assign(maps.size(), std::vector<OracleLayerStats>(n_layer));
  size_t first_doc = 0;
  int64_t bytes_merged = 0;
  // The checkpoint (rank 0 reads it); sharded: agreed by all, then where to start and what
  // the run is go to every rank, which checks that it has the same run.
  ShardComm::Failure failure;
  try {
    if (root && run.resume && !run.checkpoint_path.empty()) {
      if (std::filesystem::exists(run.checkpoint_path)) {
        first_doc = read_checkpoint(run.checkpoint_path, fingerprint, docs.size(), maps.size(), n_layer, totals);
        if (run.notice) run.notice(fmt::format("resumed after {} documents from the checkpoint", first_doc));
      } else if (run.notice) {
        run.notice(fmt::format("--resume: no checkpoint {}; starting from the beginning", run.checkpoint_path));
      }
    }
  } catch (const std::exception& e) {
    if (!comm) throw;
    failure = ShardComm::failure_of(e);
  }
  if (comm) {
    comm->agree(failure);
    const json plan = json::from_cbor(comm->broadcast(json::to_cbor(json{{"first_doc", first_doc}, {"run", fingerprint}})));
    first_doc = plan.at("first_doc").get<size_t>();
    failure = {};
    if (plan.at("run").get<std::string>() != fingerprint)
      failure = {true, 2,
                 fmt::format("rank {} has a different run than rank 0 (model, documents, policies or options differ); "
                             "give every rank the same files and arguments",
                             rank)};
    comm->agree(failure);
  }

  const int64_t tokens_total = tokens_from(docs, first_doc);
  int64_t tokens_done = 0;
  auto job_progress = [&](size_t done, bool finished) {
    if (!root || !run.job_progress) return;
    EvalJobProgress p;
    p.documents_done = done;
    p.documents = docs.size();
    p.documents_resumed = first_doc;
    p.tokens_done = tokens_done;
    p.tokens = tokens_total;
    p.seconds = seconds_since(start);
    p.ranks = ranks;
    p.finished = finished;
    run.job_progress(p);
  };
  auto checkpoint = [&](size_t done) {
    if (run.checkpoint_path.empty()) return;
    write_checkpoint(run.checkpoint_path, fingerprint, done, totals);
    if (run.after_checkpoint) run.after_checkpoint(done);
  };

  if (first_doc < docs.size()) {
    // Warm-up (weights paged in, threads started) so the first timed pass is not penalised.
    KVCache warm = model.make_cache(8);
    std::vector<float> logits;
    const size_t len = std::min<size_t>(8, docs[0].tokens.size());
    model.forward(std::span<const int32_t>(docs[0].tokens.data(), len), warm, {}, logits);
  }
  OracleHooks oracle(c, maps);
  if (!comm) {
    for (size_t di = first_doc; di < docs.size(); ++di) {
      const auto report = [&](EvalProgress::Stage stage, size_t m) {
        if (progress) progress({stage, di, docs.size(), &docs[di], m});
      };
      if (run.before_document) run.before_document(di);
      add(totals, evaluate_document(model, docs[di], maps, oracle, options, report), slot_bytes);
      tokens_done += static_cast<int64_t>(docs[di].tokens.size());
      checkpoint(di + 1);
      job_progress(di + 1, false);
    }
  } else {
    // Rounds of `ranks` documents: document d on rank d % ranks; rank 0 adds the round's
    // outcomes in document order. The first failing document (the one a single process
    // would meet first), or a failure to add or checkpoint on rank 0, stops every rank.
    const auto no_progress = [](EvalProgress::Stage, size_t) {};
    for (size_t base = first_doc; base < docs.size(); base += size_t(ranks)) {
      const size_t end = std::min(base + size_t(ranks), docs.size()), mine = base + size_t(rank);
      json message = json::object();
      if (mine < end) {
        try {
          if (run.before_document) run.before_document(mine);
          message = outcome_json(evaluate_document(model, docs[mine], maps, oracle, options, no_progress));
        } catch (const std::exception& e) {
          const ShardComm::Failure f = ShardComm::failure_of(e);
          message = {{"error", f.message}, {"kind", f.kind}};
        }
      }
      const std::vector<std::vector<uint8_t>> parts = comm->gather(json::to_cbor(message));
      failure = {};
      if (root) {
        try {
          for (size_t d = base; d < end; ++d) {
            const std::vector<uint8_t>& part = parts[d - base];
            bytes_merged += static_cast<int64_t>(part.size());
            const json m = json::from_cbor(part);
            if (m.contains("error")) {
              failure = {true, m.at("kind").get<int>(), m.at("error").get<std::string>()};
              break;
            }
            add(totals, outcome_of(m, maps.size(), size_t(n_layer)), slot_bytes);
            tokens_done += static_cast<int64_t>(docs[d].tokens.size());
          }
          if (!failure.failed) {
            checkpoint(end);
            job_progress(end, false);
          }
        } catch (const std::exception& e) {
          failure = ShardComm::failure_of(e);
        }
      }
      comm->agree(failure);
    }
    comm->closed = true;  // no collective follows: later errors are rank 0's own
    if (!root) return EvalResult{};
  }
  job_progress(docs.size(), true);
  EvalResult res = result_of(totals, docs, maps, policies, options, n_layer, slot_bytes);
  res.documents_resumed = first_doc;
  if (comm) {
    res.ranks = ranks;
    res.bytes_merged = bytes_merged;
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
  // How the run went, only when it was sharded or resumed (an ordinary run's report is
  // unchanged).
  if (res.ranks > 0) {
    report["ranks"] = res.ranks;
    report["bytes_merged"] = res.bytes_merged;
  }
  if (res.documents_resumed > 0) report["documents_resumed"] = res.documents_resumed;
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
