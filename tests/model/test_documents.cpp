// prepare_document (model/documents.h), the document preparation analyze, eval-policy
// and theory fit share: token files used as they are, text with the vocabulary's BOS,
// ids checked against the vocabulary, the middle cut of LongBench and the head cut.
#include <gtest/gtest.h>

#include <numeric>

#include "core/error.h"
#include "model/documents.h"
#include "model/model.h"
#include "model/model_test_util.h"

namespace attnsparse {
namespace {

TEST(PrepareDocument, CutsCheckAndTokenize) {
  REQUIRE_SHARED(gguf, "models/llama-spm-f32.gguf");
  const auto model = Model::load(gguf);
  Document d;
  d.id = "doc";
  d.source = "ids.tok";
  d.dataset = "set";
  d.tokens = std::vector<int32_t>(10);
  std::iota(d.tokens->begin(), d.tokens->end(), 100);  // 100..109
  const PreparedDocument whole = prepare_document(*model, d, 10);
  EXPECT_EQ(whole.tokens, *d.tokens);
  EXPECT_FALSE(whole.truncated);
  EXPECT_EQ(whole.original_tokens, 10);
  EXPECT_EQ(whole.id, "doc");
  EXPECT_EQ(whole.dataset, "set");
  // Middle: the first 7/2 = 3 and the last 4 ids; head: the first 7.
  const PreparedDocument middle = prepare_document(*model, d, 7);
  EXPECT_EQ(middle.tokens, (std::vector<int32_t>{100, 101, 102, 106, 107, 108, 109}));
  EXPECT_TRUE(middle.truncated);
  EXPECT_EQ(middle.original_tokens, 10);
  const PreparedDocument head = prepare_document(*model, d, 7, DocumentCut::Head);
  EXPECT_EQ(head.tokens, (std::vector<int32_t>{100, 101, 102, 103, 104, 105, 106}));
  EXPECT_TRUE(head.truncated);
  EXPECT_THROW(prepare_document(*model, d, 0), UsageError);
  EXPECT_THROW(prepare_document(*model, d, 0, DocumentCut::Head), UsageError);
  // Ids outside the vocabulary: one error naming the file, the id and its index.
  (*d.tokens)[4] = int32_t(model->config().n_vocab);
  try {
    prepare_document(*model, d, 100);
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()), "ids.tok: token id 32000 at index 4 is out of range (vocabulary size 32000)");
  }
  // Text: the tokenizer's ids with BOS first.
  Document text;
  text.source = "a.txt";
  text.text = "In the beginning";
  const PreparedDocument t = prepare_document(*model, text, 100);
  EXPECT_EQ(t.tokens, model->tokenizer().encode("In the beginning", true));
  ASSERT_FALSE(t.tokens.empty());
  EXPECT_EQ(t.tokens[0], 1);  // <s>
}

}  // namespace
}  // namespace attnsparse
