// Every verb of the command line lives in its own src/cli/verb_<name>.cpp and registers
// itself with ATTNSPARSE_VERB(register_fn), where register_fn adds a CLI11 subcommand
// (with its options, a help text containing an example, and a callback) to the app.
// Callbacks report bad input by throwing attnsparse::Error (core/error.h); main prints
// "attnsparse <verb>: error: <message>" on one line and exits with status 1.
#pragma once
#include <CLI/CLI.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace attnsparse {
class Model;
class Tokenizer;
struct ModelLoadOptions;
}  // namespace attnsparse

namespace attnsparse::cli {

using VerbRegistrar = void (*)(CLI::App& app);
bool register_verb(const char* name, VerbRegistrar registrar);

// Validators with readable messages (CLI11's PositiveNumber prints the whole double range).
CLI::Validator positive_integer();      // "must be a positive integer"
CLI::Validator non_negative_integer();  // "must be 0 or a positive integer"

// When a long verb writes a progress line to stderr: on a terminal at most every
// `tty_interval` seconds (0: every step), in logs at most every `log_interval` seconds;
// the last step always; the first step at once when `print_first`.
class ProgressGate {
 public:
  ProgressGate(double tty_interval, double log_interval, bool print_first);
  bool tty() const { return tty_; }
  bool due(bool last);  // true: print now (and restart the interval)
  double seconds() const;  // since the gate was made

 private:
  bool tty_;
  double interval_;
  std::chrono::steady_clock::time_point start_, last_;
};

// --threads T for verbs that compute; 0 = all cores. Applies omp_set_num_threads.
void add_threads_option(CLI::App* sub, int* threads);
void apply_threads(int threads);
// --ubatch N for verbs that run a model: the micro-batch size of every forward call
// (set_default_ubatch, applied when the option is parsed).
void add_ubatch_option(CLI::App* sub);
// --kv-type f32|f16|bf16|q8_0 for verbs that run a model: the KV cache's storage type
// (set_default_kv_type, applied when the option is parsed; default f32).
void add_kv_type_option(CLI::App* sub);

// The positional MODEL (required; `help` "" = the standard text) and --tokenizer FILE
// (src/cli/model_args.cpp), for every verb that loads a model. load_model and
// load_tokenizer apply --tokenizer; model_load_options is it for code that calls
// Model::load itself.
CLI::Option* add_model_options(CLI::App* sub, std::string& model_path, const std::string& help = "");
ModelLoadOptions model_load_options();
std::unique_ptr<Model> load_model(const std::string& path);
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_path);  // tokenize

// Past the training context the results are extrapolation and a full causal pass grows
// with the square of the token count: n tokens beyond n_ctx are refused (FormatError
// naming tokens_path) unless --beyond-context was given, then warned about on stderr.
void check_context_length(const char* verb, int64_t n, int64_t n_ctx, bool beyond_context,
                          const std::string& tokens_path);

}  // namespace attnsparse::cli

#define ATTNSPARSE_VERB(fn) \
  static const bool fn##_registered_ = ::attnsparse::cli::register_verb(#fn, fn)
