// attnsparse analyze MODEL --data PATH... --out DIR: streamed attention statistics, the
// five conjectures of docs/methods.md §7 judged with statistics, report.json + report.html.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "analysis/analyze_job.h"
#include "cli/verb.h"
#include "core/error.h"
#include "core/files.h"
#include "dist/world.h"
#include "model/model.h"
#include "model/model_util.h"
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

void run(const Options& o, ShardComm* comm) {
  apply_threads(o.threads);
  dist::default_threads(comm, o.threads);
  AnalysisParams params;
  params.sampling.rows = parse_row_kind(o.rows);
  params.sampling.stride = o.stride;
  params.sampling.min_query = o.min_query;
  params.sampling.max_rows = o.max_rows;
  params.sampling.decode_tokens = o.decode_tokens;
  params.sampling.seed = o.seed;
  params.sampling.max_tokens = o.max_tokens;
  for (const std::string& s : o.settings) apply_setting(params, s);
  validate(params);

  {
    std::vector<std::string> inputs = o.data;
    inputs.push_back(o.model_path);
    refuse_output_over_inputs(o.dump_rows, inputs, "--dump-rows");
  }
  const auto model = load_model(o.model_path);
  AnalyzeJob job;
  job.model_path = o.model_path;
  job.data = o.data;
  job.out_dir = o.out_dir;
  job.resume = o.resume;
  job.dump_rows = o.dump_rows;
  job.comm = comm;
  const bool root = !comm || comm->rank() == 0;
  ProgressPrinter printer;
  if (root) {
    job.progress = [&printer](const RunProgress& p) { printer(p); };
    job.notice = [](const std::string& line) { std::fprintf(stderr, "analyze: %s\n", line.c_str()); };
  }
  const json report = run_analysis(*model, params, job);
  if (!root) return;  // rank 0 writes the report
  const fs::path json_path = fs::path(o.out_dir) / "report.json";
  const fs::path html_path = fs::path(o.out_dir) / "report.html";
  const std::string json_text = report.dump(1) + "\n", html_text = report::analysis_html(report);
  write_file_atomic(json_path.string(), json_text.data(), json_text.size());
  write_file_atomic(html_path.string(), html_text.data(), html_text.size());
  std::error_code ec;
  fs::remove(checkpoint_path(o.out_dir), ec);

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
      "Under mpirun / srun the documents are shared by the ranks and rank 0 writes the\n"
      "report, identical to one process's (docs/distributed.md).\n"
      "Example: attnsparse analyze model.gguf --data longbench/ --out out/ --max-tokens 4096 \\\n"
      "           --stride 4 --max-rows 4000000 --dump-rows out/rows.csv.gz");
  auto options = std::make_shared<Options>();
  Options& o = *options;
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
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([options] {
    const Options& o = *options;
    // Under mpirun / srun: the documents are shared by the ranks (docs/distributed.md).
    dist::run_on_world([&o](ShardComm* comm) { run(o, comm); });
  });
}
ATTNSPARSE_VERB(register_analyze);

}  // namespace
}  // namespace attnsparse::cli
