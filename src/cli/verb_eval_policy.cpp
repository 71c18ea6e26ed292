// attnsparse eval-policy MODEL --data D [--policy P]... --out report.json: what each
// sparse-attention policy costs against dense attention on the same documents. The
// evaluation itself is policies/evaluate.h; this verb parses the options, prints
// progress and writes the table and the report. Under mpirun / srun the documents are
// shared by the ranks and rank 0 writes the report (docs/distributed.md).
#include <fmt/format.h>
#include <omp.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/verb.h"
#include "core/error.h"
#include "core/files.h"
#include "dist/world.h"
#include "io/corpus.h"
#include "model/model.h"
#include "model/model_util.h"
#include "policies/evaluate.h"
#include "report/policy_report.h"

namespace attnsparse::cli {
namespace {

namespace fs = std::filesystem;

struct EvalPolicyOptions {
  std::string model_path, out_path;
  std::vector<std::string> data_paths, policy_texts;
  int64_t max_tokens = 1024, max_docs = 0, chunk = 512, decode_tokens = 0;
  int threads = 0;
  bool resume = false;
};

// The --help footer: the report's columns, the policy syntax, sweeps, checkpoints.
std::string eval_policy_footer() {
  return std::string(
                  "For every document (truncated in the middle to --max-tokens) and policy, against dense\n"
                  "attention on the same tokens:\n"
                  "  kept       mean fraction of the causal keys the policy's sets keep (all layers, heads, rows)\n"
                  "  kv         KV-cache bytes the policy needs at its peak (decoding token by token with\n"
                  "             real eviction) relative to dense\n"
                  "  tau        mean dense attention mass the policy drops per row, 1 - sum_{j in G} a_j\n"
                  "  rel_l2     per layer ||O - O_G|| / ||O|| of the attention outputs, oracle mode: the\n"
                  "             model runs dense and every layer's q/k/v also go through the policy\n"
                  "  ppl        perplexity with the policy applied through the whole model (evicting\n"
                  "             policies: exactly token-by-token decoding with eviction), and its change\n"
                  "  top1       share of positions whose arg-max next token equals dense's\n"
                  "  time       wall time of the policy's forward passes (dense: plain forward)\n"
                  "Without --policy a default set is evaluated. Policies take the per-layer/per-head\n"
                  "syntax too (e.g. 'L0-1:dense;sink=4,window=60').\n\n") +
              policies::policy_help() +
              "\nSweeps: one field of a --policy may list values or a range; each value is evaluated\n"
              "on the same dense pass and the JSON records the swept field and value:\n"
              "  topk={8,16,32,64}                 h2o=budget:{64,128,256},recent:16\n"
              "  sink=4,window=32..1024*2          geometric: 32, 64, ..., 1024\n"
              "  quest=page:16,pages:2..16+2       arithmetic: 2, 4, ..., 16\n"
              "\nExample: attnsparse eval-policy model.gguf --data longbench.jsonl --policy 'topk=16..256*2' "
              "--policy 'h2o=budget:{64,128,256},recent:16' --max-tokens 1024 --out out/policies\n"
              "(writes out/policies/report.json and report.html; --out FILE.json writes the JSON alone)\n"
              "\nA checkpoint (DIR/checkpoint.cbor, or FILE.checkpoint.cbor next to FILE.json) is written after\n"
              "every document and removed with the report; --resume continues a killed run from it, to the\n"
              "same report. Under mpirun / srun the documents are shared by the ranks and rank 0 writes the\n"
              "report, identical to one process's apart from wall times, \"ranks\" and \"bytes_merged\"\n"
              "(docs/distributed.md).";
}

// Where the report goes: --out FILE.json writes the JSON alone, --out DIR writes
// DIR/report.json and report.html; the checkpoint lies next to it.
struct ReportPaths {
  bool json_file = false;
  std::string out, checkpoint;
};

ReportPaths report_paths(const std::string& out_path) {
  ReportPaths p;
  p.out = out_path;
  p.json_file = out_path.size() > 5 && out_path.compare(out_path.size() - 5, 5, ".json") == 0;
  if (!p.json_file && fs::exists(out_path) && !fs::is_directory(out_path))
    fail_file(out_path, "--out: not a directory (give a directory, or a file name ending in .json)");
  p.checkpoint = p.json_file ? out_path.substr(0, out_path.size() - 5) + ".checkpoint.cbor"
                             : (fs::path(out_path) / "checkpoint.cbor").string();
  return p;
}

// Rank 0, before the evaluation: the directory the checkpoint and the report go to.
void make_report_directory(const ReportPaths& p) {
  if (p.json_file) {
    resolve_output_path(p.out);  // its directory exists (the checkpoint goes there)
    return;
  }
  std::error_code ec;
  fs::create_directories(p.out, ec);
  if (!fs::is_directory(p.out)) fail_file(p.out, "cannot create the output directory");
}

// The table on stdout, the report's files, and the checkpoint removed.
void write_report(const ReportPaths& p, const policies::EvalResult& result) {
  fmt::print("{}", policies::eval_table(result));
  const nlohmann::json report = policies::to_json(result);
  const std::string text = report.dump(2) + "\n";
  std::error_code ec;
  if (p.json_file) {
    write_file_atomic(p.out, text.data(), text.size());
    fs::remove(p.checkpoint, ec);
    fmt::print("report -> {}\n", p.out);
    return;
  }
  const std::string html = report::policy_html(report);
  const std::string json_path = (fs::path(p.out) / "report.json").string();
  const std::string html_path = (fs::path(p.out) / "report.html").string();
  write_file_atomic(json_path, text.data(), text.size());
  write_file_atomic(html_path, html.data(), html.size());
  fs::remove(p.checkpoint, ec);
  fmt::print("report -> {} and {}\n", json_path, html_path);
}

// One process's progress on stderr: every document on a terminal; in logs the first, the
// last and one every 10 s.
class DocumentProgress {
 public:
  explicit DocumentProgress(const std::vector<policies::EvalPolicy>& policies) : policies_(policies) {}
  void operator()(const policies::EvalProgress& e) {
    using Stage = policies::EvalProgress::Stage;
    switch (e.stage) {
      case Stage::Dense:
        show_ = gate_.due(e.document + 1 == e.documents);
        if (show_)
          fmt::print(stderr, "eval-policy: document {}/{} {} ({} tokens, {:.0f} s): dense", e.document + 1,
                     e.documents, e.doc->id, e.doc->tokens.size(), gate_.seconds());
        break;
      case Stage::Oracle:
        if (show_) fmt::print(stderr, ", oracle");
        break;
      case Stage::Policy:
        if (show_) fmt::print(stderr, ", {}", policies_[e.policy].map.spec());
        break;
      case Stage::RealDecodeDense:
        if (show_) fmt::print(stderr, ", real decode dense");
        break;
      case Stage::DocumentDone:
        if (show_) fmt::print(stderr, "\n");
        break;
    }
  }

