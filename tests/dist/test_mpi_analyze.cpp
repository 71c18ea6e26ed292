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

namespace attnsparse {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing_support::Output;
using testing_support::ProcessResult;
using testing::cli_command_line;
using testing::run_command;
using testing_support::fresh_dir;
using testing_support::shell_quote;
using testing_support::slurp;

const std::string kModel = std::string(ATTNSPARSE_SOURCE_DIR) + "/models/kjv-llama.gguf";

// mpirun as CI runs it (as root, more ranks than cores).
std::string mpirun(int ranks) {
  return shell_quote(ATTNSPARSE_MPIEXEC) + " --oversubscribe --allow-run-as-root --bind-to none -np " +
         std::to_string(ranks) + " ";
}

// Seven short documents (the model is trained on the King James Bible).
std::string write_corpus(const std::string& dir) {
  const std::vector<std::string> texts = {
      "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
      "and darkness was upon the face of the deep.",
      "And God said, Let there be light: and there was light. And God saw the light, that it was good: "
      "and God divided the light from the darkness.",
      "Blessed are the poor in spirit: for theirs is the kingdom of heaven. Blessed are they that mourn: "
      "for they shall be comforted.",
      "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he leadeth "
      "me beside the still waters.",
      "Charity suffereth long, and is kind; charity envieth not; charity vaunteth not itself, is not "
      "puffed up, doth not behave itself unseemly.",
      "Now faith is the substance of things hoped for, the evidence of things not seen. For by it the "
      "elders obtained a good report.",
      "To every thing there is a season, and a time to every purpose under the heaven: a time to be "
      "born, and a time to die.",
  };
  const std::string data = dir + "/data";
  fs::create_directories(data);
  for (size_t i = 0; i < texts.size(); ++i) std::ofstream(data + "/doc" + std::to_string(i) + ".txt") << texts[i];
  return data;
}

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
