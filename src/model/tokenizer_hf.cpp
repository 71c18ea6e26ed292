// Tokenizer::from_hf_dir: a Hugging Face tokenizer.json (BPE model) plus
// tokenizer_config.json (BOS/EOS tokens and whether they are added) and, as a fallback
// for the ids, config.json.
//
// Two families are recognised from the file's structure:
// - byte-level BPE (GPT-2, Llama 3, Qwen2, ...): a ByteLevel pre-tokenizer, optionally
//   after Split regexes; each known regex maps to the scanner llama.cpp uses for it.
// - SentencePiece-style BPE (Llama 2, Mistral, TinyLlama): byte_fallback and/or a
//   normalizer that prepends "▁" and replaces spaces with "▁" (or a Metaspace
//   pre-tokenizer); encoded as llama.cpp encodes the same vocabulary.
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "core/error.h"
#include "core/text.h"
#include "io/json_file.h"
#include "model/tokenizer_impl.h"

namespace attnsparse {
namespace tok {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const char kSpaceEscape[] = "\xE2\x96\x81";  // "▁"

json read_json(const std::string& path) {
  return read_json_file(path);  // regular file, bounded, no duplicate keys, clear errors
}

// The pre-tokenizer regexes (as written in tokenizer.json files) we have scanners for.
bool split_kind_of_regex(const std::string& re, SplitKind& kind) {
  static const std::map<std::string, SplitKind> known = {
      {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
       SplitKind::Gpt2},
      {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
       SplitKind::Gpt2},
      {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
       SplitKind::Llama3},
      {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
       SplitKind::Qwen2},
      {"[\\p{P}\\$\\+<=>\\^~\\|]+", SplitKind::PunctRun},
      {"[\\p{P}\\$\\+<=>\\^~\\|`]+", SplitKind::PunctRunBq},
      {"\\p{N}+", SplitKind::NumberRun},
      {"\\p{N}", SplitKind::NumberOne},
      {"[0-9][0-9][0-9]", SplitKind::Digits3},
      {"[\\r\\n]", SplitKind::NewlineOne},
      {"\\s?\\p{L}+", SplitKind::SpaceLetters},
      {"\\s?\\p{P}+", SplitKind::SpacePunct},
  };
  auto it = known.find(re);
  if (it == known.end()) return false;
  kind = it->second;
  return true;
}

std::string token_content(const json& v) {  // "<s>" or {"content": "<s>", ...}
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

struct PreTokenizer {
  bool byte_level = false;
  bool byte_prefix_space = false;
  bool metaspace = false;
  bool metaspace_prefix = false;
  std::vector<SplitKind> split;
};

// Walks the pre_tokenizer object (possibly a Sequence).
void read_pre_tokenizer(const json& p, const std::string& path, PreTokenizer& out) {
  if (p.is_null()) return;
  if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
    fail_file(path, "pre_tokenizer must be an object with a type");
  const std::string type = p["type"].get<std::string>();
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
      fail_file(path, "pre_tokenizer Sequence needs a pretokenizers list");
    for (const json& q : p["pretokenizers"]) read_pre_tokenizer(q, path, out);
  } else if (type == "ByteLevel") {
    out.byte_level = true;
    out.byte_prefix_space = json_bool_or(p, "add_prefix_space", false, path);
    if (json_bool_or(p, "use_regex", true, path)) out.split.push_back(SplitKind::Gpt2);
  } else if (type == "Split") {
    std::string re;
    if (p.contains("pattern") && p["pattern"].is_object()) {
      const json& pat = p["pattern"];
      if (pat.contains("Regex") && pat["Regex"].is_string()) re = pat["Regex"].get<std::string>();
      else if (pat.contains("String") && pat["String"].is_string()) re = pat["String"].get<std::string>();
    }
    SplitKind kind;
    if (!split_kind_of_regex(re, kind))
      fail_file(path, "unsupported pre-tokenizer Split pattern '{}'", printable(re, 80));
    out.split.push_back(kind);
  } else if (type == "Digits") {
    out.split.push_back(json_bool_or(p, "individual_digits", false, path) ? SplitKind::NumberOne
                                                             : SplitKind::NumberRun);
  } else if (type == "Metaspace") {
    out.metaspace = true;
    const std::string scheme = json_string_or(p, "prepend_scheme", std::string("always"), path);
    out.metaspace_prefix = json_bool_or(p, "add_prefix_space", true, path) && scheme != "never";
  } else if (type == "Punctuation") {
    out.split.push_back(SplitKind::PunctRun);
  } else {
    fail_file(path, "unsupported pre-tokenizer type '{}'", printable(type, 60));
  }
}

// Llama 2 style normalizer: Prepend("▁") and Replace(" ", "▁").
void read_normalizer(const json& n, const std::string& path, bool& prepend, bool& replace_space) {
  if (!n.is_object()) return;
  const std::string type = json_string_or(n, "type", std::string(), path);
  if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (const json& m : n["normalizers"]) read_normalizer(m, path, prepend, replace_space);
  } else if (type == "Prepend" && json_string_or(n, "prepend", std::string(), path) == kSpaceEscape) {
    prepend = true;
  } else if (type == "Replace" && json_string_or(n, "content", std::string(), path) == kSpaceEscape) {
    replace_space = true;
  }
}

}  // namespace
}  // namespace tok