 private:
  const std::vector<policies::EvalPolicy>& policies_;
  ProgressGate gate_{0, 10, true};
  bool show_ = false;
};

// Sharded, rank 0: the whole job's progress after each round of documents.
class JobProgress {
 public:
  void operator()(const policies::EvalJobProgress& p) {
    const char* ranks = p.ranks == 1 ? "rank" : "ranks";
    if (p.finished) {
      fmt::print(stderr, "eval-policy: {} documents on {} {} in {:.0f} s\n", p.documents, p.ranks, ranks, p.seconds);
      return;
    }
    // The last round is the finished line; ETA from the tokens done (a document's cost
    // grows with its tokens).
    if (p.documents_done == p.documents || !gate_.due(false)) return;
    const double left = p.tokens_done > 0 ? p.seconds * double(p.tokens - p.tokens_done) / double(p.tokens_done) : 0;
    fmt::print(stderr, "eval-policy: {}/{} documents on {} {}, {:.0f} s, ETA {:.0f} s\n", p.documents_done,
               p.documents, p.ranks, ranks, p.seconds, left);
  }

 private:
  ProgressGate gate_{0, 10, true};
};

// One process, or one rank of an MPI job (comm).
void run_eval_policy(const EvalPolicyOptions& o, ShardComm* comm) {
  apply_threads(o.threads);
  dist::default_threads(comm, o.threads);
  const bool root = !comm || comm->rank() == 0;
  const ReportPaths paths = report_paths(o.out_path);
  const std::vector<policies::EvalPolicy> policies = policies::eval_policies_from(o.policy_texts);
  std::vector<Document> docs = read_documents(o.data_paths);
  if (o.max_docs > 0 && static_cast<int64_t>(docs.size()) > o.max_docs) docs.resize(o.max_docs);
  auto model = load_model(o.model_path);
  std::vector<std::string> skipped;
  const std::vector<policies::EvalDocument> documents =
      policies::prepare_evaluation(*model, policies, docs, o.max_tokens, o.data_paths, &skipped);
  if (root)
    for (const auto& s : skipped) fmt::print(stderr, "eval-policy: skipping {}\n", s);
  const int64_t limit = policies::document_token_limit(*model, o.max_tokens);
  if (root) make_report_directory(paths);

  policies::EvalOptions opts;
  opts.chunk = o.chunk;
  opts.decode_tokens = o.decode_tokens;
  opts.model_path = o.model_path;
  opts.data_paths = o.data_paths;
  opts.max_tokens = limit;
  opts.threads = omp_get_max_threads();
  DocumentProgress progress(policies);
  JobProgress job_progress;
  policies::EvalRun how;
  how.comm = comm;
  how.resume = o.resume;
  if (root) {
    how.checkpoint_path = paths.checkpoint;
    how.notice = [](const std::string& line) { fmt::print(stderr, "eval-policy: {}\n", line); };
  }
  if (comm && root) how.job_progress = [&job_progress](const policies::EvalJobProgress& p) { job_progress(p); };
  const policies::EvalProgressFn show = [&progress](const policies::EvalProgress& e) { progress(e); };
  const policies::EvalResult result =
      policies::evaluate_policies(*model, documents, policies, opts, comm ? policies::EvalProgressFn{} : show, how);
  if (root) write_report(paths, result);  // rank 0 writes the report
}

void register_eval_policy(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "eval-policy", "What sparse-attention policies cost vs dense attention: error, perplexity, memory, time");
  sub->footer(eval_policy_footer());
  auto options = std::make_shared<EvalPolicyOptions>();
  EvalPolicyOptions& o = *options;
  add_model_options(sub, o.model_path);
  sub->add_option("--data", o.data_paths, ".txt, .tok, LongBench .jsonl/.json or RULER files, or directories")
      ->required();
  sub->add_option("--policy", o.policy_texts, "policy spec, map or sweep (repeatable; see below)");
  sub->add_option("--max-tokens", o.max_tokens, "tokens per document (middle truncation; default 1024)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  sub->add_option("--max-docs", o.max_docs, "use at most this many documents (0 = all)")->check(non_negative_integer());
  sub->add_option("--chunk", o.chunk, "tokens per forward call (bounds the logits memory; default 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  sub->add_option("--decode-tokens", o.decode_tokens,
                  "also run each policy for real: prefill all but the last N tokens, decode those one by one "
                  "with real eviction; reports decode ms/token and the KV-cache bytes really held (default 0: off)")
      ->check(non_negative_integer());
  sub->add_option("--out", o.out_path,
                  "a directory: report.json and report.html (frontier charts, per-layer error, time, table) in it; "
                  "a file name ending in .json: the JSON report alone")
      ->required();
  sub->add_flag("--resume", o.resume, "continue a killed run from its checkpoint (same arguments)");
  add_threads_option(sub, &o.threads);
  add_ubatch_option(sub);
  // Under mpirun / srun the documents are shared by the ranks (docs/distributed.md).
  sub->callback([options] { dist::run_on_world([&](ShardComm* comm) { run_eval_policy(*options, comm); }); });
}
ATTNSPARSE_VERB(register_eval_policy);

}  // namespace
}  // namespace attnsparse::cli
