#include "train/text_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/tokenizer.h"

#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

namespace attnsparse::train {

namespace {
constexpr int32_t kByteUnk = 0, kByteBos = 1, kByteEos = 2, kByteFirst = 3, kByteSpace = 259;
const char* kSpaceMark = "\xE2\x96\x81";  // U+2581 "▁"

// llama.cpp token types
enum : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUnused = 5, kByte = 6 };
}  // namespace

struct TextTokenizer::Impl {
  std::string kind;  // byte | spm | gguf
#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
  sentencepiece::SentencePieceProcessor sp;
#endif
  std::string spm_proto;
  std::string gguf_path;
  std::unique_ptr<GgufFile> gguf;
  std::unique_ptr<Tokenizer> engine;
};

TextTokenizer::TextTokenizer() : impl_(std::make_unique<Impl>()) {}
TextTokenizer::~TextTokenizer() = default;
TextTokenizer::TextTokenizer(TextTokenizer&&) noexcept = default;
TextTokenizer& TextTokenizer::operator=(TextTokenizer&&) noexcept = default;

TextTokenizer TextTokenizer::byte_level() {
  TextTokenizer t;
  t.impl_->kind = "byte";
  return t;
}

TextTokenizer TextTokenizer::train_spm(const std::vector<std::string>& files, int vocab_size,
                                       const std::string& work_prefix) {
#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
  if (vocab_size < 300) fail_usage("--tokenizer spm:{}: vocabulary must have at least 300 pieces (256 byte tokens + specials + merges)", vocab_size);
  std::string input;
  for (const auto& f : files) {
    if (!std::filesystem::is_regular_file(f)) fail_file(f, "no such file");
    input += (input.empty() ? "" : ",") + f;
  }
  std::unordered_map<std::string, std::string> args = {
      {"input", input},
      {"model_prefix", work_prefix},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9999"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"split_digits", "true"},
      {"max_sentence_length", "65536"},
      {"input_sentence_size", "2000000"},
      {"shuffle_input_sentence", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"num_threads", "2"},
      {"hard_vocab_limit", "false"},
  };
  std::string proto;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, nullptr, &proto);
  if (!status.ok()) fail("SentencePiece training failed: {}", status.ToString());
  return deserialize("spm:" + proto);
#else
  fail("this build has no libsentencepiece; use --tokenizer byte");
#endif
}

TextTokenizer TextTokenizer::from_gguf(const std::string& path) {
  TextTokenizer t;
  t.impl_->kind = "gguf";
  t.impl_->gguf_path = path;
  t.impl_->gguf = std::make_unique<GgufFile>(path);
  t.impl_->engine = Tokenizer::from_gguf(*t.impl_->gguf);
  return t;
}

TextTokenizer TextTokenizer::from_spec(const std::string& spec,
                                       const std::vector<std::string>& files,
                                       const std::string& work_prefix) {
  if (spec == "byte") return byte_level();
  if (spec.rfind("spm:", 0) == 0) {
    std::string n = spec.substr(4);
    char* end = nullptr;
    long v = std::strtol(n.c_str(), &end, 10);
    if (n.empty() || *end != '\0' || v <= 0 || v > 1000000)
      fail_usage("--tokenizer '{}': expected spm:VOCAB_SIZE, e.g. spm:4000", spec);
    return train_spm(files, static_cast<int>(v), work_prefix);
  }
  if (spec.rfind("gguf:", 0) == 0) return from_gguf(spec.substr(5));
  fail_usage("--tokenizer '{}': expected byte, spm:VOCAB_SIZE or gguf:FILE", spec);
}

std::string TextTokenizer::serialize() const {
  if (impl_->kind == "spm") return "spm:" + impl_->spm_proto;
  if (impl_->kind == "gguf") return "gguf:" + impl_->gguf_path;
  return "byte";
}

