// attnsparse tokenize MODEL (--text T | --text-file F) [--no-special]: token ids on one line.
#include <fmt/format.h>

#include "cli/verb.h"
#include "core/error.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

void register_tokenize(CLI::App& app) {
  auto* sub = app.add_subcommand("tokenize", "Print the token ids of a text, space separated, on one line");
  sub->footer(
      "BOS (and EOS) are added as the model's tokenizer settings say, unless --no-special.\n"
      "Example: attnsparse tokenize model.gguf --text 'Hello world'\n"
      "         attnsparse tokenize model.gguf --text-file prompt.txt --no-special > ids.txt");
  static std::string model_path, text, text_file;
  static bool no_special = false;
  add_model_options(sub, model_path, ".gguf file (model or vocabulary only), Hugging Face directory, llama2.c checkpoint or tokenizer .bin");
  auto* t = sub->add_option("--text", text, "the text");
  auto* f = sub->add_option("--text-file", text_file, "file holding the text (bytes as they are)");
  t->excludes(f);
  sub->add_flag("--no-special", no_special, "add no BOS/EOS");
  sub->callback([t, f] {
    if (t->count() == 0 && f->count() == 0) fail_usage("give --text or --text-file");
    const std::string input = f->count() > 0 ? read_text_file(text_file) : text;
    const auto tokenizer = load_tokenizer(model_path);
    const std::vector<int32_t> ids = tokenizer->encode(input, !no_special);
    fmt::print("{}\n", fmt::join(ids, " "));
  });
}
ATTNSPARSE_VERB(register_tokenize);

}  // namespace
}  // namespace attnsparse::cli
