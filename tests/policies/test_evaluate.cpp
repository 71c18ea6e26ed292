// The evaluation engine (policies/evaluate.h) in-process on a small synthetic model
// (tiny preset: 2 layers, 4 query heads, 2 KV heads, f32): perplexity against a
// log-softmax written out here, aggregation over documents of different lengths, kept
// fractions and KV bytes in closed form, sweeps sharing the dense pass, and the JSON.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "model/model.h"
#include "model/synth.h"
#include "policies/evaluate.h"
#include "policies/session.h"

namespace attnsparse::policies {
namespace {

namespace fs = std::filesystem;

const Model& tiny_model() {
  static std::unique_ptr<Model> model = [] {
    const fs::path dir = fs::path(::testing::TempDir()) / ("eval_engine_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    SynthOptions o;
    o.preset = "tiny";
    o.dtype = DType::F32;
    o.seed = 7;
    const std::string path = (dir / "tiny.gguf").string();
    write_synthetic_model(o, path);
    auto m = Model::load(path);
    fs::remove_all(dir);
    return m;
  }();
  return *model;
}

std::vector<EvalDocument> documents() {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> tok(3, 511);
  std::vector<EvalDocument> docs;
  for (int n : {40, 70}) {
    EvalDocument d;
    d.id = "doc" + std::to_string(n);
    for (int i = 0; i < n; ++i) d.tokens.push_back(tok(rng));
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<EvalPolicy> policies(std::initializer_list<const char*> texts) {
  std::vector<EvalPolicy> out;
  for (const char* t : texts)
    for (auto& p : parse_eval_policies(t)) out.push_back(std::move(p));
  return out;
}

// Summed next-token NLL and arg-max of a whole-sequence logits matrix, in long double.
struct Scored {
  long double nll = 0;
  std::vector<int32_t> argmax;
};
Scored score(const std::vector<float>& logits, const std::vector<int32_t>& toks, int64_t V) {
  Scored s;
  for (size_t t = 0; t + 1 < toks.size(); ++t) {
    const float* row = logits.data() + t * V;
    long double mx = row[0];
    int32_t best = 0;
    for (int64_t v = 1; v < V; ++v)
      if (row[v] > mx) mx = row[v], best = static_cast<int32_t>(v);
    long double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<long double>(row[v]) - mx);
    s.nll += mx + std::log(sum) - row[toks[t + 1]];
    s.argmax.push_back(best);
  }
  return s;
}

std::vector<float> plain_logits(const std::vector<int32_t>& toks) {
  const Model& m = tiny_model();
  KVCache cache = m.make_cache(int64_t(toks.size()));
  std::vector<float> logits;
  m.forward(toks, cache, {}, logits);
  return logits;
}

std::vector<float> session_logits(const char* spec, const std::vector<int32_t>& toks) {
  PolicySession s(tiny_model(), PolicyMap::parse(spec), int64_t(toks.size()), PolicySession::Eviction::Simulated);
  std::vector<float> logits;
  s.forward(toks, {}, logits);
  return logits;
}

const PolicyResult& find(const EvalResult& r, const std::string& spec) {
  for (const auto& p : r.policies)
    if (p.policy == spec) return p;
  ADD_FAILURE() << spec << " not in the result";
  return r.policies.at(0);
}

TEST(EvaluatePolicies, PerplexityIsTheTokenWeightedMeanOverDocuments) {
  const auto docs = documents();
  EvalOptions o;
  o.chunk = 512;
  const EvalResult r = evaluate_policies(tiny_model(), docs, policies({"dense", "window=8", "topk=1000"}), o);
  const int64_t V = tiny_model().config().n_vocab;
  long double dense_nll = 0, window_nll = 0;
  int64_t count = 0, agree = 0;
  for (const auto& d : docs) {
    const Scored dense = score(plain_logits(d.tokens), d.tokens, V);
    const Scored win = score(session_logits("window=8", d.tokens), d.tokens, V);
    dense_nll += dense.nll;
    window_nll += win.nll;
    count += int64_t(d.tokens.size()) - 1;
    for (size_t x = 0; x < dense.argmax.size(); ++x) agree += dense.argmax[x] == win.argmax[x];
  }
  EXPECT_EQ(r.documents, 2u);
  EXPECT_EQ(r.tokens, 110);
  EXPECT_EQ(r.predicted_tokens, 108);
  // Pooled over tokens (not a mean of per-document perplexities). Same logits, sums in
  // double vs long double: agreement to ~1e-15 relative; 1e-12 leaves margin.
  const double want_dense = std::exp(double(dense_nll / count));
  EXPECT_NEAR(r.dense_ppl, want_dense, 1e-12 * want_dense);
  EXPECT_NEAR(r.dense_nll_per_token, double(dense_nll / count), 1e-12);
  const PolicyResult& w = find(r, "window=8");
  const double want_window = std::exp(double(window_nll / count));
  EXPECT_NEAR(w.ppl, want_window, 1e-12 * want_window);
  EXPECT_NEAR(w.delta_ppl, want_window - want_dense, 1e-9 * want_dense);
  EXPECT_EQ(w.top1_agreement, double(agree) / count);
  EXPECT_LT(w.top1_agreement, 1.0);  // the window changes predictions on this model
  // dense: the plain forward bit for bit; topk >= n: the same keys through another kernel.
  const PolicyResult& d = find(r, "dense");
  EXPECT_EQ(d.ppl, r.dense_ppl);
  EXPECT_EQ(d.top1_agreement, 1.0);
  EXPECT_EQ(d.kept_fraction, 1.0);
  EXPECT_LT(d.tau_mean, 1e-6);  // 1 - sum of f32 probabilities: measured 1.9e-8
  const PolicyResult& k = find(r, "topk=1000");
  EXPECT_NEAR(k.ppl, r.dense_ppl, 1e-5 * r.dense_ppl);  // kernel rounding (test_session: 1e-4 on logits)
  EXPECT_EQ(k.kept_fraction, 1.0);
  EXPECT_LT(k.rel_l2_mean, 1e-5);
}

TEST(EvaluatePolicies, KeptFractionAndKvBytesInClosedForm) {
  const auto docs = documents();
  EvalOptions o;
  o.decode_tokens = 5;
  const EvalResult r =
      evaluate_policies(tiny_model(), docs, policies({"window=8", "sink=2,window=6", "h2o=budget:16,recent:4"}), o);
  // kept = sum over documents and rows of |G_t| / sum of (t + 1) (layers and heads cancel).
  // sink=2,window=6 written out: |{p < 2} u {p > t - 6}| for p <= t.
  double win = 0, sink = 0, all = 0;
  for (const auto& d : docs)
    for (int64_t t = 0; t < int64_t(d.tokens.size()); ++t) {
      win += std::min<int64_t>(t + 1, 8);
      for (int64_t p = 0; p <= t; ++p) sink += p < 2 || p > t - 6;
      all += t + 1;
    }
  EXPECT_NEAR(find(r, "window=8").kept_fraction, win / all, 1e-12);
  EXPECT_NEAR(find(r, "sink=2,window=6").kept_fraction, sink / all, 1e-12);
  // KV slots: window 8 (+0: the query's own key is one of the 8), sink+window 2 + 6,
  // h2o the budget + the new key; relative to n summed over documents.
  EXPECT_NEAR(find(r, "window=8").kv_bytes_relative, 16.0 / 110.0, 1e-12);
  EXPECT_NEAR(find(r, "sink=2,window=6").kv_bytes_relative, 16.0 / 110.0, 1e-12);
  EXPECT_NEAR(find(r, "h2o=budget:16,recent:4").kv_bytes_relative, 34.0 / 110.0, 1e-12);
  // K and V of one position in every layer: 2 * layers * kv_heads * head_dim * 4 bytes.
  const auto& c = tiny_model().config();
  const int64_t slot = 2 * c.n_layer * c.n_kv_head * c.head_dim * 4;
  EXPECT_EQ(r.kv_bytes_longest_document, 70 * slot);
  EXPECT_EQ(find(r, "h2o=budget:16,recent:4").kv_bytes_peak, 17 * slot);
  // Real decoding: dense holds all n, h2o its budget (mean over the two documents).
  ASSERT_TRUE(r.dense_decode.has_value());
  EXPECT_EQ(r.dense_decode->tokens, 10);
  EXPECT_EQ(r.dense_decode->cache_bytes_mean, 55.0 * slot);
  ASSERT_TRUE(find(r, "h2o=budget:16,recent:4").real_decode.has_value());
  EXPECT_EQ(find(r, "h2o=budget:16,recent:4").real_decode->cache_bytes_mean, 16.0 * slot);
  // Per layer: the window keeps the same share of keys in every layer.
  for (const LayerResult& l : find(r, "window=8").layers) EXPECT_NEAR(l.kept_fraction, win / all, 1e-12);
}

TEST(EvaluatePolicies, ASweepSharesTheDensePassAndMatchesSeparateRuns) {
  const auto docs = documents();
  EvalOptions o;
  o.chunk = 16;  // several calls per document
  const EvalResult swept = evaluate_policies(tiny_model(), docs, policies({"topk={2,4,8}", "tova=budget:8..32*2"}), o);
  ASSERT_EQ(swept.policies.size(), 6u);
  const EvalResult alone = evaluate_policies(tiny_model(), docs, policies({"topk=4", "tova=budget:16"}), o);
  // Each value is the same computation as its own run (oracle state is per map).
  for (const char* spec : {"topk=4", "tova=budget:16"}) {
    const PolicyResult &a = find(swept, spec), &b = find(alone, spec);
    EXPECT_EQ(a.ppl, b.ppl) << spec;
    EXPECT_EQ(a.kept_fraction, b.kept_fraction) << spec;
    EXPECT_EQ(a.top1_agreement, b.top1_agreement) << spec;
    EXPECT_NEAR(a.tau_mean, b.tau_mean, 1e-12) << spec;
  }
  EXPECT_EQ(swept.dense_ppl, alone.dense_ppl);
  // More keys: a larger kept fraction and a smaller tail mass.
  const auto& p = swept.policies;
  for (size_t i : {0u, 3u}) {
    EXPECT_LT(p[i].kept_fraction, p[i + 1].kept_fraction);
    EXPECT_LT(p[i + 1].kept_fraction, p[i + 2].kept_fraction);
    EXPECT_GT(p[i].tau_mean, p[i + 2].tau_mean);
  }
  // The JSON records the swept field and value; unswept policies have no "sweep".
  const nlohmann::json j = to_json(swept);
  ASSERT_EQ(j["policies"].size(), 6u);
  EXPECT_EQ(j["policies"][1]["policy"], "topk=4");
  EXPECT_EQ(j["policies"][1]["sweep"]["spec"], "topk={2,4,8}");
  EXPECT_EQ(j["policies"][1]["sweep"]["field"], "k");
  EXPECT_EQ(j["policies"][1]["sweep"]["value"], 4);
  EXPECT_TRUE(j["policies"][1]["sweep"]["value"].is_number_integer());
  EXPECT_EQ(j["policies"][5]["sweep"]["field"], "budget");
  EXPECT_EQ(j["policies"][5]["sweep"]["value"], 32);
  EXPECT_EQ(j["policies"][5]["sweep"]["index"], 2);
  EXPECT_FALSE(to_json(alone)["policies"][0].contains("sweep"));
  EXPECT_EQ(j["documents"], 2);
  EXPECT_EQ(j["predicted_tokens"], 108);
  EXPECT_EQ(j["dense"]["ppl"].get<double>(), swept.dense_ppl);
}

TEST(EvaluatePolicies, ChunkingDoesNotChangeTheResult) {
  const auto docs = documents();
  EvalOptions a, b;
  a.chunk = 512;
  b.chunk = 7;
  const auto pol = policies({"window=8", "h2o=budget:16,recent:4", "quest=page:4,pages:3"});
  const EvalResult ra = evaluate_policies(tiny_model(), docs, pol, a);
  const EvalResult rb = evaluate_policies(tiny_model(), docs, pol, b);
  // The same tokens in calls of 7: the same keys, other kernel blockings. Measured
  // difference ~1e-7 relative on this model; 1e-5 allows for f32 reordering.
  EXPECT_NEAR(ra.dense_ppl, rb.dense_ppl, 1e-5 * ra.dense_ppl);
  for (size_t i = 0; i < pol.size(); ++i) {
    EXPECT_NEAR(ra.policies[i].ppl, rb.policies[i].ppl, 1e-5 * ra.policies[i].ppl) << ra.policies[i].policy;
    EXPECT_EQ(ra.policies[i].kept_fraction, rb.policies[i].kept_fraction) << ra.policies[i].policy;
  }
}

TEST(EvaluatePolicies, BadInputIsAUsageError) {
  const auto docs = documents();
  EXPECT_THROW(evaluate_policies(tiny_model(), {}, policies({"dense"}), {}), UsageError);
  EXPECT_THROW(evaluate_policies(tiny_model(), docs, policies({"L5:window=4"}), {}), UsageError);  // 2 layers
  EXPECT_THROW(evaluate_policies(tiny_model(), {{"short", {5}}}, policies({"dense"}), {}), UsageError);
  EXPECT_THROW(evaluate_policies(tiny_model(), {{"oov", {5, 512}}}, policies({"dense"}), {}), UsageError);  // vocab 512
  EXPECT_THROW(evaluate_policies(tiny_model(), {{"neg", {5, -1}}}, policies({"dense"}), {}), UsageError);
  EvalOptions zero;
  zero.chunk = 0;
  EXPECT_THROW(evaluate_policies(tiny_model(), docs, policies({"dense"}), zero), UsageError);
}

}  // namespace
}  // namespace attnsparse::policies
