// Reused scratch buffers (thread-local or per-object storage that outlives one call).
#pragma once
#include <cstdint>
#include <vector>

namespace attnsparse {

// Grows v to at least n elements; never shrinks it and never clears it. A buffer that
// shrank for a short input would zero the difference again when the next input is longer.
template <typename T>
void grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

}  // namespace attnsparse
