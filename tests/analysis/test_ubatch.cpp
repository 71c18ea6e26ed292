// The analysis does not depend on how the prefill is cut into micro-batches: the same
// accumulators, report and row dump for one batch and for micro-batches of 1, 7, 64 and
// 100 queries (synthetic rows with planted structure, persistence anchors inside and
// across micro-batches), and through the CLI on the bundled model for --ubatch 1, 7, 64,
// 512 and 0 (the whole document).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "synthetic_support.h"

namespace attnsparse::analysis {
namespace {

using testing::make_documents;
using testing::mixed_source;
using testing::run_synthetic;

// The dumped rows in file order: which row (doc, layer, head, query) and two of its metrics.
std::string row_lines(const std::vector<testing::CsvRow>& rows) {
  std::string s;
  for (const auto& r : rows)
    s += std::to_string(r.doc) + "," + std::to_string(r.layer) + "," + std::to_string(r.head) + "," +
         std::to_string(r.query) + "," + std::to_string(r.width[1]) + "," + std::to_string(r.entropy) + "\n";
  return s;
}

// Rows from t = 4, persistence anchors from t = 20, a short bootstrap.
AnalysisParams synthetic_params() {
  AnalysisParams params;
  params.sampling.min_query = 4;
  params.persistence.min_anchor = 20;
  params.verdict.bootstrap_resamples = 50;
  return params;
}

TEST(UbatchInvariance, SyntheticReportAndRowsDoNotDependOnMicroBatches) {
  auto source = mixed_source();
  const auto docs = make_documents(3, 300);
  const AnalysisParams params = synthetic_params();
  const auto whole = run_synthetic(source, docs, params, /*dump=*/true);
  ASSERT_GT(whole.rows.size(), 0u);
  ASSERT_GT(whole.report["persistence"].size(), 0u);
  const std::string whole_rows = row_lines(whole.rows);
  for (int64_t ub : {1, 7, 64, 100}) {
    source.ubatch = ub;
    const auto p = run_synthetic(source, docs, params, /*dump=*/true);
    EXPECT_EQ(p.acc.to_json().dump(), whole.acc.to_json().dump()) << "ubatch " << ub;
    EXPECT_EQ(p.report.dump(), whole.report.dump()) << "ubatch " << ub;
    ASSERT_EQ(p.rows.size(), whole.rows.size()) << "ubatch " << ub;
    EXPECT_EQ(row_lines(p.rows), whole_rows) << "ubatch " << ub;
  }
}

// The tiled kernel hands a head's consecutive queries over together (on_rows), and the
// collector adds four or eight rows of one persistence bucket in one pass: the accumulators
// must be those of row-by-row delivery, for blocks inside and across buckets and
// micro-batches, windowed layers (listed keys) included. Blocks of 3 take the row-by-row
// path inside the collector.
TEST(UbatchInvariance, RowsInBlocksGiveTheSameAccumulatorsAsRowByRow) {
  auto source = mixed_source();
  const auto docs = make_documents(2, 301);
  const AnalysisParams params = synthetic_params();
  for (const std::vector<int64_t>& windows : {std::vector<int64_t>{}, std::vector<int64_t>{0, 37, 0}}) {
    source.windows = windows;
    for (int64_t ub : {0, 7, 64}) {
      source.ubatch = ub;
      source.blocks = false;
      const auto rows = run_synthetic(source, docs, params, /*dump=*/true);
      ASSERT_GT(rows.report["persistence"].size(), 0u);
      for (int per : {3, 4, 8}) {
        source.blocks = true;
        source.block_rows = per;
        const auto blocks = run_synthetic(source, docs, params, /*dump=*/true);
        EXPECT_EQ(blocks.acc.to_json().dump(), rows.acc.to_json().dump())
            << "blocks of " << per << ", ubatch " << ub << " windows " << windows.size();
        EXPECT_EQ(row_lines(blocks.rows), row_lines(rows.rows)) << "blocks of " << per << ", ubatch " << ub;
      }
    }
  }
}

TEST(UbatchInvariance, AnalyzeCliGivesTheSameReportForEveryUbatch) {
  namespace fs = std::filesystem;
  using testing_support::Output;
  using testing_support::run_cli;
  using testing_support::slurp;
  const std::string model = std::string(ATTNSPARSE_SOURCE_DIR) + "/models/kjv-llama.gguf";
  const std::string data = std::string(ATTNSPARSE_SHARED_DIR) + "/reference/longbench/sample.jsonl";
  ASSERT_TRUE(fs::exists(model)) << model;
  ASSERT_TRUE(fs::exists(data)) << data;
  const std::string dir = testing_support::fresh_dir("ubatch_cli");
  auto analyze = [&](const std::string& ub) {
    const std::string out = dir + "/out" + ub;
    const auto r = run_cli({"analyze", model, "--data", data, "--out", out, "--max-tokens", "256",
                            "--rows", "both", "--decode-tokens", "8", "--min-query", "1", "--ubatch", ub,
                            "--dump-rows", out + "/rows.csv", "--threads", "2"}, Output::merged);
    EXPECT_EQ(r.status, 0) << r.out;
    nlohmann::json j = nlohmann::json::parse(slurp(out + "/report.json"));
    EXPECT_EQ(j["run"]["ubatch"], std::stoll(ub));
    j.erase("run");  // timing, threads and the micro-batch size itself
    return std::make_pair(j.dump(), slurp(out + "/rows.csv"));
  };
  const auto whole = analyze("0");
  ASSERT_GT(whole.second.size(), 1000u);
  for (const char* ub : {"1", "7", "64", "512"}) {
    const auto p = analyze(ub);
    EXPECT_EQ(p.first, whole.first) << "--ubatch " << ub;
    EXPECT_TRUE(p.second == whole.second) << "--ubatch " << ub << ": row dumps differ";
  }
  const auto bad = run_cli({"analyze", model, "--data", data, "--out", dir + "/bad", "--ubatch", "-3"}, Output::merged);
  EXPECT_EQ(bad.status, 2) << bad.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace attnsparse::analysis
