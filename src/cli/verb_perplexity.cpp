// attnsparse perplexity MODEL --text-file F [--ctx N] [--stride S] [--json]: sliding-window
// perplexity of a text file.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/verb.h"
#include "core/error.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

struct PerplexityOptions {
  std::string model_path, text_file;
  int64_t ctx = 0, stride = 0;
  bool json_out = false;
  int threads = 0;
  CLI::Option* ctx_opt = nullptr;
  CLI::Option* stride_opt = nullptr;
};

void run_perplexity(const PerplexityOptions& o) {
  apply_threads(o.threads);
  const bool ctx_given = o.ctx_opt->count() > 0, stride_given = o.stride_opt->count() > 0;
  if (ctx_given && o.ctx < 2) fail_usage("--ctx must be at least 2, got {}", o.ctx);
  if (stride_given && o.stride < 1) fail_usage("--stride must be positive, got {}", o.stride);
  const std::string text = read_text_file(o.text_file);
  auto model = load_model(o.model_path);
  const int64_t ctx = ctx_given ? o.ctx : default_perplexity_ctx(model->config());
  if (ctx > model->config().n_ctx) fail_usage("--ctx {} exceeds the model's context of {}", ctx, model->config().n_ctx);
  const int64_t step = stride_given ? o.stride : default_perplexity_stride(ctx);
  if (step > ctx) fail_usage("--stride must be in 1..{} (--ctx), got {}", ctx, step);
  const std::vector<int32_t> tokens = model->tokenizer().encode(text, true);
  if (tokens.size() < 2) fail_file(o.text_file, "has {} token(s); perplexity needs at least 2", tokens.size());
  const auto t0 = std::chrono::steady_clock::now();
  // Progress: one self-overwriting line on a terminal; otherwise a line every 10 s and
  // the last one, so logs stay short.
  ProgressGate gate(0, 10, false);
  const PerplexityResult r = perplexity(*model, tokens, ctx, step, [&](int64_t done, int64_t total) {
    if (!gate.due(done == total)) return;
    const double s = gate.seconds();
    const double eta = done > 0 ? s / done * (total - done) : 0;
    if (gate.tty())
      fmt::print(stderr, "\rperplexity: window {}/{} ({:.1f} s, ETA {:.0f} s)   {}", done, total, s, eta,
                 done == total ? "\n" : "");
    else
      fmt::print(stderr, "perplexity: window {}/{} ({:.1f} s, ETA {:.0f} s)\n", done, total, s, eta);
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ppl = std::exp(r.nll_per_token());
  const double bpb = bits_per_byte(r, static_cast<int64_t>(text.size()));
  if (o.json_out) {
    nlohmann::json j;
    j["model"] = o.model_path;
    j["text_file"] = o.text_file;
    j["perplexity"] = ppl;
    j["nll_per_token"] = r.nll_per_token();
    j["tokens"] = r.tokens;
    j["scored"] = r.scored;
    j["bytes"] = text.size();
    j["bits_per_byte"] = bpb;
    j["ctx"] = ctx;
    j["stride"] = step;
    j["windows"] = r.windows;
    j["seconds"] = secs;
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("{:<16} {}\n", "file", o.text_file);
  fmt::print("{:<16} {} bytes, {} tokens ({} scored)\n", "text", text.size(), r.tokens, r.scored);
  fmt::print("{:<16} ctx {}, stride {}, {} windows\n", "windows", ctx, step, r.windows);
  fmt::print("{:<16} {:.4f}\n", "perplexity", ppl);
  fmt::print("{:<16} {:.5f} nats\n", "nll / token", r.nll_per_token());
  fmt::print("{:<16} {:.4f}\n", "bits / byte", bpb);
  fmt::print("{:<16} {:.2f} s ({:.1f} scored tok/s)\n", "time", secs, r.scored / secs);
}

void register_perplexity(CLI::App& app) {
  auto* sub = app.add_subcommand("perplexity", "Perplexity of a text file (sliding windows of --ctx tokens)");
  sub->footer(
      "The file is tokenized as a whole (with BOS where the model adds one). Window w covers\n"
      "tokens [w*stride, w*stride + ctx) and is evaluated from an empty cache; it scores the\n"
      "tokens no earlier window scored (each from all tokens before it in the window). With\n"
      "stride < ctx every token but the first is scored once, with at least ctx - stride\n"
      "tokens of context; with stride == ctx each window's first token goes unscored.\n"
      "--json prints one object: perplexity, nll_per_token (nats), tokens (of the file),\n"
      "scored, bytes (file size), bits_per_byte, ctx, stride, windows, seconds.\n"
      "Example: attnsparse perplexity model.gguf --text-file wiki.txt --ctx 512 --stride 256 --json");
  auto o = std::make_shared<PerplexityOptions>();
  add_model_options(sub, o->model_path);
  sub->add_option("--text-file", o->text_file, "the text")->required();
  o->ctx_opt = sub->add_option("--ctx", o->ctx, "window length in tokens (default min(512, the model's context))");
  o->stride_opt = sub->add_option("--stride", o->stride, "window step in tokens (default ctx / 2)");
  sub->add_flag("--json", o->json_out, "print one JSON object");
  add_threads_option(sub, &o->threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([o] { run_perplexity(*o); });
}
ATTNSPARSE_VERB(register_perplexity);

}  // namespace
}  // namespace attnsparse::cli
