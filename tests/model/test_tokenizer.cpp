// Tokenizers against llama.cpp's test vectors (../shared/reference/tokenizer), the same
// vocabularies loaded from Hugging Face tokenizer.json files that the test builds, the
// decode(encode(s)) == s round trip, and tokenizer_config.json BOS/EOS handling.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "model/hf_tokenizer_json.h"
#include "model/model_test_util.h"
#include "model/synth.h"
#include "model/tokenizer.h"

namespace attnsparse {
namespace {

using namespace testing;
namespace fs = std::filesystem;
using nlohmann::json;

std::string tokenizer_dir() { return std::string(ATTNSPARSE_SHARED_DIR) + "/reference/tokenizer"; }

// .inp: strings separated by "\n__ggml_vocab_test__\n"; .out: one line of ids per string.
struct Vectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<int32_t>> outputs;
};
Vectors read_vectors(const std::string& vocab) {
  Vectors v;
  const std::string inp = read_text(tokenizer_dir() + "/" + vocab + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  size_t pos = 0;
  while (pos < inp.size()) {
    const size_t e = inp.find(sep, pos);
    if (e == std::string::npos) break;
    v.inputs.push_back(inp.substr(pos, e - pos));
    pos = e + sep.size();
  }
  std::istringstream out(read_text(tokenizer_dir() + "/" + vocab + ".out"));
  std::string line;
  while (std::getline(out, line)) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    long long id;
    while (ls >> id) ids.push_back(static_cast<int32_t>(id));
    v.outputs.push_back(ids);
  }
  return v;
}

std::vector<std::string> vocabularies_with_vectors() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(tokenizer_dir(), ec)) {
    const std::string f = e.path().filename().string();
    if (f.size() > 4 && f.substr(f.size() - 4) == ".inp") names.push_back(f.substr(0, f.size() - 4));
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("missing");  // reported by the test itself
  return names;
}

std::string printable(const std::string& s) {
  std::string o;
  for (unsigned char c : s) o += c < 32 ? fmt::format("\\x{:02x}", c) : std::string(1, static_cast<char>(c));
  return o;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, EncodeMatchesLlamaCppAndDecodeRoundTrips) {
  const std::string vocab = GetParam();
  REQUIRE_SHARED(inp, "tokenizer/" + vocab + ".inp");
  const std::string gguf = tokenizer_dir() + "/" + vocab;
  if (!fs::exists(gguf))
    GTEST_SKIP() << vocab << ": vectors without the vocabulary file (as the reference README says)";
  const Vectors v = read_vectors(vocab);
  ASSERT_EQ(v.inputs.size(), v.outputs.size());
  ASSERT_GT(v.inputs.size(), 10u);
  const auto tok = Tokenizer::load(gguf);
  int mismatches = 0;
  for (size_t i = 0; i < v.inputs.size(); ++i) {
    const auto ids = tok->encode(v.inputs[i], /*add_special=*/false);
    if (ids != v.outputs[i]) ++mismatches;
    EXPECT_EQ(ids, v.outputs[i]) << vocab << " string " << i << ": '" << printable(v.inputs[i]) << "'";
    EXPECT_EQ(tok->decode(ids), v.inputs[i]) << vocab << " string " << i;
  }
  std::printf("[ measured ] %s: %zu vectors, %d mismatches\n", vocab.c_str(), v.inputs.size(), mismatches);
}

