// NaN / Inf guards of the forward pass. The small tensors (norm weights and biases, biases,
// RoPE frequency factors) are scanned once at load; the big matrices are not read at load
// (they stay memory-mapped), so their effect is caught where it first shows: the embedded
// rows, the attention queries / keys / values and every layer's hidden state, and the
// logits. Each check throws FormatError naming the file and the tensor or layer.
#pragma once
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/config.h"
#include "model/weights.h"

namespace attnsparse {

// A non-finite activation found where the file is not known (attention_block); the forward
// pass adds the model's path.
class NonFiniteError : public FormatError {
 public:
  using FormatError::FormatError;
};

// NonFiniteError "layer L: the attention <what> hold NaN or Inf (tensor blk.L.<tensor>)"
// unless the n rows of `width` floats, `stride` apart, are finite.
void require_finite_rows(const float* x, int64_t n, int64_t width, int64_t stride, int layer,
                         const char* what, const char* tensor);

// Scans every norm vector, bias and the RoPE factors of w; FormatError
// "<path>: tensor 'blk.3.attn_norm.weight' holds NaN or Inf (element 17)".
void check_small_weights_finite(const ModelConfig& config, const ModelWeights& w,
                                const std::string& path);

// FormatError "<path>: <what> holds NaN or Inf ..." when x[0..n) is not all finite.
// `what` names the tensor or layer ("the hidden state after layer 3 (blk.3.*)").
void require_finite_activations(const float* x, int64_t n, const std::string& path,
                                const std::string& what);

}  // namespace attnsparse
