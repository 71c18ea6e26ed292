// Checked integer arithmetic and parsing for sizes and counts that come from files or
// options. Everything that multiplies or adds untrusted integers goes through here, so an
// overflow is an error message instead of undefined behaviour.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace attnsparse {

// a * b and a + b, or nullopt when the exact result does not fit in int64.
inline std::optional<int64_t> mul_checked(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}
inline std::optional<int64_t> add_checked(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// The product of the values, or Error "<what>: <a> x <b> x ... overflows".
int64_t mul_or_fail(std::initializer_list<int64_t> factors, std::string_view what);

// A decimal integer (optional leading '-' or '+', digits only, nothing else) that fits in
// int64; nullopt for anything else ("", "12x", " 5", "1e3", 9999999999999999999).
std::optional<int64_t> parse_int64(std::string_view text);

// parse_int64 and lo <= value <= hi; otherwise UsageError
// "<what>: '<text>' is not an integer in [lo, hi]".
int64_t parse_int_in_range(std::string_view text, int64_t lo, int64_t hi, std::string_view what);

// Value in [lo, hi], else FormatError "<path>: <field> is <value>, outside [lo, hi]".
int64_t require_in_range(int64_t value, int64_t lo, int64_t hi, const std::string& path,
                         std::string_view field);

}  // namespace attnsparse
