// Reading a whole file from tests: the one copy for every test folder
// (tests/<folder> includes it as "support/files.h").
#pragma once
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace attnsparse::testing {

// The file's bytes; empty when it cannot be opened.
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace attnsparse::testing
