// The trainer's tokenizers: the byte tokenizer follows its definition, the SentencePiece
// vocabulary trained by spm_train encodes exactly as Debian's spm_encode (an independent
// implementation) does, and a model exported by the trainer tokenizes in the engine
// (Model::load) exactly as the trainer did.
#include <gtest/gtest.h>

#include "core/error.h"
#include "io/gguf_writer.h"
#include "model/model.h"
#include "train/text_tokenizer.h"
#include "train/torch/lm.h"
#include "train_test_util.h"

namespace attnsparse::train {
namespace {

using train_test::read_file;
using train_test::read_lines;
using train_test::ScratchDir;
using train_test::write_file;

// Lines beyond the training text: digits (split one by one), runs of spaces, a tab,
// characters the vocabulary lacks (byte fallback), punctuation.
const std::vector<std::string> kTrickyLines = {
    "In the year 1611, on the 2nd day: 12:34 and 1000 men.",
    "  two leading spaces,   three inside, and trailing  ",
    "a\ttab and \"quotes\" (parens) [brackets] {braces} <angle> #hash $dollar %percent",
    "Caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x94 \xE2\x80\x9Cquoted\xE2\x80\x9D \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",
    "UPPER lower MiXeD wOrDs xyzzy qwertyuiop",
    "Selah.",
};

void expect_same_ids_in_engine(const TextTokenizer& tok, const std::string& text, ScratchDir& dir) {
  LMConfig cfg = preset_config("llama", "tiny", tok.n_vocab(), 16);
  LM model(cfg, 1);
  const std::string path = dir / "model.gguf";
  export_gguf(model, tok, path, false);
  auto loaded = Model::load(path);
  EXPECT_EQ(loaded->tokenizer().encode(text, false), tok.encode(text));
  EXPECT_EQ(loaded->tokenizer().n_vocab(), tok.n_vocab());
  // With specials: BOS first, as the trainer's windows start.
  auto with_bos = loaded->tokenizer().encode(text, true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], tok.bos_id());
}

TEST(ByteTokenizer, IdsFollowTheDefinition) {
  // Definition: <unk>=0 <s>=1 </s>=2, byte b -> 3 + b, a space -> "▁" = 259.
  TextTokenizer tok = TextTokenizer::byte_level();
  EXPECT_EQ(tok.n_vocab(), 260);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  const std::string text = "In the\nbeginning,\t\xC3\xA9 <x>!";
  std::vector<int32_t> expected;
  for (unsigned char c : text) expected.push_back(c == ' ' ? 259 : 3 + c);
  EXPECT_EQ(tok.encode(text), expected);
  EXPECT_EQ(tok.decode(expected), text);
}

TEST(ByteTokenizer, ExportedModelTokenizesTheSame) {
  ScratchDir dir;
  TextTokenizer tok = TextTokenizer::byte_level();
  expect_same_ids_in_engine(tok, read_file(train_test::kjv_sample()), dir);
  for (const auto& line : kTrickyLines) expect_same_ids_in_engine(tok, line, dir);
}

class SpmTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!train_test::have_tool("spm_train") || !train_test::have_tool("spm_encode")) return;
    tok_ = new TextTokenizer(TextTokenizer::train_spm({train_test::kjv_sample()}, 600));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_) {
      const char* ci = std::getenv("CI");
      if (ci && std::string(ci) == "true") FAIL() << "spm_train/spm_encode missing (package sentencepiece)";
      GTEST_SKIP() << "spm_train/spm_encode not installed (package sentencepiece)";
    }
  }
  static TextTokenizer* tok_;
};
TextTokenizer* SpmTokenizer::tok_ = nullptr;

TEST_F(SpmTokenizer, VocabularyHasTheRequestedSizeAndSpecials) {
  EXPECT_EQ(tok_->kind(), "spm");
  EXPECT_EQ(tok_->n_vocab(), 600);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  SpmModel m = SpmModel::parse(tok_->spm_proto(), "test");
  ASSERT_EQ(m.pieces.size(), 600u);
  EXPECT_EQ(m.pieces[0].text, "<unk>");
  EXPECT_EQ(m.pieces[0].type, 2);
  EXPECT_EQ(m.pieces[1].text, "<s>");
  EXPECT_EQ(m.pieces[1].type, 3);
  EXPECT_EQ(m.pieces[3].text, "<0x00>");
  EXPECT_EQ(m.pieces[3].type, 6);
  EXPECT_EQ(m.pieces[258].text, "<0xFF>");
  EXPECT_FALSE(m.add_dummy_prefix);
}

