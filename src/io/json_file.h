// Reading JSON from untrusted files (config.json, tokenizer.json, safetensors headers and
// indexes): regular files of bounded size only, duplicate keys refused (a parser would
// otherwise keep one of them silently), and nlohmann's exceptions turned into one line
// "<file>: ..." that quotes file content only through printable().
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

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

// Integers read from a file. nlohmann's get<int>() on 1e308 or 2.5 is a static_cast out of
// range (undefined behaviour) or a silent truncation, and a count that sizes memory or a
// loop needs bounds, so: v must be a JSON integer, or a float with an integral value, in
// [lo, hi]; otherwise FormatError "<path>: field '<name>' must be an integer in [lo, hi],
// got <value>". `name` is the field's place in the file for the message
// ("counts.heads", "settings[2].d"); an empty path leaves the "<path>: " prefix to the
// caller (renderers that are handed the parsed JSON, not the file).
constexpr int64_t kJsonIntMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kJsonIntMax = std::numeric_limits<int64_t>::max();
int64_t json_int(const nlohmann::json& v, const std::string& name, int64_t lo, int64_t hi,
                 const std::string& path = "");
// json_int of obj[key] when obj has it and it is not null, else dflt; `name` as above.
int64_t json_int_or(const nlohmann::json& obj, const char* key, const std::string& name, int64_t dflt,
                    int64_t lo, int64_t hi, const std::string& path = "");
// An array of such integers; the message names the element ("settings[0].n[3]").
std::vector<int64_t> json_int_array(const nlohmann::json& v, const std::string& name, int64_t lo, int64_t hi,
                                    const std::string& path = "");
// A 64-bit unsigned integer (seeds): any integral value in [0, 2^64).
uint64_t json_uint64(const nlohmann::json& v, const std::string& name, const std::string& path = "");

}  // namespace attnsparse
