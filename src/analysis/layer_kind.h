// How a layer's attention sees its keys, as the analysis needs it: a global layer's query
// at position t sees keys 0..t; a layer with a native sliding window W (gemma2/gemma3's
// local layers, Mistral, Phi-3) sees only keys p with t - p < W, i.e. min(t+1, W) keys.
// Row statistics are taken over the visible keys (docs/analysis.md, "Windowed layers").
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace attnsparse {
struct ModelConfig;
}

namespace attnsparse::analysis {

struct LayerKind {
  int64_t window = 0;  // native sliding window (0 = global)
  double rope_base = std::numeric_limits<double>::quiet_NaN();  // NaN: the model has no RoPE
  bool windowed() const { return window > 0; }
};

// Keys a query at position t can see in a layer with this window (0 = global).
inline int64_t visible_keys(int64_t t, int64_t window) { return window > 0 ? std::min(t + 1, window) : t + 1; }

// The layers of a model (its config's per-layer windows and RoPE bases).
std::vector<LayerKind> layer_kinds(const ModelConfig& config);

}  // namespace attnsparse::analysis
