// attnsparse eval-policy MODEL --data D [--policy P]... --out report.json: what each
// sparse-attention policy costs against dense attention on the same documents.
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/verb.h"
#include "core/error.h"
#include "io/corpus.h"
#include "model/model.h"
#include "model/model_util.h"
#include "policies/oracle.h"
#include "policies/session.h"

namespace attnsparse::cli {
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
  double nll = 0;                // summed over predicted positions (nats)
  int64_t count = 0;
  std::vector<int32_t> argmax;   // per predicted position
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
      const float* row = logits.data() + r * n_vocab;
      int32_t best = 0;
      double mx = row[0];
      for (int64_t v = 1; v < n_vocab; ++v)
        if (row[v] > mx) {
          mx = row[v];
          best = static_cast<int32_t>(v);
        }
      double sum = 0;
      for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
      const double nll = mx + std::log(sum) - row[tokens[t + 1]];
      if (!std::isfinite(nll)) fail("non-finite log-likelihood at position {} (the model produced NaN/inf logits)", t);
      p.nll += nll;
      ++p.count;
      p.argmax.push_back(best);
    }
  }
  return p;
}

struct PolicyTotals {
  double nll = 0, wall = 0;
  int64_t count = 0, agree = 0;
  double kv_slots = 0, kv_slots_dense = 0;
  int64_t kv_bytes_max = 0;
  // Real decoding (--decode-tokens): summed over documents.
  double decode_seconds = 0;
  int64_t decode_tokens = 0, decode_docs = 0, cache_bytes = 0, peak_cache_bytes = 0;
};

// Real execution: the document's prompt (all but the last `steps` tokens) as one
// prefill, then the rest decoded one token at a time with real eviction. Adds the
// decode time and the bytes the KV cache really holds at the end.
void real_decode(const Model& model, const policies::PolicyMap& map, const std::vector<int32_t>& toks,
                 int64_t steps, PolicyTotals& tot) {
  const int64_t n = static_cast<int64_t>(toks.size());
  if (steps <= 0 || n <= steps) return;
  policies::PolicySession session(model, map, n);
  ForwardOptions prompt_opts;
  prompt_opts.no_logits = true;
  std::vector<float> logits;
  session.forward(std::span<const int32_t>(toks.data(), n - steps), prompt_opts, logits);
  ForwardOptions step_opts;
  step_opts.logit_rows = {0};
  const auto t0 = clock_type::now();
  for (int64_t t = n - steps; t < n; ++t) session.forward(std::span<const int32_t>(toks.data() + t, 1), step_opts, logits);
  tot.decode_seconds += seconds_since(t0);
  tot.decode_tokens += steps;
  tot.decode_docs += 1;
  tot.cache_bytes += session.cache_bytes();
  tot.peak_cache_bytes = std::max(tot.peak_cache_bytes, session.peak_cache_bytes());
}

