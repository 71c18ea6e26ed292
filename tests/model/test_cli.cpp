// The command-line contracts of the runtime verbs (other tools and checks call them),
// run through the real binary (ATTNSPARSE_BIN).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <regex>

#include "model/model_test_util.h"

namespace attnsparse {
namespace {

using namespace testing;

std::string ref(const std::string& rel) { return std::string(ATTNSPARSE_SHARED_DIR) + "/reference/" + rel; }
std::string q(const std::string& s) { return "'" + s + "'"; }

// One line on stderr that names the verb and says "error", non-zero status, nothing on stdout.
void expect_one_line_error(const ProcessResult& r, const std::string& needle) {
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(Cli, LogitsFileLayoutAndRowsMatchLlamaCpp) {
  REQUIRE_SHARED(model, "models/llama-spm-f32.gguf");
  TempDir dir;
  const std::string toks = ref("expected/llama-spm-f32.text.tokens.txt");
  const auto want = read_f32_file(ref("expected/llama-spm-f32.text.logits.f32"));  // rows 0,16,...,128,141
  const int64_t V = 32000, n = 142;
  auto r = run_cli("logits " + q(model) + " --tokens " + q(toks) + " --out " + q(dir.file("l.f32")) +
                       " --rows 16,0,141 --threads 1");
  ASSERT_EQ(r.status, 0) << r.err;
  auto got = read_f32_file(dir.file("l.f32"));
  ASSERT_EQ(got.size(), size_t(3 * V));  // [rows x n_vocab], in the order asked
  std::vector<float> want3;
  for (int idx : {1, 0, 9}) want3.insert(want3.end(), want.begin() + idx * V, want.begin() + (idx + 1) * V);
  EXPECT_LE(logit_error(got, want3, V).max_rel, 1e-4);
  // All rows without --rows.
  r = run_cli("logits " + q(model) + " --tokens " + q(toks) + " --out " + q(dir.file("all.f32")));
  ASSERT_EQ(r.status, 0) << r.err;
  got = read_f32_file(dir.file("all.f32"));
  ASSERT_EQ(got.size(), size_t(n * V));
  std::vector<float> row141(got.begin() + 141 * V, got.end());
  EXPECT_LE(logit_error(row141, std::vector<float>(want.begin() + 9 * V, want.end()), V).max_rel, 1e-4);
  EXPECT_FALSE(std::filesystem::exists(dir.file("all.f32.tmp")));
}

TEST(Cli, AttentionFileLayoutMatchesLlamaCpp) {
  REQUIRE_SHARED(model, "models/llama-spm-f32.gguf");
  TempDir dir;
  const auto r = run_cli("attention " + q(model) + " --tokens " + q(ref("expected/llama-spm-f32.text.tokens.txt")) +
                             " --out " + q(dir.file("a.f32")));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto got = read_f32_file(dir.file("a.f32"));
  const auto want = read_f32_file(ref("expected/llama-spm-f32.text.attn.f32"));
  ASSERT_EQ(got.size(), size_t(2 * 4 * 142 * 142));
  EXPECT_LE(max_abs_diff(got, want), 3e-5);
}

TEST(Cli, TokenizePrintsIdsOnOneLineWithBosUnlessNoSpecial) {
  REQUIRE_SHARED(model, "models/llama-spm-f32.gguf");
  TempDir dir;
  const std::string text = ref("expected/text_a.txt");
  auto r = run_cli("tokenize " + q(model) + " --text-file " + q(text));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::regex_match(r.out, std::regex("[0-9]+( [0-9]+)*\n"))) << r.out;
  std::istringstream ss(r.out);
  std::vector<int32_t> ids;
  for (long long v; ss >> v;) ids.push_back(static_cast<int32_t>(v));
  EXPECT_EQ(ids, read_ids(ref("expected/llama-spm-f32.text.tokens.txt")));  // llama.cpp's, BOS first
  r = run_cli("tokenize " + q(model) + " --text-file " + q(text) + " --no-special");
  std::istringstream ss2(r.out);
  std::vector<int32_t> ids2;
  for (long long v; ss2 >> v;) ids2.push_back(static_cast<int32_t>(v));
  EXPECT_EQ(ids2, std::vector<int32_t>(ids.begin() + 1, ids.end()));
  // A vocabulary-only file works too.
  r = run_cli("tokenize " + q(ref("tokenizer/ggml-vocab-gpt-2.gguf")) + " --text 'Hello world'");
  EXPECT_EQ(r.out, "15496 995\n");
}

TEST(Cli, SynthInfoGenerateAndBench) {
  TempDir dir;
  const std::string m = dir.file("tiny.gguf"), d = dir.path().string();
  auto r = run_cli("synth --preset tiny-qwen2 --dtype q8_0 --layers 3 --seed 2 --out " + q(m));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_cli("info " + q(m) + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto info = nlohmann::json::parse(r.out);
  EXPECT_EQ(info["arch"], "qwen2");
  EXPECT_EQ(info["n_layer"], 3);
  EXPECT_EQ(info["n_kv_head"], 2);
  EXPECT_EQ(info["tied_output"], true);
  EXPECT_EQ(info["qkv_bias"], true);
  EXPECT_TRUE(info["tensor_dtypes"].contains("q8_0"));
  EXPECT_EQ(info["tokenizer"]["type"], "spm");
  r = run_cli("info " + q(m));
  EXPECT_NE(r.out.find("architecture     qwen2"), std::string::npos) << r.out;

  // generate: the prompt then the continuation; greedy is deterministic; seeds reproduce.
  auto gen = [&](const std::string& extra) {
    return run_cli("generate " + q(m) + " --prompt 'In the beginning' -n 16 --threads 1 " + extra);
  };
  const auto g0 = gen("--temp 0"), g1 = gen("--temp 0"), s1 = gen("--seed 5"), s2 = gen("--seed 5");
  ASSERT_EQ(g0.status, 0) << g0.err;
  EXPECT_EQ(g0.out.rfind("In the beginning", 0), 0u) << g0.out;
  EXPECT_GT(g0.out.size(), std::string("In the beginning\n").size());
  EXPECT_EQ(g0.out, g1.out);
  EXPECT_EQ(s1.out, s2.out);
  EXPECT_NE(g0.err.find("tok/s"), std::string::npos);

  r = run_cli("bench " + q(m) + " -p 32 -n 8 --reps 2 --threads 1");
  ASSERT_EQ(r.status, 0) << r.err;
  // The JSON object is the last line after the table.
  const std::string body = r.out.substr(0, r.out.size() - 1);
  const std::string last = body.substr(body.rfind('\n') + 1);
  const auto j = nlohmann::json::parse(last);
  EXPECT_GT(j["prefill_tok_s"].get<double>(), 0);
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0);
  EXPECT_EQ(j["reps"], 2);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["n_prompt"], 32);
  EXPECT_EQ(j["shape"]["n_layer"], 3);
  EXPECT_EQ(j["shape"]["weight_dtype"], "q8_0");
  EXPECT_EQ(j["prefill_seconds"].size(), 2u);
  EXPECT_NE(r.out.find("| pp32"), std::string::npos) << r.out;
  r = run_cli("bench " + q(m) + " -p 16 -n 0 --reps 1 --json --threads 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(nlohmann::json::parse(r.out)["decode_tok_s"].is_null());
}

TEST(Cli, PerplexityJsonFields) {
  REQUIRE_SHARED(model, "models/llama-spm-f32.gguf");
  TempDir dir;
  const std::string text = ref("expected/text_a.txt");
  const auto r = run_cli("perplexity " + q(model) + " --text-file " + q(text) + " --ctx 64 --stride 32 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count_lines(r.out), 1);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"], 142);  // llama.cpp's tokenization of the file, BOS included
  EXPECT_EQ(j["scored"], 141);
  EXPECT_EQ(j["bytes"], std::filesystem::file_size(text));
  EXPECT_EQ(j["ctx"], 64);
  EXPECT_EQ(j["stride"], 32);
  EXPECT_EQ(j["windows"], 4);  // [0,64) [32,96) [64,128) [96,142)
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(j["nll_per_token"].get<double>()), 1e-9 * j["perplexity"].get<double>());
  EXPECT_GT(j["nll_per_token"].get<double>(), 0);
}

