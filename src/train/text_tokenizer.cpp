#include "train/text_tokenizer.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/tokenizer.h"

extern char** environ;

namespace attnsparse::train {

namespace fs = std::filesystem;

namespace {

constexpr int32_t kUnkId = 0, kBosId = 1, kEosId = 2;
const char* kSpaceMark = "\xE2\x96\x81";  // U+2581 "▁"
enum : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6 };

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_file(path, "cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A scratch directory that is removed with everything in it when the object dies.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "attnsparse-tok-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) fail("cannot create a scratch directory under {}", fs::temp_directory_path().string());
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Runs argv[0] (found on PATH) with stdout and stderr to `log`; returns the exit status.
int run_tool(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool on_path(const std::string& tool) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && access((fs::path(dir) / tool).c_str(), X_OK) == 0) return true;
  return false;
}

// Minimal protobuf wire-format reader (varints and length-delimited fields are all the
// SentencePiece ModelProto fields we read use).
struct ProtoReader {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& source;
  bool done() const { return p >= end; }
  [[noreturn]] void bad() const { fail_file(source, "not a SentencePiece model (malformed protobuf)"); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) bad();
      uint8_t b = *p++;
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    bad();
  }
  // Reads one field header; returns (field number, wire type).
  std::pair<uint32_t, uint32_t> tag() {
    uint64_t t = varint();
    return {uint32_t(t >> 3), uint32_t(t & 7)};
  }
  std::string_view bytes() {
    uint64_t n = varint();
    if (n > uint64_t(end - p)) bad();
    std::string_view s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
  float fixed32() {
    if (end - p < 4) bad();
    float f;
    std::memcpy(&f, p, 4);
    p += 4;
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end - p < 8) bad(); p += 8; break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: bad();
    }
  }
};

}  // namespace

SpmModel SpmModel::parse(const std::string& proto, const std::string& source) {
  // ModelProto { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
  //              NormalizerSpec normalizer_spec = 3; ... }
  // SentencePiece { string piece = 1; float score = 2; Type type = 3 [default NORMAL]; }
  // NormalizerSpec { ...; bool add_dummy_prefix = 3 [default true]; ... }
  SpmModel m;
  const auto* data = reinterpret_cast<const uint8_t*>(proto.data());
  ProtoReader r{data, data + proto.size(), source};
  while (!r.done()) {
    auto [field, wire] = r.tag();
    if (field == 1 && wire == 2) {
      std::string_view msg = r.bytes();
      ProtoReader pr{reinterpret_cast<const uint8_t*>(msg.data()),
                     reinterpret_cast<const uint8_t*>(msg.data() + msg.size()), source};
      Piece piece;
      bool have_text = false;
      while (!pr.done()) {
        auto [f, w] = pr.tag();
        if (f == 1 && w == 2) piece.text = std::string(pr.bytes()), have_text = true;
        else if (f == 2 && w == 5) piece.score = pr.fixed32();
        else if (f == 3 && w == 0) piece.type = static_cast<int32_t>(pr.varint());
        else pr.skip(w);
      }
      if (!have_text) r.bad();
      if (piece.type < 1 || piece.type > 6) piece.type = kNormal;
      m.pieces.push_back(std::move(piece));
    } else if (field == 3 && wire == 2) {
      std::string_view msg = r.bytes();
      ProtoReader nr{reinterpret_cast<const uint8_t*>(msg.data()),
                     reinterpret_cast<const uint8_t*>(msg.data() + msg.size()), source};
      while (!nr.done()) {
        auto [f, w] = nr.tag();
        if (f == 3 && w == 0) m.add_dummy_prefix = nr.varint() != 0;
        else nr.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.size() < 3) fail_file(source, "not a SentencePiece model (fewer than 3 pieces)");
  return m;
}

struct TextTokenizer::Impl {
  std::string kind;       // byte | spm | gguf
  std::string spm_proto;  // spm
  std::string gguf_path;  // gguf
  std::unique_ptr<GgufFile> gguf;
  // byte | spm: the vocabulary as GGUF metadata values
  std::vector<GgufValue> tokens, scores, types;
  bool add_space_prefix = false;
  std::unique_ptr<Tokenizer> engine;
};

TextTokenizer::TextTokenizer() : impl_(std::make_unique<Impl>()) {}
TextTokenizer::~TextTokenizer() = default;
TextTokenizer::TextTokenizer(TextTokenizer&&) noexcept = default;
TextTokenizer& TextTokenizer::operator=(TextTokenizer&&) noexcept = default;

// The engine tokenizer of this vocabulary, built the way Model::load builds it: from a
// GGUF file holding exactly the metadata export_gguf writes.
void TextTokenizer::build_engine() {
  if (impl_->kind == "gguf") {
    impl_->engine = Tokenizer::from_gguf(*impl_->gguf);
    return;
  }
  ScratchDir dir;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  export_gguf(w);
  const std::string path = dir.path + "/tokenizer.gguf";
  w.write(path);
  GgufFile file(path);
  impl_->engine = Tokenizer::from_gguf(file);
}

TextTokenizer TextTokenizer::byte_level() {
  TextTokenizer t;
  Impl& m = *t.impl_;
  m.kind = "byte";
  auto add = [&](std::string piece, int32_t type) {
    m.tokens.push_back(GgufValue::make_string(std::move(piece)));
    m.scores.push_back(GgufValue::make_f32(0.f));
    m.types.push_back(GgufValue::make_i32(type));
  };
  add("<unk>", kUnknown);
  add("<s>", kControl);
  add("</s>", kControl);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), kByte);
  add(kSpaceMark, kNormal);
  m.add_space_prefix = false;
  t.build_engine();
  return t;
}

