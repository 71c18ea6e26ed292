// attnsparse generate MODEL --prompt T [-n N] [--temp X] [--top-p P] [--seed S]: the prompt
// and its continuation on stdout, streamed as tokens are chosen.
#include <fmt/format.h>

#include <cstdio>

#include "cli/verb.h"
#include "core/error.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

// Bytes at the end of s that start an incomplete UTF-8 sequence (held back until the
// next token completes it, so the terminal never sees half a character).
size_t incomplete_utf8_tail(const std::string& s) {
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

void register_generate(CLI::App& app) {
  auto* sub = app.add_subcommand("generate", "Continue a prompt (greedy, or temperature / top-p sampling)");
  sub->footer(
      "Prints the prompt and its continuation on stdout; timing goes to stderr.\n"
      "--temp 0 is greedy decoding; otherwise tokens are sampled from the softmax at that\n"
      "temperature restricted to the top-p nucleus, reproducibly for a given --seed.\n"
      "Generation stops after -n tokens or at the end-of-sequence token.\n"
      "Example: attnsparse generate model.gguf --prompt 'In the beginning' -n 32 --temp 0");
  static std::string model_path, prompt, prompt_file;
  static int64_t n_new = 64;
  static SamplingParams params;
  static int threads = 0;
  add_model_options(sub, model_path);
  auto* p = sub->add_option("--prompt", prompt, "the prompt text");
  auto* pf = sub->add_option("--prompt-file", prompt_file, "read the prompt from a file");
  p->excludes(pf);
  sub->add_option("-n,--n-predict", n_new, "tokens to generate (default 64)");
  sub->add_option("--temp", params.temperature, "temperature; 0 = greedy (default 0.8)");
  sub->add_option("--top-p", params.top_p, "nucleus mass in (0, 1] (default 0.95)");
  sub->add_option("--seed", params.seed, "sampling seed (default 1)");
  add_threads_option(sub, &threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([p, pf] {
    apply_threads(threads);
    if (p->count() == 0 && pf->count() == 0) fail_usage("give --prompt or --prompt-file");
    if (n_new < 0) fail_usage("-n must not be negative, got {}", n_new);
    if (!(params.top_p > 0.f && params.top_p <= 1.f))
      fail_usage("--top-p must be in (0, 1], got {}", params.top_p);
    const std::string text = pf->count() > 0 ? read_text_file(prompt_file) : prompt;
    auto model = load_model(model_path);
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> prompt_ids = tok.encode(text, true);
    if (prompt_ids.empty()) fail_usage("the prompt encodes to no tokens (give some text)");
    const int64_t n_ctx = model->config().n_ctx;
    if (static_cast<int64_t>(prompt_ids.size()) >= n_ctx)
      fail_usage("the prompt has {} tokens; the model's context is {}", prompt_ids.size(), n_ctx);
    int64_t n = n_new;
    if (static_cast<int64_t>(prompt_ids.size()) + n > n_ctx) {
      n = n_ctx - static_cast<int64_t>(prompt_ids.size());
      fmt::print(stderr, "generate: -n {} reduced to {} to stay within the context of {}\n",
                 n_new, n, n_ctx);
    }
    // The continuation is decoded with the prompt in front, so that a token's leading
    // space is kept (decode drops the space SentencePiece puts before the first token).
    std::vector<int32_t> all = prompt_ids;
    const std::string prompt_decoded = tok.decode(all);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    size_t printed = prompt_decoded.size();
    std::string decoded = prompt_decoded;
    const GenerateResult res = generate(*model, prompt_ids, n, params, [&](int32_t id) {
      all.push_back(id);
      decoded = tok.decode(all);
      const size_t ready = decoded.size() - incomplete_utf8_tail(decoded);
      if (ready > printed) {
        std::fwrite(decoded.data() + printed, 1, ready - printed, stdout);
        std::fflush(stdout);
        printed = ready;
      }
    });
    if (decoded.size() > printed) std::fwrite(decoded.data() + printed, 1, decoded.size() - printed, stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    const double n_dec = static_cast<double>(res.tokens.size());
    fmt::print(stderr,
               "generate: {} prompt tokens in {:.2f} s ({:.1f} tok/s), {} new tokens in {:.2f} s "
               "({:.1f} tok/s){}\n",
               prompt_ids.size(), res.prefill_seconds,
               res.prefill_seconds > 0 ? prompt_ids.size() / res.prefill_seconds : 0.0,
               res.tokens.size(), res.decode_seconds,
               res.decode_seconds > 0 ? n_dec / res.decode_seconds : 0.0,
               res.stopped_at_eos ? ", stopped at end-of-sequence" : "");
  });
}
ATTNSPARSE_VERB(register_generate);

}  // namespace
}  // namespace attnsparse::cli
