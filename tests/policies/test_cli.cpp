// The policy verbs through the real binary: bench-attention's JSON, eval-policy's report
// on the llama reference model, and one-line errors without partial output files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include <unistd.h>

#include "analysis/shared_data.h"
#include "support/run_process.h"

namespace {

namespace fs = std::filesystem;
using attnsparse::testing::ProcessResult;
using attnsparse::testing::run_cli;
using attnsparse::testing_support::reference_dir;

// ctest runs the tests of this file as concurrent processes: each gets its own folder.
fs::path work_dir() {
  return fs::path(::testing::TempDir()) / ("policies_cli_" + std::to_string(::getpid()));
}



TEST(PolicyCli, BenchAttentionReportsSpeedupAgainstIdeal) {
  const ProcessResult r = run_cli("bench-attention --n 300 --head-dim 32 --heads 4 --kv-heads 2 --policy window=30 --threads 1 "
                    "--repeat 2 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"dense_ms", "sparse_ms", "plan_ms", "run_ms", "kept_fraction", "speedup", "ideal_speedup"})
    EXPECT_TRUE(j.contains(key)) << key;
  // window=30 over a 300-token prefill: sum_t min(t+1, 30) / sum_t (t+1).
  double kept = 0, all = 0;
  for (int t = 0; t < 300; ++t) {
    kept += std::min(t + 1, 30);
    all += t + 1;
  }
  EXPECT_NEAR(j["kept_fraction"].get<double>(), kept / all, 1e-9);
  EXPECT_NEAR(j["ideal_speedup"].get<double>(), all / kept, 1e-6);
  EXPECT_NEAR(j["speedup"].get<double>(), j["dense_ms"].get<double>() / j["sparse_ms"].get<double>(), 1e-9);
  // An evicting policy needs --decode.
  const ProcessResult e = run_cli("bench-attention --n 300 --head-dim 32 --heads 4 --kv-heads 2 --policy tova=budget:64");
  EXPECT_EQ(e.status, 1);
  EXPECT_NE(e.err.find("--decode"), std::string::npos) << e.err;
  const ProcessResult d = run_cli("bench-attention --n 300 --head-dim 32 --heads 4 --kv-heads 2 --policy tova=budget:64 --decode "
                    "--threads 1 --json");
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_NEAR(nlohmann::json::parse(d.out)["kept_fraction"].get<double>(), 65.0 / 300.0, 1e-9);
}

TEST(PolicyCli, EvalPolicyWritesTheReport) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(model);
  const fs::path dir = work_dir();
  fs::create_directories(dir);
  const std::string tokens = reference_dir() + "/expected/llama-spm-f32.random.tokens.txt";
  const fs::path data = dir / "doc.tok";
  fs::copy_file(tokens, data, fs::copy_options::overwrite_existing);
  const std::string report = (dir / "report.json").string();
  fs::remove(report);
  const ProcessResult r = run_cli("eval-policy '" + model + "' --data '" + data.string() +
                    "' --policy dense --policy topk=1000 --policy window=8 --policy 'h2o=budget:32,recent:4' "
                    "--max-tokens 120 --chunk 50 --decode-tokens 10 --threads 1 --out '" + report + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("window=8"), std::string::npos) << r.out;  // the table
  std::ifstream in(report);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["documents"], 1);
  EXPECT_EQ(j["tokens"], 120);
  const auto& p = j["policies"];
  ASSERT_EQ(p.size(), 4u);
  // dense and topk >= n: nothing dropped, same perplexity, same predictions.
  for (int i : {0, 1}) {
    EXPECT_NEAR(p[i]["kept_fraction"].get<double>(), 1.0, 1e-12);
    EXPECT_LT(p[i]["tau_mean"].get<double>(), 1e-5);
    EXPECT_LT(p[i]["rel_l2_mean"].get<double>(), 1e-5);
    EXPECT_NEAR(p[i]["ppl"].get<double>(), j["dense"]["ppl"].get<double>(), 1e-3 * j["dense"]["ppl"].get<double>());
    EXPECT_EQ(p[i]["top1_agreement"].get<double>(), 1.0);
    EXPECT_EQ(p[i]["layers"].size(), 2u);
  }
  // window=8 keeps sum_t min(t+1, 8) of sum_t (t+1) keys and 8 of 120 slots.
  double kept = 0, all = 0;
  for (int t = 0; t < 120; ++t) {
    kept += std::min(t + 1, 8);
    all += t + 1;
  }
  EXPECT_NEAR(p[2]["kept_fraction"].get<double>(), kept / all, 1e-9);
  EXPECT_NEAR(p[2]["kv_bytes_relative"].get<double>(), 8.0 / 120.0, 1e-9);
  EXPECT_GT(p[2]["tau_mean"].get<double>(), 0.01);
  EXPECT_GT(p[2]["rel_l2_mean"].get<double>(), 0.01);
  EXPECT_LT(p[2]["top1_agreement"].get<double>(), 1.0);
  EXPECT_NEAR(p[3]["kv_bytes_relative"].get<double>(), 33.0 / 120.0, 1e-9);
  // Real decoding of the last 10 tokens: the cache really holds the budget (h2o) or the
  // keys a later query may visit (window=8: positions 113..119), dense all 120.
  const double dense_bytes = j["dense"]["real_decode"]["cache_bytes_mean"].get<double>();
  EXPECT_GT(dense_bytes, 0);
  EXPECT_NEAR(p[3]["real_decode"]["cache_bytes_mean"].get<double>() / dense_bytes, 32.0 / 120.0, 1e-12);
  EXPECT_NEAR(p[2]["real_decode"]["cache_bytes_mean"].get<double>() / dense_bytes, 7.0 / 120.0, 1e-12);
  EXPECT_EQ(p[1]["real_decode"]["cache_bytes_mean"].get<double>(), dense_bytes);
  EXPECT_EQ(p[3]["real_decode"]["tokens"], 10);
}

