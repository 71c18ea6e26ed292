// Corpus readers: .txt, .tok, LongBench v1 / RULER JSONL, LongBench v2 JSON, directories.
// Every malformed input throws FormatError "<file>:<line>: <problem>" (or "<file>: ..."
// when the problem is the whole file), never a crash.
#include "io/corpus.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/checked.h"
#include "core/error.h"
#include "core/files.h"
#include "core/text.h"
#include "io/json_file.h"

namespace attnsparse {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kExtensions[] = {".txt", ".tok", ".jsonl", ".json"};

bool known_extension(const fs::path& p) {
  const std::string ext = p.extension().string();
  return std::any_of(std::begin(kExtensions), std::end(kExtensions),
                     [&](const char* e) { return ext == e; });
}

std::string read_whole_file(const std::string& path) {
  std::string text = read_input_file(path);  // regular files only, bounded size
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);  // UTF-8 byte-order mark
  return text;
}

// nlohmann's parse message without its "[json.exception...]" prefix, and with control and
// non-ASCII bytes (it quotes what it read, which may be binary) shown as '?'.
std::string json_problem(const json::parse_error& e) {
  std::string m = e.what();
  const size_t at = m.find("] ");
  if (m.starts_with("[json.exception") && at != std::string::npos) m.erase(0, at + 2);
  for (char& c : m)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return m;
}

int64_t line_of_offset(const std::string& text, size_t offset) {
  offset = std::min(offset, text.size());
  return 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
}

// Offset of the first byte that is not well-formed UTF-8 (no overlongs, no surrogates,
// nothing above U+10FFFF), or npos.
size_t invalid_utf8_offset(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) { ++i; continue; }
    int len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return i;
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (int k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string::npos;
}

// The dataset name of a file without one in its records: the file's stem, or the parent
// folder's name for generic stems (RULER keeps each task in <task>/validation.jsonl).
std::string dataset_of(const fs::path& p) {
  const std::string stem = p.stem().string();
  static const char* generic[] = {"validation", "test", "train", "data", "dev"};
  for (const char* g : generic)
    if (stem == g && p.has_parent_path() && !p.parent_path().filename().empty())
      return p.parent_path().filename().string();
  return stem;
}

// A required string field of a record.
const std::string& string_field(const json& rec, const char* name, const std::string& where,
                                const char* format) {
  const auto it = rec.find(name);
  if (it == rec.end()) throw FormatError(fmt::format("{}: {} record has no field '{}'", where, format, name));
  if (!it->is_string())
    throw FormatError(fmt::format("{}: field '{}' is {} (expected a string)", where, name, it->type_name()));
  return it->get_ref<const std::string&>();
}

