// Tokenizers of the model families we read: SentencePiece-style BPE (llama vocab type,
// Llama 2) and byte-level BPE with the pre-tokenizer named by tokenizer.ggml.pre or
// tokenizer.json (gpt-2, llama-bpe, qwen2, deepseek, starcoder, falcon, mpt, gpt-neox,
// refact, phi-3, ...). Built from GGUF metadata, a Hugging Face tokenizer.json or a
// llama2.c tokenizer file.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnsparse {

class GgufFile;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& gguf);
  // dir holds tokenizer.json and optionally tokenizer_config.json (BOS/EOS handling).
  static std::unique_ptr<Tokenizer> from_hf_dir(const std::string& dir);
  // llama2.c's tokenizer.bin / tok<N>.bin (SentencePiece BPE; tokenizer_llama2c.cpp).
  static std::unique_ptr<Tokenizer> from_llama2c(const std::string& path);
  // A .gguf file (a model or a vocabulary-only file), a Hugging Face directory, a llama2.c
  // tokenizer file, or a llama2.c checkpoint (its tokenizer is then found beside it, as
  // find_llama2c_tokenizer says); needs no weights.
  static std::unique_ptr<Tokenizer> load(const std::string& path);

  // add_special: prepend BOS (and append EOS) as the model's settings say.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special) const = 0;
  // Concatenated text of the tokens; special tokens (BOS/EOS) are skipped.
  virtual std::string decode(std::span<const int32_t> tokens) const = 0;
  virtual std::string token_piece(int32_t id) const = 0;  // the token's decoded bytes

  virtual int32_t n_vocab() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  virtual bool add_bos() const = 0;
  virtual std::string type_name() const = 0;  // e.g. "spm", "bpe/gpt-2", "byte"
};

// The tokenizer of a llama2.c checkpoint: tok<n_vocab>.bin, else tokenizer.bin, in the
// checkpoint's directory; "" when neither exists.
std::string find_llama2c_tokenizer(const std::string& model_path, int64_t n_vocab);
// Loads that file and checks it has n_vocab tokens; FormatError naming the checkpoint
// when there is none.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& model_path, int64_t n_vocab);
// A llama2.c .bin that is a checkpoint (its tokenizer as above) or a tokenizer file.
std::unique_ptr<Tokenizer> load_llama2c_any(const std::string& path);

}  // namespace attnsparse
