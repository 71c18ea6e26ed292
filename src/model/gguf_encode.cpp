#include "model/gguf_encode.h"

#include <memory>

#include "core/error.h"
#include "ops/matmul.h"
#include "ops/quant/formats.h"

namespace attnsparse {

namespace {

void check_encodable(const std::string& name, DType type) {
  if (!gguf_can_encode(type)) fail("GGUF writer: tensor '{}': cannot encode {}", name, dtype_name(type));
}

// nrows rows of cols values each, encoded row by row (in parallel when large).
void encode_rows(DType type, const float* src, uint8_t* dst, int64_t nrows, int64_t cols) {
  const int64_t row_bytes = dtype_row_bytes(type, cols);
#pragma omp parallel for schedule(static) if (nrows * cols > (1 << 16))
  for (int64_t r = 0; r < nrows; ++r) ops::quantize_row(type, src + r * cols, dst + r * row_bytes, cols);
}

int64_t row_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n / shape.back();
}

}  // namespace

bool gguf_can_encode(DType type) { return ops::quant::format(type).quantize != nullptr; }

void add_f32_tensor(GgufWriter& writer, const std::string& name, DType type, std::vector<int64_t> shape,
                    const float* data) {
  check_encodable(name, type);
  GgufWriter::check_tensor(name, type, shape);
  const int64_t cols = shape.back();
  const int64_t rows = row_count(shape);
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * dtype_row_bytes(type, cols)));
  encode_rows(type, data, bytes.data(), rows, cols);
  writer.add_tensor_bytes(name, type, std::move(shape), std::move(bytes));
}

void add_generated_tensor(GgufWriter& writer, const std::string& name, DType type, std::vector<int64_t> shape,
                          RowGenerator gen) {
  check_encodable(name, type);
  GgufWriter::check_tensor(name, type, shape);
  if (!gen) fail("GGUF writer: tensor '{}': empty generator", name);
  const int64_t cols = shape.back();
  const int64_t rows = row_count(shape);
  // The f32 values of one block; the writer asks for one block at a time, in row order,
  // and the buffer is released after the last one (a model has hundreds of tensors).
  auto values = std::make_shared<std::vector<float>>();
  auto fill = [type, cols, rows, values, gen = std::move(gen)](int64_t row0, int64_t nrows, uint8_t* dst) {
    values->resize(static_cast<size_t>(nrows * cols));
    gen(row0, nrows, values->data());
    encode_rows(type, values->data(), dst, nrows, cols);
    if (row0 + nrows == rows) std::vector<float>().swap(*values);
  };
  writer.add_tensor_streamed(name, type, std::move(shape), std::move(fill));
}

}  // namespace attnsparse
