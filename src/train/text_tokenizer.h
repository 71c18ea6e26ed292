// The trainer's tokenizers. Every kind is a GGUF tokenizer vocabulary (tokenizer.ggml.*)
// and every encode/decode goes through the ENGINE's Tokenizer built from exactly that
// metadata (Tokenizer::from_gguf), so a model exported by the trainer tokenizes in the
// engine (and in llama.cpp) exactly as it did during training, by construction.
//   byte       : <unk>, <s>, </s>, <0x00>..<0xFF>, "▁" (260 tokens), exported as an SPM
//                ("llama") vocabulary with add_space_prefix=false and no merges: a space is
//                "▁", every other byte its <0xXX> token.
//   spm:N      : a SentencePiece BPE vocabulary of N pieces trained on the training text by
//                Debian's `spm_train` tool (package sentencepiece; libsentencepiece itself
//                cannot be linked next to libtorch). Settings as Llama 2's tokenizer
//                (BPE, byte_fallback, identity normalisation, split digits, whitespace kept)
//                except add_dummy_prefix=false: the trainer encodes whole documents, where a
//                word at a line start follows "\n", not " ", so pieces learnt with a dummy
//                "▁" prefix would never be used there.
//   spm:FILE   : an existing SentencePiece model file (*.model), e.g. from spm_train.
//   gguf:FILE  : the tokenizer of an existing GGUF model.
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
}  // namespace attnsparse

namespace attnsparse::train {

// One SentencePiece model (the ModelProto of a .model file), as much as we need of it.
struct SpmModel {
  struct Piece {
    std::string text;
    float score = 0;
    int32_t type = 1;  // SentencePiece's types = llama.cpp's token types (1 normal, 2 unknown,
                       // 3 control, 4 user-defined, 5 unused, 6 byte)
  };
  std::vector<Piece> pieces;
  bool add_dummy_prefix = true;
  // Parses the serialized protobuf; throws FormatError naming `source`.
  static SpmModel parse(const std::string& proto, const std::string& source);
};

class TextTokenizer {
 public:
  TextTokenizer();
  ~TextTokenizer();
  TextTokenizer(TextTokenizer&&) noexcept;
  TextTokenizer& operator=(TextTokenizer&&) noexcept;

  static TextTokenizer byte_level();
  // Runs `spm_train` on the text files (one sentence per line) in a scratch directory.
  static TextTokenizer train_spm(const std::vector<std::string>& files, int vocab_size);
  static TextTokenizer from_spm_model(const std::string& model_path);
  static TextTokenizer from_gguf(const std::string& path);
  // Parses "byte", "spm:N", "spm:FILE.model", "gguf:FILE" (UsageError otherwise); spm:N
  // trains on `files`.
  static TextTokenizer from_spec(const std::string& spec, const std::vector<std::string>& files);
  // Round trip for checkpoints: "byte", "spm:" + serialized model proto, "gguf:" + path.
  std::string serialize() const;
  static TextTokenizer deserialize(const std::string& s);

  std::vector<int32_t> encode(std::string_view text) const;  // no BOS/EOS
  std::string decode(std::span<const int32_t> ids) const;
  int32_t n_vocab() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  std::string kind() const;  // "byte", "spm", "gguf"
  const Tokenizer& engine() const;
  // The SentencePiece model's serialized proto (spm only; empty otherwise).
  const std::string& spm_proto() const;

  // Writes the tokenizer.* keys (tokenizer.ggml.model "llama", tokens, scores, token_type,
  // special ids, add_bos/add_eos, add_space_prefix); gguf: copies the source's keys.
  void export_gguf(GgufWriter& writer) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  void build_engine();
};

}  // namespace attnsparse::train