TextTokenizer TextTokenizer::train_spm(const std::vector<std::string>& files, int vocab_size) {
  if (vocab_size < 300 || vocab_size > 1000000)
    fail_usage("--tokenizer spm:{}: the vocabulary needs 300..1000000 pieces (259 byte and special tokens + merges)", vocab_size);
  if (files.empty()) fail_usage("--tokenizer spm:{}: no training text", vocab_size);
  std::string input;
  for (const auto& f : files) {
    if (!fs::is_regular_file(f)) fail_file(f, "no such file");
    if (f.find(',') != std::string::npos)
      fail_file(f, "spm_train cannot read a file whose name contains a comma");
    input += (input.empty() ? "" : ",") + f;
  }
  if (!on_path("spm_train"))
    fail("--tokenizer spm:{}: the 'spm_train' tool is not installed (Debian package sentencepiece; scripts/setup.sh installs it)", vocab_size);
  ScratchDir dir;
  const std::string prefix = dir.path + "/spm", log = dir.path + "/spm_train.log";
  // Llama 2's tokenizer settings (see the header for add_dummy_prefix). All sentences are
  // used in file order (no sampling), so the vocabulary is a function of the text alone.
  std::vector<std::string> args = {
      "spm_train",
      "--input=" + input,
      "--model_prefix=" + prefix,
      "--model_type=bpe",
      "--vocab_size=" + std::to_string(vocab_size),
      "--byte_fallback=true",
      "--character_coverage=0.9999",
      "--normalization_rule_name=identity",
      "--remove_extra_whitespaces=false",
      "--add_dummy_prefix=false",
      "--split_digits=true",
      "--max_sentence_length=65536",
      "--input_sentence_size=0",
      "--shuffle_input_sentence=false",
      "--random_seed=1",
      "--unk_id=0",
      "--bos_id=1",
      "--eos_id=2",
      "--pad_id=-1",
      "--num_threads=2",
      "--minloglevel=1",
  };
  int rc = run_tool(args, log);
  if (rc != 0) {
    std::string text = fs::exists(log) ? read_file(log) : std::string();
    // The last non-empty line is spm_train's reason.
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    std::string last = text.substr(text.find_last_of('\n') == std::string::npos ? 0 : text.find_last_of('\n') + 1);
    fail("spm_train failed (exit {}) on {}: {}", rc, input, last.empty() ? "no output" : last);
  }
  return deserialize("spm:" + read_file(prefix + ".model"));
}

TextTokenizer TextTokenizer::from_spm_model(const std::string& model_path) {
  if (!fs::is_regular_file(model_path)) fail_file(model_path, "no such file");
  TextTokenizer t = deserialize("spm:" + read_file(model_path));
  return t;
}

TextTokenizer TextTokenizer::from_gguf(const std::string& path) {
  TextTokenizer t;
  t.impl_->kind = "gguf";
  t.impl_->gguf_path = path;
  t.impl_->gguf = std::make_unique<GgufFile>(path);
  t.build_engine();
  return t;
}

