// Shared helpers of the libFuzzer targets: the readers under test take paths (they map or
// stat real files), so each input is written to one scratch file per process first.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

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

// Runs f; attnsparse::Error (a clear message about bad input) is the expected outcome for
// most inputs. Anything else escapes and is reported by libFuzzer as a crash.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

}  // namespace attnsparse::fuzz