namespace tok {
namespace {

// tokenizer.json's "model" object, checked to be a BPE model with a vocabulary.
const json& bpe_model(const json& j, const std::string& path) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    fail_file(path, "missing the 'model' object");
  const json& m = j["model"];
  const json& type_field = m.contains("type") ? m["type"] : json();
  if (!type_field.is_null() && !type_field.is_string())
    fail_file(path, "field 'model.type' must be a string, got {}", printable(type_field.dump(), 60));
  const std::string model_type = json_string_or(m, "type", std::string("BPE"), path);
  if (model_type != "BPE")
    fail_file(path, "tokenizer model type '{}' is not supported (BPE)", printable(model_type, 60));
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail_file(path, "model.vocab must be an object");
  return m;
}

// Token texts by id and ids by text: model.vocab plus added_tokens.
struct Vocabulary {
  std::map<int64_t, std::string> by_id;
  std::unordered_map<std::string, int32_t> id_by_text;
  int64_t n = 0;  // ids 0 .. n-1 (the largest id + 1)
  int32_t id_of(const std::string& text) const {
    auto it = id_by_text.find(text);
    return it == id_by_text.end() ? -1 : it->second;
  }
};

// Fills spec.tokens and the token types (unnamed ids unused, added tokens control or
// user-defined, their lstrip / rstrip).
Vocabulary read_vocabulary(const json& j, const json& m, const std::string& path, VocabSpec& spec) {
  Vocabulary v;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      fail_file(path, "model.vocab['{}'] is not a token id", printable(it.key(), 60));
    v.by_id[it.value().get<int64_t>()] = it.key();
  }
  struct Added {
    int64_t id;
    std::string content;
    bool special, lstrip, rstrip;
  };
  std::vector<Added> added;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0)
        fail_file(path, "added_tokens entries need an integer id and a string content");
      added.push_back({a["id"].get<int64_t>(), a["content"].get<std::string>(),
                       json_bool_or(a, "special", false, path), json_bool_or(a, "lstrip", false, path), json_bool_or(a, "rstrip", false, path)});
      v.by_id[added.back().id] = added.back().content;
    }
  }
  if (v.by_id.empty()) fail_file(path, "the vocabulary is empty");
  v.n = v.by_id.rbegin()->first + 1;
  if (v.n > (int64_t{1} << 24)) fail_file(path, "token id {} is implausibly large", v.n - 1);
  // Every id up to the largest gets a token (an unnamed one in the holes), so holes cost
  // memory and time that the file does not pay for: at most as many as the named ids, or
  // 65,536 (real vocabularies are dense; a 4 KB file naming id 8,888,429 took 2 GB).
  const int64_t named = static_cast<int64_t>(v.by_id.size()), holes = v.n - named;
  if (holes > std::max<int64_t>(named, 65536))
    fail_file(path, "token id {} leaves {} ids without a token for {} named ones (the vocabulary must be "
              "nearly dense)", v.n - 1, holes, named);
  spec.tokens.assign(v.n, std::string());
  spec.types.assign(v.n, kNormal);
  for (int64_t i = 0; i < v.n; ++i) spec.types[i] = kUnused;  // ids no entry names
  for (const auto& [id, text] : v.by_id) {
    spec.tokens[id] = text;
    spec.types[id] = kNormal;
  }
  for (const Added& a : added) {
    spec.types[a.id] = a.special ? kControl : kUserDefined;
    if (a.lstrip) spec.lstrip.push_back(static_cast<int32_t>(a.id));
    if (a.rstrip) spec.rstrip.push_back(static_cast<int32_t>(a.id));
  }
  for (const auto& [id, t] : v.by_id) v.id_by_text.emplace(t, static_cast<int32_t>(id));
  return v;
}

