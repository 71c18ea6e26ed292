// attnsparse tokenize MODEL (--text T | --text-file F) [--no-special]: token ids on one line.
#include <fmt/format.h>

#include <memory>

#include "cli/verb.h"
#include "core/error.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

struct TokenizeOptions {
  std::string model_path, text, text_file;
  bool no_special = false;
  CLI::Option* text_opt = nullptr;
  CLI::Option* text_file_opt = nullptr;
};

void run_tokenize(const TokenizeOptions& o) {
  if (o.text_opt->count() == 0 && o.text_file_opt->count() == 0) fail_usage("give --text or --text-file");
  const std::string input = o.text_file_opt->count() > 0 ? read_text_file(o.text_file) : o.text;
  const auto tokenizer = load_tokenizer(o.model_path);
  const std::vector<int32_t> ids = tokenizer->encode(input, !o.no_special);
  fmt::print("{}\n", fmt::join(ids, " "));
}

void register_tokenize(CLI::App& app) {
  auto* sub = app.add_subcommand("tokenize", "Print the token ids of a text, space separated, on one line");
  sub->footer(
      "BOS (and EOS) are added as the model's tokenizer settings say, unless --no-special.\n"
      "Example: attnsparse tokenize model.gguf --text 'Hello world'\n"
      "         attnsparse tokenize model.gguf --text-file prompt.txt --no-special > ids.txt");
  auto o = std::make_shared<TokenizeOptions>();
  add_model_options(sub, o->model_path,
                    ".gguf file (model or vocabulary only), Hugging Face directory, llama2.c checkpoint or tokenizer .bin");
  o->text_opt = sub->add_option("--text", o->text, "the text");
  o->text_file_opt = sub->add_option("--text-file", o->text_file, "file holding the text (bytes as they are)");
  o->text_opt->excludes(o->text_file_opt);
  sub->add_flag("--no-special", o->no_special, "add no BOS/EOS");
  sub->callback([o] { run_tokenize(*o); });
}
ATTNSPARSE_VERB(register_tokenize);

}  // namespace
}  // namespace attnsparse::cli
