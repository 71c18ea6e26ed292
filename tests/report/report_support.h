// What the report tests share: an analyze report.json made from the reference model.
#pragma once
#include <filesystem>
#include <string>

#include "support/run_process.h"

namespace attnsparse::testing {

// analyze on the reference model's random-token case (ATTNSPARSE_SHARED_DIR/reference) in
// a fresh `dir`, written to dir/out (report.json, report.html); the run, for the caller
// to assert on.
inline ProcessResult analyze_reference_case(const std::filesystem::path& dir, const std::string& model) {
  namespace fs = std::filesystem;
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(std::string(ATTNSPARSE_SHARED_DIR) + "/reference/expected/llama-spm-f32.random.tokens.txt",
                dir / "doc.tok");
  return run_cli("analyze '" + model + "' --data '" + (dir / "doc.tok").string() + "' --threads 1 --out '" +
                 (dir / "out").string() + "'");
}

}  // namespace attnsparse::testing
