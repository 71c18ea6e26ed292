// The layering check (cmake/check_layers.cmake with the rules of cmake/layers.cmake; ctest
// runs it on this repository as `layering`) on small source trees written here, where the
// right answer is known: allowed includes pass, every kind of forbidden include fails
// with a line naming the file, the line and the rule.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "support/run_process.h"

namespace {

namespace fs = std::filesystem;
using attnsparse::testing::ProcessResult;
using attnsparse::testing::run_command;
using attnsparse::testing::shell_quote;

// A temporary tree with a src/ folder, removed at the end of the test.
class Tree {
 public:
  explicit Tree(const std::string& name)
      : root_(fs::temp_directory_path() / ("attnsparse_layers_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(root_);
    fs::create_directories(root_ / "src");
  }
  ~Tree() { fs::remove_all(root_); }
  // Writes src/<path> with `text`.
  void add(const std::string& path, const std::string& text) {
    const fs::path p = root_ / "src" / path;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  // Runs the checker on this tree with the repository's rules.
  ProcessResult check() const {
    const std::string source = ATTNSPARSE_SOURCE_DIR;
    return run_command(shell_quote(ATTNSPARSE_CMAKE) + " -DSOURCE_DIR=" + shell_quote(root_.string()) +
                       " -DLAYERS=" + shell_quote(source + "/cmake/layers.cmake") + " -P " +
                       shell_quote(source + "/cmake/check_layers.cmake"));
  }

 private:
  fs::path root_;
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(Layers, AllowedIncludesPass) {
  Tree t("allowed");
  t.add("core/error.h", "#pragma once\n#include <string>\n");
  t.add("io/reader.cpp", "#include \"io/reader.h\"\n#include \"core/error.h\"\n#include <fmt/format.h>\n");
  t.add("ops/matmul.h", "#pragma once\n#include \"core/error.h\"\n");
  t.add("model/model.cpp", "#include \"io/reader.h\"\n#include \"ops/matmul.h\"\n#include \"core/error.h\"\n");
  t.add("analysis/stats.h", "#pragma once\n");
  t.add("cli/main.cpp", "#include \"analysis/stats.h\"\n#include \"model/model.h\"\n#include \"cli/verb.h\"\n");
  // An include whose first folder is not an area of src/ is not the checker's business.
  t.add("policies/p.cpp", "#include \"nlohmann/json.hpp\"\n#include <torch/torch.h>\n");
  const ProcessResult r = t.check();
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "layering: 7 files in 7 areas of src/ include only what")) << r.err;
}

TEST(Layers, IncludeOfAHigherAreaFailsNamingFileLineAndRule) {
  Tree t("upward");
  t.add("core/error.h", "#pragma once\n");
  t.add("ops/matmul.h", "#pragma once\n");
  t.add("analysis/stats.h", "#pragma once\n");
  // io may use core only: the include on line 3 breaks the rule.
  t.add("io/gguf_writer.cpp", "#include \"io/gguf_writer.h\"\n#include \"core/error.h\"\n#include \"ops/matmul.h\"\n");
  // Angle brackets and spaces after '#' count as well; the model may not use analysis.
  t.add("model/forward.cpp", "// forward\n\n  #  include <analysis/stats.h>\n");
  // core uses nothing else.
  t.add("core/files.cpp", "#include \"core/error.h\"\n#include \"io/gguf_writer.h\"\n");
  const ProcessResult r = t.check();
  EXPECT_NE(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "src/io/gguf_writer.cpp:3: io may not include ops/matmul.h (io may use: core;")) << r.err;
  EXPECT_TRUE(contains(r.err, "src/model/forward.cpp:3: model may not include analysis/stats.h (model may use: io ops core;"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "src/core/files.cpp:2: core may not include io/gguf_writer.h (core may use: nothing else;"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "layering: 3 include(s) break the layers")) << r.err;
  EXPECT_FALSE(contains(r.err, "gguf_writer.cpp:2")) << "core/error.h is allowed in io: " << r.err;
}

TEST(Layers, RelativeIncludeAcrossAreasFails) {
  Tree t("relative");
  t.add("ops/matmul.h", "#pragma once\n");
  t.add("io/gguf.cpp", "\n#include \"../ops/matmul.h\"\n");
  const ProcessResult r = t.check();
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.err, "src/io/gguf.cpp:2: includes ../ops/matmul.h by a relative path")) << r.err;
}

TEST(Layers, FolderWithoutRulesFails) {
  Tree t("undeclared");
  t.add("core/error.h", "#pragma once\n");
  t.add("gpu/kernel.cpp", "#include \"core/error.h\"\n");
  const ProcessResult r = t.check();
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.err, "src/gpu: not a declared area: give it an AREA_gpu list")) << r.err;
}

}  // namespace
