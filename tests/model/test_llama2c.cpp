// llama2.c checkpoints (../shared/reference/real: Karpathy's stories260K.bin and its
// tok512.bin) against llama.cpp on the same model converted to GGUF, the published greedy
// sample, the published NLL, the GGUF's tokenizer, and hostile files.
//
// Measured on 2026-12-02 (max over rows of max|Δlogit| / std(row); max|Δp| over the
// softmax of those rows; max|Δp| over every attention probability):
//   story   (82 tokens):  logits 2.0e-6 (mean 8.7e-7), softmax 1.5e-6, attention 4.2e-6
//   stories (256 tokens): logits 2.5e-6 (mean 1.5e-6), softmax 1.0e-6, attention 6.3e-6
// (the reference README: an exact implementation reaches about 3e-6 / 7e-6). The
// tolerances below are 3x-7x that; a real mistake gives errors of order 0.1-1 (rotating
// halves instead of run.c's adjacent pairs: 1.9 on the story case, measured).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>

#include "core/error.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_test_util.h"

namespace attnsparse {
namespace {

using namespace testing;
namespace fs = std::filesystem;

std::string real(const std::string& name) { return std::string(ATTNSPARSE_SHARED_DIR) + "/reference/real/" + name; }
std::string q(const std::string& s) { return "'" + s + "'"; }

const char* kPublishedSample =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.";

nlohmann::json real_case(const std::string& name) {
  const nlohmann::json manifest = read_json_file(real("manifest.json"));
  for (const auto& c : manifest["cases"])
    if (c["case"] == name) return c;
  return {};
}

double max_softmax_diff(const std::vector<float>& a, const std::vector<float>& b, int64_t V) {
  double worst = 0;
  for (size_t r = 0; r * V < a.size(); ++r) {
    auto probs = [&](const float* x) {
      std::vector<double> p(V);
      double mx = x[0], s = 0;
      for (int64_t i = 0; i < V; ++i) mx = std::max<double>(mx, x[i]);
      for (int64_t i = 0; i < V; ++i) s += p[i] = std::exp(x[i] - mx);
      for (auto& v : p) v /= s;
      return p;
    };
    const auto pa = probs(a.data() + r * V), pb = probs(b.data() + r * V);
    for (int64_t i = 0; i < V; ++i) worst = std::max(worst, std::fabs(pa[i] - pb[i]));
  }
  return worst;
}

class Llama2cCase : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    REQUIRE_SHARED(bin, "real/stories260K.bin");
    spec_ = real_case(GetParam());
    ASSERT_FALSE(spec_.is_null());
    model_ = Model::load(bin);
    tokens_ = read_ids(real(GetParam() + ".tokens.txt"));
    ASSERT_EQ(static_cast<int64_t>(tokens_.size()), spec_["n_tokens"].get<int64_t>());
  }
  nlohmann::json spec_;
  std::unique_ptr<Model> model_;
  std::vector<int32_t> tokens_;
};

TEST_P(Llama2cCase, LogitsMatchLlamaCpp) {
  ForwardOptions opts;
  for (const auto& r : spec_["logit_rows"]) opts.logit_rows.push_back(r.get<int64_t>());
  KVCache cache = model_->make_cache(static_cast<int64_t>(tokens_.size()));
  std::vector<float> logits;
  model_->forward(tokens_, cache, opts, logits);
  const auto want = read_f32_file(real(spec_["logits_file"].get<std::string>()));
  ASSERT_EQ(logits.size(), want.size());
  const RowError e = logit_error(logits, want, 512);
  const double dp = max_softmax_diff(logits, want, 512);
  std::printf("[ measured ] %s from .bin: logits max %.3g mean %.3g, softmax max|dp| %.3g\n",
              GetParam().c_str(), e.max_rel, e.mean_rel, dp);
  EXPECT_LE(e.max_rel, 1e-5);
  EXPECT_LE(dp, 1e-5);
  EXPECT_EQ(e.argmax_mismatch, 0);

  // The GGUF conversion holds the same floats (output.weight a copy of the tied
  // embedding), so both routes compute the very same numbers.
  auto gg = Model::load(real("stories260K.gguf"));
  KVCache c2 = gg->make_cache(static_cast<int64_t>(tokens_.size()));
  std::vector<float> l2;
  gg->forward(tokens_, c2, opts, l2);
  EXPECT_EQ(max_abs_diff(logits, l2), 0.0);
}

