// attnsparse logits MODEL --tokens F --out O [--rows 0,16,31]: raw logits of one causal batch.
#include <fmt/format.h>

#include <memory>

#include "cli/verb.h"
#include "core/error.h"
#include "core/files.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

struct LogitsOptions {
  std::string model_path, tokens_path, out_path, rows_text;
  int threads = 0;
  bool beyond_context = false;
};

void run_logits(const LogitsOptions& o) {
  apply_threads(o.threads);
  refuse_output_over_inputs(o.out_path, {o.tokens_path, o.model_path}, "--out");
  const std::vector<int32_t> tokens = read_token_file(o.tokens_path);
  std::vector<int64_t> rows;
  if (!o.rows_text.empty()) rows = parse_index_list(o.rows_text, "--rows");
  for (int64_t r : rows)
    if (r >= static_cast<int64_t>(tokens.size()))
      fail_usage("--rows: row {} is out of range ({} tokens)", r, tokens.size());
  auto model = load_model(o.model_path);
  const auto& c = model->config();
  check_token_ids(tokens, c.n_vocab, o.tokens_path);
  check_context_length("logits", static_cast<int64_t>(tokens.size()), c.n_ctx, o.beyond_context, o.tokens_path);
  const std::vector<float> logits = causal_logits(*model, tokens, rows);
  write_file_atomic(o.out_path, logits.data(), logits.size() * sizeof(float));
  const int64_t n_rows = static_cast<int64_t>(logits.size()) / c.n_vocab;
  fmt::print("{} tokens, {} rows x {} logits -> {}\n", tokens.size(), n_rows, c.n_vocab, o.out_path);
}

void register_logits(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "logits", "Evaluate token ids as one causal batch from position 0 and write the logits");
  sub->footer(
      "Writes little-endian f32, row-major [rows x n_vocab] (all rows when --rows is absent).\n"
      "Example: attnsparse logits model.gguf --tokens ids.txt --out logits.f32 --rows 0,16,31");
  auto o = std::make_shared<LogitsOptions>();
  add_model_options(sub, o->model_path);
  sub->add_option("--tokens", o->tokens_path, "file of whitespace-separated token ids")->required();
  sub->add_option("--out", o->out_path, "output file (f32)")->required();
  sub->add_option("--rows", o->rows_text, "comma-separated token indices whose logits to write");
  sub->add_flag("--beyond-context", o->beyond_context,
                "evaluate more tokens than the model's context length (extrapolation; the cost "
                "grows with the square of the token count)");
  add_threads_option(sub, &o->threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([o] { run_logits(*o); });
}
ATTNSPARSE_VERB(register_logits);

}  // namespace
}  // namespace attnsparse::cli
