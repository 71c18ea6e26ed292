// GGUF v3 writer: metadata of every type (incl. nested arrays, each value written with
// its stored type), tensors as encoded bytes of any type, written to path.tmp and renamed.
#include "io/gguf_writer.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <limits>
#include <memory>

#include "core/error.h"
#include "core/files.h"

namespace attnsparse {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF"
constexpr uint32_t kGgufVersion = 3;

uint32_t ggml_id(DType t) { return static_cast<uint32_t>(t); }

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t tensor_bytes(DType type, const std::vector<int64_t>& shape) {
  return dtype_row_bytes(type, shape.back()) * (numel_of(shape) / shape.back());
}

// Buffered little-endian output into a FILE*; errors become FormatError naming the path.
class Out {
 public:
  Out(const std::string& path, const std::string& shown) : shown_(shown) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) fail_file(shown_, "cannot write: {}", std::strerror(errno));
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  }
  ~Out() {
    if (f_) std::fclose(f_);
  }
  void bytes(const void* p, size_t n) {
    if (n == 0) return;
    if (std::fwrite(p, 1, n, f_) != n) fail_file(shown_, "write failed: {}", std::strerror(errno));
    pos_ += n;
  }
  template <typename T>
  void pod(T v) {
    bytes(&v, sizeof(T));
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static const uint8_t zeros[256] = {};
    uint64_t rem = pos_ % alignment;
    if (rem == 0) return;
    uint64_t n = alignment - rem;
    while (n > 0) {
      uint64_t k = std::min<uint64_t>(n, sizeof(zeros));
      bytes(zeros, k);
      n -= k;
    }
  }
  void close() {
    if (std::fflush(f_) != 0 || std::ferror(f_)) {
      fail_file(shown_, "write failed: {}", std::strerror(errno));
    }
    int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) fail_file(shown_, "write failed: {}", std::strerror(errno));
  }
  uint64_t pos() const { return pos_; }

 private:
  std::string shown_;
  FILE* f_ = nullptr;
  uint64_t pos_ = 0;
};

uint64_t as_u64(const GgufValue& v, const std::string& key) {
  if (auto* u = std::get_if<uint64_t>(&v.value)) return *u;
  if (auto* i = std::get_if<int64_t>(&v.value)) return static_cast<uint64_t>(*i);
  if (auto* b = std::get_if<bool>(&v.value)) return *b ? 1 : 0;
  fail("GGUF writer: metadata '{}': {} value holds no integer", key, gguf_type_name(v.type));
}
int64_t as_i64(const GgufValue& v, const std::string& key) {
  if (auto* i = std::get_if<int64_t>(&v.value)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v.value)) return static_cast<int64_t>(*u);
  if (auto* b = std::get_if<bool>(&v.value)) return *b ? 1 : 0;
  fail("GGUF writer: metadata '{}': {} value holds no integer", key, gguf_type_name(v.type));
}

// Writes the value's payload (no type tag) as type `type`.
void write_value(Out& o, const std::string& key, GgufType type, const GgufValue& v) {
  if (v.type != type)
    fail("GGUF writer: metadata '{}': array element of type {} in an array of {}", key,
         gguf_type_name(v.type), gguf_type_name(type));
  switch (type) {
    case GgufType::UINT8: o.pod<uint8_t>(static_cast<uint8_t>(as_u64(v, key))); return;
    case GgufType::INT8: o.pod<int8_t>(static_cast<int8_t>(as_i64(v, key))); return;
    case GgufType::UINT16: o.pod<uint16_t>(static_cast<uint16_t>(as_u64(v, key))); return;
    case GgufType::INT16: o.pod<int16_t>(static_cast<int16_t>(as_i64(v, key))); return;
    case GgufType::UINT32: o.pod<uint32_t>(static_cast<uint32_t>(as_u64(v, key))); return;
    case GgufType::INT32: o.pod<int32_t>(static_cast<int32_t>(as_i64(v, key))); return;
    case GgufType::UINT64: o.pod<uint64_t>(as_u64(v, key)); return;
    case GgufType::INT64: o.pod<int64_t>(as_i64(v, key)); return;
    case GgufType::FLOAT32: o.pod<float>(static_cast<float>(v.as_float())); return;
    case GgufType::FLOAT64: o.pod<double>(v.as_float()); return;
    case GgufType::BOOL: o.pod<uint8_t>(v.as_bool() ? 1 : 0); return;
    case GgufType::STRING: o.str(v.as_string()); return;
    case GgufType::ARRAY: {
      const GgufArray& a = v.as_array();
      o.pod<uint32_t>(static_cast<uint32_t>(a.element_type));
      o.pod<uint64_t>(a.values.size());
      for (const GgufValue& e : a.values) write_value(o, key, a.element_type, e);
      return;
    }
  }
  fail("GGUF writer: metadata '{}': unknown type {}", key, static_cast<uint32_t>(type));
}

}  // namespace

GgufWriter::GgufWriter() { set_u32("general.alignment", 32); }

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::copy_metadata_prefix(const GgufFile& source, const std::string& prefix) {
  for (const auto& [k, v] : source.metadata())
    if (k.compare(0, prefix.size(), prefix) == 0) set(k, v);
}

