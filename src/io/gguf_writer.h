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

  // shape is outermost first (as TensorInfo); `data` holds numel f32 values that are
  // converted to `type` (any type ops::quantize_row can write).
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> shape,
                  const float* data);
  // Already-encoded bytes of `type` (copied).
  void add_tensor_raw(const std::string& name, DType type, std::vector<int64_t> shape,
                      const uint8_t* bytes, int64_t nbytes);

  // Streaming: the tensor's f32 values are produced at write time, a block of rows at a
  // time (rows = numel / innermost dim, each of `cols` values), converted to `type` and
  // written, so peak memory stays far below the file size (synthetic models).
  // gen(row0, nrows, dst) fills dst[0 .. nrows*cols); calls come in row order.
  using RowGenerator = std::function<void(int64_t row0, int64_t nrows, float* dst)>;
  void add_tensor_generated(const std::string& name, DType type, std::vector<int64_t> shape,
                            RowGenerator gen);

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
    RowGenerator gen;  // set for add_tensor_generated (then bytes is empty)
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace attnsparse
