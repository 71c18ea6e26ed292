// One interface over weight files: name -> (dtype, shape, bytes), memory-mapped.
// Implemented by GgufFile (io/gguf.h) and the Hugging Face safetensors reader.
//
// Shapes are row-major, outermost dimension first (the PyTorch / safetensors order):
// a linear layer's weight is {n_out, n_in} and each of its n_out rows holds n_in
// elements (quantised blocks run along the row). GGUF stores dims innermost first;
// the GGUF reader reverses them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace attnsparse {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // outermost first
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.empty() ? 1 : numel() / shape.back(); }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // nullptr when absent.
  virtual const TensorInfo* find(const std::string& name) const = 0;
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  // Where the tensors come from (file or directory), for error messages.
  virtual const std::string& path() const = 0;

  // The bytes [p, p + n) of a tensor will not be read again (packed copies replace
  // them): a memory-mapped source drops their resident pages. Default: nothing.
  virtual void release(const void* p, size_t n) const {}

  // Throws FormatError "<path>: missing tensor '<name>'".
  const TensorInfo& require(const std::string& name) const;
};

}  // namespace attnsparse