// Merges: "a b" strings or ["a", "b"] pairs, in rank order.
void read_merges(const json& m, const std::string& path, VocabSpec& spec) {
  if (m.contains("merges") && m["merges"].is_array()) {
    spec.merges.reserve(m["merges"].size());
    for (const json& mg : m["merges"]) {
      if (mg.is_string()) {
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) fail_file(path, "malformed merge '{}' (no space)", printable(s, 60));
        spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
        spec.merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
      } else {
        fail_file(path, "malformed merge {}", printable(mg.dump(), 60));
      }
    }
  }
  spec.ignore_merges = json_bool_or(m, "ignore_merges", false, path);
}

// Byte-level BPE (GPT-2 style) or SentencePiece-style BPE (byte fallback, ▁ for spaces),
// from the pre-tokenizer and normalizer; then the unknown token.
void choose_algorithm(const json& j, const json& m, const std::string& path, const Vocabulary& v,
                      VocabSpec& spec) {
  PreTokenizer pre;
  if (j.contains("pre_tokenizer")) read_pre_tokenizer(j["pre_tokenizer"], path, pre);
  bool prepend = false, replace_space = false;
  if (j.contains("normalizer")) read_normalizer(j["normalizer"], path, prepend, replace_space);
  const bool byte_fallback = json_bool_or(m, "byte_fallback", false, path);

  if (pre.byte_level) {
    spec.algo = Algo::ByteBpe;
    spec.pre_name = "hf";
    spec.split = pre.split;
    spec.byte_prefix_space = pre.byte_prefix_space;
    spec.add_space_prefix = false;
  } else if (byte_fallback || replace_space || pre.metaspace) {
    spec.algo = Algo::SpmBpe;
    spec.pre_name = "spm";
    spec.add_space_prefix = prepend || pre.metaspace_prefix;
    if (!pre.split.empty())
      fail_file(path, "a SentencePiece-style tokenizer with Split pre-tokenizers is not supported");
    char buf[8];
    for (int b = 0; b < 256; ++b) {
      snprintf(buf, sizeof buf, "<0x%02X>", b);
      const int32_t id = v.id_of(buf);
      if (id >= 0 && spec.types[id] == kNormal) spec.types[id] = kByte;
    }
  } else {
    fail_file(path, "unrecognised tokenizer: neither a ByteLevel pre-tokenizer nor "
                    "SentencePiece-style byte fallback / ▁ normalizer");
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    spec.unk = v.id_of(m["unk_token"].get<std::string>());
    if (spec.unk >= 0) spec.types[spec.unk] = kUnknown;
  }
}

// Whether BOS / EOS are added, when a source says so.
struct AddSpecials {
  std::optional<bool> bos, eos;
};

// tokenizer_config.json: bos_token / eos_token and add_bos_token / add_eos_token.
void read_tokenizer_config(const std::string& tc_path, const Vocabulary& v, VocabSpec& spec, AddSpecials& add) {
  std::error_code ec;
  json tc = json::object();
  if (fs::exists(tc_path, ec)) tc = read_json(tc_path);
  if (!tc.is_object()) fail_file(tc_path, "expected a JSON object");
  if (tc.contains("bos_token") && !tc["bos_token"].is_null()) {
    const std::string b = token_content(tc["bos_token"]);
    if (b.empty()) fail_file(tc_path, "bos_token must be a string or an object with content");
    spec.bos = v.id_of(b);
    if (spec.bos < 0) fail_file(tc_path, "bos_token '{}' is not in the vocabulary", printable(b, 60));
  }
  if (tc.contains("eos_token") && !tc["eos_token"].is_null()) {
    const std::string e = token_content(tc["eos_token"]);
    if (e.empty()) fail_file(tc_path, "eos_token must be a string or an object with content");
    spec.eos = v.id_of(e);
    if (spec.eos < 0) fail_file(tc_path, "eos_token '{}' is not in the vocabulary", printable(e, 60));
  }
  for (const char* key : {"add_bos_token", "add_eos_token"}) {
    if (!tc.contains(key) || tc[key].is_null()) continue;
    if (!tc[key].is_boolean()) fail_file(tc_path, "{} must be true or false", key);
    (key[4] == 'b' ? add.bos : add.eos) = tc[key].get<bool>();
  }
}