// Fuzzing: a dilated window of 2^31 - 1 looped over the whole window per query (a hang);
// it is now clamped to the context: each query keeps only itself (rate 2^31 - 1).
// A sweep through the command line records its field and value.
TEST(PolicyCli, EvalPolicyHugeDilatedWindowAndASweep) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(model);
  const fs::path dir = work_dir();
  fs::create_directories(dir);
  const fs::path data = dir / "doc.tok";
  fs::copy_file(reference_dir() + "/expected/llama-spm-f32.random.tokens.txt", data,
                fs::copy_options::overwrite_existing);
  const std::string report = (dir / "sweep.json").string();
  const ProcessResult r = run_cli("eval-policy '" + model + "' --data '" + data.string() +
                       "' --policy dilated=2147483647:2147483647 --policy 'window={4,8}' --max-tokens 60 --threads 1 "
                       "--out '" + report + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(report);
  const auto j = nlohmann::json::parse(in);
  const auto& p = j["policies"];
  ASSERT_EQ(p.size(), 3u);
  EXPECT_NEAR(p[0]["kept_fraction"].get<double>(), 60.0 / (60.0 * 61.0 / 2.0), 1e-12);
  EXPECT_FALSE(p[0].contains("sweep"));
  EXPECT_EQ(p[2]["policy"], "window=8");
  EXPECT_EQ(p[2]["sweep"]["spec"], "window={4,8}");
  EXPECT_EQ(p[2]["sweep"]["field"], "window");
  EXPECT_EQ(p[2]["sweep"]["value"], 8);
}

