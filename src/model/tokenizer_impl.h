// Private to the tokenizers: one implementation of Tokenizer driven by a VocabSpec,
// which from_gguf (tokenizer_gguf.cpp) and from_hf_dir (tokenizer_hf.cpp) fill in.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/tokenizer.h"
#include "model/tokenizer_unicode.h"

namespace attnsparse::tok {

// llama.cpp token types (tokenizer.ggml.token_type).
enum TokenType : uint8_t {
  kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

enum class Algo {
  Spm,        // llama.cpp llm_tokenizer_spm: merges by token score, byte fallback
  ByteBpe,    // byte-level BPE with merge ranks and a regex pre-tokenizer
  SpmBpe,     // HF BPE with byte_fallback over "▁"-escaped text (Llama 2 tokenizer.json)
};

struct VocabSpec {
  std::string source;  // file or directory, for error messages
  Algo algo = Algo::Spm;
  std::string pre_name;  // e.g. "gpt-2"; for type_name()
  std::vector<std::string> tokens;
  std::vector<float> scores;   // Spm only
  std::vector<uint8_t> types;  // TokenType per token
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<SplitKind> split;  // ByteBpe pre-tokenizer regexes
  bool ignore_merges = false;    // a whole piece that is a token is taken as is (llama3)
  bool add_space_prefix = true;  // Spm / SpmBpe: " " before the text
  bool byte_prefix_space = false;  // ByteBpe: HF ByteLevel add_prefix_space
  bool add_bos = false, add_eos = false;
  int32_t bos = -1, eos = -1, unk = -1;
  std::vector<int32_t> lstrip, rstrip;  // special tokens that eat spaces around them
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class TokenizerImpl final : public Tokenizer {
 public:
  explicit TokenizerImpl(VocabSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_special) const override;
  std::string decode(std::span<const int32_t> tokens) const override;
  std::string token_piece(int32_t id) const override;
  int32_t n_vocab() const override { return static_cast<int32_t>(spec_.tokens.size()); }
  int32_t bos_id() const override { return spec_.bos; }
  int32_t eos_id() const override { return spec_.eos; }
  bool add_bos() const override { return spec_.add_bos; }
  std::string type_name() const override;

 private:
  struct Fragment {
    int32_t token;  // -1: raw text [begin, end)
    size_t begin, end;
  };
  struct Merge {
    int32_t rank, result;
  };
  std::vector<Fragment> partition(std::string_view text) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_byte_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const;
  int32_t find(std::string_view s) const {
    auto it = token_to_id_.find(s);
    return it == token_to_id_.end() ? -1 : it->second;
  }
  std::string piece(int32_t id, bool render_special) const;

  VocabSpec spec_;
  TokenMap token_to_id_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id
  std::vector<int32_t> special_;                // matched in the text, longest first
  std::vector<uint8_t> strip_;                  // per token: 1 lstrip, 2 rstrip
  std::array<int32_t, 256> byte_tokens_{};      // <0xXX> tokens (Spm, SpmBpe), -1 if absent
};

}  // namespace attnsparse::tok
