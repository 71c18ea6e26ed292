// attnsparse generate MODEL --prompt T [-n N] [--temp X] [--top-p P] [--seed S]: the prompt
// and its continuation on stdout, streamed as tokens are chosen.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/verb.h"
#include "core/error.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

struct GenerateOptions {
  std::string model_path, prompt, prompt_file;
  int64_t n_new = 64;
  SamplingParams params;
  int threads = 0;
  CLI::Option* prompt_opt = nullptr;
  CLI::Option* prompt_file_opt = nullptr;
};

void print_now(const std::string& bytes) {
  if (bytes.empty()) return;
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  std::fflush(stdout);
}

void run_generate(const GenerateOptions& o) {
  apply_threads(o.threads);
  const bool from_file = o.prompt_file_opt->count() > 0;
  if (o.prompt_opt->count() == 0 && !from_file) fail_usage("give --prompt or --prompt-file");
  if (o.n_new < 0) fail_usage("-n must not be negative, got {}", o.n_new);
  // (NaN fails both checks; a negative or infinite temperature is not a distribution.)
  if (!(o.params.temperature >= 0.f && std::isfinite(o.params.temperature)))
    fail_usage("--temp must be a finite number >= 0 (0 = greedy), got {}", o.params.temperature);
  if (!(o.params.top_p > 0.f && o.params.top_p <= 1.f))
    fail_usage("--top-p must be in (0, 1], got {}", o.params.top_p);
  const std::string text = from_file ? read_text_file(o.prompt_file) : o.prompt;
  auto model = load_model(o.model_path);
  const Tokenizer& tok = model->tokenizer();
  const std::vector<int32_t> prompt_ids = tok.encode(text, true);
  const int64_t n_ctx = model->config().n_ctx;
  const int64_t n = generation_budget(model->config(), static_cast<int64_t>(prompt_ids.size()), o.n_new);
  if (n < o.n_new)
    fmt::print(stderr, "generate: -n {} reduced to {} to stay within the context of {}\n", o.n_new, n, n_ctx);
  // The prompt as given, then the continuation as its UTF-8 characters complete.
  print_now(text);
  ContinuationText continuation(tok, prompt_ids);
  const GenerateResult res =
      generate(*model, prompt_ids, n, o.params, [&](int32_t id) { print_now(continuation.push(id)); });
  print_now(continuation.finish() + "\n");
  const double n_dec = static_cast<double>(res.tokens.size());
  fmt::print(stderr,
             "generate: {} prompt tokens in {:.2f} s ({:.1f} tok/s), {} new tokens in {:.2f} s "
             "({:.1f} tok/s){}\n",
             prompt_ids.size(), res.prefill_seconds,
             res.prefill_seconds > 0 ? prompt_ids.size() / res.prefill_seconds : 0.0, res.tokens.size(),
             res.decode_seconds, res.decode_seconds > 0 ? n_dec / res.decode_seconds : 0.0,
             res.stopped_at_eos ? ", stopped at end-of-sequence" : "");
}

void register_generate(CLI::App& app) {
  auto* sub = app.add_subcommand("generate", "Continue a prompt (greedy, or temperature / top-p sampling)");
  sub->footer(
      "Prints the prompt and its continuation on stdout; timing goes to stderr.\n"
      "--temp 0 is greedy decoding; otherwise tokens are sampled from the softmax at that\n"
      "temperature restricted to the top-p nucleus, reproducibly for a given --seed.\n"
      "Generation stops after -n tokens or at the end-of-sequence token.\n"
      "Example: attnsparse generate model.gguf --prompt 'In the beginning' -n 32 --temp 0");
  auto o = std::make_shared<GenerateOptions>();
  add_model_options(sub, o->model_path);
  o->prompt_opt = sub->add_option("--prompt", o->prompt, "the prompt text");
  o->prompt_file_opt = sub->add_option("--prompt-file", o->prompt_file, "read the prompt from a file");
  o->prompt_opt->excludes(o->prompt_file_opt);
  sub->add_option("-n,--n-predict", o->n_new, "tokens to generate (default 64)");
  sub->add_option("--temp", o->params.temperature, "temperature; 0 = greedy (default 0.8)");
  sub->add_option("--top-p", o->params.top_p, "nucleus mass in (0, 1] (default 0.95)");
  sub->add_option("--seed", o->params.seed, "sampling seed (default 1)");
  add_threads_option(sub, &o->threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([o] { run_generate(*o); });
}
ATTNSPARSE_VERB(register_generate);

}  // namespace
}  // namespace attnsparse::cli
