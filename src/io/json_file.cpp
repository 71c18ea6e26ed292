#include "io/json_file.h"

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

}  // namespace attnsparse
