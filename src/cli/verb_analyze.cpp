// attnsparse analyze MODEL --data PATH... --out DIR: streamed attention statistics, the
// five conjectures of methods.md §2 judged with statistics, report.json + report.html.
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "analysis/plan.h"
#include "analysis/report_json.h"
#include "analysis/runner.h"
#include "cli/verb.h"
#include "core/error.h"
#include "io/corpus.h"
#include "model/model.h"
#include "model/model_util.h"
#include "ops/attention.h"
#include "report/analysis_report.h"

namespace attnsparse::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace attnsparse::analysis;

struct Options {
  std::string model_path, out_dir, dump_rows, rows = "prefill";
  std::vector<std::string> data, settings;
  int64_t max_tokens = 0, stride = 1, min_query = 16, max_rows = 0, decode_tokens = 32;
  uint64_t seed = 1;
  int threads = 0;
  bool resume = false, print_json = false;
};

// --set NAME=VALUE: the statistics and verdict parameters.
void apply_setting(AnalysisParams& p, const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) fail_usage("--set: '{}' is not NAME=VALUE", text);
  const std::string name = text.substr(0, eq), value = text.substr(eq + 1);
  double x = 0;
  try {
    size_t used = 0;
    x = std::stod(value, &used);
    if (used != value.size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    fail_usage("--set {}: '{}' is not a number", name, value);
  }
  VerdictParams& v = p.verdict;
  PersistenceParams& q = p.persistence;
  const std::map<std::string, double*> reals = {
      {"c1_rho", &v.c1_rho}, {"c1_p", &v.c1_p}, {"c2_silhouette_supported", &v.c2_silhouette_supported},
      {"c2_ari_supported", &v.c2_ari_supported}, {"c2_silhouette_partial", &v.c2_silhouette_partial},
      {"c34_ratio", &v.c34_ratio}, {"c34_p", &v.c34_p}, {"c34_supported_share", &v.c34_supported_share},
      {"c34_partial_share", &v.c34_partial_share}, {"c5_supported", &v.c5_supported},
      {"c5_partial", &v.c5_partial}, {"alpha", &v.alpha}};
  const std::map<std::string, int*> ints = {
      {"bootstrap_resamples", &v.bootstrap_resamples}, {"reservoir", &v.reservoir},
      {"kmeans_min_k", &v.kmeans_min_k}, {"kmeans_max_k", &v.kmeans_max_k},
      {"kmeans_restarts", &v.kmeans_restarts}, {"recency_window", &v.recency_window},
      {"c5_gap", &v.c5_gap}, {"c5_k", &v.c5_k}, {"anchors", &q.anchors},
      {"feature_gap", &q.feature_gap}};
  if (auto it = reals.find(name); it != reals.end()) {
    *it->second = x;
  } else if (auto jt = ints.find(name); jt != ints.end()) {
    if (x != std::floor(x)) fail_usage("--set {}: '{}' is not an integer", name, value);
    *jt->second = int(x);
  } else if (name == "min_anchor") {
    q.min_anchor = int64_t(x);
  } else {
    std::string known;
    for (const auto& [k, _] : reals) known += " " + k;
    for (const auto& [k, _] : ints) known += " " + k;
    fail_usage("--set: unknown parameter '{}' (known: min_anchor{})", name, known);
  }
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const int64_t t = int64_t(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
                   : fmt::format("{}:{:02}", t / 60, t % 60);
}

std::string format_count(double n) {
  return n >= 1e6 ? fmt::format("{:.2f}M", n / 1e6) : n >= 1e4 ? fmt::format("{:.1f}k", n / 1e3) : fmt::format("{:.0f}", n);
}

// A bar with rows/s and ETA on a terminal; a plain line every 10 s otherwise.
class ProgressPrinter {
 public:
  void operator()(const RunProgress& p) {
    if (!gate_.due(p.finished)) return;
    const double rate = p.seconds > 0 ? double(p.rows_done) / p.seconds : 0;
    const double eta = rate > 0 ? double(p.rows_total - p.rows_done) / rate : NAN;
    const double frac = p.rows_total > 0 ? std::min(1.0, double(p.rows_done) / double(p.rows_total)) : 1.0;
    const std::string counts = fmt::format("{}/{} rows  {}/s  elapsed {}  ETA {}  doc {}/{}", format_count(double(p.rows_done)),
                                           format_count(double(p.rows_total)), format_count(rate),
                                           format_duration(p.seconds), format_duration(eta),
                                           std::min(p.doc + 1, p.n_docs), p.n_docs);
    if (gate_.tty()) {
      const int width = 24, filled = int(frac * width);
      std::fprintf(stderr, "\ranalyze [%s%s] %5.1f%% %s\033[K", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), 100 * frac, counts.c_str());
      if (p.finished) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "analyze: %.1f%% %s\n", 100 * frac, counts.c_str());
    }
    std::fflush(stderr);
  }

 private:
  ProgressGate gate_{0.2, 10.0, true};
};

