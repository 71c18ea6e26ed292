#include "core/checked.h"

#include <charconv>

#include "core/text.h"

namespace attnsparse {

int64_t mul_or_fail(std::initializer_list<int64_t> factors, std::string_view what) {
  int64_t r = 1;
  for (int64_t f : factors) {
    const auto p = mul_checked(r, f);
    if (!p) {
      std::string list;
      for (int64_t g : factors) list += (list.empty() ? "" : " x ") + std::to_string(g);
      fail("{}: {} overflows a 64-bit integer", what, list);
    }
    r = *p;
  }
  return r;
}

std::optional<int64_t> parse_int64(std::string_view text) {
  if (!text.empty() && text.front() == '+') {
    text.remove_prefix(1);
    if (!text.empty() && (text.front() == '+' || text.front() == '-')) return std::nullopt;
  }
  if (text.empty()) return std::nullopt;
  int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v, 10);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

int64_t parse_int_in_range(std::string_view text, int64_t lo, int64_t hi, std::string_view what) {
  const auto v = parse_int64(text);
  if (!v || *v < lo || *v > hi)
    fail_usage("{}: '{}' is not an integer in [{}, {}]", what, printable(text, 40), lo, hi);
  return *v;
}

int64_t require_in_range(int64_t value, int64_t lo, int64_t hi, const std::string& path,
                         std::string_view field) {
  if (value < lo || value > hi) fail_file(path, "{} is {}, outside [{}, {}]", field, value, lo, hi);
  return value;
}

}  // namespace attnsparse
