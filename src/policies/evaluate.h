// Policy evaluation (eval-policy): what each sparse-attention policy map costs against
// dense attention on the same documents. Per document three kinds of pass:
//   1. dense (plain forward): reference NLL, arg-max predictions, wall time;
//   2. oracle: dense again with every layer's q/k/v also going through every policy
//      (policies/oracle.h): kept keys, dense tail mass tau, ||O - O_G|| / ||O|| per layer;
//   3. each policy through the whole model (PolicySession, simulated eviction): NLL,
//      top-1 agreement with the dense arg-max, wall time; with decode_tokens > 0 also real
//      decoding of the document's last tokens with real eviction (ms/token, cache bytes).
// All policies share passes 1 and 2, so a sweep over a budget costs one dense pass.
// The work unit is a document: its outcome is added to the run's totals in document
// order, which checkpoints (resume) and sharding over MPI ranks (EvalRun) build on.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/shard.h"
#include "model/model.h"
#include "policies/policy_map.h"
#include "policies/sweep.h"

namespace attnsparse {
struct Document;
}

namespace attnsparse::policies {

struct EvalDocument {
  std::string id;
  std::vector<int32_t> tokens;  // at least 2
};

// A policy map to evaluate; `sweep` when it is one value of a swept spec.
struct EvalPolicy {
  PolicyMap map;
  std::optional<SweepPoint> sweep;
};

struct EvalOptions {
  int64_t chunk = 512;          // tokens per forward call
  int64_t decode_tokens = 0;    // > 0: real decoding of each document's last N tokens
  // Recorded in the report only.
  std::string model_path;
  std::vector<std::string> data_paths;
  int64_t max_tokens = 0;
  int threads = 0;
};

// Real decoding (decode_tokens > 0), over the documents longer than decode_tokens.
struct DecodeResult {
  int64_t tokens = 0;
  double ms_per_token = 0;
  double cache_bytes_mean = 0;  // K and V held at the end, mean over documents
  int64_t cache_bytes_peak = 0;
};

struct LayerResult {
  int layer = 0;
  double rel_l2 = 0, tau_mean = 0, kept_fraction = 1;
};

struct PolicyResult {
  std::string policy;  // canonical spec of the map
  std::optional<SweepPoint> sweep;
  double kept_fraction = 1, kv_bytes_relative = 1;
  int64_t kv_bytes_peak = 0, kv_bytes_dense_peak = 0;
  double tau_mean = 0, rel_l2_mean = 0, rel_l2_all_layers = 0;
  std::vector<LayerResult> layers;
  double ppl = 0, delta_ppl = 0, top1_agreement = 0, wall_s = 0, wall_relative = 0;
  std::optional<DecodeResult> real_decode;
};

struct EvalResult {
  EvalOptions options;
  size_t documents = 0;
  int64_t tokens = 0, predicted_tokens = 0;
  double dense_ppl = 0, dense_nll_per_token = 0, dense_wall_s = 0;
  int64_t kv_bytes_longest_document = 0;
  std::optional<DecodeResult> dense_decode;
  std::vector<PolicyResult> policies;
  // How it ran (in the report only when set): ranks > 0 under MPI, with the bytes of
  // document outcomes rank 0 received; documents taken from a checkpoint.
  int ranks = 0;
  int64_t bytes_merged = 0;
  size_t documents_resumed = 0;
};

// Where the evaluation is (for progress lines): a document starts (stage Dense), then
// the oracle pass, each policy, the dense real decoding (decode_tokens > 0), done.
struct EvalProgress {
  enum class Stage { Dense, Oracle, Policy, RealDecodeDense, DocumentDone };
  Stage stage;
  size_t document, documents;  // 0-based index, count
  const EvalDocument* doc;
  size_t policy = 0;           // Stage::Policy: index into the policies
};
using EvalProgressFn = std::function<void(const EvalProgress&)>;

// The whole job's progress: after each document (one process) or each round of documents
// (sharded; rank 0 only), and once more with `finished` at the end.
struct EvalJobProgress {
  size_t documents_done = 0, documents = 0;  // including those resumed
  size_t documents_resumed = 0;
  int64_t tokens_done = 0, tokens = 0;       // of this invocation (resumed documents excluded)
  double seconds = 0;                        // since this invocation started
  int ranks = 1;
  bool finished = false;
};

// How an evaluation runs (EvalOptions says what it measures).
struct EvalRun {
  // The totals so far, written after every document (every round when sharded) so a
  // killed run can continue (resume) to exactly the uninterrupted result; "" = none.
  std::string checkpoint_path;
  bool resume = false;  // continue from checkpoint_path when it exists
  // Several processes (core/shard.h, size() > 1 or 1): document d is evaluated by rank
  // d % size() in rounds of size() documents; after each round the documents' outcomes are
  // gathered to rank 0 and added to the totals in document order, the additions one process
  // makes, so rank 0's result and checkpoint are one process's. Any rank's failure stops
  // every rank with the error of the earliest failing document. Only rank 0 gets a result
  // (the others an empty one), writes the checkpoint and reports progress (job_progress;
  // the per-document EvalProgressFn is not called).
  ShardComm* comm = nullptr;
  std::function<void(const EvalJobProgress&)> job_progress;
  // One-line notices (a resumed run, a missing checkpoint).
  std::function<void(const std::string&)> notice;
  // For tests: after each checkpoint, with the number of documents done; before each
  // document's passes, with its index (an exception there is that document's failure).
  std::function<void(size_t)> after_checkpoint, before_document;
};

// The policy text of one --policy: a spec, a per-layer map or a JSON map file, with at
// most one sweep (policies/sweep.h), expanded into one EvalPolicy per value. Errors of
// an expanded value name the spec as given and the swept field and value.
std::vector<EvalPolicy> parse_eval_policies(const std::string& text);

// The set evaluated when no policy is given (eleven policies at budgets of 64 keys).
std::vector<EvalPolicy> default_eval_policies();

// The policies of eval-policy's --policy texts in order (each expanded by
// parse_eval_policies); the default set when there is none.
std::vector<EvalPolicy> eval_policies_from(const std::vector<std::string>& texts);

// Tokens per document: max_tokens, and for models with learned positions (gpt2) at
// most their context.
int64_t document_token_limit(const Model& model, int64_t max_tokens);

// Tokenizes (or takes the token files' ids of) the documents, checks every id against
// the vocabulary (error naming the file), truncates in the middle to `limit` tokens.
// Documents left with fewer than 2 tokens are skipped and named in `skipped` as
// "ID (N token)".
std::vector<EvalDocument> prepare_documents(const Model& model, const std::vector<Document>& docs, int64_t limit,
                                            std::vector<std::string>* skipped = nullptr);

// The documents of an evaluation, checked as eval-policy checks them: every policy map
// valid for the model, documents prepared at document_token_limit(model, max_tokens);
// UsageError when none is left ("no document with at least 2 tokens in PATHS").
std::vector<EvalDocument> prepare_evaluation(const Model& model, const std::vector<EvalPolicy>& policies,
                                             const std::vector<Document>& docs, int64_t max_tokens,
                                             const std::vector<std::string>& data_paths,
                                             std::vector<std::string>* skipped = nullptr);

// Runs the evaluation. Every map must be valid for the model (PolicyMap::validate).
EvalResult evaluate_policies(const Model& model, const std::vector<EvalDocument>& documents,
                             const std::vector<EvalPolicy>& policies, const EvalOptions& options,
                             const EvalProgressFn& progress = {}, const EvalRun& run = {});

// The report (docs/policies.md): run, dense, one object per policy, definitions.
nlohmann::json to_json(const EvalResult& result);

// The terminal tables: one line per policy; with real decoding a second table.
std::string eval_table(const EvalResult& result);

}  // namespace attnsparse::policies
