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

void register_eval_policy(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "eval-policy", "What sparse-attention policies cost vs dense attention: error, perplexity, memory, time");
  sub->footer(std::string(
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
              "(docs/distributed.md).");
  auto options = std::make_shared<EvalPolicyOptions>();
  auto& [model_path, out_path, data_paths, policy_texts, max_tokens, max_docs, chunk, decode_tokens, threads, resume] =
      *options;
  add_model_options(sub, model_path);
  sub->add_option("--data", data_paths, ".txt, .tok, LongBench .jsonl/.json or RULER files, or directories")
      ->required();
  sub->add_option("--policy", policy_texts, "policy spec, map or sweep (repeatable; see below)");
  sub->add_option("--max-tokens", max_tokens, "tokens per document (middle truncation; default 1024)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  sub->add_option("--max-docs", max_docs, "use at most this many documents (0 = all)")->check(non_negative_integer());
  sub->add_option("--chunk", chunk, "tokens per forward call (bounds the logits memory; default 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  sub->add_option("--decode-tokens", decode_tokens,
                  "also run each policy for real: prefill all but the last N tokens, decode those one by one "
                  "with real eviction; reports decode ms/token and the KV-cache bytes really held (default 0: off)")
      ->check(non_negative_integer());
  sub->add_option("--out", out_path,
                  "a directory: report.json and report.html (frontier charts, per-layer error, time, table) in it; "
                  "a file name ending in .json: the JSON report alone")
      ->required();
  sub->add_flag("--resume", resume, "continue a killed run from its checkpoint (same arguments)");
  add_threads_option(sub, &threads);
  add_ubatch_option(sub);
  // One process, or one rank of an MPI job (comm).
  auto run = [options](ShardComm* comm) {
    auto& [model_path, out_path, data_paths, policy_texts, max_tokens, max_docs, chunk, decode_tokens, threads,
           resume] = *options;
    apply_threads(threads);
    dist::default_threads(comm, threads);
    const bool root = !comm || comm->rank() == 0;
    // --out FILE.json: the JSON report alone; --out DIR: DIR/report.json and report.html.
    const bool json_file = out_path.size() > 5 && out_path.compare(out_path.size() - 5, 5, ".json") == 0;
    if (!json_file && fs::exists(out_path) && !fs::is_directory(out_path))
      fail_file(out_path, "--out: not a directory (give a directory, or a file name ending in .json)");
    const std::string checkpoint = json_file ? out_path.substr(0, out_path.size() - 5) + ".checkpoint.cbor"
                                             : (fs::path(out_path) / "checkpoint.cbor").string();
    std::vector<policies::EvalPolicy> policies =
        policy_texts.empty() ? policies::default_eval_policies() : std::vector<policies::EvalPolicy>{};
    for (const auto& p : policy_texts)
      for (auto& e : policies::parse_eval_policies(p)) policies.push_back(std::move(e));
    std::vector<Document> docs = read_documents(data_paths);
    if (max_docs > 0 && static_cast<int64_t>(docs.size()) > max_docs) docs.resize(max_docs);
    auto model = load_model(model_path);
    std::vector<std::string> skipped;
    const std::vector<policies::EvalDocument> documents =
        policies::prepare_evaluation(*model, policies, docs, max_tokens, data_paths, &skipped);
    if (root)
      for (const auto& s : skipped) fmt::print(stderr, "eval-policy: skipping {}\n", s);
    const int64_t limit = policies::document_token_limit(*model, max_tokens);
    if (root && json_file) resolve_output_path(out_path);  // its directory exists (the checkpoint goes there)
    if (root && !json_file) {
      std::error_code ec;
      fs::create_directories(out_path, ec);
      if (!fs::is_directory(out_path)) fail_file(out_path, "cannot create the output directory");
    }

    policies::EvalOptions opts;
    opts.chunk = chunk;
    opts.decode_tokens = decode_tokens;
    opts.model_path = model_path;
    opts.data_paths = data_paths;
    opts.max_tokens = limit;
    opts.threads = omp_get_max_threads();
    // Progress: every document on a terminal; in logs the first, the last and one every 10 s.
    ProgressGate gate(0, 10, true);
    bool show = false;
    using Stage = policies::EvalProgress::Stage;
    const auto progress = [&](const policies::EvalProgress& e) {
      switch (e.stage) {
        case Stage::Dense:
          show = gate.due(e.document + 1 == e.documents);
          if (show)
            fmt::print(stderr, "eval-policy: document {}/{} {} ({} tokens, {:.0f} s): dense", e.document + 1,
                       e.documents, e.doc->id, e.doc->tokens.size(), gate.seconds());
          break;
        case Stage::Oracle:
          if (show) fmt::print(stderr, ", oracle");
          break;
        case Stage::Policy:
          if (show) fmt::print(stderr, ", {}", policies[e.policy].map.spec());
          break;
        case Stage::RealDecodeDense:
          if (show) fmt::print(stderr, ", real decode dense");
          break;
        case Stage::DocumentDone:
          if (show) fmt::print(stderr, "\n");
          break;
      }
    };
    policies::EvalRun how;
    how.comm = comm;
    how.resume = resume;
    if (root) {
      how.checkpoint_path = checkpoint;
      how.notice = [](const std::string& line) { fmt::print(stderr, "eval-policy: {}\n", line); };
    }
    // Sharded: rank 0 prints the whole job's progress after each round of documents.
    ProgressGate job_gate(0, 10, true);
    if (comm && root)
      how.job_progress = [&job_gate](const policies::EvalJobProgress& p) {
        const char* ranks = p.ranks == 1 ? "rank" : "ranks";
        if (p.finished) {
          fmt::print(stderr, "eval-policy: {} documents on {} {} in {:.0f} s\n", p.documents, p.ranks, ranks, p.seconds);
          return;
        }
        // The last round is the finished line; ETA from the tokens done (a document's cost
        // grows with its tokens).
        if (p.documents_done == p.documents || !job_gate.due(false)) return;
        const double left = p.tokens_done > 0 ? p.seconds * double(p.tokens - p.tokens_done) / double(p.tokens_done) : 0;
        fmt::print(stderr, "eval-policy: {}/{} documents on {} {}, {:.0f} s, ETA {:.0f} s\n", p.documents_done,
                   p.documents, p.ranks, ranks, p.seconds, left);
      };
    const policies::EvalResult result =
        policies::evaluate_policies(*model, documents, policies, opts, comm ? policies::EvalProgressFn{} : progress, how);
    if (!root) return;  // rank 0 writes the report
    fmt::print("{}", policies::eval_table(result));
    const nlohmann::json report = policies::to_json(result);
    const std::string text = report.dump(2) + "\n";
    std::error_code ec;
    if (json_file) {
      write_file_atomic(out_path, text.data(), text.size());
      fs::remove(checkpoint, ec);
      fmt::print("report -> {}\n", out_path);
      return;
    }
    const std::string html = report::policy_html(report);
    const std::string json_path = (fs::path(out_path) / "report.json").string();
    const std::string html_path = (fs::path(out_path) / "report.html").string();
    write_file_atomic(json_path, text.data(), text.size());
    write_file_atomic(html_path, html.data(), html.size());
    fs::remove(checkpoint, ec);
    fmt::print("report -> {} and {}\n", json_path, html_path);
  };
  sub->callback([run] {
    // Under mpirun / srun: the documents are shared by the ranks (docs/distributed.md).
    ShardComm* comm = dist::world();
    if (!comm) return run(nullptr);
    try {
      run(comm);
    } catch (const std::exception& e) {
      // Every rank stops with the same error; rank 0 alone prints it.
      std::exception_ptr error = std::current_exception();
      if (!comm->settled && !comm->closed) {
        try {
          comm->agree(ShardComm::failure_of(e));
        } catch (...) {
          error = std::current_exception();
        }
      }
      if (comm->rank() != 0) {
        std::fflush(stdout);
        std::exit(1);
      }
      std::rethrow_exception(error);
    }
  });
}
ATTNSPARSE_VERB(register_eval_policy);

}  // namespace
}  // namespace attnsparse::cli
