// One `analyze` run on a loaded model, as the CLI verb and the Python module do it:
// documents read and tokenized (BOS as the vocabulary says, .tok files as they are),
// truncated in the middle to the window, too-short ones skipped; the rows streamed
// through analyze_documents (checkpoints in out_dir when given); report.json built.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/params.h"
#include "analysis/runner.h"
#include "analysis/shard.h"
#include "io/corpus.h"

namespace attnsparse {
class Model;
}

namespace attnsparse::analysis {

// --set NAME=VALUE (a statistics or verdict parameter); throws UsageError naming it.
void apply_setting(AnalysisParams& p, const std::string& name_equals_value);
// The names apply_setting knows, in its order.
std::vector<std::string> setting_names();
// "prefill", "decode" or "both"; throws UsageError for anything else.
RowKind parse_row_kind(const std::string& text);

struct AnalyzeJob {
  std::string model_path;           // as given by the user (copied into the report)
  std::vector<std::string> data;    // files or directories (io/corpus.h)
  std::vector<Document> documents;  // documents given directly (read after those of data)
  std::string out_dir;              // "" = no checkpoints; else created, checkpoint.cbor there
  bool resume = false;              // continue from out_dir/checkpoint.cbor
  std::string dump_rows;            // --dump-rows file ("" = none)
  std::function<void(const RunProgress&)> progress;
  // One-line notices (documents skipped, a resumed run) without the "analyze: " prefix.
  std::function<void(const std::string&)> notice;
  // Several processes (analysis/shard.h): each analyses its share of the documents; rank 0
  // gets the report, the other ranks get null (and should set no progress or notice).
  ShardComm* comm = nullptr;
};

// out_dir/checkpoint.cbor
std::string checkpoint_path(const std::string& out_dir);

// params.sampling.max_tokens = 0 means the model's context. Returns report.json
// (docs/report-schema.md). Throws UsageError / FormatError with the CLI's messages.
nlohmann::json run_analysis(const Model& model, AnalysisParams params, const AnalyzeJob& job);

}  // namespace attnsparse::analysis
