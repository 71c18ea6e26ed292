#include "model/model_util.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/files.h"

namespace attnsparse {

void check_token_ids(std::span<const int32_t> tokens, int64_t n_vocab, const std::string& source) {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= n_vocab)
      fail_file(source, "token id {} at index {} is out of range (vocabulary size {})", tokens[i], i, n_vocab);
}

std::vector<int64_t> parse_index_list(const std::string& text, const std::string& option) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0)
      fail_usage("{}: '{}' is not a non-negative integer", option, item);
    out.push_back(v);
  }
  if (out.empty()) fail_usage("{}: empty list", option);
  return out;
}

void write_file_atomic(const std::string& path, const void* data, size_t bytes) {
  write_output_file(path, data, bytes);
}

}  // namespace attnsparse

namespace attnsparse {

std::string read_text_file(const std::string& path) { return read_input_file(path); }

}  // namespace attnsparse
