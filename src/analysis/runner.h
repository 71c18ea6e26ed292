// An analysis run over documents: plans rows, drives the row source document by document,
// merges each document's statistics into the run, checkpoints after every document and
// resumes from a checkpoint to exactly the result of an uninterrupted run.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analysis/accumulator.h"
#include "analysis/params.h"
#include "analysis/row_source.h"
#include "analysis/shard.h"

namespace attnsparse::analysis {

struct RunDocument {
  DocumentInfo info;            // id, source, dataset, tokens, original_tokens
  std::vector<int32_t> tokens;  // already truncated
};

struct RunProgress {
  int64_t rows_done = 0, rows_total = 0;  // rows of this invocation (a resumed run counts from its start)
  int64_t doc = 0, n_docs = 0;            // document being analysed (0-based), total
  int64_t docs_resumed = 0;
  double seconds = 0;                     // since this invocation started
  bool finished = false;
};

struct RunControl {
  std::string checkpoint_path;  // "" = no checkpoints
  bool resume = false;          // continue from checkpoint_path when it exists
  std::string fingerprint;      // what the run is (model, data, options); must match to resume
  std::string dump_path;        // --dump-rows ("" = none)
  std::function<void(const RunProgress&)> progress;
  // For tests: called after each document's checkpoint (doc = its index).
  std::function<void(int64_t doc)> after_checkpoint;
  // Several processes (size() > 1): document d is analysed by rank d % size, in rounds of
  // size() documents; after each round the documents' statistics (and dump lines) are
  // gathered to rank 0 and merged there in document order, so rank 0's outcome, dump and
  // checkpoints are exactly those of one process. Only rank 0 writes files and reports
  // progress; the other ranks' outcome holds no statistics.
  ShardComm* comm = nullptr;
};

struct RunOutcome {
  Accumulator acc;
  int64_t docs_resumed = 0;     // documents taken from the checkpoint
  int64_t rows_this_run = 0;
  double seconds = 0;           // this invocation
  int ranks = 1;                // processes that shared the work
  int64_t bytes_merged = 0;     // rank 0: serialised per-document statistics received
};

// Rows analysed by the plan (before --max-rows) over all documents.
int64_t candidate_rows(const std::vector<RunDocument>& docs, int n_layers, int n_heads,
                       const AnalysisParams& params);

RunOutcome analyze_documents(RowSource& source, const std::vector<RunDocument>& docs,
                             const AnalysisParams& params, const RunControl& control);

}  // namespace attnsparse::analysis