TEST_F(SpmTokenizer, SameIdsAsSpmEncodeOnEveryLine) {
  ScratchDir dir;
  write_file(dir / "m.model", tok_->spm_proto());
  std::vector<std::string> lines = read_lines(train_test::kjv_sample());
  lines.insert(lines.end(), kTrickyLines.begin(), kTrickyLines.end());
  std::string input;
  for (const auto& l : lines) input += l + "\n";
  write_file(dir / "lines.txt", input);
  auto r = train_test::run_command("spm_encode --model=" + dir / "m.model" +
                                   " --output_format=id < " + dir / "lines.txt" + " > " + dir / "ids.txt", train_test::Output::merged);
  ASSERT_EQ(r.status, 0) << r.out;
  std::vector<std::string> id_lines = read_lines(dir / "ids.txt");
  ASSERT_EQ(id_lines.size(), lines.size());
  size_t checked = 0, tokens = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<int32_t> expected;
    std::stringstream ss(id_lines[i]);
    int32_t id;
    while (ss >> id) expected.push_back(id);
    EXPECT_EQ(tok_->encode(lines[i]), expected) << "line " << i << ": " << lines[i];
    ++checked;
    tokens += expected.size();
  }
  EXPECT_GT(checked, 100u);
  EXPECT_GT(tokens, 2000u);
}

TEST_F(SpmTokenizer, DecodeInvertsEncode) {
  std::vector<std::string> texts = kTrickyLines;
  texts.push_back(read_file(train_test::kjv_sample()));
  for (const auto& t : texts) EXPECT_EQ(tok_->decode(tok_->encode(t)), t);
}

TEST_F(SpmTokenizer, ExportedModelTokenizesTheSame) {
  ScratchDir dir;
  expect_same_ids_in_engine(*tok_, read_file(train_test::kjv_sample()), dir);
  for (const auto& line : kTrickyLines) expect_same_ids_in_engine(*tok_, line, dir);
}

TEST_F(SpmTokenizer, CheckpointRoundTripAndModelFile) {
  const std::string text = read_file(train_test::kjv_sample());
  TextTokenizer again = TextTokenizer::deserialize(tok_->serialize());
  EXPECT_EQ(again.encode(text), tok_->encode(text));
  ScratchDir dir;
  write_file(dir / "m.model", tok_->spm_proto());
  TextTokenizer from_file = TextTokenizer::from_spec("spm:" + dir / "m.model", {});
  EXPECT_EQ(from_file.encode(text), tok_->encode(text));
}

TEST_F(SpmTokenizer, TrainingIsDeterministic) {
  TextTokenizer second = TextTokenizer::train_spm({train_test::kjv_sample()}, 600);
  SpmModel a = SpmModel::parse(tok_->spm_proto(), "a"), b = SpmModel::parse(second.spm_proto(), "b");
  ASSERT_EQ(a.pieces.size(), b.pieces.size());
  for (size_t i = 0; i < a.pieces.size(); ++i) {
    EXPECT_EQ(a.pieces[i].text, b.pieces[i].text) << i;
    EXPECT_EQ(a.pieces[i].score, b.pieces[i].score) << i;
  }
}

TEST(TokenizerSpec, BadSpecsGiveClearErrors) {
  auto message = [](const std::string& spec) {
    try {
      TextTokenizer::from_spec(spec, {train_test::kjv_sample()});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("bpe:100").find("expected byte, spm:VOCAB_SIZE"), std::string::npos);
  EXPECT_NE(message("spm:").find("expected spm:VOCAB_SIZE"), std::string::npos);
  EXPECT_NE(message("spm:10").find("300..1000000"), std::string::npos);
  EXPECT_NE(message("spm:/nonexistent/x.model").find("/nonexistent/x.model: no such file"), std::string::npos);
  EXPECT_NE(message("gguf:/nonexistent/m.gguf").find("/nonexistent/m.gguf"), std::string::npos);
  EXPECT_NE(message("gguf:").find("expected gguf:FILE"), std::string::npos);
  // A file that is not a SentencePiece model.
  ScratchDir dir;
  write_file(dir / "bad.model", "this is not a protobuf \xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF");
  EXPECT_NE(message("spm:" + dir / "bad.model").find("not a SentencePiece model"), std::string::npos);
  EXPECT_THROW(SpmModel::parse("", "empty"), FormatError);
}

TEST(TokenizerSpec, SpmTrainFailureIsReported) {
  if (!train_test::have_tool("spm_train")) GTEST_SKIP() << "spm_train not installed";
  // 14 kB of text cannot give 50000 pieces: spm_train refuses, and we say why.
  try {
    TextTokenizer::from_spec("spm:50000", {train_test::kjv_sample()});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("spm_train failed"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attnsparse::train
