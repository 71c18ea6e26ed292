// Small helpers shared by the model verbs and tests.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/corpus.h"  // read_token_file

namespace attnsparse {

// Throws FormatError naming `source` for the first token id outside the vocabulary
// [0, n_vocab) ("token id X at index I is out of range (vocabulary size V)").
void check_token_ids(std::span<const int32_t> tokens, int64_t n_vocab, const std::string& source);

// Comma-separated non-negative integers ("0,16,31"); throws UsageError.
std::vector<int64_t> parse_index_list(const std::string& text, const std::string& option);

// Writes bytes to path + ".tmp" and renames, so a failure leaves no partial file; never
// replaces a device, FIFO or directory (core/files.h write_output_file).
void write_file_atomic(const std::string& path, const void* data, size_t bytes);

}  // namespace attnsparse

namespace attnsparse {

// The whole file as bytes; throws FormatError naming the file when it cannot be read, is
// not a regular file or is larger than 1 GiB (core/files.h read_input_file).
std::string read_text_file(const std::string& path);

}  // namespace attnsparse
