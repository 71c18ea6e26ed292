// The runner shared by several ranks (RunControl::comm), with the ranks as threads of this
// process talking through an in-memory communicator: the merged statistics, row dump and
// checkpoint must be exactly those of one process (the same bytes), for any rank count,
// with and without --max-rows; a failing document on any rank stops every rank with the
// error one process would report; a run killed under N ranks resumes under M.
#include <gtest/gtest.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "analysis/runner.h"
#include "analysis/shard.h"
#include "analysis/synthetic_source.h"
#include "analysis/synthetic_support.h"
#include "analysis/thread_comm.h"
#include "core/error.h"

namespace attnsparse::analysis {
namespace {

namespace fs = std::filesystem;
using testing::make_documents;
using testing::mixed_source;
using testing::temp_path;
using testing::Hub;
using testing::ThreadComm;

// Fails (FormatError naming the document) on the documents whose first token is listed.
class FailingSource : public RowSource {
 public:
  FailingSource(RowSource& inner, std::vector<int32_t> bad) : inner_(inner), bad_(std::move(bad)) {}
  int n_layers() const override { return inner_.n_layers(); }
  int n_heads() const override { return inner_.n_heads(); }
  int n_kv_heads() const override { return inner_.n_kv_heads(); }
  void run_document(std::span<const int32_t> tokens, int64_t prefill_len, DocumentCollector& c) override {
    if (std::find(bad_.begin(), bad_.end(), tokens[0]) != bad_.end())
      fail_file("doc" + std::to_string(tokens[0] / 7919), "planted failure");
    inner_.run_document(tokens, prefill_len, c);
  }

