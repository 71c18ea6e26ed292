// Finite-value scans (NaN / Inf) for weights and activations: cheap enough to run on every
// hidden state (one pass over the floats, vectorised), so a model with non-finite weights
// fails with an error naming the tensor or layer instead of printing NaN logits.
#pragma once
#include <cstdint>
#include <cstring>

namespace attnsparse {

// Index of the first NaN or +-Inf in x[0..n), or -1 when all are finite.
inline int64_t first_non_finite(const float* x, int64_t n) {
  constexpr int64_t kBlock = 4096;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = n - b < kBlock ? n : b + kBlock;
    uint32_t bad = 0;
    for (int64_t i = b; i < e; ++i) {  // exponent all ones <=> NaN or Inf
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof bits);
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (bad)
      for (int64_t i = b; i < e; ++i) {
        uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        if ((bits & 0x7f800000u) == 0x7f800000u) return i;
      }
  }
  return -1;
}

inline bool all_finite(const float* x, int64_t n) { return first_non_finite(x, n) < 0; }

}  // namespace attnsparse
