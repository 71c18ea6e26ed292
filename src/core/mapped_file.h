// A read-only memory-mapped file (RAII). Model weights are used in place from the map.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace attnsparse {

class MappedFile {
 public:
  // Throws FormatError naming the path when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the resident pages wholly inside [p, p + n) (a part of this map that will not
  // be read again, e.g. weights packed into another layout); they are read back from the
  // file if touched later. No effect outside the map.
  void release(const void* p, size_t n) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace attnsparse
