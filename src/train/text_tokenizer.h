// The trainer's tokenizers and their export into GGUF tokenizer metadata.
//   byte       : <unk>, <s>, </s>, <0x00>..<0xFF>, "▁" (260 tokens). A space is "▁",
//                every other byte its <0xXX> token; exported as an SPM ("llama") vocab with
//                add_space_prefix=false, so llama.cpp-style SPM tokenizers give the same ids.
//   spm:N      : SentencePiece BPE with N pieces trained on the training text by
//                libsentencepiece (byte_fallback, identity normalisation, dummy prefix,
//                no whitespace squashing: the settings of the Llama 2 tokenizer).
//   gguf:FILE  : the tokenizer of an existing GGUF model (the engine's Tokenizer).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnsparse {
class GgufWriter;
class Tokenizer;
}

namespace attnsparse::train {

class TextTokenizer {
 public:
  TextTokenizer();
  ~TextTokenizer();
  TextTokenizer(TextTokenizer&&) noexcept;
  TextTokenizer& operator=(TextTokenizer&&) noexcept;

  static TextTokenizer byte_level();
  // Trains on the text files (one sentence per line). work_prefix: where the
  // SentencePiece trainer may write scratch files.
  static TextTokenizer train_spm(const std::vector<std::string>& files, int vocab_size,
                                 const std::string& work_prefix);
  static TextTokenizer from_gguf(const std::string& path);
  // Parses "byte", "spm:N", "gguf:FILE" (UsageError otherwise).
  static TextTokenizer from_spec(const std::string& spec, const std::vector<std::string>& files,
                                 const std::string& work_prefix);
  // Round trip for checkpoints: "byte", "spm:" + serialized model proto, "gguf:" + path.
  std::string serialize() const;
  static TextTokenizer deserialize(const std::string& s);

  std::vector<int32_t> encode(std::string_view text) const;  // no BOS/EOS
  std::string decode(std::span<const int32_t> ids) const;
  int32_t n_vocab() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  std::string kind() const;  // "byte", "spm", "gguf"

  // Writes the tokenizer.* keys (tokenizer.ggml.model "llama", tokens, scores, token_type,
  // special ids, add_bos/add_eos, add_space_prefix).
  void export_gguf(GgufWriter& writer) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace attnsparse::train
