// Hugging Face model directories: config.json + *.safetensors (one file or shards).
#pragma once
#include <memory>
#include <string>

#include "io/tensor_source.h"

namespace attnsparse {

// Every tensor of every *.safetensors file in `dir`, memory-mapped (F32, F16, BF16).
// Throws FormatError naming the file for malformed headers, unknown dtypes, offsets out
// of range or duplicate tensor names.
std::unique_ptr<TensorSource> open_safetensors_model_dir(const std::string& dir);

}  // namespace attnsparse
