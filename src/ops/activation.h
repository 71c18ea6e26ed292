// Element-wise activations of the MLP blocks.
#pragma once
#include <cstdint>

namespace attnsparse::ops {

// gate[i] = silu(gate[i]) * up[i]   (SwiGLU, llama / qwen2), in place on gate.
void swiglu(float* gate, const float* up, int64_t n);

// Exact tanh-approximation GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
float gelu_tanh(float x);

// GELU as llama.cpp computes it on CPU: the tanh GELU looked up in a table indexed by the
// f16-rounded input and stored as f16 (inputs <= -10 give 0, >= 10 give x). In place.
void gelu_f16_table(float* x, int64_t n);

// GeGLU as llama.cpp computes it on CPU: gate[i] = gelu(gate[i]) * up[i] with the GELU
// of gelu_f16_table (gate <= -10 gives 0, >= 10 gives gate * up). In place on gate.
void geglu_f16_table(float* gate, const float* up, int64_t n);

}  // namespace attnsparse::ops
