// attnsparse synth --preset NAME --out F.gguf: a GGUF with random weights and real shapes.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "cli/verb.h"
#include "core/error.h"
#include "model/synth.h"
#include "ops/quant/formats.h"

namespace attnsparse::cli {
namespace {

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
  static std::string preset, out_path, dtype_text = "f16", vocab_from;
  static int64_t layers = 0;
  static uint64_t seed = 1;
  static int threads = 0;
  sub->add_option("--preset", preset, "model shape (see the list below)")->required();
  sub->add_option("--out", out_path, "output .gguf file")->required();
  sub->add_option("--dtype", dtype_text,
                  "matrix type: " + ops::quant::writable_type_names() + " (default f16)");
  static CLI::Option* layers_opt =
      sub->add_option("--layers", layers, "number of layers (default: the preset's)");
  sub->add_option("--vocab-from", vocab_from, "copy the tokenizer of this GGUF file");
  sub->add_option("--seed", seed, "random seed (default 1)");
  add_threads_option(sub, &threads);
  sub->callback([] {
    apply_threads(threads);
    SynthOptions opts;
    opts.preset = preset;
    const auto dt = dtype_from_name(dtype_text);
    if (!dt || ops::quant::format(*dt).quantize == nullptr)
      fail_usage("--dtype: '{}' is not one of {}", dtype_text, ops::quant::writable_type_names());
    opts.dtype = *dt;
    if (layers_opt->count() > 0 && layers <= 0)
      fail_usage("--layers must be a positive number, got {}", layers);
    opts.layers = layers;
    opts.vocab_from = vocab_from;
    opts.seed = seed;
    const auto t0 = std::chrono::steady_clock::now();
    // A live line on a terminal; otherwise (logs) a plain line at most every 2 seconds.
    const bool tty = isatty(fileno(stderr));
    auto last = t0;
    write_synthetic_model(opts, out_path, [&](size_t done, size_t total, const std::string& name) {
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
    const auto bytes = std::filesystem::file_size(out_path, ec);
    fmt::print("{}: preset {} ({}), {:.2f} GB, written in {:.1f} s\n", out_path, preset,
               dtype_text, ec ? 0.0 : static_cast<double>(bytes) / 1e9, secs);
  });
}
ATTNSPARSE_VERB(register_synth);

}  // namespace
}  // namespace attnsparse::cli
