// attnsparse logits MODEL --tokens F --out O [--rows 0,16,31]: raw logits of one causal batch.
#include <fmt/format.h>

#include "cli/verb.h"
#include "core/error.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

void register_logits(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "logits", "Evaluate token ids as one causal batch from position 0 and write the logits");
  sub->footer(
      "Writes little-endian f32, row-major [rows x n_vocab] (all rows when --rows is absent).\n"
      "Example: attnsparse logits model.gguf --tokens ids.txt --out logits.f32 --rows 0,16,31");
  static std::string model_path, tokens_path, out_path, rows_text;
  static int threads = 0;
  add_model_options(sub, model_path);
  sub->add_option("--tokens", tokens_path, "file of whitespace-separated token ids")->required();
  sub->add_option("--out", out_path, "output file (f32)")->required();
  sub->add_option("--rows", rows_text, "comma-separated token indices whose logits to write");
  add_threads_option(sub, &threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([] {
    apply_threads(threads);
    const std::vector<int32_t> tokens = read_token_file(tokens_path);
    ForwardOptions opts;
    if (!rows_text.empty()) opts.logit_rows = parse_index_list(rows_text, "--rows");
    for (int64_t r : opts.logit_rows)
      if (r >= static_cast<int64_t>(tokens.size()))
        fail_usage("--rows: row {} is out of range ({} tokens)", r, tokens.size());
    auto model = load_model(model_path);
    const auto& c = model->config();
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] >= c.n_vocab)
        fail_file(tokens_path, "token id {} at index {} is out of range (vocabulary size {})",
                  tokens[i], i, c.n_vocab);
    KVCache cache = model->make_cache(static_cast<int64_t>(tokens.size()));
    std::vector<float> logits;
    model->forward(tokens, cache, opts, logits);
    write_file_atomic(out_path, logits.data(), logits.size() * sizeof(float));
    const int64_t rows = static_cast<int64_t>(logits.size()) / c.n_vocab;
    fmt::print("{} tokens, {} rows x {} logits -> {}\n", tokens.size(), rows, c.n_vocab, out_path);
  });
}
ATTNSPARSE_VERB(register_logits);

}  // namespace
}  // namespace attnsparse::cli