 private:
  RowSource& inner_;
  std::vector<int32_t> bad_;
};

struct RankResult {
  std::optional<RunOutcome> outcome;
  std::string error;  // what() of the exception, "" = none
  bool format_error = false;
};

// Runs analyze_documents on `ranks` threads; control_of(rank) gives each rank's control.
std::vector<RankResult> run_ranks(int ranks, const std::vector<RunDocument>& docs, const AnalysisParams& params,
                                  const std::function<RunControl(int)>& control_of,
                                  const std::vector<int32_t>& bad_first_tokens = {}) {
  Hub hub(ranks);
  std::vector<RankResult> results(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      omp_set_num_threads(1);
      ThreadComm comm(hub, r);
      SyntheticRowSource synthetic = mixed_source();
      FailingSource source(synthetic, bad_first_tokens);
      RunControl control = control_of(r);
      control.comm = &comm;
      try {
        results[size_t(r)].outcome = analyze_documents(source, docs, params, control);
      } catch (const FormatError& e) {
        results[size_t(r)].error = e.what();
        results[size_t(r)].format_error = true;
      } catch (const std::exception& e) {
        results[size_t(r)].error = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return results;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

AnalysisParams small_params() {
  AnalysisParams p;
  p.verdict.bootstrap_resamples = 50;
  return p;
}

TEST(ShardedRun, EveryRankCountGivesTheOneProcessBytes) {
  const auto docs = make_documents(7, 120, {"a", "b", "c"});
  const std::string dir = temp_path("shard_same");
  fs::create_directories(dir);
  for (const int64_t max_rows : {int64_t(0), int64_t(1500)}) {
    AnalysisParams params = small_params();
    params.sampling.max_rows = max_rows;
    auto synthetic = mixed_source();
    RunControl one;
    one.dump_path = dir + "/one.csv";
    one.checkpoint_path = dir + "/one.cbor";
    one.fingerprint = "run";
    const RunOutcome single = analyze_documents(synthetic, docs, params, one);
    const std::string want = single.acc.to_json().dump();
    if (max_rows > 0) {
      ASSERT_EQ(single.acc.total_rows(), max_rows);
    }
    for (int ranks : {2, 3, 4, 9}) {  // 9 > documents: two ranks have nothing to do
      SCOPED_TRACE("ranks " + std::to_string(ranks) + " max_rows " + std::to_string(max_rows));
      const auto results = run_ranks(ranks, docs, params, [&](int r) {
        RunControl c;
        if (r == 0) {
          c.dump_path = dir + "/sharded.csv";
          c.checkpoint_path = dir + "/sharded.cbor";
          c.fingerprint = "run";
        }
        return c;
      });
      for (const RankResult& r : results) ASSERT_EQ(r.error, "");
      const RunOutcome& root = *results[0].outcome;
      EXPECT_EQ(root.acc.to_json().dump(), want);
      EXPECT_EQ(root.rows_this_run, single.rows_this_run);
      EXPECT_EQ(root.ranks, ranks);
      EXPECT_GT(root.bytes_merged, 0);
      EXPECT_EQ(slurp(dir + "/sharded.csv"), slurp(dir + "/one.csv"));
      // The last checkpoint is the one a single process writes.
      EXPECT_EQ(slurp(dir + "/sharded.cbor"), slurp(dir + "/one.cbor"));
      for (int r = 1; r < ranks; ++r) EXPECT_TRUE(results[size_t(r)].outcome->acc.documents.empty());
    }
  }
  fs::remove_all(dir);
}

TEST(ShardedRun, AFailingDocumentStopsEveryRankWithTheOneProcessError) {
  const auto docs = make_documents(7, 120);
  const AnalysisParams params = small_params();
  auto synthetic = mixed_source();
  // Documents 4 and 5 fail; one process stops at document 4.
  const std::vector<int32_t> bad{4 * 7919, 5 * 7919};
  FailingSource failing(synthetic, bad);
  std::string want;
  try {
    analyze_documents(failing, docs, params, RunControl{});
  } catch (const FormatError& e) {
    want = e.what();
  }
  ASSERT_EQ(want, "doc4: planted failure");
  const std::string dir = temp_path("shard_fail");
  fs::create_directories(dir);
  for (int ranks : {2, 3}) {
    SCOPED_TRACE("ranks " + std::to_string(ranks));
    // 3 ranks: documents 4 and 5 are on ranks 1 and 2 of the second round.
    const auto results = run_ranks(ranks, docs, params, [&](int r) {
      RunControl c;
      if (r == 0) {
        c.dump_path = dir + "/rows.csv";
        c.checkpoint_path = dir + "/checkpoint.cbor";
        c.fingerprint = "run";
      }
      return c;
    }, bad);
    for (const RankResult& r : results) {
      EXPECT_EQ(r.error, want);
      EXPECT_TRUE(r.format_error);
      EXPECT_FALSE(r.outcome.has_value());
    }
    EXPECT_FALSE(fs::exists(dir + "/rows.csv"));  // no finished dump
    // The checkpoint holds the rounds before the failure: documents 0..3 (2 ranks), 0..2 (3 ranks).
    const nlohmann::json cp = nlohmann::json::from_cbor(slurp(dir + "/checkpoint.cbor"));
    EXPECT_EQ(cp.at("next_doc"), ranks == 2 ? 4 : 3);
  }
  fs::remove_all(dir);
}

TEST(ShardedRun, AJobKilledUnderThreeRanksResumesUnderTwoAndUnderOne) {
  const auto docs = make_documents(8, 120, {"a", "b"});
  AnalysisParams params = small_params();
  params.sampling.max_rows = 2000;
  const std::string dir = temp_path("shard_resume");
  fs::create_directories(dir);
  auto synthetic = mixed_source();
  RunControl plain;
  plain.dump_path = dir + "/plain.csv";
  const std::string want = analyze_documents(synthetic, docs, params, plain).acc.to_json().dump();

  auto killed_at = [&](int64_t doc) {
    return [&, doc](int r) {
      RunControl c;
      if (r == 0) {
        c.dump_path = dir + "/rows.csv";
        c.checkpoint_path = dir + "/checkpoint.cbor";
        c.fingerprint = "run";
        c.resume = true;
        c.after_checkpoint = [doc](int64_t d) {
          if (d == doc) throw std::runtime_error("simulated kill");
        };
      }
      return c;
    };
  };
  // 3 ranks: killed after the first round (documents 0..2).
  for (const RankResult& r : run_ranks(3, docs, params, killed_at(2))) EXPECT_EQ(r.error, "simulated kill");
  // 2 ranks resume at document 3 and are killed after document 4.
  for (const RankResult& r : run_ranks(2, docs, params, killed_at(4))) EXPECT_EQ(r.error, "simulated kill");
  EXPECT_EQ(nlohmann::json::from_cbor(slurp(dir + "/checkpoint.cbor")).at("next_doc"), 5);
  // One process finishes the job.
  RunControl last;
  last.dump_path = dir + "/rows.csv";
  last.checkpoint_path = dir + "/checkpoint.cbor";
  last.fingerprint = "run";
  last.resume = true;
  const RunOutcome rest = analyze_documents(synthetic, docs, params, last);
  EXPECT_EQ(rest.docs_resumed, 5);
  EXPECT_EQ(rest.acc.to_json().dump(), want);
  EXPECT_EQ(slurp(dir + "/rows.csv"), slurp(dir + "/plain.csv"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace attnsparse::analysis
