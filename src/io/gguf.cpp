#include "io/gguf.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/text.h"

namespace attnsparse {

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::UINT8: return "u8";
    case GgufType::INT8: return "i8";
    case GgufType::UINT16: return "u16";
    case GgufType::INT16: return "i16";
    case GgufType::UINT32: return "u32";
    case GgufType::INT32: return "i32";
    case GgufType::FLOAT32: return "f32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "u64";
    case GgufType::INT64: return "i64";
    case GgufType::FLOAT64: return "f64";
  }
  return "?";
}

// ---------------------------------------------------------------- GgufValue

bool GgufValue::is_integer() const {
  return std::holds_alternative<uint64_t>(value) || std::holds_alternative<int64_t>(value);
}

int64_t GgufValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("integer value {} does not fit in int64", *u);
    return static_cast<int64_t>(*u);
  }
  if (auto* i = std::get_if<int64_t>(&value)) return *i;
  if (auto* b = std::get_if<bool>(&value)) return *b ? 1 : 0;
  fail("expected an integer, found {}", gguf_type_name(type));
}

double GgufValue::as_float() const {
  if (auto* d = std::get_if<double>(&value)) return *d;
  if (is_integer()) return static_cast<double>(as_int());
  fail("expected a number, found {}", gguf_type_name(type));
}

bool GgufValue::as_bool() const {
  if (auto* b = std::get_if<bool>(&value)) return *b;
  if (is_integer()) return as_int() != 0;
  fail("expected a bool, found {}", gguf_type_name(type));
}

const std::string& GgufValue::as_string() const {
  if (auto* s = std::get_if<std::string>(&value)) return *s;
  fail("expected a string, found {}", gguf_type_name(type));
}

const GgufArray& GgufValue::as_array() const {
  if (auto* a = std::get_if<std::shared_ptr<GgufArray>>(&value)) return **a;
  fail("expected an array, found {}", gguf_type_name(type));
}

GgufValue GgufValue::make_array(GgufType element_type, std::vector<GgufValue> values) {
  auto arr = std::make_shared<GgufArray>();
  arr->element_type = element_type;
  arr->values = std::move(values);
  return {GgufType::ARRAY, std::move(arr)};
}

std::string GgufValue::to_display(size_t max_items) const {
  if (auto* u = std::get_if<uint64_t>(&value)) return fmt::format("{}", *u);
  if (auto* i = std::get_if<int64_t>(&value)) return fmt::format("{}", *i);
  if (auto* d = std::get_if<double>(&value)) return fmt::format("{:g}", *d);
  if (auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  if (auto* s = std::get_if<std::string>(&value)) {
    // Control characters and escape sequences are shown escaped, never sent raw.
    return "\"" + printable(*s, s->size() > 60 ? 57 : 60) + "\"";
  }
  const GgufArray& a = as_array();
  std::string out = fmt::format("[{} x {}]", a.values.size(), gguf_type_name(a.element_type));
  if (a.element_type != GgufType::ARRAY && !a.values.empty()) {
    out += " [";
    for (size_t k = 0; k < a.values.size() && k < max_items; ++k) {
      if (k) out += ", ";
      out += a.values[k].to_display(0);
    }
    if (a.values.size() > max_items) out += ", ...";
    out += "]";
  }
  return out;
}

// ---------------------------------------------------------------- reader

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;
constexpr int kMaxDims = 4;

class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return size_ - offset_; }

  void need(size_t n, const char* what) {
    if (n > remaining())
      fail_file(path_, "truncated: {} needs {} bytes at offset {} but the file has {} bytes", what,
                n, offset_, size_);
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + offset_, sizeof(T));
    offset_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail_file(path_, "{}: string length {} at offset {} runs past the end of the file", what, len,
                offset_ - 8);
    std::string s(reinterpret_cast<const char*>(data_ + offset_), len);
    offset_ += len;
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

size_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: return 8;
    case GgufType::ARRAY: return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) { return t <= 12; }