// The checkpoint eval-policy keeps in --out: removed with the report; --resume without one
// starts over (and says so) to the same report; a damaged one is one error line naming it.
TEST(PolicyCli, EvalPolicyCheckpointAndResume) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(model);
  const fs::path dir = work_dir() / "resume";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path data = dir / "doc.tok";
  fs::copy_file(reference_dir() + "/expected/llama-spm-f32.random.tokens.txt", data);
  const std::string base = "eval-policy '" + model + "' --data '" + data.string() +
                           "' --policy window=8 --policy 'h2o=budget:16,recent:4' --max-tokens 60 --chunk 25 --threads 1";
  const fs::path out = dir / "out";
  const ProcessResult first = run_cli(base + " --out '" + out.string() + "'");
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_TRUE(fs::exists(out / "report.json"));
  EXPECT_FALSE(fs::exists(out / "checkpoint.cbor"));
  const auto numbers = [](const fs::path& p) {
    std::ifstream in(p);
    nlohmann::json j = nlohmann::json::parse(in);
    j["dense"].erase("wall_s");
    for (auto& x : j["policies"]) {
      x.erase("wall_s");
      x.erase("wall_relative");
    }
    return j.dump();
  };
  const std::string want = numbers(out / "report.json");
  const ProcessResult again = run_cli(base + " --resume --out '" + out.string() + "'");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("eval-policy: --resume: no checkpoint " + (out / "checkpoint.cbor").string() +
                           "; starting from the beginning"),
            std::string::npos)
      << again.err;
  EXPECT_EQ(numbers(out / "report.json"), want);
  // --out FILE.json: the checkpoint is FILE.checkpoint.cbor beside it.
  const fs::path json_out = dir / "alone.json";
  std::ofstream(dir / "alone.checkpoint.cbor") << "not a checkpoint";
  const ProcessResult damaged = run_cli(base + " --resume --out '" + json_out.string() + "'");
  EXPECT_EQ(damaged.status, 1);
  EXPECT_NE(damaged.err.find((dir / "alone.checkpoint.cbor").string() + ": damaged checkpoint"), std::string::npos)
      << damaged.err;
  EXPECT_EQ(std::count(damaged.err.begin(), damaged.err.end(), '\n'), 1) << damaged.err;
  EXPECT_FALSE(fs::exists(json_out));
  fs::remove(dir / "alone.checkpoint.cbor");
  const ProcessResult alone = run_cli(base + " --out '" + json_out.string() + "'");
  ASSERT_EQ(alone.status, 0) << alone.err;
  EXPECT_EQ(numbers(json_out), want);
  EXPECT_FALSE(fs::exists(dir / "alone.checkpoint.cbor"));
  fs::remove_all(dir);
}

TEST(PolicyCli, BadInputIsOneLineAndNoReport) {
  const fs::path dir = work_dir();
  fs::create_directories(dir);
  const std::string report = (dir / "bad.json").string();
  fs::remove(report);
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  std::ofstream(dir / "plainfile") << "x";  // --out DIR that is a regular file
  struct Case {
    std::string args, needle;
  };
  const Case cases[] = {
      {"eval-policy '" + model + "' --data /nonexistent.txt --out '" + report + "'", "/nonexistent.txt"},
      {"eval-policy '" + model + "' --data '" + reference_dir() + "/longbench/sample.jsonl' --policy windw=3 --out '" +
           report + "'",
       "windw=3"},
      {"eval-policy '" + model + "' --data '" + reference_dir() + "/longbench/sample.jsonl' --policy 'L9:window=3' --out '" +
           report + "'",
       "layer 9"},
      {"eval-policy '" + model + "' --data '" + reference_dir() + "/longbench/sample.jsonl' --policy "
           "'sink=9223372036854775807,window=1' --out '" + report + "'",
       "sink must be at most 2147483647"},
      {"eval-policy '" + model + "' --data '" + reference_dir() + "/longbench/sample.jsonl' --policy "
           "'topk={0,8}' --out '" + report + "'",
       "policy 'topk={0,8}', k = 0: k must be >= 1"},
      {"eval-policy '" + model + "' --data '" + reference_dir() + "/longbench/sample.jsonl' --policy "
           "'window=8..64' --out '" + report + "'",
       "needs a step"},
      {"eval-policy '" + model + "' --data '" + reference_dir() + "/longbench/sample.jsonl' --out '" +
           (dir / "plainfile").string() + "'",
       "not a directory"},
      {"bench-attention --n 100 --head-dim 32 --heads 3 --kv-heads 2 --policy dense", "multiple"},
      {"bench-attention --n 100 --head-dim 32 --heads 4 --kv-heads 2 --policy 'topp=2'", "topp=2"},
  };
  for (const auto& c : cases) {
    const ProcessResult r = run_cli(c.args);
    EXPECT_EQ(r.status, 1) << c.args;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(report));
  }
}

}  // namespace
