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
  RowDumpFile(const std::string& path, int64_t resume_bytes);
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
  std::string path_, partial_;
  bool gzip_ = false;
  void* gz_ = nullptr;      // gzFile of the open chunk
  std::FILE* file_ = nullptr;
};

}  // namespace attnsparse::analysis