TEST_P(Llama2cCase, AttentionMatchesLlamaCpp) {
  const ModelConfig& c = model_->config();
  const int64_t n = static_cast<int64_t>(tokens_.size());
  ASSERT_EQ(spec_["attn_shape"], nlohmann::json({c.n_layer, c.n_head, n, n}));
  struct Recorder : AttentionHooks {
    struct Obs : ops::RowObserver {
      std::vector<float>* out = nullptr;
      int64_t n = 0, n_head = 0;
      int layer = 0;
      void on_row(int head, int64_t qi, const float* p, const int32_t* keys, int64_t nk) override {
        float* row = out->data() + ((layer * n_head + head) * n + qi) * n;
        for (int64_t j = 0; j < nk; ++j) row[keys ? keys[j] : j] = p[j];
      }
    };
    std::vector<Obs> obs;
    ops::RowObserver* observer(int layer) override { return &obs[layer]; }
  } rec;
  std::vector<float> got(c.n_layer * c.n_head * n * n, 0.f);
  rec.obs.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) rec.obs[l] = {};
  for (int l = 0; l < c.n_layer; ++l) {
    rec.obs[l].out = &got;
    rec.obs[l].n = n;
    rec.obs[l].n_head = c.n_head;
    rec.obs[l].layer = l;
  }
  KVCache cache = model_->make_cache(n);
  ForwardOptions opts;
  opts.no_logits = true;
  opts.hooks = &rec;
  std::vector<float> logits;
  model_->forward(tokens_, cache, opts, logits);
  const auto want = read_f32_file(real(spec_["attn_file"].get<std::string>()));
  const double d = max_abs_diff(got, want);
  std::printf("[ measured ] %s from .bin: attention max|dp| %.3g\n", GetParam().c_str(), d);
  EXPECT_LE(d, 2e-5);
}

INSTANTIATE_TEST_SUITE_P(Real, Llama2cCase,
                         ::testing::Values("stories260K.story", "stories260K.stories"),
                         [](const auto& info) {
                           std::string s = info.param;
                           return s.substr(s.find('.') + 1);
                         });

TEST(Llama2c, ConfigComesFromTheHeader) {
  REQUIRE_SHARED(bin, "real/stories260K.bin");
  auto m = Model::load(bin);
  auto g = Model::load(real("stories260K.gguf"));
  const ModelConfig &c = m->config(), &gc = g->config();
  EXPECT_EQ(c.source_format, "llama2c");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.name, "stories260K");
  EXPECT_EQ(c.n_ctx, 512);   // trained with 512; the GGUF converter wrote 128
  EXPECT_EQ(gc.n_ctx, 128);
  EXPECT_TRUE(c.tied_output);  // vocab_size 512 > 0
  for (auto [a, b] : {std::pair{c.n_vocab, gc.n_vocab}, {c.n_embd, gc.n_embd}, {c.n_layer, gc.n_layer},
                      {c.n_head, gc.n_head}, {c.n_kv_head, gc.n_kv_head}, {c.head_dim, gc.head_dim},
                      {c.n_ff, gc.n_ff}, {c.rope_dim, gc.rope_dim}})
    EXPECT_EQ(a, b);
  EXPECT_EQ(c.rope_layout, RopeLayout::Adjacent);
  EXPECT_EQ(c.norm_eps, gc.norm_eps);
  EXPECT_EQ(c.rope_base, gc.rope_base);
  // The weights are the GGUF's, float for float, under the same names.
  for (const TensorInfo& t : m->weights().tensors()) {
    const TensorInfo* u = g->weights().find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.shape, u->shape) << t.name;
    ASSERT_EQ(t.nbytes, u->nbytes) << t.name;
    EXPECT_EQ(std::memcmp(t.data, u->data, t.nbytes), 0) << t.name;
  }
  EXPECT_EQ(m->weights().tensors().size() + 1, g->weights().tensors().size());  // + output.weight
}

