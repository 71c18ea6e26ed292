// Helpers for the trainer tests: fixture text, scratch directories.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/run_process.h"

namespace attnsparse::train_test {

// Genesis 1-4 of the KJV in the corpus format of scripts/kjv_corpus.sh.
inline std::string kjv_sample() {
  return std::string(ATTNSPARSE_SOURCE_DIR) + "/tests/train/data/kjv_genesis_1_4.txt";
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) lines.push_back(line);
  return lines;
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// A fresh directory under the system temp dir, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "attnsparse-train-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Running commands and the CLI: support/run_process.h.
using testing::Output;
using testing::run_command;

inline bool have_tool(const std::string& tool) {
  return run_command("command -v " + tool + " >/dev/null").status == 0;
}

}  // namespace attnsparse::train_test