void GgufWriter::check_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape) {
  if (name.empty()) fail("GGUF writer: empty tensor name");
  if (shape.empty() || shape.size() > 4)
    fail("GGUF writer: tensor '{}' has {} dimensions (1 to 4 supported)", name, shape.size());
  for (int64_t d : shape)
    if (d <= 0) fail("GGUF writer: tensor '{}' has a dimension of size {}", name, d);
  const auto& tr = dtype_traits(type);
  if (shape.back() % tr.block_size != 0)
    fail("GGUF writer: tensor '{}': row length {} is not a multiple of the {} block size {}", name,
         shape.back(), tr.name, tr.block_size);
}

void GgufWriter::add_tensor_raw(const std::string& name, DType type, std::vector<int64_t> shape,
                                const uint8_t* bytes, int64_t nbytes) {
  check_tensor(name, type, shape);
  if (nbytes != tensor_bytes(type, shape))
    fail("GGUF writer: tensor '{}': {} bytes given, {} {} needs {}", name, nbytes,
         dtype_name(type), numel_of(shape), tensor_bytes(type, shape));
  add_tensor_bytes(name, type, std::move(shape), std::vector<uint8_t>(bytes, bytes + nbytes));
}

void GgufWriter::add_tensor_bytes(const std::string& name, DType type, std::vector<int64_t> shape,
                                  std::vector<uint8_t> bytes) {
  check_tensor(name, type, shape);
  if (static_cast<int64_t>(bytes.size()) != tensor_bytes(type, shape))
    fail("GGUF writer: tensor '{}': {} bytes given, {} {} needs {}", name, bytes.size(),
         dtype_name(type), numel_of(shape), tensor_bytes(type, shape));
  for (const auto& p : tensors_)
    if (p.name == name) fail("GGUF writer: duplicate tensor '{}'", name);
  tensors_.push_back(PendingTensor{name, type, std::move(shape), std::move(bytes), {}});
}

void GgufWriter::add_tensor_streamed(const std::string& name, DType type,
                                     std::vector<int64_t> shape, RowBytes fill) {
  check_tensor(name, type, shape);
  if (!fill) fail("GGUF writer: tensor '{}': empty generator", name);
  for (const auto& p : tensors_)
    if (p.name == name) fail("GGUF writer: duplicate tensor '{}'", name);
  tensors_.push_back(PendingTensor{name, type, std::move(shape), {}, std::move(fill)});
}

void GgufWriter::write(const std::string& path) const {
  uint64_t alignment = 32;
  for (const auto& [k, v] : metadata_) {
    if (k != "general.alignment") continue;
    int64_t al = 0;
    try {
      al = v.as_int();
    } catch (const Error&) {
      fail("GGUF writer: general.alignment must be an integer");
    }
    if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      fail("GGUF writer: general.alignment {} is not a power of two", al);
    alignment = static_cast<uint64_t>(al);
  }

  // Never replaces a device, FIFO or directory; a symlink is followed (core/files.h).
  const std::string target = resolve_output_path(path);
  const std::string tmp = target + ".tmp";
  try {
    Out o(tmp, path);
    o.pod<uint32_t>(kGgufMagic);
    o.pod<uint32_t>(kGgufVersion);
    o.pod<uint64_t>(tensors_.size());
    o.pod<uint64_t>(metadata_.size());
    for (const auto& [k, v] : metadata_) {
      o.str(k);
      o.pod<uint32_t>(static_cast<uint32_t>(v.type));
      write_value(o, k, v.type, v);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      o.str(t.name);
      o.pod<uint32_t>(static_cast<uint32_t>(t.shape.size()));
      for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) o.pod<uint64_t>(*it);
      o.pod<uint32_t>(ggml_id(t.type));
      o.pod<uint64_t>(offset);
      const uint64_t nbytes = static_cast<uint64_t>(tensor_bytes(t.type, t.shape));
      offset += (nbytes + alignment - 1) / alignment * alignment;
    }
    o.pad_to(alignment);

    // Streamed tensors are double-buffered: block k+1 is produced (generated, encoded)
    // while a background task writes block k, so the CPU work overlaps the disk writes.
    std::vector<uint8_t> qbuf[2];
    int cur = 0;
    std::future<void> pending;
    auto wait_pending = [&] {
      if (pending.valid()) pending.get();  // rethrows a write error
    };
    for (const auto& t : tensors_) {
      if (!t.fill) {
        wait_pending();
        o.bytes(t.bytes.data(), t.bytes.size());
      } else {
        const int64_t cols = t.shape.back();
        const int64_t rows = numel_of(t.shape) / cols;
        const int64_t row_bytes = dtype_row_bytes(t.type, cols);
        // About 16M values per block.
        const int64_t block_rows = std::max<int64_t>(1, (int64_t{1} << 24) / cols);
        for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
          const int64_t nr = std::min(block_rows, rows - r0);
          std::vector<uint8_t>& q = qbuf[cur];
          cur ^= 1;
          q.resize(static_cast<size_t>(nr * row_bytes));
          t.fill(r0, nr, q.data());
          wait_pending();
          pending = std::async(std::launch::async, [&o, &q] { o.bytes(q.data(), q.size()); });
        }
      }
      wait_pending();
      o.pad_to(alignment);
    }
    wait_pending();
    o.close();
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    fail_file(path, "cannot rename {} to it: {}", tmp, std::strerror(err));
  }
}

}  // namespace attnsparse