TEST(Llama2c, TokenizerFileEqualsTheGgufTokenizer) {
  REQUIRE_SHARED(tokbin, "real/tok512.bin");
  const auto a = Tokenizer::load(tokbin);
  const auto b = Tokenizer::load(real("stories260K.gguf"));
  ASSERT_EQ(a->n_vocab(), 512);
  ASSERT_EQ(b->n_vocab(), 512);
  EXPECT_EQ(a->bos_id(), b->bos_id());
  EXPECT_EQ(a->eos_id(), b->eos_id());
  EXPECT_EQ(a->add_bos(), b->add_bos());
  EXPECT_EQ(a->type_name(), b->type_name());
  for (int32_t i = 0; i < 512; ++i) EXPECT_EQ(a->token_piece(i), b->token_piece(i)) << "token " << i;
  for (const char* name : {"story", "stories"}) {
    const std::string text = read_text(real(std::string(name) + ".txt"));
    const auto ids = a->encode(text, true);
    EXPECT_EQ(ids, b->encode(text, true)) << name;
    // llama.cpp's ids (the stories case keeps the first 256 of them).
    const auto want = read_ids(real(std::string("stories260K.") + name + ".tokens.txt"));
    ASSERT_GE(ids.size(), want.size());
    EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + want.size()), want) << name;
    EXPECT_EQ(a->decode(ids), text) << name;
  }
  // The checkpoint's own tokenizer, found beside it, is the same.
  const auto c = Tokenizer::load(real("stories260K.bin"));
  EXPECT_EQ(c->encode("Once upon a time", true), a->encode("Once upon a time", true));
}

TEST(Llama2c, GreedyGenerationReproducesThePublishedSample) {
  REQUIRE_SHARED(bin, "real/stories260K.bin");
  auto m = Model::load(bin);
  const Tokenizer& tok = m->tokenizer();
  std::vector<int32_t> all = tok.encode("Once upon a time", true);
  SamplingParams greedy;
  greedy.temperature = 0;
  const GenerateResult r = generate(*m, all, 60, greedy);
  all.insert(all.end(), r.tokens.begin(), r.tokens.end());
  const std::string text = tok.decode(all);
  EXPECT_EQ(text.substr(0, std::strlen(kPublishedSample)), kPublishedSample) << text;

  TempDir dir;
  const auto cli = run_cli("generate " + q(bin) + " --prompt 'Once upon a time' --temp 0 -n 60");
  ASSERT_EQ(cli.status, 0) << cli.err;
  EXPECT_EQ(cli.out.substr(0, std::strlen(kPublishedSample)), kPublishedSample) << cli.out;
}

double json_number(const std::string& out, const char* key) {
  return nlohmann::json::parse(out).at(key).get<double>();
}

TEST(Llama2c, PerplexityOfTheStoryIsThePublishedNll) {
  REQUIRE_SHARED(bin, "real/stories260K.bin");
  TempDir dir;
  const auto r = run_cli("perplexity " + q(bin) + " --text-file " + q(real("story.txt")) + " --json --threads 1");
  ASSERT_EQ(r.status, 0) << r.err;
  const double nll = json_number(r.out, "nll_per_token");
  std::printf("[ measured ] story.txt NLL %.5f nats/token\n", nll);
  EXPECT_NEAR(nll, 0.62, 0.01);  // README: "about 0.62"; we measure 0.6164
  // The GGUF gives the same (the text is 82 tokens: one window under either context).
  const auto g = run_cli("perplexity " + q(real("stories260K.gguf")) + " --text-file " +
                             q(real("story.txt")) + " --json --threads 1");
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_EQ(json_number(g.out, "nll_per_token"), nll);
}