void run(const Options& o) {
  apply_threads(o.threads);
  AnalysisParams params;
  if (o.rows == "prefill") params.sampling.rows = RowKind::Prefill;
  else if (o.rows == "decode") params.sampling.rows = RowKind::Decode;
  else if (o.rows == "both") params.sampling.rows = RowKind::Both;
  else fail_usage("--rows must be prefill, decode or both (got '{}')", o.rows);
  params.sampling.stride = o.stride;
  params.sampling.min_query = o.min_query;
  params.sampling.max_rows = o.max_rows;
  params.sampling.decode_tokens = o.decode_tokens;
  params.sampling.seed = o.seed;
  params.sampling.max_tokens = o.max_tokens;
  for (const std::string& s : o.settings) apply_setting(params, s);
  validate(params);

  const auto model = load_model(o.model_path);
  const ModelConfig& cfg = model->config();
  const int64_t window = o.max_tokens > 0 ? o.max_tokens : cfg.n_ctx;
  if (window < 2) {
    if (o.max_tokens > 0) fail_usage("--max-tokens {}: a document needs at least 2 tokens", o.max_tokens);
    fail_usage("the model does not state its context length ({}); give --max-tokens", cfg.n_ctx);
  }
  if (params.sampling.rows == RowKind::Prefill && window <= o.min_query)
    fail_usage("--max-tokens {}: rows start at query position --min-query {}, so the window must be longer", window,
               o.min_query);
  if (cfg.arch == "gpt2" && window > cfg.n_ctx)
    fail_usage("--max-tokens {}: gpt2 has learned positions for {} tokens only", window, cfg.n_ctx);
  params.sampling.max_tokens = window;

  // Documents -> tokens (BOS as the model's vocabulary says; .tok files as they are).
  const std::vector<Document> raw = read_documents(o.data);
  std::vector<RunDocument> docs;
  json skipped = json::array();
  int64_t truncated = 0;
  const int64_t needed = params.sampling.rows == RowKind::Prefill ? o.min_query + 1 : 2;
  for (const Document& d : raw) {
    std::vector<int32_t> tokens = d.tokens ? *d.tokens : model->tokenizer().encode(d.text, true);
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] < 0 || tokens[i] >= cfg.n_vocab)
        fail_file(d.source, "token id {} at index {} is out of range (vocabulary size {})", tokens[i], i, cfg.n_vocab);
    RunDocument rd;
    rd.info.id = d.id;
    rd.info.source = d.source;
    rd.info.dataset = d.dataset;
    rd.info.original_tokens = int64_t(tokens.size());
    if (int64_t(tokens.size()) > window) {
      tokens = truncate_middle(tokens, window);
      ++truncated;
    }
    if (int64_t(tokens.size()) < needed) {
      skipped.push_back({{"id", d.id}, {"tokens", tokens.size()}, {"reason", fmt::format("fewer than {} tokens", needed)}});
      continue;
    }
    rd.tokens = std::move(tokens);
    docs.push_back(std::move(rd));
  }
  if (docs.empty()) fail_usage("no document has enough tokens to analyse ({} read, all shorter than {} tokens)", raw.size(), needed);
  if (!skipped.empty()) std::fprintf(stderr, "analyze: skipped %zu documents shorter than %lld tokens\n", skipped.size(), (long long)needed);

  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec || !fs::is_directory(o.out_dir)) fail_file(o.out_dir, "cannot create the output directory");

  // What the run is: a resumed run must match it exactly.
  uint64_t token_hash = 0;
  for (const RunDocument& d : docs)
    for (int32_t t : d.tokens) token_hash = hash_combine(token_hash, uint64_t(uint32_t(t)));
  const json fingerprint{{"model", fs::absolute(o.model_path).string()},
                         {"model_bytes", fs::is_regular_file(o.model_path) ? int64_t(fs::file_size(o.model_path)) : 0},
                         {"documents", docs.size()}, {"tokens", token_hash},
                         {"dump_rows", o.dump_rows}, {"parameters", to_json(params)}};

  RunControl control;
  control.checkpoint_path = (fs::path(o.out_dir) / "checkpoint.cbor").string();
  control.resume = o.resume;
  control.fingerprint = fingerprint.dump();
  control.dump_path = o.dump_rows;
  ProgressPrinter printer;
  control.progress = [&printer](const RunProgress& p) { printer(p); };
  if (o.resume && !fs::exists(control.checkpoint_path))
    std::fprintf(stderr, "analyze: --resume: no checkpoint in %s; starting from the beginning\n", o.out_dir.c_str());

  ModelRowSource source(*model);
  const RunOutcome outcome = analyze_documents(source, docs, params, control);
  if (outcome.docs_resumed > 0)
    std::fprintf(stderr, "analyze: resumed after %lld documents from the checkpoint\n", (long long)outcome.docs_resumed);

  json meta;
  meta["model"] = {{"path", o.model_path}, {"name", cfg.name.empty() ? fs::path(o.model_path).filename().string() : cfg.name},
                   {"arch", cfg.arch}, {"n_layer", cfg.n_layer}, {"n_head", cfg.n_head},
                   {"n_kv_heads", cfg.n_kv_head}, {"head_dim", cfg.head_dim}, {"n_ctx", cfg.n_ctx},
                   {"n_vocab", cfg.n_vocab}, {"format", cfg.source_format}};
  meta["data"] = {{"paths", o.data}, {"documents_read", raw.size()}, {"documents_truncated", truncated},
                  {"documents_skipped", skipped}, {"max_tokens", window}};
  meta["run"] = {{"threads", omp_get_max_threads()}, {"attention_isa", ops::attention_isa()},
                 {"seconds", outcome.seconds}, {"rows_this_invocation", outcome.rows_this_run},
                 {"rows_per_second", outcome.seconds > 0 ? double(outcome.rows_this_run) / outcome.seconds : 0.0},
                 {"documents_resumed", outcome.docs_resumed}};
  const json report = build_report(outcome.acc, params, meta);
  const fs::path json_path = fs::path(o.out_dir) / "report.json";
  const fs::path html_path = fs::path(o.out_dir) / "report.html";
  const std::string json_text = report.dump(1) + "\n", html_text = report::analysis_html(report);
  write_file_atomic(json_path.string(), json_text.data(), json_text.size());
  write_file_atomic(html_path.string(), html_text.data(), html_text.size());
  fs::remove(control.checkpoint_path, ec);

  if (o.print_json) {
    fmt::print("{}\n", report.dump(1));
  } else {
    fmt::print("{}", report::verdict_table_text(report));
    fmt::print("report: {}\n        {}\n", html_path.string(), json_path.string());
    if (!o.dump_rows.empty()) fmt::print("rows:   {}\n", o.dump_rows);
  }
}

