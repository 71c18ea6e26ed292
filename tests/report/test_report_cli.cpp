// `attnsparse report FILE.json`: the page of every kind of result file, redrawn from the
// JSON alone, is byte for byte the page the verb wrote (eval-policy, theory simulate,
// theory fit, analyze); the condensation experiment's results.json (a hand-made file
// with the script's schema) gets its page; bad files are one error line, no output.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "support/files.h"
#include "report_support.h"
#include "support/run_process.h"

namespace fs = std::filesystem;

namespace {

using attnsparse::testing::ProcessResult;
using attnsparse::testing::run_cli;

const std::string kShared = ATTNSPARSE_SHARED_DIR "/reference";

fs::path work_dir() { return fs::path(::testing::TempDir()) / ("report_cli_" + std::to_string(::getpid())); }

using attnsparse::testing::analyze_reference_case;
using attnsparse::testing::slurp;


bool have(const std::string& path) { return fs::exists(path); }

TEST(ReportCli, EvalPolicyDirectoryAndRedraw) {
  const std::string model = kShared + "/models/llama-spm-f32.gguf";
  if (!have(model)) GTEST_SKIP() << model;
  const fs::path dir = work_dir() / "policy";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path data = dir / "doc.tok";
  fs::copy_file(kShared + "/expected/llama-spm-f32.random.tokens.txt", data);
  const ProcessResult r = run_cli("eval-policy '" + model + "' --data '" + data.string() +
                       "' --policy 'topk={4,16}' --policy 'h2o=budget:{16,32},recent:4' --policy window=8 "
                       "--max-tokens 80 --threads 1 --out '" + (dir / "out").string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string html = slurp(dir / "out" / "report.html");
  const auto j = nlohmann::json::parse(slurp(dir / "out" / "report.json"));
  ASSERT_EQ(j["policies"].size(), 5u);
  EXPECT_EQ(j["policies"][3]["sweep"]["field"], "budget");
  EXPECT_NE(html.find("topk={4,16}"), std::string::npos);
  EXPECT_NE(html.find("data-report-ok"), std::string::npos);  // the load check is in the page
  const ProcessResult again = run_cli("report '" + (dir / "out" / "report.json").string() + "' -o '" + (dir / "re.html").string() + "'");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("eval-policy report"), std::string::npos);
  EXPECT_EQ(slurp(dir / "re.html"), html);
  // Without -o: next to the input, .json -> .html.
  fs::copy_file(dir / "out" / "report.json", dir / "copy.json");
  ASSERT_EQ(run_cli("report '" + (dir / "copy.json").string() + "'").status, 0);
  EXPECT_EQ(slurp(dir / "copy.html"), html);
  // --out FILE.json still writes the JSON alone.
  const ProcessResult file = run_cli("eval-policy '" + model + "' --data '" + data.string() +
                          "' --policy window=8 --max-tokens 40 --threads 1 --out '" + (dir / "only.json").string() + "'");
  ASSERT_EQ(file.status, 0) << file.err;
  EXPECT_TRUE(fs::exists(dir / "only.json"));
  EXPECT_FALSE(fs::exists(dir / "only.html"));
}

TEST(ReportCli, TheoryPagesRedrawByteForByte) {
  const fs::path dir = work_dir() / "theory";
  fs::remove_all(dir);
  const ProcessResult sim = run_cli("theory simulate --n 64:512 --d 16 --sigma 1 --logit-c 0.5 --norm-bound 1,3 --weight-frobenius 1 "
                         "--trials 6 --bootstrap 40 --threads 1 --out '" + (dir / "sim").string() + "'");
  ASSERT_EQ(sim.status, 0) << sim.err;
  ASSERT_EQ(run_cli("report '" + (dir / "sim" / "theory.json").string() + "' -o '" + (dir / "sim.html").string() + "'").status, 0);
  EXPECT_EQ(slurp(dir / "sim.html"), slurp(dir / "sim" / "theory.html"));
  const std::string model = kShared + "/models/llama-spm-f32.gguf";
  if (!have(model)) GTEST_SKIP() << model;
  fs::copy_file(kShared + "/expected/llama-spm-f32.random.tokens.txt", dir / "doc.tok");
  const ProcessResult fit = run_cli("theory fit '" + model + "' --data '" + (dir / "doc.tok").string() +
                         "' --min-n 8 --rows-per-bin 8 --bootstrap 20 --threads 1 --out '" + (dir / "fit").string() + "'");
  ASSERT_EQ(fit.status, 0) << fit.err;
  const ProcessResult re = run_cli("report '" + (dir / "fit" / "theory_fit.json").string() + "' -o '" + (dir / "fit.html").string() + "'");
  ASSERT_EQ(re.status, 0) << re.err;
  EXPECT_NE(re.out.find("theory fit"), std::string::npos);
  EXPECT_EQ(slurp(dir / "fit.html"), slurp(dir / "fit" / "theory_fit.html"));
}

TEST(ReportCli, AnalysisPageRedrawsByteForByte) {
  const std::string model = kShared + "/models/llama-spm-f32.gguf";
  if (!have(model)) GTEST_SKIP() << model;
  const fs::path dir = work_dir() / "analysis";
  const ProcessResult a = analyze_reference_case(dir, model);
  ASSERT_EQ(a.status, 0) << a.err;
  const ProcessResult re = run_cli("report '" + (dir / "out" / "report.json").string() + "' -o '" + (dir / "re.html").string() + "'");
  ASSERT_EQ(re.status, 0) << re.err;
  EXPECT_NE(re.out.find("analyze report"), std::string::npos);
  EXPECT_EQ(slurp(dir / "re.html"), slurp(dir / "out" / "report.html"));
}

// The schema scripts/condensation_experiment.sh writes (jq), with two runs.
TEST(ReportCli, CondensationResults) {
  const fs::path dir = work_dir() / "condensation";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const nlohmann::json results = {
      {"setup", {{"arch", "gpt2"}, {"preset", "mini"}, {"steps", 40}, {"batch", 4}, {"ctx", 64}, {"lr", "2e-3"},
                 {"seed", 1}, {"tokenizer", "spm:500"}, {"k", 8}, {"eps", 0.05}}},
      {"runs",
       {{{"name", "baseline"}, {"reg", "none"}, {"params", 1000}, {"steps", 40}, {"val_ppl", 90.5},
         {"mean_topk_mass", 0.4}, {"sparse_share", 0.02}, {"seconds", 12.0}, {"width_p90_per_layer", {50.1, 40.2}},
         {"dense_ppl", 92.0}, {"topk_ppl", 113.0}, {"topk_kept", 0.14}, {"dyntopk_ppl", 112.0},
         {"dyntopk_kept", 0.13}, {"documents", 20}},
        {{"name", "topk-l<1>"}, {"reg", "topk:k=8,lambda=1"}, {"params", 1000}, {"steps", 40}, {"val_ppl", 95.0},
         {"mean_topk_mass", 0.999}, {"sparse_share", 0.998}, {"seconds", 13.0}, {"width_p90_per_layer", {2.1, 1.5}},
         {"dense_ppl", 107.8}, {"topk_ppl", 107.8}, {"topk_kept", 0.14}, {"dyntopk_ppl", 107.8},
         {"dyntopk_kept", 0.13}, {"documents", 20}}}}};
  std::ofstream(dir / "results.json") << results.dump(2);
  const ProcessResult r = run_cli("report '" + (dir / "results.json").string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("condensation"), std::string::npos);
  const std::string html = slurp(dir / "results.html");
  size_t svgs = 0;
  for (size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1)) ++svgs;
  EXPECT_EQ(svgs, 3u);
  EXPECT_NE(html.find("data-report-ok"), std::string::npos);
  EXPECT_NE(html.find("topk-l&lt;1&gt;"), std::string::npos);  // escaped
  EXPECT_EQ(html.find("topk-l<1>"), std::string::npos);
  EXPECT_NE(html.find("+22.8%"), std::string::npos);  // top-k ppl vs dense: 113 / 92 - 1
  EXPECT_NE(html.find("50.1 / 40.2"), std::string::npos);
}

