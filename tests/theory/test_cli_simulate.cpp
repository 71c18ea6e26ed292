// `attnsparse theory simulate` end to end: outputs, the JSON contract (`fits` with eps, C,
// C_ci and the setting's parameters), and one-line errors with no output left behind.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/run_process.h"

namespace {

namespace fs = std::filesystem;
using attnsparse::testing::ProcessResult;
using attnsparse::testing::run_cli;

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("attnsparse_theory_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(CliSimulate, WritesJsonFitsAndHtml) {
  const fs::path dir = fresh_dir("sim");
  const fs::path out = dir / "out";
  const ProcessResult r = run_cli("theory simulate --n 2^8:2^11 --d 8 --logit-c 0.5 --sigma 1.5 --norm-bound 1 "
                        "--weight-frobenius 16,64 --eps 0.01,0.05 --trials 6 --bootstrap 50 --threads 2 --out " +
                            out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("setting 4/4"), std::string::npos) << "progress on stderr";
  EXPECT_NE(r.out.find("logit-c d=8 c=0.5"), std::string::npos) << "table on stdout";
  std::ifstream jin(out / "theory.json");
  const auto j = nlohmann::json::parse(jin);
  ASSERT_EQ(j["fits"].size(), 4u * 2u);  // 4 settings x 2 eps
  int logit = 0;
  for (const auto& f : j["fits"]) {
    ASSERT_TRUE(f.contains("eps") && f.contains("C") && f.contains("C_ci") && f.contains("regime"));
    ASSERT_EQ(f["C_ci"].size(), 2u);
    EXPECT_LE(f["C_ci"][0].get<double>(), f["C"].get<double>() + 1e-12);
    EXPECT_GE(f["C_ci"][1].get<double>(), f["C"].get<double>() - 1e-12);
    if (f["regime"] == "logit-c") {
      ++logit;
      EXPECT_EQ(f["logit_c"].get<double>(), 0.5);
      EXPECT_TRUE(f.contains("closed_form_C"));
    }
    if (f["regime"] == "gaussian") {
      EXPECT_EQ(f["sigma"].get<double>(), 1.5);
    }
    if (f["regime"] == "norm-bound") {
      EXPECT_TRUE(f.contains("R"));
    }
  }
  EXPECT_EQ(logit, 2);
  EXPECT_EQ(j["settings"][0]["n"].size(), 4u);  // 2^8 .. 2^11
  EXPECT_EQ(j["settings"][0]["rules"].size(), 3u);
  std::ifstream hin(out / "theory.html");
  std::stringstream html;
  html << hin.rdbuf();
  EXPECT_EQ(html.str().rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.str().find("<svg"), std::string::npos);
  EXPECT_NE(html.str().find("collapse"), std::string::npos);  // the R sweep section
  EXPECT_EQ(html.str().find("<script"), std::string::npos);
  fs::remove_all(dir);
}

TEST(CliSimulate, BadArgumentsFailWithOneLineAndNoOutput) {
  const fs::path dir = fresh_dir("bad");
  const fs::path out = dir / "out";
  for (const std::string args : {"--logit-c 0.5 --eps 1.5", "--logit-c 0.5 --n 4096:1024", "--sigma abc",
                                 "--norm-bound 1", "--logit-c 0.5 --trials 1", ""}) {
    const ProcessResult r = run_cli("theory simulate " + args + " --out " + out.string());
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.err.find("error"), std::string::npos) << args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
    EXPECT_FALSE(fs::exists(out / "theory.json")) << args;
  }
  fs::remove_all(dir);
}

