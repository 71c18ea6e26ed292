#include "analysis/row_dump.h"

#include <zlib.h>

#include <filesystem>

#include "analysis/collector.h"
#include "core/error.h"

namespace attnsparse::analysis {

namespace fs = std::filesystem;

RowDumpFile::RowDumpFile(const std::string& path, int64_t resume_bytes)
    : path_(path), partial_(path + ".partial"), gzip_(path.ends_with(".gz")) {
  std::error_code ec;
  if (resume_bytes > 0) {
    const auto size = fs::file_size(partial_, ec);
    if (ec || int64_t(size) < resume_bytes)
      fail_file(partial_, "cannot resume the row dump: the file is missing or shorter than the checkpoint says ({} bytes)",
                resume_bytes);
    fs::resize_file(partial_, uintmax_t(resume_bytes), ec);
    if (ec) fail_file(partial_, "cannot cut back to {} bytes: {}", resume_bytes, ec.message());
    return;
  }
  std::FILE* f = std::fopen(partial_.c_str(), "wb");
  if (!f) fail_file(partial_, "cannot create");
  std::fclose(f);
  write(kRowDumpHeader);
}

RowDumpFile::~RowDumpFile() {
  try {
    close_chunk();
  } catch (...) {
  }
}

void RowDumpFile::open_chunk() {
  if (gz_ || file_) return;
  if (gzip_) {
    gz_ = gzopen(partial_.c_str(), "ab6");
    if (!gz_) fail_file(partial_, "cannot open for appending");
  } else {
    file_ = std::fopen(partial_.c_str(), "ab");
    if (!file_) fail_file(partial_, "cannot open for appending");
  }
}

void RowDumpFile::close_chunk() {
  if (gz_) {
    const int rc = gzclose(static_cast<gzFile>(gz_));
    gz_ = nullptr;
    if (rc != Z_OK) fail_file(partial_, "write error (disk full?)");
  }
  if (file_) {
    const int rc = std::fclose(file_);
    file_ = nullptr;
    if (rc != 0) fail_file(partial_, "write error (disk full?)");
  }
}

void RowDumpFile::write(const std::string& lines) {
  if (lines.empty()) return;
  open_chunk();
  if (gz_) {
    if (gzwrite(static_cast<gzFile>(gz_), lines.data(), unsigned(lines.size())) != int(lines.size()))
      fail_file(partial_, "write error (disk full?)");
  } else if (std::fwrite(lines.data(), 1, lines.size(), file_) != lines.size()) {
    fail_file(partial_, "write error (disk full?)");
  }
}

int64_t RowDumpFile::end_document() {
  close_chunk();
  std::error_code ec;
  const auto size = fs::file_size(partial_, ec);
  if (ec) fail_file(partial_, "cannot read its size: {}", ec.message());
  return int64_t(size);
}

void RowDumpFile::finish() {
  close_chunk();
  std::error_code ec;
  fs::rename(partial_, path_, ec);
  if (ec) fail_file(path_, "cannot rename {} into place: {}", partial_, ec.message());
}

}  // namespace attnsparse::analysis
