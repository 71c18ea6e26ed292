// attnsparse theory simulate | fit: check "attention is naturally n^C-sparse"
// (docs/methods.md §8) in simulation and on a model's real attention rows.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>

#include "cli/verb.h"
#include "core/checked.h"
#include "core/error.h"
#include "core/text.h"
#include "dist/world.h"
#include "model/model_util.h"
#include "theory/fit_model.h"
#include "theory/simulate.h"
#include "theory/theory_report.h"

namespace attnsparse::cli {
namespace {

// Numeric options are taken as text and parsed here, exactly: an empty string, a blank,
// trailing characters, NaN / Inf and values outside the option's documented range are a
// one-line error naming the option and the range (CLI11 read '' as 0, clamped integers
// beyond 64 bits and wrapped -1 into an unsigned seed).

// One finite decimal number (no leading blank, nothing after it), or nullopt.
std::optional<double> parse_number(const std::string& item) {
  if (item.empty() || std::isspace(static_cast<unsigned char>(item[0]))) return std::nullopt;
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(item, &pos);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (pos != item.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::vector<double> parse_doubles(const std::string& text, const std::string& option) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto v = parse_number(item);
    if (!v)
      fail_usage("{} '{}': '{}' is not a finite number (give a comma-separated list, e.g. 0.25,0.5)", option,
                 printable(text, 80), printable(item, 40));
    out.push_back(*v);
  }
  if (out.empty()) fail_usage("{} '{}': give at least one value", option, printable(text, 80));
  return out;
}

std::vector<int> parse_ints(const std::string& text, const std::string& option, int lo, int hi) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    out.push_back(static_cast<int>(parse_int_in_range(item, lo, hi, option)));
  if (out.empty()) fail_usage("{} '{}': give at least one value", option, printable(text, 80));
  return out;
}

// One number in [lo, hi] (lo excluded when lo_open), else "<option>: '<text>' is not a
// number in [lo, hi]".
double parse_number_in_range(const std::string& text, const char* option, double lo, double hi, bool lo_open,
                             bool hi_open = false) {
  const auto v = parse_number(text);
  if (!v || (lo_open ? *v <= lo : *v < lo) || (hi_open ? *v >= hi : *v > hi))
    fail_usage("{}: '{}' is not a number in {}{:.10g}, {:.10g}{}", option, printable(text, 40), lo_open ? "(" : "[", lo, hi,
               hi_open ? ")" : "]");
  return *v;
}

// The fewest bootstrap resamples accepted: a percentile interval from fewer is no interval
// (0 resamples printed C [C, C]).
constexpr int kMinBootstrap = 20;

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
  // Numbers as text, parsed exactly in run_simulate (defaults: SimOptions's, bootstrap 1000).
  theory::SimOptions opt;
  std::string trials_text = std::to_string(opt.trials), seed_text = std::to_string(opt.seed),
              k_const_text = std::to_string(opt.k_const), alpha_text, exponent_text,
              bootstrap_text = std::to_string(opt.bootstrap), level_text = fmt::format("{:g}", opt.level);
  // Whether each optional list / number was given at all ('' given is an error, not "absent").
  CLI::Option *sigma = nullptr, *B = nullptr, *F = nullptr, *c = nullptr, *alpha = nullptr, *exponent = nullptr;
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
  opt.trials = static_cast<int>(parse_int_in_range(o.trials_text, 2, 100000, "--trials"));
  opt.seed = static_cast<uint64_t>(parse_int_in_range(o.seed_text, 0, INT64_MAX, "--seed"));
  opt.k_const = parse_int_in_range(o.k_const_text, 1, theory::kMaxLength, "--k-const");
  if (o.alpha->count() > 0)
    opt.alpha = parse_number_in_range(o.alpha_text, "--alpha", 0, double(theory::kMaxLength), true);
  if (o.exponent->count() > 0) opt.exponent = parse_number_in_range(o.exponent_text, "--exponent", 0, 1, false);
  opt.bootstrap = static_cast<int>(parse_int_in_range(o.bootstrap_text, kMinBootstrap, 1000000, "--bootstrap"));
  opt.level = parse_number_in_range(o.level_text, "--level", 0, 1, true, true);
  opt.center = o.center == "median" ? theory::Center::Median : theory::Center::Mean;
  opt.keys = o.keys == "reduced" ? theory::KeyMethod::Reduced : theory::KeyMethod::Direct;
  opt.select = o.select == "sort" ? theory::SelectMethod::FullSort : theory::SelectMethod::Quickselect;
  opt.errors = !o.no_errors;
  const std::vector<int> ds = parse_ints(o.d_text, "--d", 1, 8192);
  if ((o.B->count() > 0) != (o.F->count() > 0))
    fail_usage("--norm-bound and --weight-frobenius go together (got only {})",
               o.B->count() > 0 ? "--norm-bound" : "--weight-frobenius");
  auto list = [](const CLI::Option* given, const std::string& text, const char* option) {
    return given->count() == 0 ? std::vector<double>{} : parse_doubles(text, option);
  };
  const std::vector<double> sigmas = list(o.sigma, o.sigma_text, "--sigma"),
                            Bs = list(o.B, o.B_text, "--norm-bound"), Fs = list(o.F, o.F_text, "--weight-frobenius"),
                            cs = list(o.c, o.c_text, "--logit-c");
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
      "  attnsparse theory simulate --d 64 --norm-bound 2 --weight-frobenius 2,8,32,128 --out collapse\n"
      "--bootstrap takes at least 20 resamples: fewer give no percentile interval worth printing\n"
      "(0 used to print C [C, C]). Every number is checked against the range shown with its option.");
  auto o = std::make_shared<SimulateCliOptions>();
  sub->add_option("--n", o->n_text, "lengths LO:HI (powers of two in between; 2^a allowed)")->capture_default_str();
  sub->add_option("--d", o->d_text, "head dimensions, comma-separated")->capture_default_str();
  o->sigma = sub->add_option("--sigma", o->sigma_text, "Gaussian q/k regime: standard deviations");
  o->B = sub->add_option("--norm-bound", o->B_text, "norm-bounded regime: row norms B");
  o->F = sub->add_option("--weight-frobenius", o->F_text, "norm-bounded regime: Frobenius norms F of W");
  o->c = sub->add_option("--logit-c", o->c_text, "i.i.d.-logit regime: c in sigma_n^2 = 2c ln n, in (0, 4]");
  sub->add_option("--eps", o->eps_text, "mass levels eps, comma-separated")->capture_default_str();
  sub->add_option("--trials", o->trials_text, "independent rows per setting (2 to 100000)")
      ->type_name("INT")->capture_default_str();
  sub->add_option("--seed", o->seed_text, "random seed (0 to 2^63-1)")->type_name("INT")->capture_default_str();
  sub->add_option("--k-const", o->k_const_text, "the fixed budget rule k = K (1 to 2^24; clamped to n)")
      ->type_name("INT")->capture_default_str();
  o->alpha = sub->add_option("--alpha", o->alpha_text,
                             "dynamic rule k = ceil(alpha n^C): alpha in (0, 2^24] (default: the fit's prefactor)")
                 ->type_name("FLOAT");
  o->exponent = sub->add_option("--exponent", o->exponent_text,
                                "dynamic rule: C in [0, 1] (default: the fitted C of the smallest eps)")
                    ->type_name("FLOAT");
  sub->add_option("--bootstrap", o->bootstrap_text,
                  fmt::format("bootstrap resamples for the percentile interval of C ({} to 1000000)", kMinBootstrap))
      ->type_name("INT")->capture_default_str();
  sub->add_option("--level", o->level_text, "confidence level of the interval, in (0, 1)")
      ->type_name("FLOAT")->capture_default_str();
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
  // Numbers as text, parsed exactly in run_fit (defaults: FitOptions's).
  std::string max_tokens_text = std::to_string(opt.max_tokens), min_n_text = std::to_string(opt.min_n),
              docs_text = std::to_string(opt.max_docs), rows_per_bin_text = std::to_string(opt.rows_per_bin),
              bootstrap_text = std::to_string(opt.bootstrap), seed_text = std::to_string(opt.seed);
  std::vector<std::string> data;
  int threads = 0;
};

