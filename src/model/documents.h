// Documents as token ids for one model: the preparation analyze, eval-policy and theory
// fit share (src/analysis/analyze_job, src/policies/evaluate, src/theory/fit_model).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/corpus.h"

namespace attnsparse {

class Model;

// How a document longer than the limit is cut: in the middle as LongBench does (the first
// limit/2 and the last limit - limit/2 tokens), or keeping its first `limit` tokens.
enum class DocumentCut { Middle, Head };

struct PreparedDocument {
  std::string id, source, dataset;
  std::vector<int32_t> tokens;   // after the cut
  int64_t original_tokens = 0;   // before it
  bool truncated = false;
};

// Tokenizes the text (with BOS as the model's vocabulary says; a .tok file's ids are used
// as they are), checks every id against the vocabulary — FormatError "SOURCE: token id N
// at index I is out of range (vocabulary size V)" — and cuts to `limit` (>= 1, else
// UsageError) tokens.
PreparedDocument prepare_document(const Model& model, const Document& doc, int64_t limit,
                                  DocumentCut cut = DocumentCut::Middle);

}  // namespace attnsparse
