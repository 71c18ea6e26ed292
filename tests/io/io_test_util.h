// Helpers for the io tests: temp dirs, raw file writing, ../shared lookup.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace attnsparse::testing {

// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("attnsparse-io-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}
inline void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, text.data(), text.size());
}
inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Path under ../shared/reference; empty when absent (then the caller skips, or in CI fails).
inline std::string shared_reference(const std::string& rel) {
  std::string p = std::string(ATTNSPARSE_SHARED_DIR) + "/reference/" + rel;
  if (std::filesystem::exists(p)) return p;
  return {};
}

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

}  // namespace attnsparse::testing

// Skips (or fails in CI) when ../shared/reference/<rel> is missing; sets `var`.
#define REQUIRE_SHARED(var, rel)                                                   \
  std::string var = ::attnsparse::testing::shared_reference(rel);                  \
  if (var.empty()) {                                                               \
    if (::attnsparse::testing::in_ci()) FAIL() << "missing ../shared/reference/" << rel; \
    GTEST_SKIP() << "../shared/reference/" << rel << " not found";                 \
  }