std::string optional_string(const json& rec, const char* name, const std::string& where) {
  const auto it = rec.find(name);
  if (it == rec.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  throw FormatError(fmt::format("{}: field '{}' is {} (expected a string)", where, name, it->type_name()));
}

void require_nonempty(const Document& d, const std::string& where) {
  if (d.text.empty()) throw FormatError(where + ": empty document (no text)");
}

// One JSONL record: LongBench v1 has `context` (+ `input`, the question); RULER has
// `input` (the whole prompt) and `outputs` but no `context`.
Document jsonl_record(const json& rec, const fs::path& file, int64_t line) {
  const std::string where = fmt::format("{}:{}", file.string(), line);
  if (!rec.is_object())
    throw FormatError(fmt::format("{}: record is {} (expected a JSON object)", where, rec.type_name()));
  Document d;
  d.source = file.string();
  if (rec.contains("context")) {  // LongBench v1
    d.text = string_field(rec, "context", where, "LongBench v1");
    const std::string question = optional_string(rec, "input", where);
    if (!question.empty()) d.text += "\n\n" + question;
    const std::string id = optional_string(rec, "_id", where);
    d.id = id.empty() ? where : id;
    d.dataset = optional_string(rec, "dataset", where);
    if (d.dataset.empty()) d.dataset = dataset_of(file);
  } else if (rec.contains("input") && rec.contains("outputs")) {  // RULER
    d.text = string_field(rec, "input", where, "RULER");
    const std::string index = optional_string(rec, "index", where);
    d.id = index.empty() ? where : file.string() + ":" + index;
    d.dataset = dataset_of(file);
  } else {
    throw FormatError(where +
                      ": record has neither LongBench v1 fields (context, input) nor RULER "
                      "fields (input, outputs)");
  }
  require_nonempty(d, where);
  return d;
}

void read_jsonl(const fs::path& file, std::vector<Document>& out) {
  const std::string text = read_whole_file(file.string());
  size_t start = 0;
  int64_t line = 0, records = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line;
    std::string_view rec(text.data() + start, end - start);
    start = end + 1;
    if (!rec.empty() && rec.back() == '\r') rec.remove_suffix(1);
    if (rec.find_first_not_of(" \t") == std::string_view::npos) continue;
    json j;
    try {
      j = parse_json_unique_keys(rec, fmt::format("{}:{}", file.string(), line));
    } catch (const json::parse_error& e) {
      throw FormatError(fmt::format("{}:{}: invalid JSON ({})", file.string(), line, json_problem(e)));
    } catch (const json::exception& e) {  // a number out of range ("1e999") and the like
      throw FormatError(fmt::format("{}:{}: invalid JSON ({})", file.string(), line, json_error_text(e)));
    }
    out.push_back(jsonl_record(j, file, line));
    ++records;
  }
  if (records == 0) fail_file(file.string(), "no records");
}

// Start offsets of the elements of a top-level JSON array (for error line numbers).
std::vector<size_t> array_element_offsets(const std::string& text) {
  std::vector<size_t> offsets;
  int depth = 0;
  bool in_string = false, want_element = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (depth == 1 && want_element) {
      offsets.push_back(i);
      want_element = false;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth == 1 && c == '[') want_element = true;
    } else if (c == ']' || c == '}') --depth;
    else if (c == ',' && depth == 1) want_element = true;
  }
  return offsets;
}

// LongBench v2: a JSON array of records with `context`, `question`, `choice_A..D`.
void read_longbench_v2(const fs::path& file, std::vector<Document>& out) {
  const std::string text = read_whole_file(file.string());
  json j;
  try {
    j = parse_json_unique_keys(text, file.string());
  } catch (const json::parse_error& e) {
    throw FormatError(fmt::format("{}:{}: invalid JSON ({})", file.string(),
                                  line_of_offset(text, e.byte > 0 ? e.byte - 1 : 0), json_problem(e)));
  } catch (const json::exception& e) {  // a number out of range ("1e999") and the like
    fail_file(file.string(), "invalid JSON ({})", json_error_text(e));
  }
  if (!j.is_array())
    fail_file(file.string(), "expected a JSON array of LongBench v2 records, found {}", j.type_name());
  if (j.empty()) fail_file(file.string(), "no records");
  const std::vector<size_t> offsets = array_element_offsets(text);
  for (size_t i = 0; i < j.size(); ++i) {
    const int64_t line = i < offsets.size() ? line_of_offset(text, offsets[i]) : 0;
    const std::string where = fmt::format("{}:{}", file.string(), line);
    const json& rec = j[i];
    if (!rec.is_object())
      throw FormatError(fmt::format("{}: record {} is {} (expected a JSON object)", where, i, rec.type_name()));
    Document d;
    d.source = file.string();
    d.text = string_field(rec, "context", where, "LongBench v2");
    const std::string question = string_field(rec, "question", where, "LongBench v2");
    d.text += "\n\n" + question;
    for (const char* choice : {"A", "B", "C", "D"}) {
      const std::string field = std::string("choice_") + choice;
      const std::string value = optional_string(rec, field.c_str(), where);
      if (!value.empty()) d.text += fmt::format("\n({}) {}", choice, value);
    }
    const std::string id = optional_string(rec, "_id", where);
    d.id = id.empty() ? fmt::format("{}:{}", file.string(), i) : id;
    d.dataset = optional_string(rec, "domain", where);
    if (d.dataset.empty()) d.dataset = dataset_of(file);
    require_nonempty(d, where);
    out.push_back(std::move(d));
  }
}

