// File helpers of the CLI tests; running the binary comes from support/run_process.h.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/run_process.h"

namespace attnsparse::testing_support {

using testing::Output;
using testing::ProcessResult;
using testing::run_cli;
using testing::shell_quote;

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A fresh empty directory under /tmp, removed by the caller.
inline std::string fresh_dir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("attnsparse_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

}  // namespace attnsparse::testing_support
