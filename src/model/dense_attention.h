// Every post-softmax attention probability of one causal batch, as a dense array: the
// attention verb and the Python Model.attention (the one place where an n x n matrix per
// head is allowed; the analysis never builds one).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/model.h"

namespace attnsparse {

// Bytes of the dense array of n tokens for `layers` x `heads` (f32).
double dense_attention_bytes(int64_t layers, int64_t heads, int64_t n);

// Runs `tokens` from position 0 as one causal batch and writes probability rows into
// out[li, hi, query, key] (f32, li / hi the positions in `layers` / `heads`, each a list
// of distinct indices; empty = all, in order); entries above the diagonal are not
// written, so `out` must hold zeros. after_layer(layer) runs after each layer's attention
// (progress, interruption: it may throw to stop).
void dense_attention(const Model& model, std::span<const int32_t> tokens, const std::vector<int>& layers,
                     const std::vector<int>& heads, float* out,
                     const std::function<void(int layer)>& after_layer = {});

}  // namespace attnsparse
