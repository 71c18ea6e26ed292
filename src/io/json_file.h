// Reading JSON from untrusted files (config.json, tokenizer.json, safetensors headers and
// indexes): regular files of bounded size only, duplicate keys refused (a parser would
// otherwise keep one of them silently), and nlohmann's exceptions turned into one line
// "<file>: ..." that quotes file content only through printable().
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace attnsparse {

// Parses text (the contents of `path`); FormatError "<path>: invalid JSON: ..." or
// "<path>: duplicate key '<key>' in <object path>".
nlohmann::json parse_json_text(std::string_view text, const std::string& path);

// parse_json_text's duplicate-key check alone: nlohmann's own exceptions (syntax, number
// range) propagate unchanged, for callers that report them with line numbers.
nlohmann::json parse_json_unique_keys(std::string_view text, const std::string& path);

// read_input_file + parse_json_text.
nlohmann::json read_json_file(const std::string& path);

// nlohmann's message without its "[json.exception.x.y]" prefix, through printable().
std::string json_error_text(const std::exception& e);

// A JSON value's kind for messages: "a string", "a number", "an object", ...
std::string json_kind_of(const nlohmann::json& v);

// Optional typed fields of an object: the default when absent or null, else the value;
// FormatError "<path>: field '<name>' must be <kind>, got <value>" for the wrong type.
std::string json_string_or(const nlohmann::json& obj, const char* name, const std::string& dflt,
                           const std::string& path);
bool json_bool_or(const nlohmann::json& obj, const char* name, bool dflt, const std::string& path);

}  // namespace attnsparse
