// GGUF (llama.cpp's model format) v2/v3: metadata of every value type, including
// nested arrays, and tensors of the types in core/dtype.h, memory-mapped.
// Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "io/tensor_source.h"

namespace attnsparse {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType type);

struct GgufValue;
struct GgufArray {
  GgufType element_type = GgufType::UINT8;
  std::vector<GgufValue> values;
};

// One metadata value. Integers of any width are held as int64/uint64, floats as double;
// `type` records the stored type (the writer uses it to write the same type back).
struct GgufValue {
  GgufType type = GgufType::UINT32;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> value;

  bool is_integer() const;
  bool is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
  // Conversions throw Error when the stored type does not fit.
  int64_t as_int() const;
  double as_float() const;  // integers convert too
  bool as_bool() const;
  const std::string& as_string() const;
  const GgufArray& as_array() const;
  std::string to_display(size_t max_items = 8) const;  // for `attnsparse info`

  static GgufValue make_u32(uint32_t v) { return {GgufType::UINT32, uint64_t{v}}; }
  static GgufValue make_i32(int32_t v) { return {GgufType::INT32, int64_t{v}}; }
  static GgufValue make_u64(uint64_t v) { return {GgufType::UINT64, v}; }
  static GgufValue make_f32(float v) { return {GgufType::FLOAT32, double{v}}; }
  static GgufValue make_bool(bool v) { return {GgufType::BOOL, v}; }
  static GgufValue make_string(std::string v) { return {GgufType::STRING, std::move(v)}; }
  static GgufValue make_array(GgufType element_type, std::vector<GgufValue> values);
};

class GgufFile : public TensorSource {
 public:
  // Opens, maps and validates the whole header and tensor table; throws FormatError
  // naming the path and the problem on any malformed input.
  explicit GgufFile(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find_meta(const std::string& key) const;  // nullptr when absent

  // Typed getters; the optional forms return nullopt when the key is absent and throw
  // FormatError when it has the wrong type.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  const GgufArray* get_array(const std::string& key) const;
  std::string architecture() const;  // general.architecture (required)

  const TensorInfo* find(const std::string& name) const override;
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::string& path() const override { return file_.path(); }
  void release(const void* p, size_t n) const override { file_.release(p, n); }

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t> meta_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace attnsparse
