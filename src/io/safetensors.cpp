#include "io/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/text.h"
#include "io/json_file.h"

namespace attnsparse {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

bool safetensors_dtype(const std::string& name, DType* out) {
  if (name == "F32") *out = DType::F32;
  else if (name == "F16") *out = DType::F16;
  else if (name == "BF16") *out = DType::BF16;
  else return false;
  return true;
}

const char* safetensors_dtype_name(DType type) {
  switch (type) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    default: fail("safetensors cannot hold {} tensors (F32, F16, BF16 only)", dtype_name(type));
  }
}

namespace {

constexpr uint64_t kMaxHeader = uint64_t{100} << 20;  // as the reference implementation

std::string json_kind(const json& j) { return j.type_name(); }

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

SafetensorsSource::SafetensorsSource(const std::string& path) : path_(path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    load_file(path, nullptr);
  } else {
    const std::string index = (fs::path(path) / "model.safetensors.index.json").string();
    const std::string single = (fs::path(path) / "model.safetensors").string();
    if (fs::exists(index, ec)) {
      const json j = read_json_file(index);  // regular file, bounded, no duplicate keys
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        fail_file(index, "no \"weight_map\" object");
      // shard file -> names it should hold, shards in first-appearance order
      std::vector<std::string> shard_order;
      std::map<std::string, std::vector<std::string>> names_of;
      for (auto& [name, shard] : j["weight_map"].items()) {
        if (!shard.is_string())
          fail_file(index, "weight_map['{}'] is a {}, expected a file name", printable(name, 80), json_kind(shard));
        const std::string s = shard.get<std::string>();
        if (s.empty() || fs::path(s).is_absolute() || s.find("..") != std::string::npos ||
            s.find('/') != std::string::npos)
          fail_file(index, "weight_map['{}']: shard name '{}' is not a file in the directory", printable(name, 80),
                    printable(s, 80));
        if (!names_of.count(s)) shard_order.push_back(s);
        names_of[s].push_back(name);
      }
      if (shard_order.empty()) fail_file(index, "empty weight_map");
      for (const std::string& s : shard_order) {
        const std::string f = (fs::path(path) / s).string();
        if (!fs::exists(f, ec))
          fail_file(index, "shard '{}' (holding '{}') is missing", printable(s, 80), printable(names_of[s].front(), 80));
        load_file(f, &names_of[s]);
      }
    } else if (fs::exists(single, ec)) {
      load_file(single, nullptr);
    } else {
      fail_file(path, "no model.safetensors or model.safetensors.index.json in the directory");
    }
  }
}

