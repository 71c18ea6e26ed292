// Quoting file content in messages. Names, keys and values read from untrusted files may
// hold newlines, terminal escape sequences or invalid UTF-8; every message that quotes
// them passes them through printable(), so one error stays one harmless line.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace attnsparse {

// Printable UTF-8 is kept; control characters (C0, DEL, C1), invalid UTF-8 bytes and
// are written as escapes (\n, \t, \x1b). Longer than max_chars: cut, "...".
std::string printable(std::string_view text, size_t max_chars = 200);

}  // namespace attnsparse
