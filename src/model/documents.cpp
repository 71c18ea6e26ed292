#include "model/documents.h"

#include "core/error.h"
#include "model/model.h"

namespace attnsparse {

PreparedDocument prepare_document(const Model& model, const Document& doc, int64_t limit, DocumentCut cut) {
  const int64_t n_vocab = model.config().n_vocab;
  PreparedDocument p;
  p.id = doc.id;
  p.source = doc.source;
  p.dataset = doc.dataset;
  p.tokens = doc.tokens ? *doc.tokens : model.tokenizer().encode(doc.text, true);
  for (size_t i = 0; i < p.tokens.size(); ++i)
    if (p.tokens[i] < 0 || p.tokens[i] >= n_vocab)
      fail_file(doc.source, "token id {} at index {} is out of range (vocabulary size {})", p.tokens[i], i, n_vocab);
  p.original_tokens = int64_t(p.tokens.size());
  if (cut == DocumentCut::Middle) {
    p.tokens = truncate_middle(p.tokens, limit);  // (checks limit >= 1)
  } else {
    if (limit < 1) fail_usage("maximum token count must be at least 1 (got {})", limit);
    if (p.original_tokens > limit) p.tokens.resize(size_t(limit));
  }
  p.truncated = int64_t(p.tokens.size()) < p.original_tokens;
  return p;
}

}  // namespace attnsparse
