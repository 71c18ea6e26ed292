#include "core/text.h"

#include <fmt/format.h>

namespace attnsparse {

namespace {
// Length of the well-formed UTF-8 sequence at p (1..4), or 0.
size_t utf8_length(const unsigned char* p, size_t n) {
  const unsigned c = p[0];
  size_t len = 0;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
  else return 0;
  if (len > n || p[1] < lo || p[1] > hi) return 0;
  for (size_t k = 2; k < len; ++k)
    if (p[k] < 0x80 || p[k] > 0xBF) return 0;
  return len;
}
}  // namespace

std::string printable(std::string_view text, size_t max_chars) {
  std::string out;
  out.reserve(text.size() < max_chars ? text.size() : max_chars);
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t chars = 0;
  for (size_t i = 0; i < n;) {
    if (chars >= max_chars) {
      out += "...";
      break;
    }
    ++chars;
    const unsigned c = p[i];
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c == '\n') { out += "\\n"; ++i; continue; }
    if (c == '\r') { out += "\\r"; ++i; continue; }
    if (c == '\t') { out += "\\t"; ++i; continue; }
    if (c < 0x80) {  // other C0 controls, DEL
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    const size_t len = utf8_length(p + i, n - i);
    // C1 controls (U+0080..U+009F, encoded C2 80..C2 9F) act as escapes on some terminals.
    if (len == 0 || (len == 2 && c == 0xC2 && p[i + 1] < 0xA0)) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    out.append(text.data() + i, len);
    i += len;
  }
  return out;
}

}  // namespace attnsparse
