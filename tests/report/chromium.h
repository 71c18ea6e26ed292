// Headless chromium for the report tests: does the page load and draw its charts?
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

#include "support/run_process.h"

namespace attnsparse::testing {

inline constexpr const char* kChromium = "/usr/bin/chromium";

// No network, no profile sync, no GPU: the flags every run uses (a per-run
// --user-data-dir comes on top).
inline constexpr const char* kChromiumFlags =
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --hide-scrollbars ";

// CI must have chromium (scripts/setup.sh installs it); elsewhere its tests may skip.
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

// chromium `args` (at most 120 s), its stdout into `stdout_file`; the exit status.
inline int run_chromium(const std::string& args, const std::filesystem::path& stdout_file) {
  return run_command("timeout 120 " + std::string(kChromium) + " " + args + " > " +
                     shell_quote(stdout_file.string()) + " 2>/dev/null")
      .status;
}

}  // namespace attnsparse::testing
