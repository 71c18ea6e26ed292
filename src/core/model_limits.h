// The largest model shape attnsparse accepts, in one place: the model loaders
// (validate_config and the readers that check a count as soon as they read it), the
// readers of result files (the report pages size a cell per head) and the options that
// build models or inputs of a given shape.
#pragma once
#include <cstdint>

namespace attnsparse {

inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxHeads = 4096;
// Layers x heads of one model in a result file: at most 2^18 (16 times the largest real
// model), so a tampered file cannot make a page allocate a 4096 x 4096 grid.
inline constexpr int64_t kMaxLayerHeads = int64_t{1} << 18;

}  // namespace attnsparse
