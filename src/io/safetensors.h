// Hugging Face safetensors: one `model.safetensors` file, or a directory whose
// `model.safetensors.index.json` maps tensor names to shard files. Memory-mapped.
//
// File layout: u64 little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string", ...}}
// then the data; offsets are relative to the first byte after the header.
// Readable dtypes: F32, F16, BF16 (others give a FormatError naming the tensor and dtype).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "io/tensor_source.h"

namespace attnsparse {

class SafetensorsSource : public TensorSource {
 public:
  // `path` is a .safetensors file, or a directory holding model.safetensors or
  // model.safetensors.index.json. Validates every header (length, JSON, dtypes, shapes,
  // offsets in range, not overlapping, matching shape x dtype size; shards present,
  // tensor names unique) and throws FormatError "<file>: <problem>".
  explicit SafetensorsSource(const std::string& path);

  // A name that is no tensor but a key of __metadata__ whose value names one (how
  // safetensors.torch.save_model records a tensor it dropped as a duplicate) finds that
  // tensor; tensors() lists stored tensors only.
  const TensorInfo* find(const std::string& name) const override;
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::string& path() const override { return path_; }
  // "__metadata__" of the file(s) (string values), merged over shards.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The mapped files (one, or one per shard in index order).
  size_t n_files() const { return files_.size(); }

 private:
  void load_file(const std::string& file, const std::vector<std::string>* expected_names);

  std::string path_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Opens `dir`/model.safetensors or `dir`/model.safetensors.index.json (or `dir` itself
// when it is a .safetensors file). FormatError when neither exists.
std::unique_ptr<TensorSource> open_safetensors_dir(const std::string& dir);

// Writes tensors (name, dtype F32/F16/BF16, shape outermost first, data, nbytes) as a
// safetensors file, in the given order, header padded with spaces to 8 bytes. Writes
// path + ".tmp" and renames. Error for other dtypes or nbytes not matching the shape.
void write_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32", "F16", "BF16" <-> DType; nullopt-like: returns false when unsupported.
bool safetensors_dtype(const std::string& name, DType* out);
const char* safetensors_dtype_name(DType type);  // throws Error for unsupported types

}  // namespace attnsparse