void register_eval_policy(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "eval-policy", "What sparse-attention policies cost vs dense attention: error, perplexity, memory, time");
  sub->footer(std::string(
                  "For every document (truncated in the middle to --max-tokens) and policy, against dense\n"
                  "attention on the same tokens:\n"
                  "  kept       mean fraction of the causal keys the policy's sets keep (all layers, heads, rows)\n"
                  "  kv         KV-cache bytes the policy needs at its peak (decoding token by token with\n"
                  "             real eviction) relative to dense\n"
                  "  tau        mean dense attention mass the policy drops per row, 1 - sum_{j in G} a_j\n"
                  "  rel_l2     per layer ||O - O_G|| / ||O|| of the attention outputs, oracle mode: the\n"
                  "             model runs dense and every layer's q/k/v also go through the policy\n"
                  "  ppl        perplexity with the policy applied through the whole model (evicting\n"
                  "             policies: exactly token-by-token decoding with eviction), and its change\n"
                  "  top1       share of positions whose arg-max next token equals dense's\n"
                  "  time       wall time of the policy's forward passes (dense: plain forward)\n"
                  "Without --policy a default set is evaluated. Policies take the per-layer/per-head\n"
                  "syntax too (e.g. 'L0-1:dense;sink=4,window=60').\n\n") +
              policies::policy_help() +
              "\nExample: attnsparse eval-policy model.gguf --data longbench.jsonl --policy topk=64 "
              "--policy h2o=budget:256,recent:32 --max-tokens 1024 --out report.json");
  static std::string model_path, out_path;
  static std::vector<std::string> data_paths, policy_texts;
  static int64_t max_tokens = 1024, max_docs = 0, chunk = 512, decode_tokens = 0;
  static int threads = 0;
  add_model_options(sub, model_path);
  sub->add_option("--data", data_paths, ".txt, .tok, LongBench .jsonl/.json or RULER files, or directories")
      ->required();
  sub->add_option("--policy", policy_texts, "policy spec (repeatable; see below)");
  sub->add_option("--max-tokens", max_tokens, "tokens per document (middle truncation; default 1024)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  sub->add_option("--max-docs", max_docs, "use at most this many documents (0 = all)")->check(non_negative_integer());
  sub->add_option("--chunk", chunk, "tokens per forward call (bounds the logits memory; default 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  sub->add_option("--decode-tokens", decode_tokens,
                  "also run each policy for real: prefill all but the last N tokens, decode those one by one "
                  "with real eviction; reports decode ms/token and the KV-cache bytes really held (default 0: off)")
      ->check(non_negative_integer());
  sub->add_option("--out", out_path, "JSON report")->required();
  add_threads_option(sub, &threads);
  sub->callback([] {
    apply_threads(threads);
    std::vector<policies::PolicyMap> maps;
    if (policy_texts.empty())
      for (const char* p : kDefaultPolicies) maps.push_back(policies::PolicyMap::parse(p));
    for (const auto& p : policy_texts) maps.push_back(policies::PolicyMap::parse(p));
    std::vector<Document> docs = read_documents(data_paths);
    if (max_docs > 0 && static_cast<int64_t>(docs.size()) > max_docs) docs.resize(max_docs);
    auto model = load_model(model_path);
    const ModelConfig& c = model->config();
    const int n_layer = static_cast<int>(c.n_layer), n_head = static_cast<int>(c.n_head);
    for (const auto& m : maps) m.validate(n_layer, n_head);
    int64_t limit = max_tokens;
    if (c.arch == "gpt2") limit = std::min(limit, c.n_ctx);

    // Tokenize.
    std::vector<std::vector<int32_t>> doc_tokens;
    std::vector<std::string> doc_ids;
    for (const auto& d : docs) {
      std::vector<int32_t> t = d.tokens ? *d.tokens : model->tokenizer().encode(d.text, true);
      for (size_t i = 0; i < t.size(); ++i)
        if (t[i] < 0 || t[i] >= c.n_vocab)
          fail_file(d.source, "{}: token id {} at index {} is out of range (vocabulary size {})", d.id, t[i], i,
                    c.n_vocab);
      t = truncate_middle(t, limit);
      if (t.size() < 2) {
        fmt::print(stderr, "eval-policy: skipping {} ({} token)\n", d.id, t.size());
        continue;
      }
      doc_tokens.push_back(std::move(t));
      doc_ids.push_back(d.id);
    }
    if (doc_tokens.empty()) fail_usage("no document with at least 2 tokens in {}", fmt::join(data_paths, ", "));

    {
      // Warm-up (weights paged in, threads started) so the first timed pass is not penalised.
      KVCache warm = model->make_cache(8);
      std::vector<float> logits;
      const size_t len = std::min<size_t>(8, doc_tokens[0].size());
      model->forward(std::span<const int32_t>(doc_tokens[0].data(), len), warm, {}, logits);
    }
    policies::OracleHooks oracle(c, maps);
    Predictions dense_total;
    double dense_wall = 0;
    int64_t total_tokens = 0;
    std::vector<PolicyTotals> totals(maps.size());
    PolicyTotals dense_decode;
    const int64_t slot_bytes = 2 * c.n_layer * c.n_kv_head * c.head_dim * static_cast<int64_t>(sizeof(float));
    ProgressGate gate(0, 10, true);
    for (size_t di = 0; di < doc_tokens.size(); ++di) {
      const auto& toks = doc_tokens[di];
      const int64_t n = static_cast<int64_t>(toks.size());
      total_tokens += n;
      // Progress: every document on a terminal; in logs the first, the last and one every 10 s.
      const bool show = gate.due(di + 1 == doc_tokens.size());
      if (show)
        fmt::print(stderr, "eval-policy: document {}/{} {} ({} tokens, {:.0f} s): dense", di + 1,
                   doc_tokens.size(), doc_ids[di], n, gate.seconds());
      // Dense: plain forward (time, perplexity, reference predictions).
      KVCache cache = model->make_cache(n);
      auto t0 = clock_type::now();
      const Predictions dense = predict(toks, chunk, c.n_vocab, [&](std::span<const int32_t> part, std::vector<float>& logits) {
        model->forward(part, cache, {}, logits);
      });
      dense_wall += seconds_since(t0);
      dense_total.nll += dense.nll;
      dense_total.count += dense.count;
      // Oracle: dense again, every layer's inputs through every policy.
      if (show) fmt::print(stderr, ", oracle");
      oracle.reset();
      KVCache oracle_cache = model->make_cache(n);
      ForwardOptions oracle_opts;
      oracle_opts.hooks = &oracle;
      oracle_opts.no_logits = true;
      std::vector<float> none;
      for (int64_t start = 0; start < n; start += chunk)
        model->forward(std::span<const int32_t>(toks.data() + start, std::min(chunk, n - start)), oracle_cache,
                       oracle_opts, none);
      // Each policy through the whole model.
      for (size_t m = 0; m < maps.size(); ++m) {
        if (show) fmt::print(stderr, ", {}", maps[m].spec());
        policies::PolicySession session(*model, maps[m], n, policies::PolicySession::Eviction::Simulated);
        t0 = clock_type::now();
        const Predictions pol = predict(toks, chunk, c.n_vocab, [&](std::span<const int32_t> part, std::vector<float>& logits) {
          session.forward(part, {}, logits);
        });
        PolicyTotals& tot = totals[m];
        tot.wall += seconds_since(t0);
        tot.nll += pol.nll;
        tot.count += pol.count;
        for (size_t x = 0; x < pol.argmax.size(); ++x) tot.agree += pol.argmax[x] == dense.argmax[x];
        const int64_t slots = policies::kv_slots_needed(maps[m], n_layer, n_head, n);
        tot.kv_slots += static_cast<double>(slots);
        tot.kv_slots_dense += static_cast<double>(n);
        tot.kv_bytes_max = std::max(tot.kv_bytes_max, slots * slot_bytes);
        real_decode(*model, maps[m], toks, decode_tokens, tot);
      }
      if (decode_tokens > 0) {
        if (show) fmt::print(stderr, ", real decode dense");
        real_decode(*model, policies::PolicyMap(), toks, decode_tokens, dense_decode);
      }
      if (show) fmt::print(stderr, "\n");
    }

    // Report.
    const double dense_ppl = std::exp(dense_total.nll / dense_total.count);
    int64_t longest = 0;
    for (const auto& t : doc_tokens) longest = std::max<int64_t>(longest, static_cast<int64_t>(t.size()));
    json report;
    report["model"] = model_path;
    report["data"] = data_paths;
    report["documents"] = doc_tokens.size();
    report["tokens"] = total_tokens;
    report["predicted_tokens"] = dense_total.count;
    report["max_tokens"] = limit;
    report["chunk"] = chunk;
    report["threads"] = omp_get_max_threads();
    report["dense"] = {{"ppl", dense_ppl},
                       {"nll_per_token", dense_total.nll / dense_total.count},
                       {"wall_s", dense_wall},
                       {"kv_bytes_longest_document", longest * slot_bytes}};
    auto decode_json = [&](const PolicyTotals& t) -> json {
      if (t.decode_docs == 0) return nullptr;
      return {{"tokens", t.decode_tokens},
              {"ms_per_token", 1e3 * t.decode_seconds / t.decode_tokens},
              {"cache_bytes_mean", static_cast<double>(t.cache_bytes) / t.decode_docs},
              {"cache_bytes_peak", t.peak_cache_bytes}};
    };
    report["decode_tokens"] = decode_tokens;
    report["dense"]["real_decode"] = decode_json(dense_decode);
    json rows = json::array();
    fmt::print("{:<44} {:>7} {:>7} {:>8} {:>9} {:>10} {:>9} {:>7} {:>8}\n", "policy", "kept", "kv", "tau", "rel_l2",
               "ppl", "d_ppl", "top1", "time_s");
    fmt::print("{:<44} {:>7.4f} {:>7.4f} {:>8.5f} {:>9.2e} {:>10.4f} {:>+9.4f} {:>7.4f} {:>8.2f}\n", "dense", 1.0, 1.0,
               0.0, 0.0, dense_ppl, 0.0, 1.0, dense_wall);
    const auto& stats = oracle.stats();
    for (size_t m = 0; m < maps.size(); ++m) {
      const PolicyTotals& tot = totals[m];
      policies::OracleLayerStats all;
      json per_layer = json::array();
      double rel_mean = 0;
      for (int l = 0; l < n_layer; ++l) {
        const auto& st = stats[m][l];
        all.merge(st);
        rel_mean += st.relative_l2() / n_layer;
        per_layer.push_back({{"layer", l},
                             {"rel_l2", st.relative_l2()},
                             {"tau_mean", st.rows ? st.tau / st.rows : 0.0},
                             {"kept_fraction", st.visible ? double(st.kept) / st.visible : 1.0}});
      }
      const double ppl = std::exp(tot.nll / tot.count);
      const double kept = all.visible ? double(all.kept) / all.visible : 1.0;
      const double tau = all.rows ? all.tau / all.rows : 0.0;
      const double kv = tot.kv_slots / tot.kv_slots_dense;
      const double top1 = double(tot.agree) / tot.count;
      rows.push_back({{"policy", maps[m].spec()},
                      {"kept_fraction", kept},
                      {"kv_bytes_relative", kv},
                      {"kv_bytes_peak", tot.kv_bytes_max},
                      {"kv_bytes_dense_peak", longest * slot_bytes},
                      {"tau_mean", tau},
                      {"rel_l2_mean", rel_mean},
                      {"rel_l2_all_layers", all.relative_l2()},
                      {"layers", per_layer},
                      {"ppl", ppl},
                      {"delta_ppl", ppl - dense_ppl},
                      {"top1_agreement", top1},
                      {"wall_s", tot.wall},
                      {"wall_relative", dense_wall > 0 ? tot.wall / dense_wall : 0.0},
                      {"real_decode", decode_json(tot)}});
      fmt::print("{:<44} {:>7.4f} {:>7.4f} {:>8.5f} {:>9.2e} {:>10.4f} {:>+9.4f} {:>7.4f} {:>8.2f}\n",
                 maps[m].spec().substr(0, 44), kept, kv, tau, rel_mean, ppl, ppl - dense_ppl, top1, tot.wall);
    }
    report["policies"] = rows;
    if (dense_decode.decode_docs > 0) {
      fmt::print("\nreal decoding of the last {} tokens per document (prompt prefilled, then one token at a time):\n",
                 decode_tokens);
      fmt::print("{:<44} {:>12} {:>14} {:>10}\n", "policy", "ms/token", "cache bytes", "vs dense");
      const double dense_bytes = static_cast<double>(dense_decode.cache_bytes) / dense_decode.decode_docs;
      auto line = [&](const std::string& name, const PolicyTotals& t) {
        const double bytes = static_cast<double>(t.cache_bytes) / t.decode_docs;
        fmt::print("{:<44} {:>12.2f} {:>14.0f} {:>10.4f}\n", name.substr(0, 44), 1e3 * t.decode_seconds / t.decode_tokens,
                   bytes, bytes / dense_bytes);
      };
      line("dense", dense_decode);
      for (size_t m = 0; m < maps.size(); ++m)
        if (totals[m].decode_docs > 0) line(maps[m].spec(), totals[m]);
    }
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
    const std::string text = report.dump(2) + "\n";
    write_file_atomic(out_path, text.data(), text.size());
    fmt::print("report -> {}\n", out_path);
  });
}
ATTNSPARSE_VERB(register_eval_policy);

}  // namespace
}  // namespace attnsparse::cli
