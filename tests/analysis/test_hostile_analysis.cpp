// Hostile options and outputs of the analysis: a huge --stride, --threads beyond any
// machine, a row dump that cannot be written, a model whose weights are NaN.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "analysis/analyze_job.h"
#include "analysis/plan.h"
#include "analysis/row_dump.h"
#include "cli_support.h"
#include "shared_data.h"
#include "core/error.h"

namespace attnsparse::analysis {
namespace {

using namespace attnsparse::testing_support;
namespace fs = std::filesystem;

TEST(HostilePlan, HugeStrideNeitherOverflowsNorMakesBogusRows) {
  AnalysisParams p;
  p.sampling.stride = INT64_MAX;
  for (int64_t min_query : {0, 1, 16}) {
    p.sampling.min_query = min_query;
    const DocumentPlan plan = plan_document(0, 100, 2, 3, p);
    // t += stride overflowed to a negative position: 1 row (the first query) only.
    ASSERT_EQ(plan.queries.size(), 1u) << min_query;
    EXPECT_EQ(plan.queries[0], min_query);
    EXPECT_EQ(plan.candidates(), 2 * 3);
  }
  p.sampling.min_query = 16;
  p.sampling.stride = INT64_MAX - 10;
  p.sampling.rows = RowKind::Both;
  p.sampling.decode_tokens = 4;
  const DocumentPlan plan = plan_document(0, 100, 2, 3, p);
  ASSERT_EQ(plan.queries.size(), 1u + 4u);  // 16, then the decode rows 96..99
  EXPECT_EQ(plan.queries[1], 96);
  EXPECT_EQ(plan.queries.back(), 99);
  // A stride just below the remaining length still steps normally.
  p.sampling.rows = RowKind::Prefill;
  p.sampling.stride = 83;
  EXPECT_EQ(plan_document(0, 100, 2, 3, p).queries, (std::vector<int32_t>{16, 99}));
}

// --set values: before, alpha = 3 read past the bootstrap sample (heap overflow), 1e20 and
// NaN were converted to int / int64 (undefined), kmeans_restarts = 2^31 - 1 ran for hours,
// bootstrap_resamples = 2^31 - 1 asked for 48 GB, and NaN / Inf thresholds were accepted.
TEST(HostileSettings, ValuesOutsideTheirRangeAreRefusedNamingTheParameter) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"alpha=3", "alpha must be a finite number in (0, 1)"},
      {"alpha=-1", "alpha must be"},
      {"alpha=0", "alpha must be"},
      {"alpha=1", "alpha must be"},
      {"alpha=inf", "--set alpha: 'inf' is not a finite number"},
      {"reservoir=1e20", "--set reservoir: 1e20 is out of range"},
      {"reservoir=2000000", "reservoir must be in [10, 1000000]"},
      {"min_anchor=nan", "--set min_anchor: 'nan' is not a finite number"},
      {"min_anchor=9223372036854775807", "--set min_anchor: 9223372036854775807 is out of range"},
      {"min_anchor=-1", "--set min_anchor: -1 is out of range"},
      {"kmeans_restarts=2147483647", "kmeans_restarts must be in [1, 1000]"},
      {"kmeans_restarts=0", "kmeans_restarts must be in [1, 1000]"},
      {"bootstrap_resamples=2147483647", "bootstrap_resamples must be in [10, 100000]"},
      {"kmeans_max_k=100", "kmeans_max_k <= 64"},
      {"anchors=5000", "persistence anchors must be in [0, 4096]"},
      {"anchors=-1", "--set anchors: -1 is out of range"},
      {"c34_ratio=-inf", "--set c34_ratio: '-inf' is not a finite number"},
      {"c34_ratio=0", "c34_ratio must be a finite number in (0,"},
      {"c5_supported=nan", "--set c5_supported: 'nan' is not a finite number"},
      {"c5_supported=1.5", "c5_supported must be a finite number in [0, 1]"},
      {"c1_p=inf", "--set c1_p: 'inf' is not a finite number"},
      {"c1_rho=-2", "c1_rho must be a finite number in [-1, 1]"},
      {"reservoir=12.5", "--set reservoir: '12.5' is not an integer"},
  };
  for (const auto& [setting, message] : bad) {
    AnalysisParams p;
    try {
      apply_setting(p, setting);
      validate(p);
      ADD_FAILURE() << setting << " was accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << setting << ": " << e.what();
    }
  }
  // The edges of the ranges are accepted.
  for (const char* good : {"alpha=0.001", "alpha=0.999", "bootstrap_resamples=100000", "reservoir=10", "c1_p=0",
                           "c1_p=1", "c1_rho=-1", "kmeans_max_k=64", "kmeans_restarts=1000", "anchors=4096",
                           "min_anchor=0"}) {
    AnalysisParams p;
    EXPECT_NO_THROW({
      apply_setting(p, good);
      validate(p);
    }) << good;
  }
}

