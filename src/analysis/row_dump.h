// --dump-rows: one CSV line per analysed row (gzip when the name ends in .gz). Written to
// FILE.partial, one complete chunk (a gzip member for .gz) per document, so a checkpoint
// can record the size after a document and --resume can cut the file back to it. The
// finished file is renamed into place.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace attnsparse::analysis {

class RowDumpFile {
 public:
  // resume_bytes > 0: continue FILE.partial, cut back to that size (it must be at least
  // that long). Otherwise start a new file with the CSV header.
  // keep_partial: a checkpointed run; after an error FILE.partial is cut back to the last
  // complete document (what the checkpoint records) and kept for --resume. Otherwise (or
  // when no document was completed) it is removed when the dump is not finished (a write
  // error, a failed run): no partial output.
  RowDumpFile(const std::string& path, int64_t resume_bytes, bool keep_partial = false);
  ~RowDumpFile();
  RowDumpFile(const RowDumpFile&) = delete;
  RowDumpFile& operator=(const RowDumpFile&) = delete;

  void write(const std::string& lines);
  // Completes the current chunk; returns the size of FILE.partial.
  int64_t end_document();
  // Renames FILE.partial to FILE.
  void finish();
  const std::string& partial_path() const { return partial_; }

 private:
  void open_chunk();
  void close_chunk();
  [[noreturn]] void write_failed(const char* what, int err);
  std::string path_, partial_;
  bool keep_partial_ = false, finished_ = false;
  int64_t committed_ = 0;  // size of FILE.partial after the last complete document
  bool gzip_ = false;
  void* gz_ = nullptr;      // gzFile of the open chunk
  std::FILE* file_ = nullptr;
};

}  // namespace attnsparse::analysis
