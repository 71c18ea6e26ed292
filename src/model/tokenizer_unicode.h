// Private to the tokenizers: UTF-8 <-> code points, Unicode classes from ICU (letter,
// number, punctuation, White_Space), GPT-2's byte <-> unicode mapping, and the
// pre-tokenizer splitters (hand-written scanners equivalent to the regexes llama.cpp
// uses, over code points; see tokenizer_unicode.cpp).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace attnsparse::tok {

enum CpFlag : uint8_t {
  kLetter = 1,   // \p{L}: Lu Ll Lt Lm Lo
  kNumber = 2,   // \p{N}: Nd Nl No
  kPunct = 4,    // \p{P}: Pc Pd Ps Pe Pi Pf Po
  kSpace = 8,    // \s: Unicode White_Space
};
uint8_t cp_flags(uint32_t cp);  // 0 for cp > 0x10FFFF
uint32_t cp_tolower(uint32_t cp);

// Bytes of the UTF-8 sequence that starts with this lead byte (1 for invalid leads).
inline size_t utf8_len(unsigned char lead) {
  static const uint8_t lookup[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[lead >> 4];
}
// Decodes UTF-8; each byte of an invalid sequence becomes U+FFFD (as llama.cpp does).
std::vector<uint32_t> utf8_to_cpts(std::string_view s);
void append_utf8(std::string& out, uint32_t cp);

// GPT-2 byte-level BPE: byte -> printable code point (UTF-8 encoded), and back.
const std::array<std::string, 256>& byte_to_unicode();
int unicode_to_byte(uint32_t cp);  // -1 when cp is not in the mapping

// One regex of a pre-tokenizer, as a scanner.
enum class SplitKind {
  Gpt2,        // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
  Llama3,      // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  Qwen2,       // as Llama3 with \p{N} (one digit per piece)
  PunctRun,    // [\p{P}\$\+<=>\^~\|]+
  PunctRunBq,  // [\p{P}\$\+<=>\^~\|`]+   (falcon)
  NumberRun,   // \p{N}+
  NumberOne,   // \p{N}
  Digits3,     // [0-9][0-9][0-9]
  NewlineOne,  // [\r\n]
  SpaceLetters,  // \s?\p{L}+
  SpacePunct,    // \s?\p{P}+
  CjkRun,        // [一-龥ࠀ-一가-퟿]+
};

// Applies the regexes in order, as llama.cpp's unicode_regex_split does: each regex
// splits every current piece into its matches and the text between them. Returns
// [begin, end) code point ranges covering the whole input.
std::vector<std::pair<uint32_t, uint32_t>> split_pieces(const std::vector<uint32_t>& cpts,
                                                        const std::vector<SplitKind>& kinds);

}  // namespace attnsparse::tok