// bench-attention multiplied --n out unchecked: 2^63 - 1 overflowed (UBSan), 2^31 asked for
// 512 GB, 2^62 ended in "attention: null q or out".
TEST(HostileCli, BenchAttentionSizesAreBoundedBeforeAllocating) {
  for (const std::pair<const char*, const char*>& c :
       {std::pair<const char*, const char*>{"9223372036854775807", "is above the limit of 1073741824 keys"},
        {"4611686018427387904", "is above the limit of 1073741824 keys"},
        {"100000000", "needs 71.5 GiB of inputs; the limit is 16 GiB"}}) {
    const ProcessResult r = run_cli({"bench-attention", "--n", c.first, "--head-dim", "16", "--heads", "4",
                                     "--kv-heads", "2", "--policy", "dense"},
                                    Output::merged);
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find(c.second), std::string::npos) << r.out;
  }
}

TEST(HostileCli, ThreadsAreBoundedInEveryVerb) {
  const std::string dir = fresh_dir("threads");
  for (const char* verb : {"analyze", "logits", "perplexity", "generate", "bench", "attention", "eval-policy"}) {
    const ProcessResult r = run_cli({verb, "none.gguf", "--threads", "100000"}, Output::merged);
    EXPECT_EQ(r.status, 2) << verb << ": " << r.out;
    EXPECT_NE(r.out.find("--threads: must be an integer from 0 to"), std::string::npos) << verb << ": " << r.out;
    const ProcessResult neg = run_cli({verb, "none.gguf", "--threads", "9999999999999999999"}, Output::merged);
    EXPECT_EQ(neg.status, 2) << verb << ": " << neg.out;
  }
  fs::remove_all(dir);
}

// CLI11 clamped integers beyond int64 to 2^63 - 1 (a "valid" huge stride): refused.
TEST(HostileCli, IntegerOptionsBeyondInt64AreRefused) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"analyze", "m.gguf", "--data", "d", "--out", "o", "--stride", "9999999999999999999"},
        {"analyze", "m.gguf", "--data", "d", "--out", "o", "--min-query", "-9999999999999999999"},
        {"perplexity", "m.gguf", "--text-file", "t", "--ctx", "18446744073709551616"},
        // Options with a range check attached were parsed by CLI11 alone: hex and leading
        // spaces were taken (--head-dim 0x10 ran with 16).
        {"bench-attention", "--n", "64", "--head-dim", "0x10", "--heads", "4", "--kv-heads", "2", "--policy", "dense"},
        {"bench-attention", "--n", "64", "--head-dim", "16", "--heads", "4", "--kv-heads", "2", "--policy", "dense",
         "--repeat", " 3"},
        {"eval-policy", "m.gguf", "--data", "d", "--policy", "dense", "--out", "o", "--max-tokens", "0x10"}}) {
    const ProcessResult r = run_cli(args, Output::merged);
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find("is not an integer in [-9223372036854775808, 9223372036854775807]"), std::string::npos)
        << r.out;
  }
}

