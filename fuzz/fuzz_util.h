// Shared helpers of the libFuzzer targets: the readers under test take paths (they map or
// stat real files), so each input is written to one scratch file per process first.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.h"

namespace attnsparse::fuzz {

// A private directory for this process (removed at exit), under $TMPDIR or /dev/shm.
inline const std::string& scratch_dir() {
  // Never destroyed: the exit handler that removes the directory still needs the name.
  static const std::string* dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string root = base ? base : (std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
    auto* d = new std::string(root + "/attnsparse-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(*d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return *dir;
}

// Replaces the contents of scratch_dir()/name with the bytes; returns the path.
inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t w = ::write(fd, data + done, size - done);
    if (w <= 0) std::abort();
    done += static_cast<size_t>(w);
  }
  ::close(fd);
  return path;
}

// Whether a message is one harmless line: valid UTF-8 without control characters (C0,
// DEL, C1), as printable() (core/text.h) writes quoted file content.
inline bool one_printable_line(std::string_view m) {
  size_t i = 0;
  while (i < m.size()) {
    const auto c = static_cast<unsigned char>(m[i]);
    if (c < 0x20 || c == 0x7f) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    const int len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (len == 0 || i + len > m.size()) return false;
    uint32_t cp = c & (0x7f >> len);
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(m[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp >= 0x80 && cp <= 0x9f) return false;  // C1 controls (CSI is U+009B)
    i += len;
  }
  return true;
}

// Reports a message that breaks the promise of docs/security.md (one line, file content
// escaped) as a crash, with the message escaped so the log stays readable.
inline void require_one_line(const std::exception& e) {
  const std::string_view m = e.what();
  if (one_printable_line(m)) return;
  std::fprintf(stderr, "error message is not one printable line: ");
  for (unsigned char c : m) {
    if (c >= 0x20 && c < 0x7f) std::fputc(c, stderr);
    else std::fprintf(stderr, "\\x%02x", c);
  }
  std::fputc('\n', stderr);
  std::abort();
}

// Runs f; attnsparse::Error (a clear message about bad input) is the expected outcome for
// most inputs, and its message must be one printable line (content read from a file is
// quoted through printable()). Anything else escapes and is reported by libFuzzer as a
// crash.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    require_one_line(e);
  }
}

// As expect_clean, for text that comes from the command line (a policy spec): its
// messages quote the text as given, so only the type of the exception is checked.
template <typename F>
void expect_error_or_success(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

}  // namespace attnsparse::fuzz
