// Opening untrusted input files and writing outputs safely. Every reader of a model, token,
// text, JSON or data file goes through open_input_file / read_input_file, so a FIFO, a
// device (/dev/zero), a directory or a symlink loop is one clear error instead of a hang or
// an endless read, and a file larger than the reader's limit is refused before it is read.
// Every output goes through write_output_file (or OutputPath), which never replaces
// anything but a regular file (see docs/security.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace attnsparse {

// Largest text-like input (text, token ids, JSON, JSONL) read into memory: 1 GiB.
constexpr uint64_t kMaxTextInputBytes = uint64_t{1} << 30;

// Opens a regular file for reading (symlinks followed) without blocking on FIFOs; returns
// the descriptor and its size. FormatError "<path>: <reason>" when the path does not exist,
// is not a regular file (directory, FIFO, device, socket), loops, or cannot be opened.
int open_input_file(const std::string& path, uint64_t* size);

// FormatError unless path is a readable regular file (the check open_input_file makes).
void require_input_file(const std::string& path);

// The whole regular file; FormatError when it is larger than max_bytes, not a regular
// file, or a read fails.
std::string read_input_file(const std::string& path, uint64_t max_bytes = kMaxTextInputBytes);

// Where an output named `path` is written: a symlink is followed to its target (also a
// dangling one); the target must be a regular file or not exist, in an existing directory.
// FormatError "<path>: <reason>" for devices, FIFOs, directories, sockets, symlink loops,
// and a missing directory.
std::string resolve_output_path(const std::string& path);

// UsageError "<option> <out> is the input file <in>; choose another output" when the
// output names an existing file that is one of the inputs (the same file through any
// path or link): writing it would destroy the input. Inputs that do not exist are skipped.
void refuse_output_over_inputs(const std::string& out, const std::vector<std::string>& inputs,
                               const char* option);

// Writes bytes to resolve_output_path(path) + ".tmp" and renames it over the target, so a
// failure (disk full, permission denied) leaves no partial file and the old file intact.
void write_output_file(const std::string& path, const void* data, size_t bytes);

// Renames from -> to after checking `to` with resolve_output_path; removes `from` and
// throws FormatError on failure.
void commit_output_file(const std::string& from, const std::string& to);

}  // namespace attnsparse
