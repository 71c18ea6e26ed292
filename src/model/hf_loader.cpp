// A minimal safetensors reader for model directories (the io area's general reader may
// replace it): 8-byte little-endian header length, JSON header, raw data.
#include "model/hf_loader.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace attnsparse {
namespace {

class SafetensorsDir : public TensorSource {
 public:
  explicit SafetensorsDir(const std::string& dir) : dir_(dir) {
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".safetensors") files.push_back(entry.path().string());
    if (ec) fail_file(dir, "cannot list directory: {}", ec.message());
    if (files.empty()) fail_file(dir, "no *.safetensors file in the model directory");
    std::sort(files.begin(), files.end());
    for (const auto& f : files) read_file(f);
  }

  const TensorInfo* find(const std::string& name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::string& path() const override { return dir_; }

 private:
  void read_file(const std::string& path) {
    auto map = std::make_unique<MappedFile>(path);
    const uint8_t* base = map->data();
    const size_t size = map->size();
    if (size < 8) fail_file(path, "too short for a safetensors header");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
    if (header_len > size - 8) fail_file(path, "header length {} exceeds the file", header_len);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(base + 8, base + 8 + header_len);
    } catch (const nlohmann::json::exception& e) {
      fail_file(path, "invalid JSON header: {}", e.what());
    }
    if (!header.is_object()) fail_file(path, "header is not a JSON object");
    const uint8_t* data = base + 8 + header_len;
    const uint64_t data_size = size - 8 - header_len;
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") continue;
      const auto& v = it.value();
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
          !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
          !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        fail_file(path, "tensor '{}': header entry needs dtype, shape and data_offsets", it.key());
      TensorInfo t;
      t.name = it.key();
      const std::string dt = v["dtype"].get<std::string>();
      if (dt == "F32") t.dtype = DType::F32;
      else if (dt == "F16") t.dtype = DType::F16;
      else if (dt == "BF16") t.dtype = DType::BF16;
      else fail_file(path, "tensor '{}': dtype {} is not supported (F32, F16, BF16)", t.name, dt);
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned()) fail_file(path, "tensor '{}': bad shape", t.name);
        t.shape.push_back(d.get<int64_t>());
      }
      const auto& off = v["data_offsets"];
      if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        fail_file(path, "tensor '{}': bad data_offsets", t.name);
      const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
      if (begin > end || end > data_size)
        fail_file(path, "tensor '{}': data_offsets [{}, {}] outside the data ({} bytes)", t.name,
                  begin, end, data_size);
      const uint64_t want = static_cast<uint64_t>(t.numel()) * dtype_traits(t.dtype).block_bytes;
      if (end - begin != want)
        fail_file(path, "tensor '{}': {} bytes for shape with {} elements of {}", t.name,
                  end - begin, t.numel(), dt);
      t.data = data + begin;
      t.nbytes = static_cast<int64_t>(end - begin);
      if (!index_.emplace(t.name, tensors_.size()).second)
        fail_file(path, "tensor '{}' appears twice", t.name);
      tensors_.push_back(std::move(t));
    }
    maps_.push_back(std::move(map));
  }

  std::string dir_;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace

std::unique_ptr<TensorSource> open_safetensors_model_dir(const std::string& dir) {
  return std::make_unique<SafetensorsDir>(dir);
}

}  // namespace attnsparse
