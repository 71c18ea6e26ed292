// Typed errors for bad input. The CLI catches attnsparse::Error, prints its message as
// one line and exits non-zero. Asserts are for our own invariants only.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace attnsparse {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Bad input: a file that is malformed, truncated, of the wrong kind.
class FormatError : public Error {
 public:
  using Error::Error;
};

// Bad command-line argument or option value.
class UsageError : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// "<file>: <problem>" — the one-line error for a bad file.
template <typename... Args>
[[noreturn]] void fail_file(const std::string& path, fmt::format_string<Args...> format,
                            Args&&... args) {
  throw FormatError(path + ": " + fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_usage(fmt::format_string<Args...> format, Args&&... args) {
  throw UsageError(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace attnsparse
