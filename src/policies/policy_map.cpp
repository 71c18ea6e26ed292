// Per-layer / per-head policy maps: the text and JSON forms and the validation rules.
#include "policies/policy_map.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/text.h"
#include "io/json_file.h"

namespace attnsparse::policies {

PolicyMap::PolicyMap(Policy uniform) : default_(uniform) {}

void PolicyMap::set(int layer, int head, const Policy& policy) {
  Rule r;
  r.layers = {{layer, layer}};
  r.heads = {{head, head}};
  r.policy = policy;
  rules_.push_back(std::move(r));
}

bool PolicyMap::matches(const std::vector<Range>& ranges, int64_t x) {
  if (ranges.empty()) return true;
  for (const auto& r : ranges)
    if (x >= r.lo && x <= r.hi) return true;
  return false;
}

std::vector<PolicyMap::Range> PolicyMap::parse_ranges(std::string_view text, std::string_view whole) {
  auto bad = [&](const std::string& why) -> void {
    fail_usage("policy map '{}': {} in '{}'", whole, why, text);
  };
  auto number = [&](std::string_view s) -> int64_t {
    if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      bad(fmt::format("'{}' is not a number", s));
    return std::stoll(std::string(s));
  };
  std::vector<Range> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(start, end - start);
    const size_t dash = item.find('-');
    Range r;
    if (dash == std::string_view::npos) {
      r.lo = r.hi = number(item);
    } else {
      r.lo = number(item.substr(0, dash));
      r.hi = number(item.substr(dash + 1));
      if (r.hi < r.lo) bad(fmt::format("range {} is empty", item));
    }
    out.push_back(r);
    start = end + 1;
  }
  return out;
}

std::string PolicyMap::ranges_text(const std::vector<Range>& r) {
  std::string s;
  for (const auto& x : r) {
    if (!s.empty()) s += ',';
    s += x.lo == x.hi ? fmt::format("{}", x.lo) : fmt::format("{}-{}", x.lo, x.hi);
  }
  return s;
}

