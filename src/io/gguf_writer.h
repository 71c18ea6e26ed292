// Writes GGUF v3 files with llama.cpp's key and tensor naming, so that files we write
// (synthetic models, trained models) load in other GGUF tools.
#pragma once
#include <cstdint>
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
  // converted to `type` (F32, F16, BF16 or Q8_0).
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> shape,
                  const float* data);
  // Already-encoded bytes of `type` (copied).
  void add_tensor_raw(const std::string& name, DType type, std::vector<int64_t> shape,
                      const uint8_t* bytes, int64_t nbytes);

  // Writes to path + ".tmp" and renames, so a failed write leaves no partial file.
  void write(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace attnsparse
