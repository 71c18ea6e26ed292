#include "analysis/row_dump.h"

#include <zlib.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "analysis/collector.h"
#include "core/error.h"
#include "core/files.h"

namespace attnsparse::analysis {

namespace fs = std::filesystem;

RowDumpFile::RowDumpFile(const std::string& path, int64_t resume_bytes, bool keep_partial)
    : path_(path), partial_(resolve_output_path(path) + ".partial"), keep_partial_(keep_partial),
      committed_(resume_bytes), gzip_(path.ends_with(".gz")) {
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
  if (!f) fail_file(partial_, "cannot create: {}", std::strerror(errno));
  std::fclose(f);
  write(kRowDumpHeader);
}

RowDumpFile::~RowDumpFile() {
  try {
    close_chunk();
  } catch (...) {
  }
  // Kept only when a checkpoint can continue it (a document was completed).
  if (!finished_ && (!keep_partial_ || committed_ == 0)) ::unlink(partial_.c_str());
}

void RowDumpFile::write_failed(const char* what, int err) {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
  if (file_) std::fclose(file_);
  gz_ = nullptr;
  file_ = nullptr;
  std::error_code ec;
  if (keep_partial_ && committed_ > 0) fs::resize_file(partial_, uintmax_t(committed_), ec);  // what --resume expects
  else ::unlink(partial_.c_str());
  fail_file(partial_, "{} failed: {}", what, err ? std::strerror(err) : "write error (disk full?)");
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
    errno = 0;
    const int rc = gzclose(static_cast<gzFile>(gz_));
    gz_ = nullptr;
    if (rc != Z_OK) write_failed("write", errno);
  }
  if (file_) {
    const int rc = std::fclose(file_);
    file_ = nullptr;
    if (rc != 0) write_failed("write", errno);
  }
}

void RowDumpFile::write(const std::string& lines) {
  if (lines.empty()) return;
  open_chunk();
  errno = 0;
  if (gz_) {
    if (gzwrite(static_cast<gzFile>(gz_), lines.data(), unsigned(lines.size())) != int(lines.size()))
      write_failed("write", errno);
  } else if (std::fwrite(lines.data(), 1, lines.size(), file_) != lines.size()) {
    write_failed("write", errno);
  }
}

int64_t RowDumpFile::end_document() {
  close_chunk();
  std::error_code ec;
  const auto size = fs::file_size(partial_, ec);
  if (ec) fail_file(partial_, "cannot read its size: {}", ec.message());
  committed_ = int64_t(size);
  return int64_t(size);
}

void RowDumpFile::finish() {
  close_chunk();
  finished_ = true;  // commit_output_file removes FILE.partial itself on failure
  commit_output_file(partial_, path_);
}

}  // namespace attnsparse::analysis
