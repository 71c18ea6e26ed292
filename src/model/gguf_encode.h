// f32 values written into a GGUF file in any weight type we can encode: the quantising
// half of writing a model, on top of the container writer (io/gguf_writer.h, which only
// takes encoded bytes) and the format table (ops/quant/formats.h). Used by synth, the
// trainer's export, quantize and the tests that build model files.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/gguf_writer.h"

namespace attnsparse {

// True for the types with a quantiser in the format table (F32, F16, BF16, the legacy and
// K types llama-quantize writes).
bool gguf_can_encode(DType type);

// Adds tensor `name` of `shape` (outermost first) holding the numel f32 values at `data`,
// encoded to `type` now (rows in parallel). Throws Error naming the tensor for a type it
// cannot encode, a bad shape, or a duplicate name.
void add_f32_tensor(GgufWriter& writer, const std::string& name, DType type,
                    std::vector<int64_t> shape, const float* data);

// Streaming: the values are produced at write time, a block of rows at a time (rows =
// numel / innermost dim, each of shape.back() values), then encoded to `type` and written,
// so peak memory stays far below the file size. gen(row0, nrows, dst) fills
// dst[0 .. nrows * cols); calls come in row order.
using RowGenerator = std::function<void(int64_t row0, int64_t nrows, float* dst)>;
void add_generated_tensor(GgufWriter& writer, const std::string& name, DType type,
                          std::vector<int64_t> shape, RowGenerator gen);

}  // namespace attnsparse