namespace {

// "L0-3H2" -> ("0-3", "2"); false when `sel` is not a selector (then the text is a policy).
bool split_selector(std::string_view sel, std::string& layers, std::string& heads) {
  if (sel.empty()) return false;
  auto digits_or_sep = [](char c) { return (c >= '0' && c <= '9') || c == ',' || c == '-'; };
  size_t i = 0;
  layers.clear();
  heads.clear();
  bool any = false;
  for (char tag : {'L', 'H'}) {
    if (i < sel.size() && sel[i] == tag) {
      size_t j = i + 1;
      while (j < sel.size() && digits_or_sep(sel[j])) ++j;
      if (j == i + 1) return false;
      (tag == 'L' ? layers : heads) = std::string(sel.substr(i + 1, j - i - 1));
      i = j;
      any = true;
    }
  }
  return any && i == sel.size();
}

std::string trimmed(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

PolicyMap PolicyMap::parse(std::string_view raw) {
  const std::string text = trimmed(raw);
  if (!text.empty() && text[0] == '@') return parse_json(text.substr(1));
  if (text.size() > 5 && text.compare(text.size() - 5, 5, ".json") == 0 && text.find('=') == std::string::npos)
    return parse_json(text);
  PolicyMap map;
  bool have_default = false;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = trimmed(std::string_view(text).substr(start, end - start));
    start = end + 1;
    if (item.empty()) {
      if (end == text.size() && !map.rules_.empty()) break;  // trailing ';'
      fail_usage("policy map '{}': empty rule", text);
    }
    const size_t colon = item.find(':');
    std::string layers, heads;
    const std::string sel = colon == std::string::npos ? "" : item.substr(0, colon);
    if (sel == "default" || sel == "*") {
      if (have_default) fail_usage("policy map '{}': two defaults", text);
      map.default_ = Policy::parse(item.substr(colon + 1));
      have_default = true;
    } else if (colon != std::string::npos && split_selector(sel, layers, heads)) {
      Rule r;
      if (!layers.empty()) r.layers = parse_ranges(layers, text);
      if (!heads.empty()) r.heads = parse_ranges(heads, text);
      r.policy = Policy::parse(item.substr(colon + 1));
      map.rules_.push_back(std::move(r));
    } else {
      if (have_default) fail_usage("policy map '{}': two policies without a selector", text);
      map.default_ = Policy::parse(item);
      have_default = true;
    }
  }
  return map;
}

PolicyMap PolicyMap::parse_json(const std::string& path) {
  // The checked reader of every JSON input (io/json_file.h): a regular file of bounded
  // size (a FIFO or /dev/zero is an error, not a hang), duplicate keys refused, one-line
  // messages naming the file.
  const nlohmann::json j = read_json_file(path);
  if (!j.is_object()) fail_file(path, "a policy map must be a JSON object");
  auto selector = [&](const nlohmann::json& v, const char* field) -> std::string {
    if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
    if (v.is_string()) return v.get<std::string>();
    if (v.is_array()) {
      std::string s;
      for (const auto& x : v) {
        if (!x.is_number_unsigned()) fail_file(path, "'{}' must list non-negative integers", field);
        s += (s.empty() ? "" : ",") + std::to_string(x.get<uint64_t>());
      }
      return s;
    }
    fail_file(path, "'{}' must be a range string like \"0-3,7\", a number or an array", field);
  };
  PolicyMap map;
  for (const auto& [key, value] : j.items())
    if (key != "default" && key != "rules")
      fail_file(path, "unknown field '{}' (expected default, rules)", printable(key, 80));
  try {
    if (j.contains("default")) {
      if (!j["default"].is_string()) fail_file(path, "'default' must be a policy string");
      map.default_ = Policy::parse(j["default"].get<std::string>());
    }
    if (j.contains("rules")) {
      if (!j["rules"].is_array()) fail_file(path, "'rules' must be an array");
      for (const auto& r : j["rules"]) {
        if (!r.is_object() || !r.contains("policy") || !r["policy"].is_string())
          fail_file(path, "each rule needs a \"policy\" string");
        for (const auto& [key, value] : r.items())
          if (key != "layers" && key != "heads" && key != "policy")
            fail_file(path, "unknown rule field '{}' (expected layers, heads, policy)", printable(key, 80));
        Rule rule;
        if (r.contains("layers")) rule.layers = parse_ranges(selector(r["layers"], "layers"), path);
        if (r.contains("heads")) rule.heads = parse_ranges(selector(r["heads"], "heads"), path);
        rule.policy = Policy::parse(r["policy"].get<std::string>());
        map.rules_.push_back(std::move(rule));
      }
    }
  } catch (const UsageError& e) {
    // The message quotes the rule or policy text from the file: escaped, one line.
    fail_file(path, "{}", printable(e.what(), 300));
  }
  return map;
}

const Policy& PolicyMap::at(int layer, int head) const {
  for (const auto& r : rules_)
    if (matches(r.layers, layer) && matches(r.heads, head)) return r.policy;
  return default_;
}

void PolicyMap::validate(int n_layer, int n_head) const {
  for (const auto& r : rules_) {
    for (const auto& x : r.layers)
      if (x.hi >= n_layer) fail_usage("policy map '{}': layer {} does not exist (model has {})", spec(), x.hi, n_layer);
    for (const auto& x : r.heads)
      if (x.hi >= n_head) fail_usage("policy map '{}': head {} does not exist (model has {})", spec(), x.hi, n_head);
  }
  if (!any_evicting(n_layer, n_head)) return;
  int64_t budget = -1;
  for (int l = 0; l < n_layer; ++l) {
    for (int h = 0; h < n_head; ++h) {
      const Policy& p = at(l, h);
      if (!p.evicting())
        fail_usage("policy map '{}': evicting policies must cover every layer and head ({} at layer {} head {})",
                   spec(), p.spec(), l, h);
      if (!(p == at(l, 0)))
        fail_usage("policy map '{}': an evicting policy must be the same for all heads of layer {}", spec(), l);
      if (budget >= 0 && p.budget != budget)
        fail_usage("policy map '{}': every layer must evict to the same budget ({} vs {})", spec(), budget, p.budget);
      budget = p.budget;
    }
  }
}

std::string PolicyMap::spec() const {
  std::string s;
  for (const auto& r : rules_) {
    if (!r.layers.empty()) s += "L" + ranges_text(r.layers);
    if (!r.heads.empty()) s += "H" + ranges_text(r.heads);
    if (r.layers.empty() && r.heads.empty()) s += "L0-999999";
    s += ":" + r.policy.spec() + ";";
  }
  if (rules_.empty()) return default_.spec();
  return s + "default:" + default_.spec();
}

std::vector<Policy> PolicyMap::used(int n_layer, int n_head) const {
  std::vector<Policy> out;
  for (int l = 0; l < n_layer; ++l)
    for (int h = 0; h < n_head; ++h) {
      const Policy& p = at(l, h);
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
  return out;
}

bool PolicyMap::uniform_in_layer(int layer, int n_head) const {
  for (int h = 1; h < n_head; ++h)
    if (!(at(layer, h) == at(layer, 0))) return false;
  return true;
}

bool PolicyMap::any(int n_layer, int n_head, bool (Policy::*test)() const) const {
  for (const auto& p : used(n_layer, n_head))
    if ((p.*test)()) return true;
  return false;
}

bool PolicyMap::any_evicting(int n_layer, int n_head) const { return any(n_layer, n_head, &Policy::evicting); }

}  // namespace attnsparse::policies