GgufValue read_value(Cursor& c, const std::string& path, const std::string& key, GgufType type,
                     int depth) {
  switch (type) {
    case GgufType::UINT8: return {type, uint64_t{c.read<uint8_t>(key.c_str())}};
    case GgufType::INT8: return {type, int64_t{c.read<int8_t>(key.c_str())}};
    case GgufType::UINT16: return {type, uint64_t{c.read<uint16_t>(key.c_str())}};
    case GgufType::INT16: return {type, int64_t{c.read<int16_t>(key.c_str())}};
    case GgufType::UINT32: return {type, uint64_t{c.read<uint32_t>(key.c_str())}};
    case GgufType::INT32: return {type, int64_t{c.read<int32_t>(key.c_str())}};
    case GgufType::UINT64: return {type, c.read<uint64_t>(key.c_str())};
    case GgufType::INT64: return {type, c.read<int64_t>(key.c_str())};
    case GgufType::FLOAT32: return {type, double{c.read<float>(key.c_str())}};
    case GgufType::FLOAT64: return {type, c.read<double>(key.c_str())};
    case GgufType::BOOL: {
      uint8_t b = c.read<uint8_t>(key.c_str());
      if (b > 1) fail_file(path, "metadata '{}': bool value {} is neither 0 nor 1", key, b);
      return {type, b != 0};
    }
    case GgufType::STRING: return {type, c.read_string(key.c_str())};
    case GgufType::ARRAY: {
      if (depth >= kMaxArrayDepth)
        fail_file(path, "metadata '{}': arrays nested deeper than {}", key, kMaxArrayDepth);
      uint32_t et = c.read<uint32_t>(key.c_str());
      if (!valid_type(et)) fail_file(path, "metadata '{}': unknown array element type {}", key, et);
      uint64_t count = c.read<uint64_t>(key.c_str());
      GgufType elem = static_cast<GgufType>(et);
      if (count > c.remaining() / min_value_bytes(elem))
        fail_file(path, "metadata '{}': array of {} elements runs past the end of the file", key,
                  count);
      auto arr = std::make_shared<GgufArray>();
      arr->element_type = elem;
      arr->values.reserve(count);
      for (uint64_t i = 0; i < count; ++i) arr->values.push_back(read_value(c, path, key, elem, depth + 1));
      return {type, std::move(arr)};
    }
  }
  fail_file(path, "metadata '{}': unknown value type {}", key, static_cast<uint32_t>(type));
}

}  // namespace