TEST(Cli, EveryRuntimeVerbHasHelpWithAnExample) {
  TempDir dir;
  for (const char* verb : {"info", "tokenize", "generate", "perplexity", "synth", "bench", "logits",
                           "attention", "gguf-dump"}) {
    const auto r = run_cli(std::string(verb) + " --help");
    EXPECT_EQ(r.status, 0) << verb;
    EXPECT_NE(r.out.find("Example"), std::string::npos) << verb;
  }
}

TEST(Cli, BadArgumentsAndFilesGiveOneErrorLine) {
  REQUIRE_SHARED(model, "models/llama-spm-f32.gguf");
  TempDir dir;
  const std::string d = dir.path().string();
  write_text(dir.file("bad_ids.txt"), "1 2 x3");
  write_text(dir.file("big_ids.txt"), "1 2 32000");
  write_text(dir.file("not.gguf"), "hello");
  expect_one_line_error(run_cli("info " + q(dir.file("missing.gguf"))), "missing.gguf: no such file");
  expect_one_line_error(run_cli("info " + q(dir.file("not.gguf"))), "not.gguf");
  expect_one_line_error(run_cli("logits " + q(model) + " --tokens " + q(dir.file("bad_ids.txt")) + " --out " +
                                    q(dir.file("o.f32"))),
                        "bad_ids.txt: 'x3'");
  expect_one_line_error(run_cli("logits " + q(model) + " --tokens " + q(dir.file("big_ids.txt")) + " --out " +
                                    q(dir.file("o.f32"))),
                        "big_ids.txt: token id 32000 at index 2 is out of range");
  expect_one_line_error(run_cli("logits " + q(model) + " --tokens " + q(dir.file("big_ids.txt")) +
                                    " --rows 0,7 --out " + q(dir.file("o.f32"))),
                        "--rows");
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.f32")));
  expect_one_line_error(run_cli("synth --preset nope --out " + q(dir.file("s.gguf"))), "unknown preset 'nope'");
  expect_one_line_error(run_cli("synth --preset tiny --dtype q4_k --out " + q(dir.file("s.gguf"))), "--dtype");
  EXPECT_FALSE(std::filesystem::exists(dir.file("s.gguf")));
  expect_one_line_error(run_cli("generate " + q(model) + " --prompt hi --top-p 1.5"), "--top-p");
  expect_one_line_error(run_cli("perplexity " + q(model) + " --text-file " + q(dir.file("none.txt"))),
                        "none.txt: cannot open");
  expect_one_line_error(run_cli("perplexity " + q(model) + " --text-file " + q(dir.file("bad_ids.txt")) +
                                    " --ctx 4 --stride 5"),
                        "--stride");
  expect_one_line_error(run_cli("bench " + q(model) + " --reps 0"), "--reps");
  expect_one_line_error(run_cli("tokenize " + q(model)), "--text");
}

}  // namespace
}  // namespace attnsparse