void read_text(const fs::path& file, std::vector<Document>& out) {
  Document d;
  d.source = d.id = file.string();
  d.dataset = dataset_of(file);
  d.text = read_whole_file(file.string());
  const size_t bad = invalid_utf8_offset(d.text);
  if (bad != std::string::npos)
    throw FormatError(fmt::format("{}:{}: invalid UTF-8 (byte 0x{:02x} at offset {})", file.string(),
                                  line_of_offset(d.text, bad), static_cast<unsigned char>(d.text[bad]), bad));
  if (d.text.find_first_not_of(" \t\r\n") == std::string::npos) fail_file(file.string(), "empty document");
  out.push_back(std::move(d));
}

void read_tokens(const fs::path& file, std::vector<Document>& out) {
  Document d;
  d.source = d.id = file.string();
  d.dataset = dataset_of(file);
  d.tokens = read_token_file(file.string());
  out.push_back(std::move(d));
}

void read_file(const fs::path& file, std::vector<Document>& out) {
  const std::string ext = file.extension().string();
  if (ext == ".txt") read_text(file, out);
  else if (ext == ".tok") read_tokens(file, out);
  else if (ext == ".jsonl") read_jsonl(file, out);
  else if (ext == ".json") read_longbench_v2(file, out);
  else
    fail_file(file.string(), "unknown data format '{}' (expected .txt, .tok, .jsonl or .json)", ext);
}

}  // namespace

std::vector<Document> read_documents(const std::vector<std::string>& paths) {
  if (paths.empty()) fail_usage("no data paths given");
  std::vector<Document> docs;
  for (const std::string& path : paths) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec && ec != std::errc::no_such_file_or_directory)
      fail_file(path, "cannot open: {}", ec.message());  // a symlink loop, no permission, ...
    if (ec || !fs::exists(st)) fail_file(path, "no such file or directory");
    if (!fs::is_directory(st)) {
      read_file(path, docs);
      continue;
    }
    // Directories: every file with a known extension below it, sorted by path. Hidden
    // files and other extensions (README.md, .gz, ...) are left alone.
    std::vector<fs::path> files;
    fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) fail_file(path, "cannot list directory: {}", ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) fail_file(path, "cannot list directory: {}", ec.message());
      const fs::path& p = it->path();
      if (p.filename().string().starts_with(".")) {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec) && known_extension(p)) files.push_back(p);
    }
    if (files.empty()) fail_file(path, "directory holds no .txt, .tok, .jsonl or .json files");
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) read_file(f, docs);
  }
  return docs;
}

std::vector<int32_t> truncate_middle(const std::vector<int32_t>& tokens, int64_t max_tokens) {
  if (max_tokens < 1) fail_usage("maximum token count must be at least 1 (got {})", max_tokens);
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n <= max_tokens) return tokens;
  const int64_t head = max_tokens / 2;
  const int64_t tail = max_tokens - head;
  std::vector<int32_t> out(tokens.begin(), tokens.begin() + head);
  out.insert(out.end(), tokens.end() - tail, tokens.end());
  return out;
}

std::vector<int32_t> read_token_file(const std::string& path) {
  const std::string text = read_input_file(path);  // regular files only, bounded size
  std::vector<int32_t> ids;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i == n) break;
    size_t j = i;
    while (j < n && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    const std::string_view word(text.data() + i, j - i);
    const auto v = parse_int64(word);
    if (!v || *v < 0 || *v > INT32_MAX)
      fail_file(path, "'{}' (token {}) is not a token id", printable(word, 40), ids.size());
    ids.push_back(static_cast<int32_t>(*v));
    i = j;
  }
  if (ids.empty()) fail_file(path, "no token ids");
  return ids;
}

}  // namespace attnsparse