// info, analyze and eval-policy work on the .bin as on the GGUF.
TEST(Llama2c, VerbsWorkOnTheBinAsOnTheGguf) {
  REQUIRE_SHARED(bin, "real/stories260K.bin");
  const std::string gguf = real("stories260K.gguf");
  TempDir dir;
  auto r = run_cli("info " + q(bin));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("llama2c (stories260K)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("spm (512 tokens, bos 1, eos 2, adds bos: yes)"), std::string::npos) << r.out;
  r = run_cli("info " + q(bin) + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto ib = nlohmann::json::parse(r.out);
  r = run_cli("info " + q(gguf) + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto ig = nlohmann::json::parse(r.out);
  EXPECT_EQ(ib["format"], "llama2c");
  EXPECT_EQ(ib["n_ctx"], 512);
  EXPECT_EQ(ib["tied_output"], true);
  for (const char* k : {"arch", "n_vocab", "n_embd", "n_layer", "n_head", "n_kv_head", "head_dim", "n_ff",
                        "norm_eps", "rope", "tokenizer"})
    EXPECT_EQ(ib[k], ig[k]) << k;
  EXPECT_EQ(ib["parameters"].get<int64_t>() + 512 * 64, ig["parameters"].get<int64_t>());

  // eval-policy: the same report numbers (both routes compute the same floats). One
  // thread: the reports' sums over threads are otherwise added in a varying order.
  for (const std::string& m : {bin, gguf}) {
    const std::string out = dir.file(fs::path(m).extension().string().substr(1) + ".json");
    r = run_cli("eval-policy " + q(m) + " --data " + q(real("story.txt")) +
                    " --policy window=32 --max-tokens 80 --threads 1 --out " + q(out));
    ASSERT_EQ(r.status, 0) << r.err;
  }
  const auto eb = read_json_file(dir.file("bin.json")), eg = read_json_file(dir.file("gguf.json"));
  EXPECT_EQ(eb["dense"]["nll_per_token"], eg["dense"]["nll_per_token"]);
  ASSERT_EQ(eb["policies"].size(), 1u);
  for (const char* k : {"ppl", "kept_fraction", "tau_mean", "top1_agreement"})
    EXPECT_EQ(eb["policies"][0][k], eg["policies"][0][k]) << k;
  EXPECT_GT(eb["dense"]["ppl"].get<double>(), 1.0);

  // analyze: the same head statistics.
  for (const std::string& m : {bin, gguf}) {
    const std::string out = dir.file("an_" + fs::path(m).extension().string().substr(1));
    r = run_cli("analyze " + q(m) + " --data " + q(real("stories.txt")) + " --max-tokens 120 --threads 1 --out " + q(out));
    ASSERT_EQ(r.status, 0) << r.err;
  }
  auto ab = read_json_file(dir.file("an_bin/report.json")), ag = read_json_file(dir.file("an_gguf/report.json"));
  ASSERT_TRUE(ab.contains("per_head") && !ab["per_head"].empty());
  EXPECT_EQ(ab["per_head"], ag["per_head"]);
  EXPECT_EQ(ab["per_layer"], ag["per_layer"]);
  EXPECT_EQ(ab["model"]["format"], "llama2c");
}

// Where the tokenizer of a .bin comes from: tok<N>.bin, then tokenizer.bin beside it, or
// --tokenizer FILE; without one the model still loads and says what is missing.
TEST(Llama2c, TokenizerIsFoundBesideTheCheckpointOrGivenWithAnOption) {
  REQUIRE_SHARED(bin, "real/stories260K.bin");
  TempDir dir;
  const std::string m = dir.file("model.bin");
  fs::copy_file(bin, m);
  const std::string want = "1 403 407 261 378";  // "Once upon a time" (tok512.bin, llama.cpp's first ids)

  auto r = run_cli("tokenize " + q(m) + " --text 'Once upon a time'");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("no tokenizer: a llama2.c checkpoint needs tok512.bin or tokenizer.bin beside it, "
                       "or --tokenizer FILE"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run_cli("info " + q(m));  // the weights are fine
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("unavailable: "), std::string::npos) << r.out;

  for (const std::string& flag : {" --tokenizer " + q(real("tok512.bin")),
                                  " --tokenizer " + q(real("stories260K.gguf"))}) {
    r = run_cli("tokenize " + q(m) + flag + " --text 'Once upon a time'");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, want + "\n");
    r = run_cli("generate " + q(m) + flag + " --prompt 'Once upon a time' --temp 0 -n 8");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl", 0), 0u) << r.out;
  }
  // --tokenizer also replaces a GGUF's own tokenizer.
  r = run_cli("tokenize " + q(real("stories260K.gguf")) + " --tokenizer " + q(real("tok512.bin")) +
                  " --text 'Once upon a time'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, want + "\n");

  // A --tokenizer with more tokens than the model's vocabulary is refused, naming both.
  const std::string big = shared_reference("tokenizer/ggml-vocab-llama-spm.gguf");
  if (!big.empty()) {
    r = run_cli("generate " + q(m) + " --tokenizer " + q(big) + " --prompt 'Once' -n 2");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(big + ": the tokenizer has 32000 tokens, more than the 512 of the model " + m),
              std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }

  fs::copy_file(real("tok512.bin"), dir.file("tokenizer.bin"));
  auto model = Model::load(m);
  EXPECT_EQ(model->tokenizer().n_vocab(), 512);
  // tok512.bin wins over tokenizer.bin; one of the wrong size is an error naming it.
  {
    // A valid 3-token vocabulary: wrong size for the model.
    std::vector<uint8_t> v;
    auto i32 = [&](int32_t x) { for (int k = 0; k < 4; ++k) v.push_back(uint8_t(uint32_t(x) >> (8 * k))); };
    i32(6);
    for (const char* p : {"<unk>", "\n<s>\n", "\n</s>\n"}) {
      i32(0);
      i32(static_cast<int32_t>(std::strlen(p)));
      v.insert(v.end(), p, p + std::strlen(p));
    }
    write_bytes(dir.file("tok512.bin"), v.data(), v.size());
  }
  EXPECT_EQ(find_llama2c_tokenizer(m, 512), dir.file("tok512.bin"));
  try {
    Model::load(m)->tokenizer();
    ADD_FAILURE() << "a 3-token tokenizer was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tok512.bin: has 3 tokens but the llama2.c checkpoint"),
              std::string::npos) << e.what();
  }
}

// Every verb that takes MODEL documents that it may be a llama2.c .bin and takes --tokenizer.
TEST(Llama2c, EveryModelVerbTakesTokenizerOption) {
  TempDir dir;
  for (const char* verb : {"info", "tokenize", "logits", "attention", "generate", "perplexity", "bench",
                           "analyze", "eval-policy", "theory fit"}) {
    const auto r = run_cli(std::string(verb) + " --help");
    EXPECT_EQ(r.status, 0) << verb << ": " << r.err;
    EXPECT_NE(r.out.find("--tokenizer"), std::string::npos) << verb;
    EXPECT_NE(r.out.find("llama2.c"), std::string::npos) << verb;
  }
}

// ---- Hostile files: one clear FormatError naming the file, never a crash.

std::vector<uint8_t> header_bytes(std::initializer_list<int32_t> h) {
  std::vector<uint8_t> v;
  for (int32_t x : h)
    for (int k = 0; k < 4; ++k) v.push_back(uint8_t(uint32_t(x) >> (8 * k)));
  return v;
}

std::string load_error(const std::string& path) {
  try {
    auto m = Model::load(path);
    return "(loaded)";
  } catch (const FormatError& e) {
    return e.what();
  }
}

TEST(Llama2c, HostileCheckpointsGiveClearErrors) {
  REQUIRE_SHARED(bin, "real/stories260K.bin");
  TempDir dir;
  const std::vector<uint8_t> good = read_bytes(bin);
  auto write = [&](const std::string& name, const std::vector<uint8_t>& b) {
    write_bytes(dir.file(name), b.data(), b.size());
    return dir.file(name);
  };
  auto with_header = [&](std::initializer_list<int32_t> h) {
    std::vector<uint8_t> b = good;
    const auto hb = header_bytes(h);
    std::copy(hb.begin(), hb.end(), b.begin());
    return b;
  };
  struct Bad {
    std::string name;
    std::vector<uint8_t> bytes;
    std::string needle;
  };
  std::vector<uint8_t> truncated(good.begin(), good.end() - 100);
  std::vector<uint8_t> longer = good;
  longer.resize(good.size() + 4);
  const std::vector<Bad> cases = {
      {"empty.bin", {}, "not a GGUF file, and not a llama2.c checkpoint: 0 bytes, shorter than the 28-byte header"},
      {"short.bin", {1, 2, 3}, "3 bytes, shorter than the 28-byte header"},
      {"truncated.bin", truncated, "not a GGUF file, and not a llama2.c checkpoint: header says 1056540 bytes (shared classifier), file has 1056440"},
      {"longer.bin", longer, "header says 1056540 bytes (shared classifier), file has 1056544"},
      // vocab_size negated: the separate-classifier variant needs 512 x 64 more floats.
      {"unshared.bin", with_header({64, 172, 5, 8, 4, -512, 512}), "header says 1187612 bytes (separate classifier), file has 1056540"},
      {"zero_dim.bin", with_header({0, 172, 5, 8, 4, 512, 512}), "header value dim = 0 must be positive"},
      {"neg_layers.bin", with_header({64, 172, -5, 8, 4, 512, 512}), "header value n_layers = -5 must be positive"},
      {"zero_vocab.bin", with_header({64, 172, 5, 8, 4, 0, 512}), "header value vocab_size = 0 must be non-zero"},
      {"min_vocab.bin", with_header({64, 172, 5, 8, 4, INT32_MIN, 512}), "vocab_size = -2147483648 must be non-zero"},
      // ~1e29 bytes: computed without overflow, nothing allocated.
      {"huge.bin", with_header({2147483644, 2147483647, 2147483647, 2, 1, 2147483647, 2147483647}),
       "bytes (shared classifier), file has 1056540"},
      {"heads.bin", with_header({64, 172, 5, 7, 7, 512, 512}), "n_heads 7 does not divide it"},
      {"kvheads.bin", with_header({64, 172, 5, 8, 3, 512, 512}), "n_kv_heads 3, which does not divide n_heads 8"},
      {"v1.bin", with_header({0x616b3432, 1, 64, 172, 5, 8, 4}),
       "a llama2.c version 1 export (magic ak42), which is not supported: export with --version 0"},
      {"odd_head.bin", with_header({63, 172, 5, 9, 3, 512, 512}), "head size 7 (dim 63 / n_heads 9), which is odd"},
  };
  for (const Bad& b : cases) {
    const std::string p = write(b.name, b.bytes);
    const std::string e = load_error(p);
    EXPECT_NE(e.find(p + ": "), std::string::npos) << e;
    EXPECT_NE(e.find(b.needle), std::string::npos) << b.name << ": " << e;
  }
  // A GGUF named .bin is read as GGUF; a non-.bin non-GGUF file gets the GGUF error.
  fs::copy_file(real("stories260K.gguf"), dir.file("gguf_inside.bin"));
  EXPECT_EQ(Model::load(dir.file("gguf_inside.bin"))->config().source_format, "gguf");
  fs::copy_file(bin, dir.file("model.dat"));
  EXPECT_NE(load_error(dir.file("model.dat")).find("not a GGUF file (bad magic"), std::string::npos);

  // Through the CLI: one line, non-zero status, nothing on stdout.
  const auto r = run_cli("info " + q(dir.file("truncated.bin")));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("not a llama2.c checkpoint: header says 1056540 bytes"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

// Random headers over the real file's size, and random byte flips in the tokenizer: the
// parsers answer (accept or say why) and never crash, hang or accept a size that differs.
TEST(Llama2c, RandomHeadersAndVocabBytesNeverCrash) {
  REQUIRE_SHARED(bin, "real/stories260K.bin");
  std::vector<uint8_t> b = read_bytes(bin);
  const std::vector<uint8_t> tok = read_bytes(real("tok512.bin"));
  std::mt19937 rng(7);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    for (int k = 0; k < 7; ++k) {
      const uint32_t pick = rng() % 8;  // small, random, extreme, else the real value
      const int32_t real_v[7] = {64, 172, 5, 8, 4, 512, 512};
      const int32_t v = pick == 0   ? int32_t(rng() % 1025) - 512
                        : pick == 1 ? int32_t(rng())
                        : pick == 2 ? (rng() % 2 ? INT32_MAX : INT32_MIN)
                                    : real_v[k];
      for (int j = 0; j < 4; ++j) b[4 * k + j] = uint8_t(uint32_t(v) >> (8 * j));
    }
    std::string why;
    auto h = parse_llama2c_header(b.data(), b.size(), &why);
    if (h) {
      ++accepted;
      // Only the true header describes exactly these bytes.
      EXPECT_EQ(std::vector<int64_t>({h->dim, h->hidden_dim, h->n_layers, h->n_heads, h->n_kv_heads,
                                      h->vocab_size, h->seq_len}),
                std::vector<int64_t>({64, 172, 5, 8, 4, 512, 512}));
    } else {
      EXPECT_FALSE(why.empty());
    }
  }
  std::printf("[ measured ] %d of 20000 random headers accepted\n", accepted);
  EXPECT_GT(accepted, 100);  // (5/8)^7 of them are the true header
  for (int i = 0; i < 5000; ++i) {
    std::vector<uint8_t> t = tok;
    for (int f = 0; f < 4; ++f) t[rng() % t.size()] = uint8_t(rng());
    t.resize(t.size() - rng() % 16);
    std::string why;
    auto v = parse_llama2c_vocab(t.data(), t.size(), &why);
    if (!v) {
      EXPECT_FALSE(why.empty());
    }
  }
}

TEST(Llama2c, HostileTokenizerFilesGiveClearErrors) {
  REQUIRE_SHARED(tokbin, "real/tok512.bin");
  TempDir dir;
  const std::vector<uint8_t> good = read_bytes(tokbin);
  auto i32_at = [](std::vector<uint8_t> b, size_t at, int32_t x) {
    for (int k = 0; k < 4; ++k) b[at + k] = uint8_t(uint32_t(x) >> (8 * k));
    return b;
  };
  std::vector<uint8_t> truncated(good.begin(), good.end() - 2);
  std::vector<uint8_t> trailing = good;
  trailing.push_back(7);
  std::vector<uint8_t> nan_score = good;
  const float nan = std::nanf("");
  std::memcpy(&nan_score[4], &nan, 4);
  struct Bad {
    std::string name;
    std::vector<uint8_t> bytes;
    std::string needle;
  };
  const std::vector<Bad> cases = {
      {"t_trunc.bin", truncated, "token 511: 3 bytes run past the end of the file"},
      {"t_trailing.bin", trailing, "1 bytes left at offset 6227, a score and a length need 8"},
      {"t_maxlen.bin", i32_at(good, 0, -1), "max_token_length -1 is not in 1..65536"},
      {"t_neglen.bin", i32_at(good, 8, -3), "token 0: length -3 is not in 1..max_token_length (7)"},
      {"t_longlen.bin", i32_at(good, 8, 1 << 30), "token 0: length 1073741824 is not in 1..max_token_length"},
      {"t_nan.bin", nan_score, "token 0: score nan is not finite"},
      {"t_short.bin", std::vector<uint8_t>(good.begin(), good.begin() + 2), "shorter than the 4-byte max_token_length"},
  };
  for (const Bad& b : cases) {
    write_bytes(dir.file(b.name), b.bytes.data(), b.bytes.size());
    std::string e = "(loaded)";
    try {
      Tokenizer::load(dir.file(b.name));
    } catch (const FormatError& ex) {
      e = ex.what();
    }
    EXPECT_NE(e.find(dir.file(b.name) + ": "), std::string::npos) << e;
    EXPECT_NE(e.find(b.needle), std::string::npos) << b.name << ": " << e;
  }
  // The specials must be where SentencePiece puts them.
  std::vector<uint8_t> swapped = good;
  const size_t at = 4 + 8;  // token 0's bytes "<unk>"
  swapped[at] = 'X';
  write_bytes(dir.file("t_unk.bin"), swapped.data(), swapped.size());
  try {
    Tokenizer::from_llama2c(dir.file("t_unk.bin"));
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not a SentencePiece vocabulary: token 0 is 'Xunk>', expected <unk>"),
              std::string::npos) << e.what();
  }
  // The piece is quoted escaped: a terminal escape or newline in it stays harmless text
  // (it was printed raw; found by fuzz_llama2c).
  swapped[at] = '\x1b';
  swapped[at + 1] = '\n';
  write_bytes(dir.file("t_esc.bin"), swapped.data(), swapped.size());
  try {
    Tokenizer::from_llama2c(dir.file("t_esc.bin"));
    ADD_FAILURE();
  } catch (const FormatError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("token 0 is '\\x1b\\nnk>', expected <unk>"), std::string::npos) << m;
    EXPECT_EQ(m.find('\x1b'), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace attnsparse