TEST(ReportCli, BadFilesAreOneLineAndNoOutput) {
  const fs::path dir = work_dir() / "bad";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "notjson.json") << "{\"a\": ";
  std::ofstream(dir / "other.json") << R"({"a": 1})";
  std::ofstream(dir / "badtheory.json") << R"({"tool": "attnsparse theory simulate", "params": {"n_lo": 4}})";
  std::ofstream(dir / "badpolicy.json") << R"({"dense": {"ppl": 3}, "policies": [{"policy": 5, "layers": 7}]})";
  struct Case {
    std::string file, needle;
  };
  const Case cases[] = {{"notjson.json", "invalid JSON"},
                        {"other.json", "not a result file"},
                        {"badtheory.json", "malformed theory simulate result"},
                        {"missing.json", "cannot open"}};
  for (const Case& c : cases) {
    const std::string out = (dir / (c.file + ".html")).string();
    const ProcessResult r = run_cli("report '" + (dir / c.file).string() + "' -o '" + out + "'");
    EXPECT_EQ(r.status, 1) << c.file;
    EXPECT_NE(r.err.find(c.file), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out)) << c.file;
  }
  // Fields removed from real files (found by mutating them: a theory page indexed a
  // shortened trial row out of bounds; analysis pages read missing keys through const
  // access): one error line, never a crash.
  const ProcessResult sim = run_cli("theory simulate --n 64:256 --d 8 --sigma 1 --trials 3 --bootstrap 20 --threads 1 --out '" +
                         (dir / "sim").string() + "'");
  ASSERT_EQ(sim.status, 0) << sim.err;
  auto theory = nlohmann::json::parse(slurp(dir / "sim" / "theory.json"));
  theory["settings"][0]["rules"][0]["tail_trials"][1] = nlohmann::json::array({0.5});
  std::ofstream(dir / "short_row.json") << theory.dump();
  const ProcessResult sr = run_cli("report '" + (dir / "short_row.json").string() + "' -o '" + (dir / "sr.html").string() + "'");
  EXPECT_EQ(sr.status, 1);
  EXPECT_NE(sr.err.find("a row of 1 values for 3 lengths"), std::string::npos) << sr.err;
  EXPECT_FALSE(fs::exists(dir / "sr.html"));
  const nlohmann::json analysis = {{"conjectures", nlohmann::json::array({{{"id", 1}}})},
                                   {"per_layer", nlohmann::json::array()},
                                   {"counts", nlohmann::json::object()}};
  std::ofstream(dir / "analysis.json") << analysis.dump();
  const ProcessResult an = run_cli("report '" + (dir / "analysis.json").string() + "' -o '" + (dir / "an.html").string() + "'");
  EXPECT_EQ(an.status, 1) << an.err;
  EXPECT_NE(an.err.find("malformed analyze report"), std::string::npos) << an.err;
  EXPECT_EQ(std::count(an.err.begin(), an.err.end(), '\n'), 1) << an.err;
  // Wrong types inside an eval-policy report are read as missing values, not a crash.
  const ProcessResult p = run_cli("report '" + (dir / "badpolicy.json").string() + "'");
  EXPECT_EQ(p.status, 0) << p.err;
}

}  // namespace