TEST(HostileRowDump, AFailedWriteRemovesThePartialFile) {
  const std::string dir = fresh_dir("rowdump");
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  std::string error;
  {
    RowDumpFile dump(dir + "/rows.csv", 0);
    struct rlimit small = saved;
    small.rlim_cur = 4096;  // the disk is "full" after 4 KiB
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    try {
      dump.write(std::string(100000, 'x'));
      dump.end_document();
    } catch (const Error& e) {
      error = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
  }
  ::signal(SIGXFSZ, old_handler);
  EXPECT_NE(error.find("rows.csv.partial: write failed"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(dir + "/rows.csv.partial"));
  EXPECT_FALSE(fs::exists(dir + "/rows.csv"));
  // A dump abandoned without finish() (the run failed) leaves nothing either ...
  { RowDumpFile dump(dir + "/b.csv", 0); dump.write("1,2\n"); dump.end_document(); }
  EXPECT_FALSE(fs::exists(dir + "/b.csv.partial"));
  // ... unless the run is checkpointed: then the partial is what --resume continues.
  int64_t size = 0;
  { RowDumpFile dump(dir + "/c.csv", 0, true); dump.write("1,2\n"); size = dump.end_document(); }
  ASSERT_TRUE(fs::exists(dir + "/c.csv.partial"));
  EXPECT_EQ(int64_t(fs::file_size(dir + "/c.csv.partial")), size);
  // Never written over a device.
  try {
    RowDumpFile dump("/dev/null", 0);
    ADD_FAILURE() << "accepted /dev/null";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is a character device"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(HostileCli, AnalyzeOnANaNModelFailsInsteadOfReportingNaN) {
  const std::string dir = fresh_dir("nan_model");
  ASSERT_EQ(run_cli({"synth", "--preset", "tiny", "--out", dir + "/tiny.gguf"}, Output::merged).status, 0);
  // NaN everywhere in blk.0.ffn_down.weight (f16 0x7e00), found by its offset in the file.
  {
    std::FILE* f = std::fopen((dir + "/tiny.gguf").c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 0, SEEK_END);
    const long size = std::ftell(f);
    // The tensor data is the last ~280 KB; overwrite a stretch in the middle of it with NaN.
    std::fseek(f, size / 2, SEEK_SET);
    const uint16_t nan16 = 0x7e00;
    for (int i = 0; i < 20000; ++i) std::fwrite(&nan16, 2, 1, f);
    std::fclose(f);
  }
  std::ofstream(dir + "/a.txt") << "the quick brown fox jumps over the lazy dog and runs far away into the woods "
                                   "where nobody can find it again for a very long time indeed";
  const ProcessResult r = run_cli({"analyze", dir + "/tiny.gguf", "--data", dir + "/a.txt", "--out", dir + "/out",
                                   "--min-query", "4", "--dump-rows", dir + "/out/rows.csv"}, Output::merged);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("NaN or Inf"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("= nan"), std::string::npos) << r.out;  // no "rho = nan" verdicts
  EXPECT_FALSE(fs::exists(dir + "/out/report.json"));
  EXPECT_FALSE(fs::exists(dir + "/out/rows.csv.partial"));  // failed in the first document
  fs::remove_all(dir);
}

// synth wrote models of 4097 layers that its own loader refuses (2^31 ran out of memory
// with no output); generate sampled greedily at --temp -1 and accepted inf / nan.
TEST(HostileCli, SynthLayersAndGenerateTemperatureAreChecked) {
  const std::string dir = fresh_dir("synth_temp");
  for (const char* layers : {"0", "4097", "2147483648"}) {
    const ProcessResult r = run_cli({"synth", "--preset", "tiny", "--out", dir + "/s.gguf", "--layers", layers},
                                    Output::merged);
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("--layers must be from 1 to 4096"), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(dir + "/s.gguf"));
  }
  ASSERT_EQ(run_cli({"synth", "--preset", "tiny", "--out", dir + "/s.gguf"}, Output::merged).status, 0);
  for (const char* temp : {"-1", "-inf", "inf", "nan"}) {
    const ProcessResult r =
        run_cli({"generate", dir + "/s.gguf", "--prompt", "hi", "-n", "2", "--temp", temp}, Output::merged);
    EXPECT_EQ(r.status, 1) << temp << ": " << r.out;
    EXPECT_NE(r.out.find("--temp must be a finite number >= 0"), std::string::npos) << r.out;
  }
  EXPECT_EQ(run_cli({"generate", dir + "/s.gguf", "--prompt", "hi", "-n", "2", "--temp", "0"}, Output::merged).status,
            0);
  fs::remove_all(dir);
}

// n token ids 5, 6, ..., 104, 5, ... separated by spaces.
void write_token_ids(const std::string& path, int n) {
  std::ofstream ids(path);
  for (int i = 0; i < n; ++i) ids << (i % 100) + 5 << ' ';
}

// attention evaluated 600 tokens on a 512-token model without a word (logits refused
// them); an output naming the token file replaced it.
TEST(HostileCli, AttentionBeyondTheContextAndOverItsInputAreRefused) {
  const std::string dir = fresh_dir("attention_ctx");
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << model << " is missing";
  write_token_ids(dir + "/ids.txt", 600);
  ProcessResult r = run_cli({"attention", model, "--tokens", dir + "/ids.txt", "--out", dir + "/a.f32"}, Output::merged);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("600 tokens exceed the model's context length of 512"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir + "/a.f32"));
  r = run_cli({"attention", model, "--tokens", dir + "/ids.txt", "--out", dir + "/ids.txt"}, Output::merged);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("is the input file"), std::string::npos) << r.out;
  EXPECT_EQ(fs::file_size(dir + "/ids.txt"), 1800u);  // unchanged
  fs::remove_all(dir);
}

