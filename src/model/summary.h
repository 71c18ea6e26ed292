// What a loaded model holds, for the info verb, bench's JSON and the Python Model.info:
// parameters and bytes per weight type, and its tokenizer's facts (or why it has none).
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "model/model.h"

namespace attnsparse {

struct DtypeTally {
  int64_t tensors = 0, elements = 0, bytes = 0;
};

struct WeightSummary {
  std::map<std::string, DtypeTally> by_dtype;  // by dtype name ("f32", "q8_0", ...)
  int64_t parameters = 0;                      // elements of every tensor
  int64_t bytes = 0;                           // as stored
  // The dtype holding the most bytes (the first by name on ties); "" without tensors.
  std::string dominant_dtype() const;
};

WeightSummary summarize_weights(const Model& model);

// A model without a usable tokenizer is still a model: `error` says why, and the other
// fields are left at their defaults.
struct TokenizerSummary {
  std::string error;  // empty: the tokenizer loaded
  std::string type;
  int64_t n_vocab = 0;
  int32_t bos = -1, eos = -1;
  bool add_bos = false;
};

TokenizerSummary summarize_tokenizer(const Model& model);

}  // namespace attnsparse
