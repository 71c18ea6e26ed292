// attnsparse theory simulate | fit: check "attention is naturally n^C-sparse"
// (docs/methods.md §8) in simulation and on a model's real attention rows.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>

#include "cli/verb.h"
#include "core/error.h"
#include "dist/world.h"
#include "model/model_util.h"
#include "theory/fit_model.h"
#include "theory/simulate.h"
#include "theory/theory_report.h"

namespace attnsparse::cli {
namespace {

std::vector<double> parse_doubles(const std::string& text, const std::string& option) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t pos = 0;
    double v = 0;
    try {
      v = std::stod(item, &pos);
    } catch (const std::exception&) {
      pos = std::string::npos;
    }
    if (item.empty() || pos != item.size() || !std::isfinite(v))
      fail_usage("{} '{}': '{}' is not a number (give a comma-separated list, e.g. 0.25,0.5)", option, text, item);
    out.push_back(v);
  }
  if (out.empty()) fail_usage("{}: give at least one value", option);
  return out;
}

std::vector<int> parse_ints(const std::string& text, const std::string& option) {
  std::vector<int> out;
  for (double v : parse_doubles(text, option)) {
    if (v != std::floor(v) || v < 1 || v > 1e6) fail_usage("{} '{}': {} is not a positive integer", option, text, v);
    out.push_back(static_cast<int>(v));
  }
  return out;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

void ensure_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) fail_file(dir, "cannot create the output directory: {}", ec.message());
}

// Creates the output directory up front (an unwritable place fails before the work) and,
// when the run then fails, removes it again if this run created it and left it empty, so
// that a failed run leaves nothing behind.
class OutputDir {
 public:
  explicit OutputDir(const std::string& dir) : dir_(dir), existed_(std::filesystem::exists(dir)) { ensure_dir(dir); }
  ~OutputDir() {
    if (!done_ && !existed_) {
      std::error_code ec;
      std::filesystem::remove(dir_, ec);  // only succeeds on an empty directory
    }
  }
  void done() { done_ = true; }

 private:
  std::string dir_;
  bool existed_;
  bool done_ = false;
};