void run_fit(FitCliOptions& o) {
  apply_threads(o.threads);
  theory::FitOptions& opt = o.opt;
  opt.eps = parse_doubles(o.eps_text, "--eps");
  opt.max_tokens = parse_int_in_range(o.max_tokens_text, 8, theory::kFitMaxTokens, "--max-tokens");
  // --min-n's range depends on --max-tokens: at most a quarter of it (three length bins).
  opt.min_n = parse_int_in_range(o.min_n_text, 2, opt.max_tokens / 4, "--min-n");
  opt.max_docs = static_cast<int>(parse_int_in_range(o.docs_text, 0, 1000000, "--docs"));
  opt.rows_per_bin =
      static_cast<int>(parse_int_in_range(o.rows_per_bin_text, 0, theory::kFitMaxTokens, "--rows-per-bin"));
  opt.bootstrap = static_cast<int>(parse_int_in_range(o.bootstrap_text, kMinBootstrap, 100000, "--bootstrap"));
  opt.seed = static_cast<uint64_t>(parse_int_in_range(o.seed_text, 0, INT64_MAX, "--seed"));
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
      "  attnsparse theory fit model.gguf --data docs/ --max-tokens 2048 --docs 4 --out fit\n"
      "--bootstrap takes at least 20 resamples: fewer give no percentile interval worth printing\n"
      "(0 used to print C [C, C]). Every number is checked against the range shown with its option.");
  auto o = std::make_shared<FitCliOptions>();
  add_model_options(sub, o->model_path);
  sub->add_option("--data", o->data, "documents: .txt, .tok, LongBench/RULER .jsonl/.json files or directories")
      ->required();
  sub->add_option("--max-tokens", o->max_tokens_text,
                  "tokens per document, 8 to 2^24 (longer ones keep their first N tokens)")
      ->type_name("INT")->capture_default_str();
  sub->add_option("--min-n", o->min_n_text, "smallest prefix length binned (2 to --max-tokens / 4)")
      ->type_name("INT")->capture_default_str();
  sub->add_option("--docs", o->docs_text, "use at most this many documents (0 = all; at most 1000000)")
      ->type_name("INT")->capture_default_str();
  sub->add_option("--eps", o->eps_text, "mass levels eps, comma-separated")->capture_default_str();
  sub->add_option("--rows-per-bin", o->rows_per_bin_text,
                  "query rows sampled per length bin, layer and head (0 = every row; at most 2^24)")
      ->type_name("INT")->capture_default_str();
  sub->add_option("--bootstrap", o->bootstrap_text,
                  fmt::format("bootstrap resamples (documents) for the percentile interval of C ({} to 100000)",
                              kMinBootstrap))
      ->type_name("INT")->capture_default_str();
  sub->add_option("--seed", o->seed_text, "random seed (row sampling, bootstrap; 0 to 2^63-1)")
      ->type_name("INT")->capture_default_str();
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