// Hostile numbers: each is refused before any work with one line naming the option and its
// range, a non-zero status and no output (they once reached undefined behaviour in the
// budget rule, saturated, wrapped, or were silently read as 0 or as "not given").
TEST(CliSimulate, HostileNumbersAreRefusedWithTheOptionAndItsRange) {
  const fs::path dir = fresh_dir("hostile");
  const fs::path out = dir / "out";
  const std::string base = "theory simulate --n 64:256 --threads 1 --out " + out.string() + " ";
  // --d 16 --trials 4 unless the case gives its own.
  auto command = [&base](const std::string& args) {
    return base + args + (args.find("--d ") == std::string::npos ? " --d 16" : "") +
           (args.find("--trials ") == std::string::npos ? " --trials 4" : "");
  };
  struct Case {
    std::string args, option, range;
  };
  const std::vector<Case> cases = {
      {"--logit-c 0.5 --bootstrap 20 --k-const 9223372036854775807", "--k-const", "[1, 16777216]"},
      {"--logit-c 0.5 --bootstrap 20 --k-const 18446744073709551616", "--k-const", "[1, 16777216]"},
      {"--logit-c 0.5 --bootstrap 20 --k-const 0", "--k-const", "[1, 16777216]"},
      {"--logit-c 0.5 --bootstrap 20 --alpha 1e18", "--alpha", "(0, 16777216]"},
      {"--logit-c 0.5 --bootstrap 20 --alpha nan", "--alpha", "(0, 16777216]"},
      {"--logit-c 0.5 --bootstrap 20 --alpha ''", "--alpha", "an empty value is not allowed"},
      {"--logit-c 0.5 --bootstrap 20 --exponent nan", "--exponent", "[0, 1]"},
      {"--logit-c 0.5 --bootstrap 20 --exponent inf", "--exponent", "[0, 1]"},
      {"--logit-c 0.5 --bootstrap 20 --seed 18446744073709551616", "--seed", "[0, 9223372036854775807]"},
      {"--logit-c 0.5 --bootstrap 20 --seed -1", "--seed", "[0, 9223372036854775807]"},
      {"--logit-c 0.5 --bootstrap 20 --seed ''", "--seed", "an empty value is not allowed"},
      {"--logit-c 0.5 --bootstrap ''", "--bootstrap", "an empty value is not allowed"},
      {"--logit-c 0.5 --bootstrap 0", "--bootstrap", "[20, 1000000]"},
      {"--logit-c 0.5 --bootstrap 19", "--bootstrap", "[20, 1000000]"},
      {"--logit-c 0.5 --bootstrap 20 --level nan", "--level", "(0, 1)"},
      {"--logit-c 0.5 --bootstrap 20 --level ''", "--level", "an empty value is not allowed"},
      {"--logit-c 0.5 --bootstrap 20 --trials ''", "--trials", "an empty value is not allowed"},
      {"--sigma '' --bootstrap 20", "--sigma", "an empty value is not allowed"},
      {"--logit-c 0.5 --sigma nan --bootstrap 20", "--sigma", "not a finite number"},
      {"--norm-bound '' --weight-frobenius 2 --bootstrap 20", "--norm-bound", "an empty value is not allowed"},
      {"--logit-c '' --bootstrap 20", "--logit-c", "an empty value is not allowed"},
      {"--logit-c 0.5 --bootstrap 20 --d 1e2", "--d", "[1, 8192]"},
  };
  for (const Case& c : cases) {
    const ProcessResult r = run_cli(command(c.args));
    EXPECT_NE(r.status, 0) << c.args;
    const std::string line = "error: " + c.option;
    EXPECT_NE(r.err.find(line), std::string::npos) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.range), std::string::npos) << c.args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << ": " << r.err;
    EXPECT_FALSE(fs::exists(out)) << c.args;
  }
  // --n LO:HI takes digits or 2^a only.
  for (const std::string n : {"' 64:256'", "64:+256", "64:256x", "64:2^+8", "64:"}) {
    const ProcessResult r = run_cli("theory simulate --d 16 --trials 4 --threads 1 --out " + out.string() +
                                    " --logit-c 0.5 --bootstrap 20 --n " + n);
    EXPECT_NE(r.status, 0) << n;
    EXPECT_NE(r.err.find("error: --n"), std::string::npos) << n << ": " << r.err;
  }
  // The largest accepted budget and prefactor run (every budget clamped to n).
  const ProcessResult ok = run_cli(command("--logit-c 0.5 --bootstrap 20 --k-const 16777216 --alpha 16777216"));
  ASSERT_EQ(ok.status, 0) << ok.err;
  std::ifstream jin(out / "theory.json");
  const auto j = nlohmann::json::parse(jin);
  for (const auto& rule : j["settings"][0]["rules"])
    if (rule["name"] != "log") {
      EXPECT_EQ(rule["k"].back().get<int64_t>(), 256) << rule["name"];
    }
  fs::remove_all(dir);
}

TEST(CliSimulate, HelpHasAnExample) {
  const fs::path dir = fresh_dir("help");
  const ProcessResult r = run_cli("theory simulate --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("Example"), std::string::npos);
  EXPECT_NE(r.out.find("attnsparse theory simulate --"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
