// attnsparse <verb> ...: the command-line entry point.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cli/verb.h"
#include "core/checked.h"
#include "model/model.h"
#include "core/error.h"
#include "core/text.h"

namespace attnsparse::cli {

namespace {
std::vector<std::pair<std::string, VerbRegistrar>>& registry() {
  static std::vector<std::pair<std::string, VerbRegistrar>> verbs;
  return verbs;
}
}  // namespace

bool register_verb(const char* name, VerbRegistrar registrar) {
  registry().emplace_back(name, registrar);
  return true;
}

namespace {
CLI::Validator integer_at_least(long long lo, const char* what) {
  return CLI::Validator(
      [lo, what](std::string& s) -> std::string {
        const auto v = attnsparse::parse_int64(s);
        if (!v || *v < lo) return fmt::format("must be {}, got '{}'", what, attnsparse::printable(s, 40));
        return {};
      },
      lo > 0 ? "POSITIVE" : "NONNEGATIVE");
}
}  // namespace

CLI::Validator positive_integer() { return integer_at_least(1, "a positive integer"); }
CLI::Validator non_negative_integer() { return integer_at_least(0, "0 or a positive integer"); }

ProgressGate::ProgressGate(double tty_interval, double log_interval, bool print_first)
    : tty_(isatty(fileno(stderr))),
      interval_(tty_ ? tty_interval : log_interval),
      start_(std::chrono::steady_clock::now()),
      last_(print_first ? std::chrono::steady_clock::time_point{} : start_) {}

bool ProgressGate::due(bool last) {
  const auto now = std::chrono::steady_clock::now();
  if (!last && std::chrono::duration<double>(now - last_).count() < interval_) return false;
  last_ = now;
  return true;
}

double ProgressGate::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

int max_threads() {
  // More OpenMP threads than this only cost memory (each has its own stack; 100,000 of them
  // overflowed it) and time; 4x the hardware threads leaves room for oversubscription tests.
  return std::min(4 * std::max(omp_get_num_procs(), 1), 1024);
}

void add_threads_option(CLI::App* sub, int* threads) {
  sub->add_option("--threads,-t", *threads,
                  fmt::format("CPU threads (0 = all cores; at most {}, 4 x the hardware threads)", max_threads()))
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            const auto v = attnsparse::parse_int64(s);
            if (!v || *v < 0 || *v > max_threads())
              return fmt::format("must be an integer from 0 to {} (4 x the {} hardware threads), got '{}'",
                                 max_threads(), omp_get_num_procs(), attnsparse::printable(s, 40));
            return {};
          },
          "0.." + std::to_string(max_threads())));
}

void apply_threads(int threads) {
  if (threads > 0) omp_set_num_threads(std::min(threads, max_threads()));
  // OMP_NUM_THREADS from the environment gets the same bound.
  else if (omp_get_max_threads() > max_threads()) omp_set_num_threads(max_threads());
}

void add_kv_type_option(CLI::App* sub) {
  sub->add_option_function<std::string>(
      "--kv-type",
      [](const std::string& name) {
        const auto t = dtype_from_name(name);
        if (!t) fail_usage("--kv-type {}: expected f32, f16, bf16 or q8_0", name);
        set_default_kv_type(*t);
      },
      "KV cache storage: f32 (default, exact), f16, bf16 (half the memory) or q8_0 (~0.27); "
      "attention reads what is stored");
}

void add_ubatch_option(CLI::App* sub) {
  sub->add_option_function<int64_t>(
         "--ubatch", [](const int64_t& n) { set_default_ubatch(n); },
         "micro-batch: tokens per pass through the layers (default 512; 0 = the whole sequence "
         "at once). Results do not depend on it; memory for activations grows with it")
      ->check(non_negative_integer());
}

}  // namespace attnsparse::cli

namespace {
bool is_verb(CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == name) return true;
  return false;
}

#ifndef ATTNSPARSE_TRAIN_BINARY
// `attnsparse train ...` runs the sibling executable attnsparse-train (the only one linked
// with libtorch) with the same arguments. Without it, the train verb below reports that
// this build has no trainer.
void exec_trainer_if_present(char** argv) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return;
  std::filesystem::path trainer = self.parent_path() / "attnsparse-train";
  if (::access(trainer.c_str(), X_OK) != 0) return;
  // libtorch's many short parallel regions with spinning OpenMP workers made 2-thread
  // training slower than 1 thread on the 2-core VM (0.66x); sleeping workers give 1.12x
  // (scripts/bench_train.sh, bench/RESULTS.md). libgomp reads this once at start-up, which
  // is why it is set here, before the trainer starts; a value the user set is kept.
  ::setenv("OMP_WAIT_POLICY", "passive", 0);
  ::execv(trainer.c_str(), argv);
  std::fprintf(stderr, "attnsparse train: error: cannot run %s: %s\n", trainer.c_str(),
               std::strerror(errno));
  std::exit(1);
}