TextTokenizer TextTokenizer::deserialize(const std::string& s) {
  if (s == "byte") return byte_level();
  if (s.rfind("gguf:", 0) == 0) return from_gguf(s.substr(5));
  if (s.rfind("spm:", 0) == 0) {
#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
    TextTokenizer t;
    t.impl_->kind = "spm";
    t.impl_->spm_proto = s.substr(4);
    auto status = t.impl_->sp.LoadFromSerializedProto(t.impl_->spm_proto);
    if (!status.ok()) fail("cannot load SentencePiece model: {}", status.ToString());
    return t;
#else
    fail("this build has no libsentencepiece");
#endif
  }
  fail("unknown tokenizer serialization");
}

std::vector<int32_t> TextTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  if (impl_->kind == "byte") {
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(c == ' ' ? kByteSpace : kByteFirst + c);
    return ids;
  }
  if (impl_->kind == "gguf") return impl_->engine->encode(text, false);
#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
  std::vector<int> v;
  auto status = impl_->sp.Encode(std::string(text), &v);
  if (!status.ok()) fail("SentencePiece encode failed: {}", status.ToString());
  ids.assign(v.begin(), v.end());
#endif
  return ids;
}

std::string TextTokenizer::decode(std::span<const int32_t> ids) const {
  if (impl_->kind == "byte") {
    std::string s;
    for (int32_t id : ids) {
      if (id == kByteSpace) s += ' ';
      else if (id >= kByteFirst && id < kByteSpace) s += static_cast<char>(id - kByteFirst);
    }
    return s;
  }
  if (impl_->kind == "gguf") return impl_->engine->decode(ids);
  std::string s;
#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
  std::vector<int> v(ids.begin(), ids.end());
  auto status = impl_->sp.Decode(v, &s);
  if (!status.ok()) fail("SentencePiece decode failed: {}", status.ToString());
#endif
  return s;
}

int32_t TextTokenizer::n_vocab() const {
  if (impl_->kind == "byte") return 260;
  if (impl_->kind == "gguf") return impl_->engine->n_vocab();
#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
  return impl_->sp.GetPieceSize();
#else
  return 0;
#endif
}

int32_t TextTokenizer::bos_id() const {
  if (impl_->kind == "gguf") return impl_->engine->bos_id();
  return kByteBos;  // spm: bos_id=1 at training
}

int32_t TextTokenizer::eos_id() const {
  if (impl_->kind == "gguf") return impl_->engine->eos_id();
  return kByteEos;
}

std::string TextTokenizer::kind() const { return impl_->kind; }

void TextTokenizer::export_gguf(GgufWriter& w) const {
  if (impl_->kind == "gguf") {
    w.copy_metadata_prefix(*impl_->gguf, "tokenizer.");
    return;
  }
  std::vector<GgufValue> tokens, scores, types;
  auto add = [&](std::string piece, float score, int32_t type) {
    tokens.push_back(GgufValue::make_string(std::move(piece)));
    scores.push_back(GgufValue::make_f32(score));
    types.push_back(GgufValue::make_i32(type));
  };
  bool space_prefix = true;
  if (impl_->kind == "byte") {
    add("<unk>", 0.f, kUnknown);
    add("<s>", 0.f, kControl);
    add("</s>", 0.f, kControl);
    for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 0.f, kByte);
    add(kSpaceMark, 0.f, kNormal);
    space_prefix = false;
  } else {
#ifdef ATTNSPARSE_HAVE_SENTENCEPIECE
    const auto& sp = impl_->sp;
    for (int id = 0; id < sp.GetPieceSize(); ++id) {
      int32_t type = kNormal;
      if (sp.IsUnknown(id)) type = kUnknown;
      else if (sp.IsControl(id)) type = kControl;
      else if (sp.IsByte(id)) type = kByte;
      else if (sp.IsUnused(id)) type = kUnused;
      add(sp.IdToPiece(id), sp.GetScore(id), type);
    }
#endif
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set("tokenizer.ggml.tokens", GgufValue::make_array(GgufType::STRING, std::move(tokens)));
  w.set("tokenizer.ggml.scores", GgufValue::make_array(GgufType::FLOAT32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", GgufValue::make_array(GgufType::INT32, std::move(types)));
  w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos_id()));
  w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos_id()));
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  w.set_bool("tokenizer.ggml.add_space_prefix", space_prefix);
}

}  // namespace attnsparse::train
