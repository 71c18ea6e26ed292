#include "io/json_file.h"

#include <cmath>
#include <optional>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "core/text.h"

namespace attnsparse {

using nlohmann::json;

std::string json_error_text(const std::exception& e) {
  std::string m = e.what();
  const size_t at = m.find("] ");
  if (m.starts_with("[json.exception") && at != std::string::npos) m.erase(0, at + 2);
  return printable(m, 300);
}

std::string json_kind_of(const json& v) {
  const std::string t = v.type_name();
  return (t == "object" || t == "array") ? "an " + t : "a " + t;
}

json parse_json_unique_keys(std::string_view text, const std::string& path) {
  // One set of keys per open object; a repeated key is an error.
  std::vector<std::set<std::string>> keys;
  std::vector<std::string> where;  // the key path of the open objects, for the message
  std::string last_key;
  const json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        where.push_back(last_key);
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        if (!where.empty()) where.pop_back();
        break;
      case json::parse_event_t::key: {
        last_key = parsed.is_string() ? parsed.get<std::string>() : std::string();
        if (!keys.empty() && !keys.back().insert(last_key).second) {
          std::string in;
          for (size_t i = 1; i < where.size(); ++i) in += (in.empty() ? "" : ".") + where[i];
          fail_file(path, "duplicate key '{}'{}", printable(last_key, 80),
                    in.empty() ? std::string(" at the top level") : " in '" + printable(in, 80) + "'");
        }
        break;
      }
      default: break;
    }
    return true;
  };
  return json::parse(text.begin(), text.end(), check);
}

json parse_json_text(std::string_view text, const std::string& path) {
  try {
    return parse_json_unique_keys(text, path);
  } catch (const json::exception& e) {
    fail_file(path, "invalid JSON: {}", json_error_text(e));
  }
}

json read_json_file(const std::string& path) { return parse_json_text(read_input_file(path), path); }

std::string json_string_or(const json& obj, const char* name, const std::string& dflt,
                           const std::string& path) {
  if (!obj.is_object()) return dflt;
  const auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return dflt;
  if (!it->is_string())
    fail_file(path, "field '{}' must be a string, got {}", name, printable(it->dump(), 60));
  return it->get<std::string>();
}

bool json_bool_or(const json& obj, const char* name, bool dflt, const std::string& path) {
  if (!obj.is_object()) return dflt;
  const auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return dflt;
  if (!it->is_boolean())
    fail_file(path, "field '{}' must be true or false, got {}", name, printable(it->dump(), 60));
  return it->get<bool>();
}

namespace {

[[noreturn]] void fail_field(const std::string& path, const std::string& message) {
  if (path.empty()) throw FormatError(message);
  fail_file(path, "{}", message);
}

// The offending value for a message: numbers and short values as written, containers
// by kind (an array of a million elements is not dumped into an error line).
std::string shown(const json& v) {
  if (v.is_array() || v.is_object()) return json_kind_of(v);
  return printable(v.dump(), 60);
}

std::string integer_range(int64_t lo, int64_t hi) {
  if (lo == kJsonIntMin && hi == kJsonIntMax) return "an integer";
  if (hi == kJsonIntMax) return fmt::format("an integer >= {}", lo);
  return fmt::format("an integer in [{}, {}]", lo, hi);
}

// 2^63 as a double: the first value past int64_t (and -2^63, the smallest, is exact).
constexpr double kTwo63 = 9223372036854775808.0;

}  // namespace

int64_t json_int(const json& v, const std::string& name, int64_t lo, int64_t hi, const std::string& path) {
  std::optional<int64_t> x;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= uint64_t(kJsonIntMax)) x = int64_t(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    // Range first: the cast of a double outside int64_t is undefined.
    if (std::isfinite(d) && d == std::floor(d) && d >= -kTwo63 && d < kTwo63) x = int64_t(d);
  }
  if (!x || *x < lo || *x > hi)
    fail_field(path, fmt::format("field '{}' must be {}, got {}", printable(name, 120), integer_range(lo, hi), shown(v)));
  return *x;
}

int64_t json_int_or(const json& obj, const char* key, const std::string& name, int64_t dflt, int64_t lo, int64_t hi,
                    const std::string& path) {
  if (!obj.is_object()) return dflt;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  return json_int(*it, name, lo, hi, path);
}

std::vector<int64_t> json_int_array(const json& v, const std::string& name, int64_t lo, int64_t hi,
                                    const std::string& path) {
  if (!v.is_array())
    fail_field(path, fmt::format("field '{}' must be an array of integers, got {}", printable(name, 120), shown(v)));
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) out.push_back(json_int(v[i], fmt::format("{}[{}]", name, i), lo, hi, path));
  return out;
}

uint64_t json_uint64(const json& v, const std::string& name, const std::string& path) {
  std::optional<uint64_t> x;
  if (v.is_number_unsigned()) {
    x = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0) x = uint64_t(i);
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && d >= 0 && d < 2 * kTwo63) x = uint64_t(d);
  }
  if (!x)
    fail_field(path, fmt::format("field '{}' must be an integer in [0, 2^64), got {}", printable(name, 120), shown(v)));
  return *x;
}

}  // namespace attnsparse
