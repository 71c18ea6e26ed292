// Every verb of the command line lives in its own src/cli/verb_<name>.cpp and registers
// itself with ATTNSPARSE_VERB(register_fn), where register_fn adds a CLI11 subcommand
// (with its options, a help text containing an example, and a callback) to the app.
// Callbacks report bad input by throwing attnsparse::Error (core/error.h); main prints
// "attnsparse <verb>: error: <message>" on one line and exits with status 1.
#pragma once
#include <CLI/CLI.hpp>

namespace attnsparse::cli {

using VerbRegistrar = void (*)(CLI::App& app);
bool register_verb(const char* name, VerbRegistrar registrar);

// Validators with readable messages (CLI11's PositiveNumber prints the whole double range).
CLI::Validator positive_integer();      // "must be a positive integer"
CLI::Validator non_negative_integer();  // "must be 0 or a positive integer"

// --threads T for verbs that compute; 0 = all cores. Applies omp_set_num_threads.
void add_threads_option(CLI::App* sub, int* threads);
void apply_threads(int threads);

}  // namespace attnsparse::cli

#define ATTNSPARSE_VERB(fn) \
  static const bool fn##_registered_ = ::attnsparse::cli::register_verb(#fn, fn)
