// attnsparse attention MODEL --tokens F --out O: every post-softmax attention probability.
#include <fmt/format.h>

#include <memory>

#include "cli/verb.h"
#include "core/error.h"
#include "core/files.h"
#include "model/dense_attention.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

struct AttentionOptions {
  std::string model_path, tokens_path, out_path;
  int threads = 0;
  bool beyond_context = false;
};

void run_attention(const AttentionOptions& o) {
  apply_threads(o.threads);
  refuse_output_over_inputs(o.out_path, {o.tokens_path, o.model_path}, "--out");
  const std::vector<int32_t> tokens = read_token_file(o.tokens_path);
  auto model = load_model(o.model_path);
  const auto& c = model->config();
  check_token_ids(tokens, c.n_vocab, o.tokens_path);
  const int64_t n = static_cast<int64_t>(tokens.size());
  check_context_length("attention", n, c.n_ctx, o.beyond_context, o.tokens_path);
  const double bytes = dense_attention_bytes(c.n_layer, c.n_head, n);
  if (bytes > 8e9) fail_usage("{} tokens would need {:.1f} GB of attention output; use fewer tokens", n, bytes / 1e9);
  std::vector<float> out(static_cast<size_t>(c.n_layer * c.n_head * n * n), 0.f);
  dense_attention(*model, tokens, {}, {}, out.data());
  write_file_atomic(o.out_path, out.data(), out.size() * sizeof(float));
  fmt::print("{} tokens, {} layers x {} heads x {} x {} probabilities -> {}\n", n, c.n_layer, c.n_head, n, n,
             o.out_path);
}

void register_attention(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "attention", "Write the post-softmax attention probabilities of every layer and head");
  sub->footer(
      "Writes little-endian f32 [n_layer x n_head x n x n], zeros above the diagonal.\n"
      "Example: attnsparse attention model.gguf --tokens ids.txt --out attn.f32");
  auto o = std::make_shared<AttentionOptions>();
  add_model_options(sub, o->model_path);
  sub->add_option("--tokens", o->tokens_path, "file of whitespace-separated token ids")->required();
  sub->add_option("--out", o->out_path, "output file (f32)")->required();
  sub->add_flag("--beyond-context", o->beyond_context,
                "evaluate more tokens than the model's context length (refused otherwise)");
  add_threads_option(sub, &o->threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([o] { run_attention(*o); });
}
ATTNSPARSE_VERB(register_attention);

}  // namespace
}  // namespace attnsparse::cli
