// Writes GGUF v3 files with llama.cpp's key and tensor naming, so that files we write
// (synthetic models, trained models) load in other GGUF tools.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"

namespace attnsparse {

class GgufWriter {
 public:
  GgufWriter();  // sets general.alignment = 32
  // Metadata in insertion order; setting a key again replaces its value.
  void set(const std::string& key, GgufValue value);
  void set_u32(const std::string& key, uint32_t v) { set(key, GgufValue::make_u32(v)); }
  void set_f32(const std::string& key, float v) { set(key, GgufValue::make_f32(v)); }
  void set_bool(const std::string& key, bool v) { set(key, GgufValue::make_bool(v)); }
  void set_string(const std::string& key, const std::string& v) { set(key, GgufValue::make_string(v)); }
  // Copies every tokenizer.* key of `source` (e.g. synth --vocab-from).
  void copy_metadata_prefix(const GgufFile& source, const std::string& prefix);

  // Tensors are encoded bytes of `type` (this writer knows the container, not how to
  // encode values: model/gguf_encode.h turns f32 values into any weight type and calls
  // these). shape is outermost first (as TensorInfo); the bytes are dtype_row_bytes(type,
  // shape.back()) per row. add_tensor_raw copies them, add_tensor_bytes takes them.
  void add_tensor_raw(const std::string& name, DType type, std::vector<int64_t> shape,
                      const uint8_t* bytes, int64_t nbytes);
  void add_tensor_bytes(const std::string& name, DType type, std::vector<int64_t> shape,
                        std::vector<uint8_t> bytes);

  // Streaming: the tensor's bytes are produced at write time, a block of rows at a time
  // (rows = numel / innermost dim), so peak memory stays far below the file size
  // (synthetic models, quantize). fill(row0, nrows, dst) writes nrows encoded rows to dst;
  // calls come in row order, and the writer writes one block while the next is filled.
  using RowBytes = std::function<void(int64_t row0, int64_t nrows, uint8_t* dst)>;
  void add_tensor_streamed(const std::string& name, DType type, std::vector<int64_t> shape,
                           RowBytes fill);

  // The checks every add_tensor_* makes: a name, 1 to 4 positive dimensions, rows whole
  // blocks of `type`. Throws Error naming the tensor.
  static void check_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape);

  size_t n_tensors() const { return tensors_.size(); }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }

  // Writes to path + ".tmp" and renames, so a failed write leaves no partial file.
  void write(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    RowBytes fill;  // set for add_tensor_streamed (then bytes is empty)
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace attnsparse
