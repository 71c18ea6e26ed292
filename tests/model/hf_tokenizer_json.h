// Test helper: Hugging Face tokenizer.json files built from GGUF vocabularies (GPT-2
// byte-level BPE; Llama 2 BPE with byte fallback, merges derived from the SentencePiece
// scores as transformers' SentencePieceExtractor does).
#pragma once
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "io/gguf.h"

namespace attnsparse::testing {

using nlohmann::json;

inline std::vector<std::string> gguf_strings(const GgufFile& f, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& v : f.get_array(key)->values) out.push_back(v.as_string());
  return out;
}

// GPT-2: byte-level BPE with the GPT-2 regex (ByteLevel use_regex).
inline json gpt2_tokenizer_json(const GgufFile& f) {
  const auto tokens = gguf_strings(f, "tokenizer.ggml.tokens");
  const auto merges = gguf_strings(f, "tokenizer.ggml.merges");
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array({{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true},
                                    {"lstrip", false}, {"rstrip", false}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = {{"type", "ByteLevel"}};
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"byte_fallback", false}};
  return j;
}

// Llama 2: BPE with byte fallback and the ▁ normalizer; merges derived from the
// SentencePiece scores as transformers' SentencePieceExtractor does (each token that is
// the concatenation of two tokens, ranked by its score, best first).
inline json llama_tokenizer_json(const GgufFile& f) {
  const auto tokens = gguf_strings(f, "tokenizer.ggml.tokens");
  std::vector<float> scores;
  for (const auto& v : f.get_array("tokenizer.ggml.scores")->values) scores.push_back(static_cast<float>(v.as_float()));
  std::map<std::string, int> id;
  for (size_t i = 0; i < tokens.size(); ++i) id[tokens[i]] = static_cast<int>(i);
  struct M {
    float score;
    int merged, l, r;
    std::string a, b;
  };
  std::vector<M> ms;
  for (size_t t = 3; t < tokens.size(); ++t) {
    const std::string& s = tokens[t];
    std::vector<M> local;
    for (size_t i = 1; i < s.size(); ++i) {
      if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;  // inside a character
      auto a = id.find(s.substr(0, i)), b = id.find(s.substr(i));
      if (a != id.end() && b != id.end()) local.push_back({scores[t], int(t), a->second, b->second, a->first, b->first});
    }
    std::sort(local.begin(), local.end(), [](const M& x, const M& y) { return std::tie(x.l, x.r) < std::tie(y.l, y.r); });
    ms.insert(ms.end(), local.begin(), local.end());
  }
  std::stable_sort(ms.begin(), ms.end(), [](const M& x, const M& y) { return x.score > y.score; });
  json merges = json::array();
  for (const M& m : ms) merges.push_back(json::array({m.a, m.b}));  // the newer pair format
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  json j;
  j["added_tokens"] = json::array();
  for (int i = 0; i < 3; ++i)
    j["added_tokens"].push_back({{"id", i}, {"content", tokens[i]}, {"special", true}});
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                                  {{"type", "Replace"}, {"pattern", {{"String", " "}}},
                                                   {"content", "\xE2\x96\x81"}}})}};
  j["pre_tokenizer"] = nullptr;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"byte_fallback", true},
                {"unk_token", "<unk>"}, {"fuse_unk", true}};
  return j;
}

}  // namespace attnsparse::testing
