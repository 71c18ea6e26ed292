// attnsparse synth --preset NAME --out F.gguf: a GGUF with random weights and real shapes.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/verb.h"
#include "core/error.h"
#include "core/model_limits.h"
#include "model/gguf_encode.h"
#include "model/synth.h"
#include "ops/quant/formats.h"

namespace attnsparse::cli {
namespace {

struct SynthCliOptions {
  std::string preset, out_path, dtype_text = "f16", vocab_from;
  int64_t layers = 0;
  uint64_t seed = 1;
  int threads = 0;
  CLI::Option* layers_opt = nullptr;
};

void run_synth(const SynthCliOptions& o) {
  apply_threads(o.threads);
  SynthOptions opts;
  opts.preset = o.preset;
  const auto dt = dtype_from_name(o.dtype_text);
  if (!dt || !gguf_can_encode(*dt))
    fail_usage("--dtype: '{}' is not one of {}", o.dtype_text, ops::quant::writable_type_names());
  opts.dtype = *dt;
  // The loaders refuse more than kMaxLayers: synth never writes a file they cannot read.
  if (o.layers_opt->count() > 0 && (o.layers <= 0 || o.layers > kMaxLayers))
    fail_usage("--layers must be from 1 to {}, got {}", kMaxLayers, o.layers);
  opts.layers = o.layers;
  opts.vocab_from = o.vocab_from;
  opts.seed = o.seed;
  const auto t0 = std::chrono::steady_clock::now();
  // A live line on a terminal; otherwise (logs) a plain line at most every 2 seconds.
  const bool tty = isatty(fileno(stderr));
  auto last = t0;
  write_synthetic_model(opts, o.out_path, [&](size_t done, size_t total, const std::string& name) {
    const auto now = std::chrono::steady_clock::now();
    if (tty) {
      if (done < total)
        std::fprintf(stderr, "\rsynth: tensor %zu/%zu %-40s", done + 1, total, name.c_str());
      else
        std::fprintf(stderr, "\r%-70s\r", "");
    } else if (done < total && now - last > std::chrono::seconds(2)) {
      std::fprintf(stderr, "synth: tensor %zu/%zu %s\n", done + 1, total, name.c_str());
      last = now;
    }
    std::fflush(stderr);
  });
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(o.out_path, ec);
  fmt::print("{}: preset {} ({}), {:.2f} GB, written in {:.1f} s\n", o.out_path, o.preset,
             o.dtype_text, ec ? 0.0 : static_cast<double>(bytes) / 1e9, secs);
}

void register_synth(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "synth", "Write a GGUF model with random weights and the real dimensions of a known model");
  std::string presets;
  for (const auto& p : synth_presets())
    presets += fmt::format("  {:<15} {}\n", p.name, p.description);
  sub->footer(
      "Presets:\n" + presets +
      "Without --vocab-from the file carries a byte-level SentencePiece-style vocabulary\n"
      "(every byte is a token, padded to the preset's vocabulary size), so text verbs work.\n"
      "Norm weights and biases are f32; matrices and embeddings use --dtype.\n"
      "Example: attnsparse synth --preset tinyllama-1.1b --dtype f16 --out tinyllama-synth.gguf");
  auto o = std::make_shared<SynthCliOptions>();
  sub->add_option("--preset", o->preset, "model shape (see the list below)")->required();
  sub->add_option("--out", o->out_path, "output .gguf file")->required();
  sub->add_option("--dtype", o->dtype_text, "matrix type: " + ops::quant::writable_type_names() + " (default f16)");
  o->layers_opt = sub->add_option("--layers", o->layers, "number of layers (default: the preset's)");
  sub->add_option("--vocab-from", o->vocab_from, "copy the tokenizer of this GGUF file");
  sub->add_option("--seed", o->seed, "random seed (default 1)");
  add_threads_option(sub, &o->threads);
  sub->callback([o] { run_synth(*o); });
}
ATTNSPARSE_VERB(register_synth);

}  // namespace
}  // namespace attnsparse::cli