void progress_line(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

// What a theory run hands back to be written.
struct RunOutput {
  nlohmann::json json;
  std::string html, table;
};

// Creates OUT (removed again if the run fails), runs `work` with a timed progress printer,
// writes OUT/STEM.json (with the run's seconds) and OUT/STEM.html, prints the table.
void run_to_dir(const std::string& out_dir, const std::string& stem,
                const std::function<RunOutput(std::function<void(const std::string&)>)>& work) {
  OutputDir dir_guard(out_dir);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [t0] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  RunOutput r = work([&](const std::string& line) { progress_line(fmt::format("[{:7.1f}s] {}", elapsed(), line)); });
  const double seconds = elapsed();
  r.json["seconds"] = seconds;
  write_text_atomic(out_dir + "/" + stem + ".json", r.json.dump(1) + "\n");
  write_text_atomic(out_dir + "/" + stem + ".html", r.html);
  fmt::print("{}", r.table);
  dir_guard.done();
  fmt::print("\n{:.1f} s; wrote {}/{}.json and {}/{}.html\n", seconds, out_dir, stem, out_dir, stem);
}


struct SimulateCliOptions {
  std::string n_text = "1024:131072", d_text = "128", sigma_text, B_text, F_text, c_text, eps_text = "0.01,0.05",
              out_dir, center = "mean", keys = "direct", select = "quickselect";
  theory::SimOptions opt;
  int threads = 0;
  bool no_errors = false;
};

void run_simulate(SimulateCliOptions& o) {
  apply_threads(o.threads);
  theory::SimOptions& opt = o.opt;
  const auto [lo, hi] = theory::parse_n_range(o.n_text);
  opt.n_lo = lo;
  opt.n_hi = hi;
  opt.eps = parse_doubles(o.eps_text, "--eps");
  opt.center = o.center == "median" ? theory::Center::Median : theory::Center::Mean;
  opt.keys = o.keys == "reduced" ? theory::KeyMethod::Reduced : theory::KeyMethod::Direct;
  opt.select = o.select == "sort" ? theory::SelectMethod::FullSort : theory::SelectMethod::Quickselect;
  opt.errors = !o.no_errors;
  const std::vector<int> ds = parse_ints(o.d_text, "--d");
  if (o.B_text.empty() != o.F_text.empty())
    fail_usage("--norm-bound and --weight-frobenius go together (got only {})",
               o.B_text.empty() ? "--weight-frobenius" : "--norm-bound");
  auto list = [](const std::string& text, const char* option) {
    return text.empty() ? std::vector<double>{} : parse_doubles(text, option);
  };
  const std::vector<double> sigmas = list(o.sigma_text, "--sigma"), Bs = list(o.B_text, "--norm-bound"),
                            Fs = list(o.F_text, "--weight-frobenius"), cs = list(o.c_text, "--logit-c");
  opt.settings = theory::sweep_settings(ds, sigmas, Bs, Fs, cs);
  theory::validate(opt);
  // Under mpirun / srun the trials are shared by the ranks; rank 0 writes the output
  // (identical to one process's apart from "seconds"; docs/distributed.md).
  opt.comm = dist::world();
  dist::default_threads(opt.comm, o.threads);
  if (opt.comm && opt.comm->rank() != 0) {
    theory::simulate(opt);
    return;
  }
  run_to_dir(o.out_dir, "theory", [&opt](std::function<void(const std::string&)> progress) {
    opt.progress = std::move(progress);
    const auto results = theory::simulate(opt);
    return RunOutput{theory::simulation_json(opt, results), theory::simulation_html(opt, results),
                     theory::simulation_table(opt, results)};
  });
}

void register_simulate(CLI::App* theory) {
  auto* sub = theory->add_subcommand(
      "simulate", "Simulate random attention rows and fit k_eps ~ n^C (Gaussian, norm-bounded, i.i.d.-logit regimes)");
  sub->footer(
      "Regimes (one setting per value; every setting is combined with every --d):\n"
      "  --sigma S,...                 q, k ~ N(0, S^2 I_d), logits q.k/sqrt(d)\n"
      "  --norm-bound B,... --weight-frobenius F,...\n"
      "                                rows scaled to norm B, logits x_q^T W x_k with a Gaussian W of\n"
      "                                Frobenius norm F (|logit| <= R = B^2 F); every (B, F) pair\n"
      "  --logit-c c,...               i.i.d. N(0, 2c ln n) logits (closed form k_eps ~ n Q(sigma + Phi^-1(eps)))\n"
      "Per setting and eps: k_eps (smallest k with top-k mass >= 1-eps) at n = powers of two, the fitted\n"
      "exponent C with a bootstrap interval, and the output error ||o - o_k|| of k = const, ceil(ln n) and\n"
      "ceil(alpha n^C) with Gaussian values. Writes OUT/theory.json and OUT/theory.html; a table on stdout.\n"
      "Under mpirun / srun the trials are shared by the ranks (same result; docs/distributed.md).\n"
      "Examples:\n"
      "  attnsparse theory simulate --n 1024:131072 --d 128 --logit-c 0.25,0.5,0.75 --out sim\n"
      "  attnsparse theory simulate --n 2^10:2^16 --d 64,128 --sigma 1,1.5 --eps 0.01,0.05 --trials 32 --out sim\n"
      "  attnsparse theory simulate --d 64 --norm-bound 2 --weight-frobenius 2,8,32,128 --out collapse");
  auto o = std::make_shared<SimulateCliOptions>();
  theory::SimOptions& opt = o->opt;
  sub->add_option("--n", o->n_text, "lengths LO:HI (powers of two in between; 2^a allowed)")->capture_default_str();
  sub->add_option("--d", o->d_text, "head dimensions, comma-separated")->capture_default_str();
  sub->add_option("--sigma", o->sigma_text, "Gaussian q/k regime: standard deviations");
  sub->add_option("--norm-bound", o->B_text, "norm-bounded regime: row norms B");
  sub->add_option("--weight-frobenius", o->F_text, "norm-bounded regime: Frobenius norms F of W");
  sub->add_option("--logit-c", o->c_text, "i.i.d.-logit regime: c in sigma_n^2 = 2c ln n");
  sub->add_option("--eps", o->eps_text, "mass levels eps, comma-separated")->capture_default_str();
  sub->add_option("--trials", opt.trials, "independent rows per setting")->capture_default_str();
  sub->add_option("--seed", opt.seed, "random seed")->capture_default_str();
  sub->add_option("--k-const", opt.k_const, "the fixed budget rule k = K")->capture_default_str();
  sub->add_option("--alpha", opt.alpha, "dynamic rule k = ceil(alpha n^C): alpha (default: the fit's prefactor)");
  sub->add_option("--exponent", opt.exponent, "dynamic rule: C (default: the fitted C of the smallest eps)");
  sub->add_option("--bootstrap", opt.bootstrap, "bootstrap resamples for the interval of C")->capture_default_str();
  sub->add_option("--level", opt.level, "confidence level of the interval")->capture_default_str();
  sub->add_option("--center", o->center, "curve fitted per n: mean or median of k_eps over trials")
      ->check(CLI::IsMember({"mean", "median"}))->capture_default_str();
  sub->add_option("--keys", o->keys, "direct (draw key and value vectors) or reduced (exact conditional law, faster)")
      ->check(CLI::IsMember({"direct", "reduced"}))->capture_default_str();
  sub->add_option("--select", o->select, "top-k selection: quickselect, or sort (slow baseline for benchmarks)")
      ->check(CLI::IsMember({"quickselect", "sort"}))->capture_default_str();
  sub->add_flag("--no-errors", o->no_errors, "skip the output-error pass (k_eps and fits only)");
  sub->add_option("--out", o->out_dir, "output directory (theory.json, theory.html)")->required();
  add_threads_option(sub, &o->threads);
  sub->callback([o] { run_simulate(*o); });
}

struct FitCliOptions {
  theory::FitOptions opt;
  std::string model_path, eps_text = "0.01,0.05", out_dir;
  std::vector<std::string> data;
  int threads = 0;
};

void run_fit(FitCliOptions& o) {
  apply_threads(o.threads);
  theory::FitOptions& opt = o.opt;
  opt.eps = parse_doubles(o.eps_text, "--eps");
  opt.model_path = o.model_path;
  opt.model_options = model_load_options();
  opt.data = o.data;
  theory::validate(opt);
  // Under mpirun / srun the documents are shared by the ranks; rank 0 writes the output.
  opt.comm = dist::world();
  dist::default_threads(opt.comm, o.threads);
  if (opt.comm && opt.comm->rank() != 0) {
    theory::fit_model(opt);
    return;
  }
  run_to_dir(o.out_dir, "theory_fit", [&opt](std::function<void(const std::string&)> progress) {
    opt.progress = std::move(progress);
    const theory::FitResult res = theory::fit_model(opt);
    return RunOutput{theory::fit_json(opt, res), theory::fit_html(opt, res), theory::fit_table(opt, res)};
  });
}

void register_fit(CLI::App* theory) {
  auto* sub = theory->add_subcommand(
      "fit", "Measure k_eps of a model's real attention rows at growing prefix lengths and fit C per layer and head");
  sub->footer(
      "For each document the model runs once over its first n_max tokens; every attention row is seen\n"
      "through the attention core's observer (never an n x n matrix). A row of query position t has\n"
      "n = t+1 keys (min(t+1, W) in a layer with a native sliding window W); rows are grouped by n\n"
      "into bins around powers of two (n in [m, 2m) -> bin m), and k_eps per bin is fitted against n\n"
      "per layer and head. The dynamic budget k = ceil(alpha n^C) (alpha, C from the head's own fit at\n"
      "the smallest eps) is compared with the oracle top-k of the same mean cost and with a recency\n"
      "window of that cost, run as the policies dyntopk / topk / dynwindow / sink+window by\n"
      "eval-policy's oracle: error ||o - o_G|| = tau ||mu_tail - mu_G||. Writes OUT/theory_fit.json\n"
      "and OUT/theory_fit.html; a table on stdout.\n"
      "Under mpirun / srun the documents are shared by the ranks (same result; docs/distributed.md).\n"
      "Example:\n"
      "  attnsparse theory fit model.gguf --data docs/ --max-tokens 2048 --docs 4 --out fit");
  auto o = std::make_shared<FitCliOptions>();
  theory::FitOptions& opt = o->opt;
  add_model_options(sub, o->model_path);
  sub->add_option("--data", o->data, "documents: .txt, .tok, LongBench/RULER .jsonl/.json files or directories")
      ->required();
  sub->add_option("--max-tokens", opt.max_tokens, "tokens per document (longer ones keep their first N tokens)")
      ->capture_default_str();
  sub->add_option("--min-n", opt.min_n, "smallest prefix length binned")->capture_default_str();
  sub->add_option("--docs", opt.max_docs, "use at most this many documents (0 = all)")->capture_default_str();
  sub->add_option("--eps", o->eps_text, "mass levels eps, comma-separated")->capture_default_str();
  sub->add_option("--rows-per-bin", opt.rows_per_bin, "query rows sampled per length bin, layer and head")
      ->capture_default_str();
  sub->add_option("--bootstrap", opt.bootstrap, "bootstrap resamples (documents) for the interval of C")
      ->capture_default_str();
  sub->add_option("--seed", opt.seed, "random seed (row sampling, bootstrap)")->capture_default_str();
  sub->add_option("--out", o->out_dir, "output directory (theory_fit.json, theory_fit.html)")->required();
  add_threads_option(sub, &o->threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([o] { run_fit(*o); });
}

void register_theory(CLI::App& app) {
  auto* theory = app.add_subcommand(
      "theory", "Check 'attention is naturally n^C-sparse': simulation (simulate) and real attention rows (fit)");
  theory->require_subcommand(1);
  theory->footer(
      "Examples:\n"
      "  attnsparse theory simulate --d 128 --logit-c 0.5 --out sim\n"
      "  attnsparse theory fit model.gguf --data docs/ --out fit");
  register_simulate(theory);
  register_fit(theory);
}
ATTNSPARSE_VERB(register_theory);

}  // namespace
}  // namespace attnsparse::cli
