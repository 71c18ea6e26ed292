// `mpirun -np N attnsparse analyze ...` against one process on the bundled model: the
// report (all but its "run" object, which records timing, threads and ranks) and the row
// dump are byte-identical for 1, 2 and 3 ranks; one rank's bad input stops every rank with
// one error line and no report; `theory simulate` and `theory fit` under 2 and 3 ranks
// write one process's JSON (less "seconds"). (Registered only when MPI and mpirun are found.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/cli_support.h"
#include "dist/mpi_support.h"

namespace attnsparse {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::cli_command_line;
using mpi_testing::kModel;
using mpi_testing::mpirun;
using testing::run_command;
using mpi_testing::write_corpus;
using testing_support::Output;
using testing_support::ProcessResult;
using testing_support::fresh_dir;
using testing_support::shell_quote;
using testing_support::slurp;

std::vector<std::string> analyze_args(const std::string& data, const std::string& out) {
  return {"analyze", kModel, "--data", data, "--out", out, "--max-tokens", "48", "--min-query", "8",
          "--threads", "1", "--dump-rows", out + "/rows.csv.gz", "--set", "bootstrap_resamples=200"};
}

// report.json without its "run" object, as text.
std::string without_run(const std::string& path, json* run = nullptr) {
  json j = json::parse(slurp(path));
  if (run) *run = j.at("run");
  j.erase("run");
  return j.dump(1);
}

TEST(MpiAnalyze, OneTwoAndThreeRanksWriteTheOneProcessReport) {
  ASSERT_TRUE(fs::exists(kModel));
  const std::string dir = fresh_dir("mpi_same");
  const std::string data = write_corpus(dir);
  for (const std::string extra : {"", "--max-rows=700"}) {
    SCOPED_TRACE(extra);
    std::vector<std::string> args = analyze_args(data, dir + "/one");
    if (!extra.empty()) args.push_back(extra);
    const ProcessResult one = run_command(cli_command_line(args), Output::merged);
    ASSERT_EQ(one.status, 0) << one.out;
    json one_run;
    const std::string want = without_run(dir + "/one/report.json", &one_run);
    EXPECT_FALSE(one_run.contains("ranks"));
    if (!extra.empty()) {
      EXPECT_EQ(json::parse(slurp(dir + "/one/report.json"))["counts"]["rows"], 700);
    }
    for (int ranks : {1, 2, 3}) {
      SCOPED_TRACE("ranks " + std::to_string(ranks));
      const std::string out = dir + "/r" + std::to_string(ranks);
      std::vector<std::string> a = analyze_args(data, out);
      if (!extra.empty()) a.push_back(extra);
      const ProcessResult r = run_command(mpirun(ranks) + cli_command_line(a), Output::merged);
      ASSERT_EQ(r.status, 0) << r.out;
      json run;
      EXPECT_EQ(without_run(out + "/report.json", &run), want);
      EXPECT_EQ(run.at("ranks"), ranks);
      EXPECT_EQ(run.at("rows_this_invocation"), one_run.at("rows_this_invocation"));
      EXPECT_EQ(slurp(out + "/rows.csv.gz"), slurp(dir + "/one/rows.csv.gz"));
      EXPECT_FALSE(fs::exists(out + "/checkpoint.cbor"));
      // Rank 0 alone prints the table.
      size_t n = 0;
      for (size_t p = r.out.find("report: "); p != std::string::npos; p = r.out.find("report: ", p + 1)) ++n;
      EXPECT_EQ(n, 1u) << r.out;
    }
  }
  fs::remove_all(dir);
}

TEST(MpiAnalyze, OneRanksBadDocumentStopsEveryRankWithOneErrorLine) {
  const std::string dir = fresh_dir("mpi_bad");
  const std::string data = write_corpus(dir);
  // Rank 1 alone sees a .tok file with a token id beyond the vocabulary.
  const std::string bad = dir + "/bad";
  fs::create_directories(bad);
  for (const auto& e : fs::directory_iterator(data)) fs::copy_file(e.path(), bad / e.path().filename());
  std::ofstream(bad + "/doc3.tok") << "1 2 99999 4\n";
  const std::string out = dir + "/out";
  const std::string base = " --oversubscribe --allow-run-as-root --bind-to none ";
  const std::string cmd = shell_quote(ATTNSPARSE_MPIEXEC) + base + "-np 1 " + cli_command_line(analyze_args(data, out)) +
                          " : -np 1 " + cli_command_line(analyze_args(bad, out)) + " : -np 1 " +
                          cli_command_line(analyze_args(data, out));
  const ProcessResult r = run_command(cmd, Output::merged);
  EXPECT_NE(r.status, 0);
  const std::string line = "attnsparse analyze: error: " + bad + "/doc3.tok: token id 99999 at index 2 is out of range";
  const size_t first = r.out.find(line);
  ASSERT_NE(first, std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(line, first + 1), std::string::npos) << "printed more than once:\n" << r.out;
  EXPECT_FALSE(fs::exists(out + "/report.json"));
  EXPECT_FALSE(fs::exists(out + "/rows.csv.gz"));
  fs::remove_all(dir);
}

TEST(MpiTheory, SimulateUnderTwoAndThreeRanksWritesTheOneProcessResult) {
  const std::string dir = fresh_dir("mpi_sim");
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"theory", "simulate", "--n", "1024:8192", "--d", "32", "--sigma", "1,1.5",
                                    "--logit-c", "0.5", "--trials", "5", "--bootstrap", "100",
                                    "--threads", "1", "--out", out};
  };
  const ProcessResult one = run_command(cli_command_line(args(dir + "/one")), Output::merged);
  ASSERT_EQ(one.status, 0) << one.out;
  auto without_seconds = [](const std::string& path) {
    json j = json::parse(slurp(path));
    j.erase("seconds");
    return j.dump(1);
  };
  const std::string want = without_seconds(dir + "/one/theory.json");
  for (int ranks : {2, 3}) {
    const std::string out = dir + "/r" + std::to_string(ranks);
    const ProcessResult r = run_command(mpirun(ranks) + cli_command_line(args(out)), Output::merged);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(without_seconds(out + "/theory.json"), want) << "ranks " << ranks;
  }
  fs::remove_all(dir);
}

TEST(MpiTheory, FitUnderTwoAndThreeRanksWritesTheOneProcessResult) {
  const std::string dir = fresh_dir("mpi_fit");
  const std::string data = write_corpus(dir);
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"theory", "fit", kModel, "--data", data, "--max-tokens", "64", "--min-n", "4",
                                    "--bootstrap", "100", "--threads", "1", "--out", out};
  };
  const ProcessResult one = run_command(cli_command_line(args(dir + "/one")), Output::merged);
  ASSERT_EQ(one.status, 0) << one.out;
  auto without_seconds = [](const std::string& path) {
    json j = json::parse(slurp(path));
    j.erase("seconds");
    return j.dump(1);
  };
  const std::string want = without_seconds(dir + "/one/theory_fit.json");
  EXPECT_EQ(json::parse(want)["data"]["documents"], 7) << want.substr(0, 400);
  for (int ranks : {2, 3}) {
    const std::string out = dir + "/r" + std::to_string(ranks);
    const ProcessResult r = run_command(mpirun(ranks) + cli_command_line(args(out)), Output::merged);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(without_seconds(out + "/theory_fit.json"), want) << "ranks " << ranks;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace attnsparse
