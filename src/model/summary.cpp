#include "model/summary.h"

#include "core/error.h"
#include "io/tensor_source.h"

namespace attnsparse {

std::string WeightSummary::dominant_dtype() const {
  std::string name;
  int64_t best = -1;
  for (const auto& [dtype, t] : by_dtype)
    if (t.bytes > best) best = t.bytes, name = dtype;
  return name;
}

WeightSummary summarize_weights(const Model& model) {
  WeightSummary s;
  for (const TensorInfo& t : model.weights().tensors()) {
    DtypeTally& tally = s.by_dtype[dtype_name(t.dtype)];
    ++tally.tensors;
    tally.elements += t.numel();
    tally.bytes += t.nbytes;
    s.parameters += t.numel();
    s.bytes += t.nbytes;
  }
  return s;
}

TokenizerSummary summarize_tokenizer(const Model& model) {
  TokenizerSummary s;
  try {
    const Tokenizer& tok = model.tokenizer();
    s.type = tok.type_name();
    s.n_vocab = tok.n_vocab();
    s.bos = tok.bos_id();
    s.eos = tok.eos_id();
    s.add_bos = tok.add_bos();
  } catch (const Error& e) {
    s = TokenizerSummary{};
    s.error = e.what();
  }
  return s;
}

}  // namespace attnsparse
