// MODEL and --tokenizer for every verb that loads a model (see verb.h).
#include "cli/verb.h"

#include <fmt/format.h>

#include "core/error.h"
#include "model/model.h"

namespace attnsparse::cli {
namespace {
// One verb runs per process, so every verb's --tokenizer writes the same value.
std::string& tokenizer_option() {
  static std::string path;
  return path;
}
}  // namespace

CLI::Option* add_model_options(CLI::App* sub, std::string& model_path, const std::string& help) {
  CLI::Option* m = sub->add_option(
      "MODEL", model_path,
      help.empty() ? ".gguf file, Hugging Face model directory or llama2.c checkpoint (.bin)" : help);
  m->required();
  sub->add_option("--tokenizer", tokenizer_option(),
                  "tokenizer instead of the model's own: .gguf file, Hugging Face directory or "
                  "llama2.c tokenizer.bin (a llama2.c MODEL finds tok<N>.bin or tokenizer.bin "
                  "beside it)");
  return m;
}

ModelLoadOptions model_load_options() {
  ModelLoadOptions o;
  o.tokenizer = tokenizer_option();
  return o;
}

std::unique_ptr<Model> load_model(const std::string& path) {
  auto model = Model::load(path, model_load_options());
  // The model loads its tokenizer when a verb first needs it; one named by --tokenizer is
  // loaded now, so that a missing or broken file is an error in every verb, not ignored
  // by the verbs that read token ids.
  if (!tokenizer_option().empty()) model->tokenizer();
  return model;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_path) {
  const std::string& t = tokenizer_option();
  return Tokenizer::load(t.empty() ? model_path : t);
}

void check_context_length(const char* verb, int64_t n, int64_t n_ctx, bool beyond_context,
                          const std::string& tokens_path) {
  if (n <= n_ctx) return;
  if (!beyond_context)
    fail_file(tokens_path, "{} tokens exceed the model's context length of {}; use at most {} tokens, "
              "or pass --beyond-context to evaluate them anyway", n, n_ctx, n_ctx);
  fmt::print(stderr, "attnsparse {}: warning: {} tokens exceed the model's context length of {}\n", verb, n, n_ctx);
}

}  // namespace attnsparse::cli