// libgomp's default makes an idle worker spin for ~300,000 iterations before it sleeps. A
// decoded token crosses ~150 parallel regions; on cores shared with other work a spinning
// thread burns the time slice its descheduled partner needs (decode 4.6 tok/s instead of
// 8.8 with two competing processes on the 2-core VM), while sleeping at once
// (OMP_WAIT_POLICY=passive) costs 10-25% on an idle machine. A spin count of 10,000 is as
// fast as the default when idle and as passive under load (bench/results/runtime.md).
// libgomp reads its environment before main(), so the setting takes one re-execution of
// this program, done only when the user set neither variable.
void reexec_with_omp_spincount(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || std::getenv("ATTNSPARSE_REEXEC")) return;
  ::setenv("GOMP_SPINCOUNT", "10000", 1);
  ::setenv("ATTNSPARSE_REEXEC", "1", 1);
  ::execv("/proc/self/exe", argv);
  // Not possible here (no /proc): go on with libgomp's default.
}
#endif
}  // namespace

int main(int argc, char** argv) {
#ifndef ATTNSPARSE_TRAIN_BINARY
  if (argc > 1 && std::strcmp(argv[1], "train") == 0) exec_trainer_if_present(argv);
  reexec_with_omp_spincount(argv);
#endif
  CLI::App app{
      "attnsparse — measure, explain, train for and exploit sparsity in LLM self-attention.\n"
      "MODEL is a .gguf file, a Hugging Face model directory or a llama2.c checkpoint (.bin).\n"
      "Run 'attnsparse <verb> --help' for a verb's options and an example."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "attnsparse 0.1.0");
  app.add_flag_callback("--no-sliding-window", [] { ::setenv("ATTNSPARSE_SLIDING_WINDOW", "off", 1); },
                        "before the verb: run every layer with global attention, ignoring the "
                        "model's sliding window (as llama.cpp runs Mistral and Phi-3); "
                        "same as ATTNSPARSE_SLIDING_WINDOW=off");
  auto& verbs = attnsparse::cli::registry();
  std::sort(verbs.begin(), verbs.end());
  for (auto& [name, registrar] : verbs) registrar(app);
  // Every option of every verb, nested ones (theory simulate / fit) included, in one walk:
  // - an empty value is refused: CLI11 read '' as 0 for numbers, and an empty --out DIR
  //   meant the current directory (--prompt '' stays possible);
  // - an integer option is parsed exactly: CLI11 clamped an integer beyond int64 to the
  //   largest value (--stride 9999999999999999999 became 2^63 - 1) and took hex and
  //   leading spaces; an unsigned one refuses a negative value (--seed -1 wrapped to
  //   2^64 - 1). With a check attached CLI11 names the type "INT:POSITIVE", "INT:INT in
  //   [1 - 256]". The nested verbs take their numbers as text and parse each against the
  //   option's own range (a better message), so this applies to the verbs' own options.
  const std::function<void(CLI::App*, bool)> check_values = [&](CLI::App* parent, bool verbs) {
    for (CLI::App* sub : parent->get_subcommands([](const CLI::App*) { return true; })) {
      for (CLI::Option* opt : sub->get_options()) {
        if (opt->get_type_size_max() == 0 || opt->get_name() == "--prompt") continue;  // flags
        const std::string t = opt->get_type_name();
        const bool is_unsigned = t == "UINT" || t.starts_with("UINT:");
        const bool is_integer = is_unsigned || (verbs && (t == "INT" || t.starts_with("INT:")));
        opt->check(CLI::Validator(
            [is_integer, is_unsigned](std::string& s) -> std::string {
              if (s.empty()) return "an empty value is not allowed";
              if (!is_integer) return {};
              const std::optional<int64_t> v = attnsparse::parse_int64(s);
              if (!v)
                return fmt::format("'{}' is not an integer in [{}, {}]", attnsparse::printable(s, 40), INT64_MIN,
                                   INT64_MAX);
              if (is_unsigned && *v < 0)
                return fmt::format("'{}' is negative; expected an integer >= 0", attnsparse::printable(s, 40));
              return {};
            },
            ""));
      }
      check_values(sub, false);
    }
  };
  check_values(&app, true);

  std::string verb = argc > 1 ? argv[1] : "";
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help / --version
  } catch (const CLI::ParseError& e) {
    // Bad arguments: one line, like every other error, with a pointer to the help.
    if (!verb.empty() && verb[0] != '-' && is_verb(app, verb))
      std::fprintf(stderr, "attnsparse %s: error: %s (see 'attnsparse %s --help')\n",
                   verb.c_str(), attnsparse::printable(e.what(), 2000).c_str(), verb.c_str());
    else if (!verb.empty() && verb[0] != '-')
      std::fprintf(stderr, "attnsparse: error: unknown verb '%s' (see 'attnsparse --help')\n",
                   attnsparse::printable(verb, 80).c_str());
    else
      std::fprintf(stderr, "attnsparse: error: %s (see 'attnsparse --help')\n",
                   attnsparse::printable(e.what(), 2000).c_str());
    return 2;
  } catch (const attnsparse::Error& e) {
    std::fprintf(stderr, "attnsparse %s: error: %s\n", verb.c_str(), attnsparse::printable(e.what(), 2000).c_str());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "attnsparse %s: error: out of memory\n", verb.c_str());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // "<path>: <reason>" as every other file error, instead of the library's
    // "filesystem error: status: File name too long [<the whole path>]".
    const std::string path = e.path1().empty() ? std::string() : attnsparse::printable(e.path1().string(), 200) + ": ";
    std::fprintf(stderr, "attnsparse %s: error: %s%s\n", verb.c_str(), path.c_str(), e.code().message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attnsparse %s: error: %s\n", verb.c_str(), attnsparse::printable(e.what(), 2000).c_str());
    return 1;
  }
  return 0;
}