void register_analyze(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "analyze", "Measure how sparse attention is on documents and judge the five conjectures");
  sub->footer(
      "Streams per-row statistics out of the attention core (no n x n matrix): widths W_p,\n"
      "entropy, sink and recency mass, top-k persistence; clusters the heads; judges\n"
      "C1 width vs depth, C2 head clusters, C3 recency, C4 first token, C5 persistence\n"
      "(rules and parameters: docs/analysis.md). Writes DIR/report.json and DIR/report.html,\n"
      "checkpoints to DIR/checkpoint.cbor after every document (--resume continues).\n"
      "Data: .txt, .tok (token ids, no BOS added), LongBench v1 .jsonl, RULER .jsonl,\n"
      "LongBench v2 .json, and directories of these.\n"
      "Example: attnsparse analyze model.gguf --data longbench/ --out out/ --max-tokens 4096 \\\n"
      "           --stride 4 --max-rows 4000000 --dump-rows out/rows.csv.gz");
  static Options o;
  add_model_options(sub, o.model_path);
  sub->add_option("--data", o.data, "data files or directories")->required()->expected(1, -1);
  sub->add_option("--out", o.out_dir, "output directory")->required();
  sub->add_option("--max-tokens", o.max_tokens, "window: longer documents are truncated in the middle (default: the model's context)");
  sub->add_option("--rows", o.rows, "prefill, decode (teacher-forced continuation) or both (default prefill)");
  sub->add_option("--stride", o.stride, "analyse every S-th prefill query position (default 1)");
  sub->add_option("--min-query", o.min_query, "first analysed query position Q (default 16)");
  sub->add_option("--decode-tokens", o.decode_tokens, "decode rows: the last D tokens of each document (default 32)");
  sub->add_option("--max-rows", o.max_rows, "cap the rows with a seeded uniform sample (default: all)");
  sub->add_option("--seed", o.seed, "seed of the sample, bootstrap and k-means (default 1)");
  sub->add_flag("--resume", o.resume, "continue from DIR/checkpoint.cbor");
  sub->add_option("--dump-rows", o.dump_rows, "write one CSV line per row (gzip if FILE ends in .gz)");
  sub->add_option("--set", o.settings, "NAME=VALUE: a statistics or verdict parameter (see docs/analysis.md)");
  sub->add_flag("--json", o.print_json, "print report.json on stdout instead of the table");
  add_threads_option(sub, &o.threads);
  sub->callback([] { run(o); });
}
ATTNSPARSE_VERB(register_analyze);

}  // namespace
}  // namespace attnsparse::cli
