// Tokenizer::from_llama2c: llama2.c's tokenizer file (tokenizer.bin, tok<N>.bin), a
// SentencePiece BPE vocabulary with byte fallback, run by the same SentencePiece merge as
// a GGUF "llama" vocabulary. The file keeps pieces with plain spaces and writes BOS/EOS as
// "\n<s>\n" and "\n</s>\n"; we turn them back into SentencePiece's form ("▁", "<s>") with
// the token types llama.cpp's llama2.c converter gives them.
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/text.h"
#include "io/llama2c.h"
#include "model/config.h"
#include "model/tokenizer_impl.h"

namespace attnsparse {
namespace {

bool is_byte_piece(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_llama2c(const std::string& path) {
  using namespace tok;
  MappedFile file(path);
  std::string why;
  auto vocab = parse_llama2c_vocab(file.data(), file.size(), &why);
  if (!vocab) fail_file(path, "not a llama2.c tokenizer: {}", why);
  VocabSpec spec;
  spec.source = path;
  spec.algo = Algo::Spm;
  spec.pre_name = "default";
  const size_t n = vocab->pieces.size();
  spec.tokens.resize(n);
  spec.types.assign(n, kNormal);
  spec.scores = std::move(vocab->scores);
  // The three SentencePiece specials come first.
  const char* special[3][2] = {{"<unk>", "<unk>"}, {"\n<s>\n", "<s>"}, {"\n</s>\n", "</s>"}};
  for (size_t i = 0; i < 3; ++i) {
    const std::string& p = vocab->pieces[i];
    if (p != special[i][0] && p != special[i][1])
      fail_file(path, "not a SentencePiece vocabulary: token {} is '{}', expected {}", i,
                printable(p, 40), special[i][1]);
    spec.tokens[i] = special[i][1];
    spec.types[i] = i == 0 ? kUnknown : kControl;
  }
  for (size_t i = 3; i < n; ++i) {
    const std::string& p = vocab->pieces[i];
    if (is_byte_piece(p)) {
      spec.tokens[i] = p;
      spec.types[i] = kByte;
      continue;
    }
    std::string t;
    t.reserve(p.size() + 8);
    for (char c : p) {
      if (c == ' ') t += "\xE2\x96\x81";  // "▁"
      else t += c;
    }
    spec.tokens[i] = std::move(t);
  }
  spec.unk = 0;
  spec.bos = 1;
  spec.eos = 2;
  spec.add_bos = true;  // run.c encodes prompts with BOS, without EOS
  spec.add_eos = false;
  spec.add_space_prefix = true;
  return std::make_unique<TokenizerImpl>(std::move(spec));
}

std::string find_llama2c_tokenizer(const std::string& model_path, int64_t n_vocab) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(model_path).parent_path();
  std::error_code ec;
  for (const std::string& name : {"tok" + std::to_string(n_vocab) + ".bin", std::string("tokenizer.bin")}) {
    const fs::path p = dir / name;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return {};
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& model_path, int64_t n_vocab) {
  const std::string tok = find_llama2c_tokenizer(model_path, n_vocab);
  if (tok.empty())
    fail_file(model_path,
              "no tokenizer: a llama2.c checkpoint needs tok{}.bin or tokenizer.bin beside it, "
              "or --tokenizer FILE",
              n_vocab);
  auto t = Tokenizer::from_llama2c(tok);
  if (t->n_vocab() != n_vocab)
    fail_file(tok, "has {} tokens but the llama2.c checkpoint {} has a vocabulary of {}",
              t->n_vocab(), model_path, n_vocab);
  return t;
}

std::unique_ptr<Tokenizer> load_llama2c_any(const std::string& path) {
  MappedFile file(path);
  std::string why_model, why_vocab;
  if (auto h = parse_llama2c_header(file.data(), file.size(), &why_model))
    return load_llama2c_tokenizer(path, h->vocab_size);
  if (parse_llama2c_vocab(file.data(), file.size(), &why_vocab)) return Tokenizer::from_llama2c(path);
  fail_file(path, "not a GGUF file, a llama2.c checkpoint ({}) or a llama2.c tokenizer ({})",
            why_model, why_vocab);
}

}  // namespace attnsparse
