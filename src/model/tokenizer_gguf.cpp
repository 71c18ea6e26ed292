// Tokenizer::from_gguf: the tokenizer.ggml.* metadata of a GGUF file, with the same
// defaults llama.cpp applies (llama_vocab::impl::load).
#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/error.h"
#include "core/text.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "model/tokenizer_impl.h"

namespace attnsparse {
namespace tok {

// tokenizer.ggml.pre -> the pre-tokenizer regexes llama.cpp uses for it.
bool byte_bpe_pre(const std::string& pre, std::vector<SplitKind>& split, bool& ignore_merges,
                  bool& add_bos) {
  using K = SplitKind;
  auto is = [&](std::initializer_list<const char*> names) {
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return pre == n; });
  };
  ignore_merges = false;
  if (pre.empty() || pre == "default") {
    split = {K::PunctRun, K::Gpt2, K::NumberRun, K::Digits3};
  } else if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe"})) {
    split = {K::Llama3};
    ignore_merges = true;
    add_bos = true;
  } else if (is({"deepseek-coder"})) {
    split = {K::NewlineOne, K::SpaceLetters, K::SpacePunct, K::CjkRun, K::NumberOne};
  } else if (is({"falcon"})) {
    split = {K::PunctRunBq, K::Gpt2, K::Digits3};
  } else if (is({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})) {
    split = {K::NumberOne, K::Gpt2};
  } else if (is({"gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "jina-es", "jina-de",
                 "gpt3-finnish"})) {
    split = {K::Gpt2};
  } else if (is({"qwen2", "stablelm2", "deepseek-r1-qwen", "hunyuan", "megrez"})) {
    split = {K::Qwen2};
  } else {
    return false;
  }
  return true;
}

}  // namespace tok

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  using namespace tok;
  const std::string& path = gguf.path();
  const auto model = gguf.get_string("tokenizer.ggml.model");
  if (!model) fail_file(path, "no tokenizer in this GGUF file (tokenizer.ggml.model is missing)");
  VocabSpec spec;
  spec.source = path;
  const GgufArray* tokens = gguf.get_array("tokenizer.ggml.tokens");
  if (!tokens) fail_file(path, "tokenizer.ggml.tokens is missing");
  if (tokens->element_type != GgufType::STRING) fail_file(path, "tokenizer.ggml.tokens is not an array of strings");
  spec.tokens.reserve(tokens->values.size());
  for (const auto& v : tokens->values) spec.tokens.push_back(v.as_string());
  if (const GgufArray* types = gguf.get_array("tokenizer.ggml.token_type")) {
    spec.types.reserve(types->values.size());
    for (const auto& v : types->values) {
      const int64_t t = v.as_int();
      spec.types.push_back(t >= 1 && t <= 6 ? static_cast<uint8_t>(t) : uint8_t{kNormal});
    }
  }

  if (*model == "llama") {
    spec.algo = Algo::Spm;
    spec.pre_name = "default";
    if (const GgufArray* scores = gguf.get_array("tokenizer.ggml.scores")) {
      spec.scores.reserve(scores->values.size());
      for (const auto& v : scores->values) spec.scores.push_back(static_cast<float>(v.as_float()));
    }
    spec.add_space_prefix = true;
    spec.add_bos = true;
    spec.add_eos = false;
    spec.bos = 1;
    spec.eos = 2;
    spec.unk = 0;
  } else if (*model == "gpt2") {
    spec.algo = Algo::ByteBpe;
    spec.pre_name = gguf.get_string("tokenizer.ggml.pre").value_or("default");
    bool add_bos = false;
    if (!byte_bpe_pre(spec.pre_name, spec.split, spec.ignore_merges, add_bos))
      fail_file(path, "unsupported pre-tokenizer tokenizer.ggml.pre = '{}'", printable(spec.pre_name, 60));
    spec.add_bos = add_bos;
    spec.add_space_prefix = false;
    const GgufArray* merges = gguf.get_array("tokenizer.ggml.merges");
    if (!merges) fail_file(path, "tokenizer.ggml.merges is missing for a gpt2 (BPE) tokenizer");
    spec.merges.reserve(merges->values.size());
    for (const auto& v : merges->values) {
      const std::string& m = v.as_string();
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) fail_file(path, "malformed merge '{}' (no space)", printable(m, 60));
      spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    spec.bos = 11;
    spec.eos = 11;
    spec.unk = -1;
  } else {
    fail_file(path, "unsupported tokenizer.ggml.model '{}' (supported: llama, gpt2)", printable(*model, 60));
  }
  const int64_t n = static_cast<int64_t>(spec.tokens.size());
  auto id_key = [&](const char* key, int32_t& dst) {
    if (auto v = gguf.get_int(key)) {
      if (*v < 0 || *v >= n) fail_file(path, "{} = {} is outside the vocabulary of {} tokens", key, *v, n);
      dst = static_cast<int32_t>(*v);
    }
  };
  id_key("tokenizer.ggml.bos_token_id", spec.bos);
  id_key("tokenizer.ggml.eos_token_id", spec.eos);
  id_key("tokenizer.ggml.unknown_token_id", spec.unk);
  if (spec.bos >= n) spec.bos = -1;
  if (spec.eos >= n) spec.eos = -1;
  if (spec.unk >= n) spec.unk = -1;
  if (auto v = gguf.get_bool("tokenizer.ggml.add_space_prefix")) spec.add_space_prefix = *v;
  if (auto v = gguf.get_bool("tokenizer.ggml.add_bos_token")) spec.add_bos = *v;
  if (auto v = gguf.get_bool("tokenizer.ggml.add_eos_token")) spec.add_eos = *v;

  // llama.cpp's per-model token attributes: Phi-3 special tokens swallow the spaces
  // after them (except <unk>, <s>, <|endoftext|>).
  std::string name = gguf.get_string("general.name").value_or("");
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (size_t i = 0; i < spec.tokens.size(); ++i) {
      const uint8_t t = i < spec.types.size() ? spec.types[i] : static_cast<uint8_t>(kNormal);
      const std::string& s = spec.tokens[i];
      const bool special = t == kUnknown || t == kControl || t == kUserDefined;
      if ((special || s == "</s>") && s != "<unk>" && s != "<s>" && s != "<|endoftext|>")
        spec.rstrip.push_back(static_cast<int32_t>(i));
    }
  }
  return std::make_unique<TokenizerImpl>(std::move(spec));
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return from_hf_dir(path);
  if (!std::filesystem::exists(path, ec)) fail_file(path, "no such file or directory");
  if (is_llama2c_path(path)) return load_llama2c_any(path);
  GgufFile gguf(path);
  return from_gguf(gguf);
}

}  // namespace attnsparse
