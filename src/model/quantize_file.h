// Rewriting a GGUF model in another weight type (the quantize verb): every metadata key is
// kept and general.file_type set; each tensor gets the type llama-quantize's rules pick for
// it without importance matrix (ops/quant/mix.h: norms, biases and other 1-D tensors stay
// as they are, the K mixes raise some matrices) and is decoded to f32 and encoded again
// while the file is written. The output goes to OUT.tmp and is renamed when complete.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "ops/quant/mix.h"

namespace attnsparse {

struct QuantizeSummary {
  int64_t tensors = 0;
  std::map<std::string, int> by_dtype;  // tensors written per dtype name
};

// Throws UsageError when out_path is the input file, Error / FormatError for bad input.
QuantizeSummary quantize_model_file(const std::string& in_path, const std::string& out_path,
                                    const ops::quant::FileType& file_type);

}  // namespace attnsparse