// The post-processor's TemplateProcessing: special tokens before / after the sequence
// "A" are BOS / EOS (where no earlier source named them) and are added.
void read_template_specials(const json& j, const std::string& path, const Vocabulary& v, VocabSpec& spec,
                            AddSpecials& add) {
  if (!j.contains("post_processor") || !j["post_processor"].is_object()) return;
  const json& pp = j["post_processor"];
  const json* tmpl = nullptr;
  if (json_string_or(pp, "type", std::string(), path) == "TemplateProcessing") tmpl = &pp;
  else if (json_string_or(pp, "type", std::string(), path) == "Sequence" && pp.contains("processors") &&
           pp["processors"].is_array())
    for (const json& q : pp["processors"])
      if (json_string_or(q, "type", std::string(), path) == "TemplateProcessing") tmpl = &q;
  if (!tmpl || !tmpl->contains("single") || !(*tmpl)["single"].is_array()) return;
  bool seen_seq = false;
  for (const json& item : (*tmpl)["single"]) {
    if (item.contains("Sequence")) {
      seen_seq = true;
    } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id")) {
      const int32_t id = v.id_of(item["SpecialToken"]["id"].get<std::string>());
      if (id < 0) continue;
      if (!seen_seq) {
        if (spec.bos < 0) spec.bos = id;
        if (!add.bos) add.bos = id == spec.bos;
      } else {
        if (spec.eos < 0) spec.eos = id;
        if (!add.eos) add.eos = id == spec.eos;
      }
    }
  }
}

// config.json's bos_token_id / eos_token_id where nothing else named them.
void read_config_specials(const std::string& cfg_path, int64_t n_vocab, VocabSpec& spec) {
  std::error_code ec;
  if ((spec.bos >= 0 && spec.eos >= 0) || !fs::exists(cfg_path, ec)) return;
  const json cfg = read_json(cfg_path);
  auto cfg_id = [&](const char* key, int32_t& dst) {
    if (dst >= 0 || !cfg.is_object() || !cfg.contains(key)) return;
    const json& v = cfg[key];
    const json& x = v.is_array() && !v.empty() ? v[0] : v;  // eos_token_id may be a list
    if (x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() < n_vocab)
      dst = static_cast<int32_t>(x.get<int64_t>());
  };
  cfg_id("bos_token_id", spec.bos);
  cfg_id("eos_token_id", spec.eos);
}

std::unique_ptr<Tokenizer> from_hf_dir_impl(const std::string& dir) {
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  std::error_code ec;
  if (!fs::exists(path, ec)) fail_file(dir, "no tokenizer.json in the model directory");
  const json j = read_json(path);
  const json& m = bpe_model(j, path);
  VocabSpec spec;
  spec.source = path;
  const Vocabulary vocab = read_vocabulary(j, m, path, spec);
  read_merges(m, path, spec);
  choose_algorithm(j, m, path, vocab, spec);

  // BOS / EOS: tokenizer_config.json, then the post-processor template, then config.json.
  const std::string tc_path = (fs::path(dir) / "tokenizer_config.json").string();
  AddSpecials add;
  read_tokenizer_config(tc_path, vocab, spec, add);
  read_template_specials(j, path, vocab, spec, add);
  read_config_specials((fs::path(dir) / "config.json").string(), vocab.n, spec);
  // Without any setting, SentencePiece-style (Llama 2) tokenizers add BOS, as
  // LlamaTokenizer does by default; byte-level ones add nothing.
  spec.add_bos = add.bos.value_or(spec.algo == Algo::SpmBpe && spec.bos >= 0);
  spec.add_eos = add.eos.value_or(false);
  if (spec.add_bos && spec.bos < 0) fail_file(tc_path, "add_bos_token is set but no bos_token is defined");
  if (spec.add_eos && spec.eos < 0) fail_file(tc_path, "add_eos_token is set but no eos_token is defined");
  return std::make_unique<TokenizerImpl>(std::move(spec));
}
}  // namespace
}  // namespace tok

std::unique_ptr<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  try {
    return tok::from_hf_dir_impl(dir);
  } catch (const nlohmann::json::exception& e) {
    // A field of an unexpected JSON type that no check above names.
    fail_file((std::filesystem::path(dir) / "tokenizer.json").string(), "unexpected JSON structure: {}",
              json_error_text(e));
  }
}

}  // namespace attnsparse
