// Documents the analysis and evaluation tools read: plain .txt files, .tok token-id
// files, LongBench v1 JSONL, LongBench v2 JSON, RULER JSONL, and directories of these.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace attnsparse {

struct Document {
  std::string id;       // "<file>" or "<file>:<line or index>" or the record's _id
  std::string source;   // file path
  std::string dataset;  // LongBench `dataset`, else the file's stem
  std::string text;     // the context (+ question where the format has one)
  // Set for .tok files: token ids used as they are (no BOS added).
  std::optional<std::vector<int32_t>> tokens;
};

// Reads every document under the paths (files or directories, recursively, sorted by
// name). Format by extension: .txt, .tok, .jsonl (LongBench v1 or RULER, detected per
// record by its fields), .json (LongBench v2: an array of records).
// Throws FormatError "<file>:<line>: <problem>" for malformed records.
std::vector<Document> read_documents(const std::vector<std::string>& paths);

// LongBench-style middle truncation: keep the first max_tokens/2 and the last
// max_tokens - max_tokens/2 tokens.
std::vector<int32_t> truncate_middle(const std::vector<int32_t>& tokens, int64_t max_tokens);

// Whitespace-separated token ids; FormatError naming the file and the bad token.
std::vector<int32_t> read_token_file(const std::string& path);

}  // namespace attnsparse
