// `mpirun -np N attnsparse eval-policy ...` against one process on the bundled model: the
// report, less the fields that record time and how the run went, is byte-identical for 1,
// 2 and 3 ranks; rank 0 alone writes and prints; one rank's bad input stops every rank with
// one error line and no report; a checkpoint left by one process is resumed under 2 ranks
// to the same report; srun without an MPI plug-in (faked environment) is refused instead
// of running the whole job once per task. (Registered only when MPI and mpirun are found.)
#include <gtest/gtest.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/cli_support.h"
#include "dist/mpi_support.h"
#include "io/corpus.h"
#include "model/model.h"
#include "policies/evaluate.h"

namespace attnsparse {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::cli_command_line;
using mpi_testing::count_of;
using mpi_testing::kModel;
using mpi_testing::mpirun;
using testing::run_command;
using mpi_testing::write_corpus;
using testing_support::Output;
using testing_support::ProcessResult;
using testing_support::fresh_dir;
using testing_support::shell_quote;
using testing_support::slurp;

// Policies of every kind (per-key, evicting, page-based, a sweep) with several forward
// calls per document (--chunk 16) and real decoding.
const std::vector<std::string> kPolicies = {"topk={4,16}", "h2o=budget:16,recent:4", "sink=2,window=14",
                                            "quest=page:4,pages:3"};
constexpr int64_t kMaxTokens = 48, kChunk = 16, kDecode = 4;

std::vector<std::string> eval_args(const std::string& data, const std::string& out) {
  std::vector<std::string> a = {"eval-policy", kModel, "--data", data, "--out", out, "--max-tokens",
                                std::to_string(kMaxTokens), "--chunk", std::to_string(kChunk), "--decode-tokens",
                                std::to_string(kDecode), "--threads", "1"};
  for (const std::string& p : kPolicies) {
    a.push_back("--policy");
    a.push_back(p);
  }
  return a;
}

// report.json less wall times and the rank / resume fields, as text; `how` gets those.
std::string comparable(const std::string& path, json* how = nullptr) {
  json j = json::parse(slurp(path));
  json h = json::object();
  for (const char* k : {"ranks", "bytes_merged", "documents_resumed"})
    if (j.contains(k)) {
      h[k] = j[k];
      j.erase(k);
    }
  if (how) *how = h;
  j["dense"].erase("wall_s");
  j["dense"]["real_decode"].erase("ms_per_token");
  for (json& p : j["policies"]) {
    p.erase("wall_s");
    p.erase("wall_relative");
    p["real_decode"].erase("ms_per_token");
  }
  return j.dump(1);
}

TEST(MpiEvalPolicy, OneTwoAndThreeRanksWriteTheOneProcessReport) {
  ASSERT_TRUE(fs::exists(kModel));
  const std::string dir = fresh_dir("mpi_eval_same");
  const std::string data = write_corpus(dir);
  const ProcessResult one = run_command(cli_command_line(eval_args(data, dir + "/one")), Output::merged);
  ASSERT_EQ(one.status, 0) << one.out;
  json one_how;
  const std::string want = comparable(dir + "/one/report.json", &one_how);
  EXPECT_EQ(one_how, json::object());  // an ordinary run's report has no rank fields
  const json one_report = json::parse(slurp(dir + "/one/report.json"));
  EXPECT_EQ(one_report["documents"], 7);
  EXPECT_EQ(one_report["policies"].size(), 5u);
  for (int ranks : {1, 2, 3}) {
    SCOPED_TRACE("ranks " + std::to_string(ranks));
    const std::string out = dir + "/r" + std::to_string(ranks);
    const ProcessResult r = run_command(mpirun(ranks) + cli_command_line(eval_args(data, out)), Output::merged);
    ASSERT_EQ(r.status, 0) << r.out;
    json how;
    EXPECT_EQ(comparable(out + "/report.json", &how), want);
    EXPECT_EQ(how.at("ranks"), ranks);
    EXPECT_GT(how.at("bytes_merged").get<int64_t>(), 0);
    EXPECT_TRUE(fs::exists(out + "/report.html"));
    EXPECT_FALSE(fs::exists(out + "/checkpoint.cbor"));
    // Rank 0 alone prints the table, the report line and the job's progress.
    EXPECT_EQ(count_of(r.out, "report -> "), 1u) << r.out;
    EXPECT_EQ(count_of(r.out, "real decoding of the last 4 tokens"), 1u) << r.out;
    EXPECT_EQ(count_of(r.out, "eval-policy: 7 documents on " + std::to_string(ranks)), 1u) << r.out;
  }
  fs::remove_all(dir);
}

TEST(MpiEvalPolicy, OneRanksBadDocumentStopsEveryRankWithOneErrorLine) {
  const std::string dir = fresh_dir("mpi_eval_bad");
  const std::string data = write_corpus(dir);
  // Rank 1 alone sees a .tok file with a token id beyond the vocabulary.
  const std::string bad = dir + "/bad";
  fs::create_directories(bad);
  for (const auto& e : fs::directory_iterator(data)) fs::copy_file(e.path(), bad / e.path().filename());
  std::ofstream(bad + "/doc3.tok") << "1 2 99999 4\n";
  const std::string out = dir + "/out";
  const std::string base = " --oversubscribe --allow-run-as-root --bind-to none ";
  const std::string cmd = shell_quote(ATTNSPARSE_MPIEXEC) + base + "-np 1 " + cli_command_line(eval_args(data, out)) +
                          " : -np 1 " + cli_command_line(eval_args(bad, out)) + " : -np 1 " + cli_command_line(eval_args(data, out));
  const ProcessResult r = run_command(cmd, Output::merged);
  EXPECT_NE(r.status, 0);
  // (A .tok document's id is its path, so the path appears twice, as in one process.)
  const std::string line = "attnsparse eval-policy: error: " + bad + "/doc3.tok: " + bad +
                           "/doc3.tok: token id 99999 at index 2 is out of range";
  EXPECT_EQ(count_of(r.out, line), 1u) << r.out;
  EXPECT_EQ(count_of(r.out, "error:"), 1u) << r.out;
  EXPECT_FALSE(fs::exists(out + "/report.json"));
  EXPECT_FALSE(fs::exists(out + "/report.html"));
  EXPECT_FALSE(fs::exists(out + "/checkpoint.cbor"));
  fs::remove_all(dir);
}

TEST(MpiEvalPolicy, TwoRanksResumeACheckpointOfOneProcess) {
  const std::string dir = fresh_dir("mpi_eval_resume");
  const std::string data = write_corpus(dir);
  const ProcessResult one = run_command(cli_command_line(eval_args(data, dir + "/one")), Output::merged);
  ASSERT_EQ(one.status, 0) << one.out;
  const std::string want = comparable(dir + "/one/report.json");
  // One process, with the verb's documents, policies and options, killed after its third
  // document's checkpoint (the file the verb writes in --out).
  const std::string out = dir + "/resumed";
  fs::create_directories(out);
  {
    omp_set_num_threads(1);
    const auto model = Model::load(kModel);
    std::vector<policies::EvalPolicy> pols;
    for (const std::string& p : kPolicies)
      for (auto& e : policies::parse_eval_policies(p)) pols.push_back(std::move(e));
    const auto docs = policies::prepare_evaluation(*model, pols, read_documents({data}), kMaxTokens, {data});
    policies::EvalOptions o;
    o.chunk = kChunk;
    o.decode_tokens = kDecode;
    o.model_path = kModel;
    o.data_paths = {data};
    o.max_tokens = policies::document_token_limit(*model, kMaxTokens);
    o.threads = 1;
    policies::EvalRun run;
    run.checkpoint_path = out + "/checkpoint.cbor";
    run.after_checkpoint = [](size_t done) {
      if (done == 3) throw std::runtime_error("killed");
    };
    EXPECT_THROW(policies::evaluate_policies(*model, docs, pols, o, {}, run), std::runtime_error);
  }
  ASSERT_TRUE(fs::exists(out + "/checkpoint.cbor"));
  std::vector<std::string> args = eval_args(data, out);
  args.push_back("--resume");
  const ProcessResult r = run_command(mpirun(2) + cli_command_line(args), Output::merged);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(count_of(r.out, "eval-policy: resumed after 3 documents from the checkpoint"), 1u) << r.out;
  json how;
  EXPECT_EQ(comparable(out + "/report.json", &how), want);
  EXPECT_EQ(how.at("documents_resumed"), 3);
  EXPECT_EQ(how.at("ranks"), 2);
  EXPECT_FALSE(fs::exists(out + "/checkpoint.cbor"));
  fs::remove_all(dir);
}

TEST(MpiLaunch, SrunWithoutAnMpiPluginIsRefusedInsteadOfRunningTheJobPerTask) {
  // The environment `srun -n 2 --mpi=none` gives a task: Slurm's variables, no PMI. MPI then
  // starts each task as a job of one process; attnsparse must stop, not run the whole job
  // (and write the report) once per task.
  const std::string dir = fresh_dir("mpi_srun_none");
  const std::string data = write_corpus(dir);
  const std::string env = "env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK -u PMI_RANK -u PMI_SIZE -u ATTNSPARSE_NO_MPI "
                          "SLURM_JOB_ID=4242 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=2 SLURM_NTASKS=2 SLURM_PROCID=0 "
                          "SLURM_LOCALID=0 ";
  const ProcessResult r = run_command(env + cli_command_line(eval_args(data, dir + "/out")), Output::merged);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("started as one of 2 processes (SLURM_STEP_NUM_TASKS = 2) but MPI sees 1"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("--mpi=pmix"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir + "/out/report.json"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace attnsparse
