// Synthetic models: GGUF files with random weights and the real dimensions of known
// models, so benchmarks and pipelines run on realistic shapes without downloads.
// Weights come from a counter-based RNG (value = f(seed, tensor, index)), so a file is
// the same whatever the thread count, and generation streams through the GGUF writer.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace attnsparse {

struct SynthPreset {
  std::string name;
  std::string arch;  // a GGUF architecture of the table in model/arch.h
  std::string description;
  int64_t n_vocab, n_ctx, n_embd, n_layer, n_head, n_kv_head, n_ff;
  float rope_base;
  float norm_eps;
  bool tied_output;
  // Family extras (0 = none / the default).
  int64_t head_dim = 0;        // 0: n_embd / n_head
  int64_t n_expert = 0, n_expert_used = 0, n_ff_expert = 0;
  int64_t sliding_window = 0;
  int64_t swa_pattern = 0;     // gemma3: <arch>.attention.sliding_window_pattern
  float rope_base_swa = 0.f;
  float attn_softcap = 0.f, final_softcap = 0.f;
};

const std::vector<SynthPreset>& synth_presets();
// Throws UsageError listing the known names.
const SynthPreset& find_synth_preset(const std::string& name);

struct SynthOptions {
  std::string preset;
  DType dtype = DType::F16;    // matrices and embeddings; norms and biases stay f32
  int64_t layers = 0;          // 0: the preset's
  std::string vocab_from;      // GGUF whose tokenizer.* metadata is copied ("" = built-in)
  uint64_t seed = 1;
};

// Progress callback: (tensors written so far, total tensors, name of the current one).
using SynthProgress = std::function<void(size_t done, size_t total, const std::string& name)>;

// Writes the model to out_path (via out_path.tmp + rename). Throws UsageError for bad
// options and FormatError for a bad --vocab-from file.
void write_synthetic_model(const SynthOptions& opts, const std::string& out_path,
                           const SynthProgress& progress = {});

// The built-in tokenizer of synthetic models: SentencePiece-style ("llama" model) with
// <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF> and "▁", padded to n_vocab with
// pseudo-words of consonant-vowel syllables ("▁ba", "kote", ...). Every text round-trips
// through it (bytes fall back to byte tokens, spaces become ▁).
// Needs n_vocab >= 260.
struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
};
SynthVocab synth_byte_vocab(int64_t n_vocab);

}  // namespace attnsparse