GgufFile::GgufFile(const std::string& path) : file_(path) {
  Cursor c(path, file_.data(), file_.size());
  if (file_.size() < 4) fail_file(path, "not a GGUF file (only {} bytes)", file_.size());
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kGgufMagic) fail_file(path, "not a GGUF file (bad magic 0x{:08x})", magic);
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    fail_file(path, "unsupported GGUF version {} (supported: 2, 3)", version_);
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each kv needs at least 8 (key len) + 4 (type) + 1 bytes; each tensor info 8+4+8+4+8.
  if (n_kv > c.remaining() / 13) fail_file(path, "metadata count {} exceeds the file size", n_kv);

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    // Keys are quoted in messages escaped (they may hold control characters or NULs).
    const std::string shown = printable(key, 80);
    uint32_t t = c.read<uint32_t>("metadata type");
    if (!valid_type(t)) fail_file(path, "metadata '{}': unknown value type {}", shown, t);
    GgufValue v = read_value(c, path, shown, static_cast<GgufType>(t), 0);
    if (meta_index_.count(key)) fail_file(path, "duplicate metadata key '{}'", shown);
    meta_index_[key] = metadata_.size();
    metadata_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find_meta("general.alignment")) {
    int64_t al = 0;
    try {
      al = a->as_int();
    } catch (const Error& e) {
      fail_file(path, "general.alignment: {}", e.what());
    }
    if (al <= 0 || (al & (al - 1)) != 0)
      fail_file(path, "general.alignment {} is not a positive power of two", al);
    alignment_ = static_cast<uint64_t>(al);
  }

  if (n_tensors > c.remaining() / 32) fail_file(path, "tensor count {} exceeds the file size", n_tensors);
  struct RawTensor {
    uint32_t type;
    uint64_t offset;
  };
  std::vector<RawTensor> raw;
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo ti;
    ti.name = c.read_string("tensor name");
    // Names are quoted in messages escaped (they may hold control characters or NULs).
    const auto shown = [&ti] { return printable(ti.name, 80); };
    uint32_t n_dims = c.read<uint32_t>("tensor dims");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail_file(path, "tensor '{}': {} dimensions (1 to {} supported)", shown(), n_dims, kMaxDims);
    std::vector<int64_t> ne(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t v = c.read<uint64_t>("tensor dim");
      if (v == 0 || v > (uint64_t{1} << 40))
        fail_file(path, "tensor '{}': dimension {} has size {}", shown(), d, v);
      if (numel > (uint64_t{1} << 50) / v)
        fail_file(path, "tensor '{}': element count overflows", shown());
      numel *= v;
      ne[d] = static_cast<int64_t>(v);
    }
    ti.shape.assign(ne.rbegin(), ne.rend());
    uint32_t type = c.read<uint32_t>("tensor type");
    uint64_t offset = c.read<uint64_t>("tensor offset");
    auto dt = dtype_from_ggml(type);
    if (!dt)
      fail_file(path, "tensor '{}': unsupported tensor type {} ({})", shown(), type,
                ggml_type_name(type));
    ti.dtype = *dt;
    const auto& tr = dtype_traits(*dt);
    if (ne[0] % tr.block_size != 0)
      fail_file(path, "tensor '{}': row length {} is not a multiple of the {} block size {}",
                shown(), ne[0], tr.name, tr.block_size);
    ti.nbytes = static_cast<int64_t>(numel / tr.block_size * tr.block_bytes);
    if (tensor_index_.count(ti.name)) fail_file(path, "duplicate tensor '{}'", shown());
    tensor_index_[ti.name] = tensors_.size();
    tensors_.push_back(std::move(ti));
    raw.push_back({type, offset});
  }

  uint64_t data_start = (c.offset() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > file_.size())
    fail_file(path, "truncated: tensor data would start at {} but the file has {} bytes", data_start,
              file_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    TensorInfo& ti = tensors_[i];
    const auto shown = [&ti] { return printable(ti.name, 80); };
    uint64_t off = raw[i].offset;
    if (off % alignment_ != 0)
      fail_file(path, "tensor '{}': offset {} is not aligned to {}", shown(), off, alignment_);
    uint64_t avail = file_.size() - data_start;
    if (off > avail || static_cast<uint64_t>(ti.nbytes) > avail - off)
      fail_file(path, "tensor '{}': data [{}, {}) lies past the end of the file ({} bytes of data)",
                shown(), off, off + ti.nbytes, avail);
    ti.data = file_.data() + data_start + off;
  }
}

const GgufValue* GgufFile::find_meta(const std::string& key) const {
  auto it = meta_index_.find(key);
  return it == meta_index_.end() ? nullptr : &metadata_[it->second].second;
}

const TensorInfo* GgufFile::find(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
template <typename F>
auto checked(const std::string& path, const std::string& key, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    fail_file(path, "metadata '{}': {}", key, e.what());
  }
}
}  // namespace

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find_meta(key);
  if (!v) return std::nullopt;
  return checked(path(), key, [&] { return v->as_int(); });
}
std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find_meta(key);
  if (!v) return std::nullopt;
  return checked(path(), key, [&] { return v->as_float(); });
}
std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find_meta(key);
  if (!v) return std::nullopt;
  return checked(path(), key, [&] { return v->as_bool(); });
}
std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find_meta(key);
  if (!v) return std::nullopt;
  return checked(path(), key, [&] { return v->as_string(); });
}
const GgufArray* GgufFile::get_array(const std::string& key) const {
  const GgufValue* v = find_meta(key);
  if (!v) return nullptr;
  return checked(path(), key, [&] { return &v->as_array(); });
}
std::string GgufFile::architecture() const {
  auto a = get_string("general.architecture");
  if (!a) fail_file(path(), "missing metadata 'general.architecture'");
  return *a;
}

}  // namespace attnsparse