INSTANTIATE_TEST_SUITE_P(Reference, VocabVectors, ::testing::ValuesIn(vocabularies_with_vectors()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// ---------------------------------------------------------------------------------------
// Hugging Face tokenizer.json built from a GGUF vocabulary.

void write_json(const std::string& path, const json& j) { write_text(path, j.dump()); }

void expect_vectors(const Tokenizer& tok, const std::string& vocab) {
  const Vectors v = read_vectors(vocab);
  int mismatches = 0;
  for (size_t i = 0; i < v.inputs.size(); ++i) {
    const auto ids = tok.encode(v.inputs[i], false);
    mismatches += ids != v.outputs[i];
    EXPECT_EQ(ids, v.outputs[i]) << vocab << " (tokenizer.json) string " << i << ": '" << printable(v.inputs[i]) << "'";
    EXPECT_EQ(tok.decode(ids), v.inputs[i]);
  }
  std::printf("[ measured ] %s via tokenizer.json: %zu vectors, %d mismatches\n", vocab.c_str(),
              v.inputs.size(), mismatches);
}

TEST(HfTokenizer, Gpt2TokenizerJsonPassesTheGpt2Vectors) {
  REQUIRE_SHARED(vocab, "tokenizer/ggml-vocab-gpt-2.gguf");
  TempDir dir;
  write_json(dir.file("tokenizer.json"), gpt2_tokenizer_json(GgufFile(vocab)));
  write_json(dir.file("tokenizer_config.json"),
             {{"bos_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}});
  const auto tok = Tokenizer::from_hf_dir(dir.path().string());
  EXPECT_EQ(tok->n_vocab(), 50257);
  EXPECT_EQ(tok->bos_id(), 50256);
  EXPECT_EQ(tok->eos_id(), 50256);
  EXPECT_FALSE(tok->add_bos());  // GPT-2 adds nothing
  expect_vectors(*tok, "ggml-vocab-gpt-2.gguf");
}

TEST(HfTokenizer, LlamaTokenizerJsonPassesTheLlamaSpmVectors) {
  REQUIRE_SHARED(vocab, "tokenizer/ggml-vocab-llama-spm.gguf");
  TempDir dir;
  write_json(dir.file("tokenizer.json"), llama_tokenizer_json(GgufFile(vocab)));
  write_json(dir.file("tokenizer_config.json"),
             {{"add_bos_token", true}, {"add_eos_token", false},
              {"bos_token", {{"content", "<s>"}, {"lstrip", false}}}, {"eos_token", "</s>"}});
  const auto tok = Tokenizer::from_hf_dir(dir.path().string());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos());
  expect_vectors(*tok, "ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(tok->encode("Hello", true).front(), 1);
}

// A tiny byte-level tokenizer.json for the BOS/EOS rules.
json tiny_bpe(json post_processor) {
  json vocab = json::object();
  const auto& b2u = std::vector<std::string>{"H", "i", "Hi"};
  for (size_t i = 0; i < b2u.size(); ++i) vocab[b2u[i]] = i;
  json j;
  j["added_tokens"] = json::array({{{"id", 3}, {"content", "<|begin_of_text|>"}, {"special", true}},
                                   {{"id", 4}, {"content", "<|end_of_text|>"}, {"special", true}},
                                   {{"id", 5}, {"content", "<|eot_id|>"}, {"special", true}}});
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["post_processor"] = post_processor;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"H i"})}};
  return j;
}

TEST(HfTokenizer, Llama3StyleTemplateAddsBosWithoutTokenizerConfigFlag) {
  TempDir dir;
  write_json(dir.file("tokenizer.json"),
             tiny_bpe({{"type", "TemplateProcessing"},
                       {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}));
  write_json(dir.file("tokenizer_config.json"),
             {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|end_of_text|>"}});
  // config.json's list of EOS ids is not consulted when tokenizer_config names one.
  write_json(dir.file("config.json"), {{"eos_token_id", json::array({5, 4})}});
  const auto tok = Tokenizer::from_hf_dir(dir.path().string());
  EXPECT_EQ(tok->bos_id(), 3);
  EXPECT_EQ(tok->eos_id(), 4);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->encode("Hi", true), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(tok->encode("Hi", false), (std::vector<int32_t>{2}));
  // Special tokens in the text are recognised and decode to nothing.
  EXPECT_EQ(tok->encode("Hi<|eot_id|>H", false), (std::vector<int32_t>{2, 5, 0}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{3, 2, 5, 0}), "HiH");
}

TEST(HfTokenizer, ConfigFlagOverridesTemplateAndConfigJsonSuppliesIds) {
  TempDir dir;
  write_json(dir.file("tokenizer.json"), tiny_bpe({{"type", "ByteLevel"}}));
  write_json(dir.file("tokenizer_config.json"), {{"add_bos_token", true}});
  write_json(dir.file("config.json"), {{"bos_token_id", 3}, {"eos_token_id", json::array({5, 4})}});
  const auto tok = Tokenizer::from_hf_dir(dir.path().string());
  EXPECT_EQ(tok->bos_id(), 3);
  EXPECT_EQ(tok->eos_id(), 5);  // the first of the list
  EXPECT_EQ(tok->encode("Hi", true), (std::vector<int32_t>{3, 2}));
}

TEST(HfTokenizer, BadFilesGiveErrorsNamingTheFile) {
  TempDir dir;
  const std::string d = dir.path().string();
  auto expect_error = [&](const std::string& needle) {
    try {
      Tokenizer::from_hf_dir(d);
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("no tokenizer.json");
  write_text(dir.file("tokenizer.json"), "{not json");
  expect_error("tokenizer.json: invalid JSON");
  write_json(dir.file("tokenizer.json"), {{"model", {{"type", "WordPiece"}, {"vocab", json::object()}}}});
  expect_error("'WordPiece' is not supported");
  json j = tiny_bpe(nullptr);
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "[a-z]+"}}}};
  write_json(dir.file("tokenizer.json"), j);
  expect_error("unsupported pre-tokenizer Split pattern '[a-z]+'");
  j = tiny_bpe(nullptr);
  j["model"]["vocab"]["x"] = "seven";
  write_json(dir.file("tokenizer.json"), j);
  expect_error("model.vocab['x'] is not a token id");
  write_json(dir.file("tokenizer.json"), tiny_bpe(nullptr));
  write_json(dir.file("tokenizer_config.json"), {{"bos_token", "<nope>"}});
  expect_error("tokenizer_config.json: bos_token '<nope>' is not in the vocabulary");
  write_json(dir.file("tokenizer_config.json"), {{"add_bos_token", "yes"}});
  expect_error("tokenizer_config.json: add_bos_token must be true or false");
}

// ---------------------------------------------------------------------------------------
// The synthetic models' byte vocabulary. (Valid UTF-8 round-trips; like llama.cpp, the
// SentencePiece splitter takes a lead byte's length on trust, so invalid UTF-8 may not.)

TEST(SynthVocab, EveryTextRoundTripsAndBytesAreTokens) {
  TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  write_synthetic_model(o, dir.file("tiny.gguf"));
  const auto tok = Tokenizer::load(dir.file("tiny.gguf"));
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  for (const std::string& s : std::vector<std::string>{"", " ", "Hello, world!", "  two  spaces ", "caf\xC3\xA9 \xE2\x82\xAC 10\n\ttab",
                              std::string("nul\0byte", 8), "bababa kote"}) {
    const auto ids = tok->encode(s, true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tok->decode(ids), s) << printable(s);
  }
  // "A" is not a token: byte fallback <0x41> = id 3 + 0x41; the leading space is ▁ (259).
  EXPECT_EQ(tok->encode("A", false), (std::vector<int32_t>{259, 3 + 0x41}));
}

}  // namespace
}  // namespace attnsparse
