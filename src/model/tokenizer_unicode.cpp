// Unicode support for the tokenizers. Classes come from ICU (u_charType general
// categories, the White_Space property), tabulated once for all code points.
//
// The splitters reproduce the pre-tokenizer regexes exactly as llama.cpp evaluates
// them (unicode.cpp): the GPT-2 and Llama 3 patterns by its hand-written scanners
// (unicode_regex_split_custom_gpt2 / _llama3), the others by ECMAScript leftmost-match
// search over the "collapsed" text, where \s is ASCII whitespace or any White_Space
// code point, and \p{L}/\p{N}/\p{P} are the Unicode general categories.
#include "model/tokenizer_unicode.h"

#include <unicode/uchar.h>

#include <cstring>
#include <mutex>

namespace attnsparse::tok {
namespace {

constexpr uint32_t kMaxCp = 0x110000;

const std::vector<uint8_t>& flags_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(kMaxCp, 0);
    for (uint32_t c = 0; c < kMaxCp; ++c) {
      const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(c));
      uint8_t f = 0;
      if (mask & U_GC_L_MASK) f |= kLetter;
      if (mask & U_GC_N_MASK) f |= kNumber;
      if (mask & U_GC_P_MASK) f |= kPunct;
      if (u_isUWhiteSpace(static_cast<UChar32>(c))) f = kSpace;  // never also L/N/P
      t[c] = f;
    }
    return t;
  }();
  return table;
}

}  // namespace

uint8_t cp_flags(uint32_t cp) { return cp < kMaxCp ? flags_table()[cp] : 0; }

uint32_t cp_tolower(uint32_t cp) {
  return cp < kMaxCp ? static_cast<uint32_t>(u_tolower(static_cast<UChar32>(cp))) : cp;
}

