// Checked integers for policy parameters: parsing that rejects what does not fit, and
// saturating arithmetic for the products of parameters (dilated spans, budgets + 1).
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace attnsparse::policies {

// The largest value of a size or position parameter (window, budget, k, page, ...).
// Cache positions are int32, so a larger window or budget cannot mean anything more,
// and every product of two parameters stays far inside int64.
inline constexpr int64_t kMaxPolicyParam = std::numeric_limits<int32_t>::max();

// Decimal digits only ("0".."18446744073709551615"); nothing when the text is empty,
// has another character or does not fit in uint64.
inline std::optional<uint64_t> parse_decimal(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    if (__builtin_mul_overflow(v, uint64_t{10}, &v) || __builtin_add_overflow(v, uint64_t(c - '0'), &v))
      return std::nullopt;
  }
  return v;
}

// a * b and a + b for non-negative operands, saturated at INT64_MAX.
inline int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? std::numeric_limits<int64_t>::max() : r;
}
inline int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<int64_t>::max() : r;
}

}  // namespace attnsparse::policies