// --decode-tokens at or above every document's length reported "real_decode": null for
// dense and every policy, with exit 0, as if it had not been asked for.
TEST(HostileCli, EvalPolicyDecodeTokensLongerThanEveryDocumentIsRefused) {
  const std::string dir = fresh_dir("decode_tokens");
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << model << " is missing";
  write_token_ids(dir + "/doc.tok", 40);
  const ProcessResult r = run_cli({"eval-policy", model, "--data", dir + "/doc.tok", "--policy", "window=8",
                                   "--decode-tokens", "40", "--out", dir + "/e.json"},
                                  Output::merged);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("--decode-tokens 40: no document is longer than that (the longest has 40 tokens"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir + "/e.json"));
  fs::remove_all(dir);
}

// --tokenizer naming a missing file was ignored by the verbs that read token ids.
TEST(HostileCli, AMissingTokenizerFileIsAnErrorInEveryVerb) {
  const std::string dir = fresh_dir("tokenizer_opt");
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << model << " is missing";
  std::ofstream(dir + "/ids.txt") << "1 2 3 4";
  const std::string missing = dir + "/none.gguf";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"info", model, "--tokenizer", missing},
        {"logits", model, "--tokens", dir + "/ids.txt", "--out", dir + "/l.f32", "--tokenizer", missing},
        {"attention", model, "--tokens", dir + "/ids.txt", "--out", dir + "/a.f32", "--tokenizer", missing}}) {
    const ProcessResult r = run_cli(args, Output::merged);
    EXPECT_EQ(r.status, 1) << args[0] << ": " << r.out;
    EXPECT_NE(r.out.find("none.gguf: no such file or directory"), std::string::npos) << args[0] << ": " << r.out;
  }
  EXPECT_FALSE(fs::exists(dir + "/l.f32"));
  fs::remove_all(dir);
}

// CLI11 read '' as 0 for numbers and an empty --out DIR as the current directory, and
// wrapped --seed -1 to 2^64 - 1.
TEST(HostileCli, EmptyValuesAndNegativeUnsignedValuesAreRefused) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"analyze", "m.gguf", "--data", "d", "--out", ""},
        {"theory", "simulate", "--n", "64:256", "--d", "16", "--logit-c", "0.5", "--out", ""},
        {"logits", "m.gguf", "--tokens", "t", "--out", ""}}) {
    const ProcessResult r = run_cli(args, Output::merged);
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find("--out: an empty value is not allowed"), std::string::npos) << r.out;
  }
  // (Options with their own range check say so in their words.)
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"analyze", "m.gguf", "--data", "d", "--out", "o", "--stride", ""},
        {"eval-policy", "m.gguf", "--data", "d", "--policy", "dense", "--out", "o", "--max-tokens", ""}}) {
    const ProcessResult r = run_cli(args, Output::merged);
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find("error: " + args[args.size() - 2] + ": "), std::string::npos) << r.out;
  }
  const ProcessResult r = run_cli({"generate", "m.gguf", "--prompt", "hi", "--seed", "-1"}, Output::merged);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("--seed: '-1' is negative; expected an integer >= 0"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace attnsparse::analysis
