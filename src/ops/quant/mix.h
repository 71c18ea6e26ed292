// llama-quantize's file types: a name (Q4_K_M, Q8_0, ...) stands for a per-tensor choice
// of weight types (llama.cpp's llama_tensor_get_type without importance matrix for the
// mixes listed here) and a general.file_type id.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace attnsparse::ops::quant {

struct FileType {
  const char* name;       // as llama-quantize spells it
  uint32_t llama_ftype;   // general.file_type (LLAMA_FTYPE_MOSTLY_*)
  DType base;             // the type of most matrices
};

// general.file_type of a file whose matrices are all `type` (llama.cpp's "mostly" ids;
// the _S id for K types); nullopt where llama.cpp has none.
std::optional<uint32_t> uniform_file_type(DType type);

// Known names (case-insensitive; Q3_K / Q4_K / Q5_K are aliases of the _M mixes, as in
// llama-quantize); nullopt for anything else.
std::optional<FileType> find_file_type(std::string_view name);
// The names find_file_type accepts, for help and error texts.
std::string file_type_names();

// Where a tensor sits in the model, for the per-tensor rules.
struct TensorPlace {
  std::string name;          // GGUF tensor name, e.g. "blk.3.attn_v.weight"
  int64_t n_dims = 0;
  int64_t row_length = 0;    // innermost dimension
  int n_layer = 0;           // block count of the model
  int n_gqa = 1;             // n_head / n_head_kv
};

// The type a tensor is written as; nullopt: keep it as it is (norms, biases, 1-D and
// other tensors llama-quantize leaves alone). Throws Error when the rules pick a type
// whose row length does not fit and has no fallback we can write.
std::optional<DType> tensor_type(const FileType& ft, const TensorPlace& t);

}  // namespace attnsparse::ops::quant