TextTokenizer TextTokenizer::from_spec(const std::string& spec, const std::vector<std::string>& files) {
  if (spec == "byte") return byte_level();
  if (spec.rfind("spm:", 0) == 0) {
    const std::string arg = spec.substr(4);
    if (arg.empty()) fail_usage("--tokenizer '{}': expected spm:VOCAB_SIZE (e.g. spm:4000) or spm:FILE.model", spec);
    if (arg.find_first_not_of("0123456789") == std::string::npos) {
      if (arg.size() > 7) fail_usage("--tokenizer '{}': vocabulary size too large", spec);
      return train_spm(files, std::stoi(arg));
    }
    return from_spm_model(arg);
  }
  if (spec.rfind("gguf:", 0) == 0) {
    if (spec.size() == 5) fail_usage("--tokenizer '{}': expected gguf:FILE", spec);
    return from_gguf(spec.substr(5));
  }
  fail_usage("--tokenizer '{}': expected byte, spm:VOCAB_SIZE, spm:FILE.model or gguf:FILE", spec);
}

std::string TextTokenizer::serialize() const {
  if (impl_->kind == "spm") return "spm:" + impl_->spm_proto;
  if (impl_->kind == "gguf") return "gguf:" + impl_->gguf_path;
  return "byte";
}

TextTokenizer TextTokenizer::deserialize(const std::string& s) {
  if (s == "byte") return byte_level();
  if (s.rfind("gguf:", 0) == 0) return from_gguf(s.substr(5));
  if (s.rfind("spm:", 0) != 0) fail("unknown tokenizer serialization '{}'", s.substr(0, 16));
  TextTokenizer t;
  Impl& m = *t.impl_;
  m.kind = "spm";
  m.spm_proto = s.substr(4);
  SpmModel model = SpmModel::parse(m.spm_proto, "SentencePiece model");
  // The trainer's BOS/EOS/UNK ids are fixed; a model from elsewhere must agree.
  const auto& p = model.pieces;
  if (p[kUnkId].type != kUnknown || p[kBosId].type != kControl || p[kEosId].type != kControl)
    fail("SentencePiece model: expected <unk>, <s>, </s> at ids 0, 1, 2 (train with --unk_id=0 --bos_id=1 --eos_id=2), found '{}', '{}', '{}'",
         p[0].text, p[1].text, p[2].text);
  for (const auto& piece : model.pieces) {
    m.tokens.push_back(GgufValue::make_string(piece.text));
    m.scores.push_back(GgufValue::make_f32(piece.score));
    m.types.push_back(GgufValue::make_i32(piece.type));
  }
  m.add_space_prefix = model.add_dummy_prefix;
  t.build_engine();
  return t;
}

std::vector<int32_t> TextTokenizer::encode(std::string_view text) const {
  return impl_->engine->encode(text, false);
}

std::string TextTokenizer::decode(std::span<const int32_t> ids) const {
  return impl_->engine->decode(ids);
}

int32_t TextTokenizer::n_vocab() const { return impl_->engine->n_vocab(); }
int32_t TextTokenizer::bos_id() const { return impl_->engine->bos_id(); }
int32_t TextTokenizer::eos_id() const { return impl_->engine->eos_id(); }
std::string TextTokenizer::kind() const { return impl_->kind; }
const Tokenizer& TextTokenizer::engine() const { return *impl_->engine; }
const std::string& TextTokenizer::spm_proto() const { return impl_->spm_proto; }

void TextTokenizer::export_gguf(GgufWriter& w) const {
  if (impl_->kind == "gguf") {
    w.copy_metadata_prefix(*impl_->gguf, "tokenizer.");
    return;
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set("tokenizer.ggml.tokens", GgufValue::make_array(GgufType::STRING, impl_->tokens));
  w.set("tokenizer.ggml.scores", GgufValue::make_array(GgufType::FLOAT32, impl_->scores));
  w.set("tokenizer.ggml.token_type", GgufValue::make_array(GgufType::INT32, impl_->types));
  w.set_u32("tokenizer.ggml.bos_token_id", kBosId);
  w.set_u32("tokenizer.ggml.eos_token_id", kEosId);
  w.set_u32("tokenizer.ggml.unknown_token_id", kUnkId);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  w.set_bool("tokenizer.ggml.add_space_prefix", impl_->add_space_prefix);
}

}  // namespace attnsparse::train