std::vector<uint32_t> utf8_to_cpts(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  auto cont = [&](size_t k) { return k < n && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80; };
  while (i < n) {
    const auto c0 = static_cast<unsigned char>(s[i]);
    if (c0 < 0x80) {
      out.push_back(c0);
      i += 1;
      continue;
    }
    uint32_t cp = 0;
    size_t len = 0;
    if ((c0 & 0xE0) == 0xC0 && cont(i + 1)) {
      cp = ((c0 & 0x1Fu) << 6) | (s[i + 1] & 0x3F);
      len = 2;
    } else if ((c0 & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
      cp = ((c0 & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3F);
      len = 3;
    } else if ((c0 & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      cp = ((c0 & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
           (s[i + 3] & 0x3F);
      len = 4;
    }
    if (len == 0) {
      out.push_back(0xFFFD);
      i += 1;
    } else {
      out.push_back(cp);
      i += len;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {
// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order.
struct ByteMap {
  std::array<std::string, 256> to_unicode;
  std::array<uint32_t, 256> cp{};
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      cp[b] = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      append_utf8(to_unicode[b], cp[b]);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return byte_map().to_unicode; }

int unicode_to_byte(uint32_t cp) {
  if (cp < 256) {
    const bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
    return printable ? static_cast<int>(cp) : -1;
  }
  if (cp < 256 + 68) {
    const auto& m = byte_map();
    for (int b = 0; b < 256; ++b)
      if (m.cp[b] == cp) return b;
  }
  return -1;
}

namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;
constexpr uint8_t kInRange = 0x80;  // marks a position inside the piece being split

struct Piece {
  const uint32_t* cp;
  size_t b, e;
  uint8_t flags(size_t pos) const { return pos < e ? static_cast<uint8_t>(cp_flags(cp[pos]) | kInRange) : 0; }
  uint32_t at(size_t pos) const { return pos < e ? cp[pos] : 0xFFFFFFFFu; }
};

// llama.cpp unicode_regex_split_custom_gpt2 (and _llama3 when llama3 is set).
void split_custom(const Piece& p, bool llama3, size_t max_digits, Ranges& out) {
  size_t prev_end = p.b;
  auto add = [&](size_t end) {
    if (end > prev_end) out.emplace_back(static_cast<uint32_t>(prev_end), static_cast<uint32_t>(end));
    prev_end = end;
  };
  for (size_t pos = p.b; pos < p.e;) {
    const uint32_t c = p.at(pos);
    const uint8_t f = p.flags(pos);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d) — case-sensitive for gpt2
    if (c == '\'' && pos + 1 < p.e) {
      const uint32_t n1 = llama3 ? cp_tolower(p.at(pos + 1)) : p.at(pos + 1);
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        pos += 2;
        add(pos);
        continue;
      }
      if (pos + 2 < p.e) {
        const uint32_t n2 = llama3 ? cp_tolower(p.at(pos + 2)) : p.at(pos + 2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
          pos += 3;
          add(pos);
          continue;
        }
      }
    }
    if (llama3) {
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (!(c == '\r' || c == '\n' || (f & kNumber))) {
        if ((f & kLetter) || (p.flags(pos + 1) & kLetter)) {
          ++pos;
          while (p.flags(pos) & kLetter) ++pos;
          add(pos);
          continue;
        }
      }
      // \p{N}{1,3}
      if (f & kNumber) {
        size_t ini = pos;
        while (p.flags(pos) & kNumber) {
          if (++pos - ini >= max_digits) {
            add(pos);
            ini = pos;
          }
        }
        add(pos);
        continue;
      }
      // <space>?[^\s\p{L}\p{N}]+[\r\n]*
      uint8_t f2 = c == ' ' ? p.flags(pos + 1) : f;
      if (!(f2 & (kSpace | kLetter | kNumber)) && f) {
        pos += (c == ' ');
        while (!(f2 & (kSpace | kLetter | kNumber)) && f2) f2 = p.flags(++pos);
        uint32_t c2 = p.at(pos);
        while (c2 == '\r' || c2 == '\n') c2 = p.at(++pos);
        add(pos);
        continue;
      }
      size_t nws = 0, last_rn = 0;
      while (p.flags(pos + nws) & kSpace) {
        const uint32_t c2 = p.at(pos + nws);
        if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
        ++nws;
      }
      if (last_rn > 0) {  // \s*[\r\n]+
        pos = last_rn;
        add(pos);
        continue;
      }
      if (nws > 1 && pos + nws < p.e) {  // \s+(?!\S)
        pos += nws - 1;
        add(pos);
        continue;
      }
      if (nws > 0) {  // \s+
        pos += nws;
        add(pos);
        continue;
      }
      add(++pos);
      continue;
    }
    // gpt2
    uint8_t f2 = c == ' ' ? p.flags(pos + 1) : f;
    if (f2 & kLetter) {  // <space>?\p{L}+
      pos += (c == ' ');
      while (p.flags(pos) & kLetter) ++pos;
      add(pos);
      continue;
    }
    if (f2 & kNumber) {  // <space>?\p{N}+
      pos += (c == ' ');
      while (p.flags(pos) & kNumber) ++pos;
      add(pos);
      continue;
    }
    if (!(f2 & (kSpace | kLetter | kNumber)) && f2) {  // <space>?[^\s\p{L}\p{N}]+
      pos += (c == ' ');
      while (!(f2 & (kSpace | kLetter | kNumber)) && f2) f2 = p.flags(++pos);
      add(pos);
      continue;
    }
    size_t nws = 0;
    while (p.flags(pos + nws) & kSpace) ++nws;
    if (nws > 1 && pos + nws < p.e) {  // \s+(?!\S)
      pos += nws - 1;
      add(pos);
      continue;
    }
    if (nws > 0) {
      pos += nws;
      add(pos);
      continue;
    }
    add(++pos);
  }
}

bool is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
bool is_punct_extra(uint32_t c, bool backquote) {
  return c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
         c == '|' || (backquote && c == '`');
}

// End of the match of a simple regex at pos, or pos when it does not match there.
size_t match_at(SplitKind kind, const Piece& p, size_t pos) {
  auto run = [&](size_t q, auto pred) {
    while (q < p.e && pred(p.cp[q])) ++q;
    return q;
  };
  const uint32_t c = p.cp[pos];
  switch (kind) {
    case SplitKind::PunctRun:
    case SplitKind::PunctRunBq: {
      const bool bq = kind == SplitKind::PunctRunBq;
      return run(pos, [&](uint32_t x) { return (cp_flags(x) & kPunct) || is_punct_extra(x, bq); });
    }
    case SplitKind::NumberRun:
      return run(pos, [](uint32_t x) { return (cp_flags(x) & kNumber) != 0; });
    case SplitKind::NumberOne:
      return (cp_flags(c) & kNumber) ? pos + 1 : pos;
    case SplitKind::Digits3:
      return (pos + 3 <= p.e && is_ascii_digit(c) && is_ascii_digit(p.cp[pos + 1]) &&
              is_ascii_digit(p.cp[pos + 2]))
                 ? pos + 3
                 : pos;
    case SplitKind::NewlineOne:
      return (c == '\r' || c == '\n') ? pos + 1 : pos;
    case SplitKind::SpaceLetters:
    case SplitKind::SpacePunct: {
      const uint8_t cls = kind == SplitKind::SpaceLetters ? kLetter : kPunct;
      auto pred = [&](uint32_t x) { return (cp_flags(x) & cls) != 0; };
      if ((cp_flags(c) & kSpace) && pos + 1 < p.e && pred(p.cp[pos + 1])) return run(pos + 1, pred);
      return run(pos, pred);
    }
    case SplitKind::CjkRun:
      return run(pos, [](uint32_t x) {
        return ((x >= 0x0800 && x <= 0x9FA5) || (x >= 0xAC00 && x <= 0xD7FF)) &&
               !(cp_flags(x) & kSpace);
      });
    default:
      return pos;
  }
}

}  // namespace

std::vector<std::pair<uint32_t, uint32_t>> split_pieces(const std::vector<uint32_t>& cpts,
                                                        const std::vector<SplitKind>& kinds) {
  Ranges pieces;
  if (cpts.empty()) return pieces;
  pieces.emplace_back(0, static_cast<uint32_t>(cpts.size()));
  Ranges next;
  for (const SplitKind kind : kinds) {
    next.clear();
    next.reserve(pieces.size() * 2);
    for (const auto& [b, e] : pieces) {
      const Piece p{cpts.data(), b, e};
      switch (kind) {
        case SplitKind::Gpt2:
          split_custom(p, false, 0, next);
          break;
        case SplitKind::Llama3:
          split_custom(p, true, 3, next);
          break;
        case SplitKind::Qwen2:
          split_custom(p, true, 1, next);
          break;
        default: {
          size_t last = b;
          for (size_t pos = b; pos < e;) {
            const size_t m = match_at(kind, p, pos);
            if (m > pos) {
              if (pos > last) next.emplace_back(static_cast<uint32_t>(last), static_cast<uint32_t>(pos));
              next.emplace_back(static_cast<uint32_t>(pos), static_cast<uint32_t>(m));
              last = pos = m;
            } else {
              ++pos;
            }
          }
          if (last < e) next.emplace_back(static_cast<uint32_t>(last), e);
        }
      }
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace attnsparse::tok