void SafetensorsSource::load_file(const std::string& file,
                                  const std::vector<std::string>* expected_names) {
  files_.push_back(std::make_unique<MappedFile>(file));
  const MappedFile& m = *files_.back();
  if (m.size() < 8)
    fail_file(file, "not a safetensors file: {} bytes, the 8-byte header length is missing", m.size());
  const uint64_t n = read_u64_le(m.data());
  if (n > m.size() - 8)
    fail_file(file, "header length {} runs past the end of the file ({} bytes)", n, m.size());
  if (n > kMaxHeader) fail_file(file, "header length {} is larger than 100 MiB", n);
  if (n < 2) fail_file(file, "header length {} is too small for a JSON object", n);
  const char* hdr = reinterpret_cast<const char*>(m.data() + 8);
  // Duplicate tensor names would silently keep one of the entries: refused.
  const json j = parse_json_text(std::string_view(hdr, n), file);
  if (!j.is_object()) fail_file(file, "the JSON header is a {}, expected an object", json_kind(j));
  const uint8_t* data = m.data() + 8 + n;
  const uint64_t data_size = m.size() - 8 - n;

  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  const size_t first = tensors_.size();
  // Names, keys and dtypes from the header are quoted in messages escaped (one line).
  const auto q = [](const std::string& text) { return printable(text, 80); };
  for (auto& [name, e] : j.items()) {
    if (name == "__metadata__") {
      if (!e.is_object()) fail_file(file, "__metadata__ is a {}, expected an object", json_kind(e));
      for (auto& [k, v] : e.items()) {
        if (!v.is_string())
          fail_file(file, "__metadata__['{}'] is a {}, expected a string", q(k), json_kind(v));
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!e.is_object()) fail_file(file, "tensor '{}': entry is a {}, expected an object", q(name), json_kind(e));
    if (!e.contains("dtype") || !e["dtype"].is_string())
      fail_file(file, "tensor '{}': missing or non-string \"dtype\"", q(name));
    if (!e.contains("shape") || !e["shape"].is_array())
      fail_file(file, "tensor '{}': missing or non-array \"shape\"", q(name));
    if (!e.contains("data_offsets") || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
      fail_file(file, "tensor '{}': \"data_offsets\" must be [begin, end]", q(name));
    const std::string dt = e["dtype"].get<std::string>();
    TensorInfo ti;
    ti.name = name;
    if (!safetensors_dtype(dt, &ti.dtype))
      fail_file(file, "tensor '{}': dtype {} is not supported (F32, F16, BF16)", q(name), q(dt));
    uint64_t numel = 1;
    for (const json& d : e["shape"]) {
      if (!d.is_number_unsigned())
        fail_file(file, "tensor '{}': shape entry {} is not a non-negative integer", q(name), q(d.dump()));
      const uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t{1} << 40) || (v != 0 && numel > (uint64_t{1} << 50) / v))
        fail_file(file, "tensor '{}': shape {} is too large", q(name), q(e["shape"].dump()));
      numel *= v;
      ti.shape.push_back(static_cast<int64_t>(v));
    }
    if (ti.shape.size() > 8) fail_file(file, "tensor '{}': {} dimensions", q(name), ti.shape.size());
    const json& off = e["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail_file(file, "tensor '{}': data_offsets {} are not non-negative integers", q(name), q(off.dump()));
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en) fail_file(file, "tensor '{}': data_offsets [{}, {}] run backwards", q(name), b, en);
    if (en > data_size)
      fail_file(file, "tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes)",
                q(name), b, en, data_size);
    const uint64_t expect = numel * dtype_traits(ti.dtype).block_bytes;
    if (en - b != expect)
      fail_file(file, "tensor '{}': data_offsets [{}, {}] hold {} bytes but {} {} needs {}", q(name), b,
                en, en - b, q(e["shape"].dump()), dt, expect);
    ti.data = data + b;
    ti.nbytes = static_cast<int64_t>(expect);
    if (index_.count(name)) fail_file(file, "tensor '{}' appears twice (also in another shard)", q(name));
    index_[name] = tensors_.size();
    spans.push_back({b, en, tensors_.size()});
    tensors_.push_back(std::move(ti));
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  // As the format requires, the tensors tile the data exactly: a header length that is off
  // (every tensor shifted) leaves a gap at the start or end and is refused.
  if (!spans.empty() && spans.front().begin != 0)
    fail_file(file, "the first tensor '{}' starts at data offset {}, not 0 (is the header length {} wrong?)",
              q(tensors_[spans.front().index].name), spans.front().begin, n);
  if (!spans.empty() && spans.back().end != data_size)
    fail_file(file, "the tensors end at data offset {} but the file holds {} data bytes (is the header length {} wrong?)",
              spans.back().end, data_size, n);
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin > spans[i - 1].end)
      fail_file(file, "gap between tensors '{}' and '{}' ([{}, {}] and [{}, {}])",
                q(tensors_[spans[i - 1].index].name), q(tensors_[spans[i].index].name),
                spans[i - 1].begin, spans[i - 1].end, spans[i].begin, spans[i].end);
    if (spans[i].begin < spans[i - 1].end)
      fail_file(file, "tensors '{}' and '{}' overlap ([{}, {}] and [{}, {}])",
                q(tensors_[spans[i - 1].index].name), q(tensors_[spans[i].index].name),
                spans[i - 1].begin, spans[i - 1].end, spans[i].begin, spans[i].end);
  }
  if (expected_names) {
    for (const std::string& nm : *expected_names) {
      auto it = index_.find(nm);
      if (it == index_.end() || it->second < first)
        fail_file(file, "tensor '{}' listed in the index is not in this shard", q(nm));
    }
  }
  // File order (by data offset) reads naturally in listings.
  std::vector<TensorInfo> mine(tensors_.begin() + static_cast<std::ptrdiff_t>(first), tensors_.end());
  for (size_t i = 0; i < spans.size(); ++i) tensors_[first + i] = mine[spans[i].index - first];
  for (size_t i = first; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorInfo* SafetensorsSource::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it != index_.end()) return &tensors_[it->second];
  // safetensors.torch.save_model drops tensors that share storage with another and
  // records "<dropped name>": "<kept name>" in __metadata__ (tied embeddings:
  // "model.embed_tokens.weight": "lm_head.weight").
  auto m = metadata_.find(name);
  if (m == metadata_.end()) return nullptr;
  it = index_.find(m->second);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::unique_ptr<TensorSource> open_safetensors_dir(const std::string& dir) {
  return std::make_unique<SafetensorsSource>(dir);
}

void write_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  ordered_json h = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json m = ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const TensorInfo& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") fail("safetensors: bad tensor name '{}'", t.name);
    if (!seen.insert(t.name).second) fail("safetensors: duplicate tensor '{}'", t.name);
    const char* dt = safetensors_dtype_name(t.dtype);
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail("safetensors: tensor '{}' has a negative dimension", t.name);
      numel *= d;
    }
    const int64_t nbytes = numel * dtype_traits(t.dtype).block_bytes;
    if (t.nbytes != nbytes)
      fail("safetensors: tensor '{}': {} bytes given, shape needs {}", t.name, t.nbytes, nbytes);
    if (nbytes > 0 && t.data == nullptr) fail("safetensors: tensor '{}' has no data", t.name);
    h[t.name] = {{"dtype", dt}, {"shape", t.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += static_cast<uint64_t>(nbytes);
  }
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');

  // Never replaces a device, FIFO or directory; a symlink is followed (core/files.h).
  const std::string target = resolve_output_path(path);
  const std::string tmp = target + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail_file(path, "cannot write: {}", std::strerror(errno));
  bool ok = true;
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  ok = ok && std::fwrite(len, 1, 8, f) == 8;
  ok = ok && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  for (const TensorInfo& t : tensors) {
    if (!ok) break;
    if (t.nbytes > 0) ok = std::fwrite(t.data, 1, static_cast<size_t>(t.nbytes), f) == static_cast<size_t>(t.nbytes);
  }
  const int err = errno;
  if (std::fclose(f) != 0) ok = false;
  if (!ok) {
    std::remove(tmp.c_str());
    fail_file(path, "write failed: {}", std::strerror(err));
  }
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const int e2 = errno;
    std::remove(tmp.c_str());
    fail_file(path, "cannot rename {} to it: {}", tmp, std::strerror(e2));
  }
}

}  // namespace attnsparse
