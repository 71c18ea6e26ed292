// Locating ../shared/reference: tests FAIL when it is missing under CI=true, skip otherwise.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace attnsparse::testing_support {

inline std::string reference_dir() { return std::string(ATTNSPARSE_SHARED_DIR) + "/reference"; }

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::strcmp(ci, "true") == 0;
}

#define REQUIRE_SHARED_FILE(path)                                                       \
  do {                                                                                  \
    if (!std::filesystem::exists(path)) {                                               \
      if (::attnsparse::testing_support::in_ci()) FAIL() << "missing reference " << (path); \
      GTEST_SKIP() << "reference data not found: " << (path);                           \
    }                                                                                   \
  } while (0)

inline std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  in.seekg(0);
  std::vector<float> v(size / 4);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * 4));
  return v;
}

}  // namespace attnsparse::testing_support
