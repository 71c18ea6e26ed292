// Expansion of swept policy specs (sweep.h).
#include "policies/sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace attnsparse::policies {

namespace {

// Steps a range may take before its values exceed its end (distinct values are at most
// kMaxSweepValues; the rest are duplicates after rounding).
constexpr size_t kMaxSweepSteps = 4096;

struct Region {
  size_t begin = 0, end = 0;  // the value text [begin, end) that the sweep replaces
  bool list = false;
};

bool is_sep(char c) { return c == ',' || c == ';' || c == ':' || c == '='; }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

class Expander {
 public:
  explicit Expander(std::string_view text) : text_(text) {}

  [[noreturn]] void bad(const std::string& problem) const {
    fail_usage("policy '{}': {} (see --help for the sweep syntax)", text_, problem);
  }

  std::vector<SweepItem> run() {
    std::optional<Region> found;
    for (size_t i = 0; i < text_.size(); ++i) {
      std::optional<Region> r;
      if (text_[i] == '{') {
        const size_t close = text_.find('}', i + 1);
        if (close == std::string_view::npos) bad("'{' without a closing '}'");
        const size_t nested = text_.find('{', i + 1);
        if (nested != std::string_view::npos && nested < close) bad("nested '{'");
        r = Region{i, close + 1, true};
      } else if (text_[i] == '}') {
        bad("'}' without an opening '{'");
      } else if (text_.compare(i, 2, "..") == 0) {
        size_t b = i, e = i + 2;
        while (b > 0 && !is_sep(text_[b - 1])) --b;
        while (e < text_.size() && !is_sep(text_[e])) ++e;
        r = Region{b, e, false};
      }
      if (!r) continue;
      if (found) bad("more than one swept field (give one sweep per --policy)");
      found = r;
      i = r->end - 1;
    }
    if (!found) return {SweepItem{std::string(text_), std::nullopt}};
    const Region& r = *found;
    const std::string field = field_name(r.begin);
    std::vector<std::string> values = r.list ? list_values(r) : range_values(r);
    std::vector<SweepItem> out;
    for (size_t x = 0; x < values.size(); ++x) {
      SweepItem item;
      item.text = std::string(text_.substr(0, r.begin)) + values[x] + std::string(text_.substr(r.end));
      SweepPoint p;
      p.spec = std::string(text_);
      p.field = field;
      p.value = values[x];
      char* end = nullptr;
      p.number = std::strtod(values[x].c_str(), &end);
      if (end == values[x].c_str() || *end != '\0') p.number = NAN;
      p.index = x;
      item.sweep = p;
      out.push_back(std::move(item));
    }
    return out;
  }

 private:
  // The name of the field whose value starts at `begin`: "budget" in h2o=budget:{..},
  // and for the positional parameters (window=W, topk=K, dilated=W:R, ...) the names the
  // parser uses in its messages.
  std::string field_name(size_t begin) const {
    if (begin == 0 || (text_[begin - 1] != '=' && text_[begin - 1] != ':'))
      bad("a sweep must be the value of a field (name=..., name:...)");
    const char sep = text_[begin - 1];
    size_t k = begin - 1;
    while (k > 0 && !is_sep(text_[k - 1])) --k;
    const std::string key = trim(text_.substr(k, begin - 1 - k));
    // The policy name: the text before the first '=' of the rule (after a selector).
    size_t rule = text_.rfind(';', begin);
    rule = rule == std::string_view::npos ? 0 : rule + 1;
    const size_t eq = text_.find('=', rule);
    if (eq == std::string_view::npos || eq >= begin) bad("a sweep must be the value of a field");
    size_t n0 = eq;
    while (n0 > rule && text_[n0 - 1] != ':' && text_[n0 - 1] != ';') --n0;
    const std::string name = trim(text_.substr(n0, eq - n0));
    if (sep == '=' && k == n0) {  // the value right after "name="
      if (name == "topk") return "k";
      if (name == "topp") return "p";
      if (name == "strided") return "stride";
      return name;  // window, sink, dilated (its window), block
    }
    if (name == "dilated" && sep == ':') return "rate";
    if (key.empty()) bad("a sweep must be the value of a field");
    return key;
  }

  std::vector<std::string> list_values(const Region& r) const {
    const std::string_view inner = text_.substr(r.begin + 1, r.end - r.begin - 2);
    std::vector<std::string> values;
    size_t start = 0;
    while (start <= inner.size()) {
      size_t end = inner.find(',', start);
      if (end == std::string_view::npos) end = inner.size();
      const std::string v = trim(inner.substr(start, end - start));
      if (v.empty()) bad(fmt::format("empty value in '{}'", text_.substr(r.begin, r.end - r.begin)));
      if (std::find(values.begin(), values.end(), v) != values.end()) bad(fmt::format("value {} listed twice", v));
      values.push_back(v);
      if (values.size() > kMaxSweepValues) bad(fmt::format("more than {} values in one sweep", kMaxSweepValues));
      start = end + 1;
    }
    return values;
  }

  // A non-negative decimal number ("16", "0.5"); `integer` tells whether it has no point.
  double number(std::string_view s, std::string_view range, bool& integer) const {
    bool digits = false, point = false, ok = true;
    for (char c : s) {
      if (c >= '0' && c <= '9') digits = true;
      else if (c == '.' && !point) point = true;
      else ok = false;
    }
    if (!ok || !digits) bad(fmt::format("'{}' in range '{}' is not a non-negative number", s, range));
    const double v = std::strtod(std::string(s).c_str(), nullptr);
    if (!(v <= 1e15)) bad(fmt::format("'{}' in range '{}' is too large", s, range));
    integer = !point;
    return v;
  }

  std::vector<std::string> range_values(const Region& r) const {
    const std::string_view range = text_.substr(r.begin, r.end - r.begin);
    const size_t dots = range.find("..");
    const std::string_view lo_text = range.substr(0, dots), rest = range.substr(dots + 2);
    const size_t op = rest.find_first_of("*+");
    if (op == std::string_view::npos)
      bad(fmt::format("range '{}' needs a step: {}*F (geometric, F > 1) or {}+S (arithmetic)", range, range, range));
    const bool geometric = rest[op] == '*';
    bool lo_int = false, hi_int = false, step_int = false;
    const double lo = number(lo_text, range, lo_int), hi = number(rest.substr(0, op), range, hi_int);
    const double step = number(rest.substr(op + 1), range, step_int);
    if (lo > hi) bad(fmt::format("range '{}' is empty (start > end)", range));
    if (geometric && !(lo > 0)) bad(fmt::format("geometric range '{}' must start above 0", range));
    if (geometric && !(step > 1)) bad(fmt::format("geometric range '{}' needs a factor > 1", range));
    if (!geometric && !(step > 0)) bad(fmt::format("arithmetic range '{}' needs a step > 0", range));
    const bool integer = lo_int && hi_int;
    std::vector<std::string> values;
    for (size_t i = 0;; ++i) {
      // Steps that round to values already listed are dropped, so a step far below the
      // values' resolution (window=1..2*1.000000000000001, topp=0.5..0.9+1e-15 spelled out)
      // would add nothing for ~10^15 rounds: the number of steps is bounded too.
      if (i == kMaxSweepSteps)
        bad(fmt::format("range '{}' takes more than {} steps (the step is too small for its values)", range,
                        kMaxSweepSteps));
      const double v = geometric ? lo * std::pow(step, static_cast<double>(i)) : lo + static_cast<double>(i) * step;
      if (v > hi * (1 + 1e-12) + 1e-12) break;
      std::string t = integer ? fmt::format("{}", std::llround(v)) : fmt::format("{:.12g}", v);
      if (!values.empty() && values.back() == t) continue;
      values.push_back(std::move(t));
      if (values.size() > kMaxSweepValues)
        bad(fmt::format("range '{}' has more than {} values", range, kMaxSweepValues));
    }
    return values;
  }

  std::string_view text_;
};

}  // namespace

std::vector<SweepItem> expand_sweep(std::string_view raw) {
  const std::string text = trim(raw);
  // JSON map files are paths: never expanded.
  if (!text.empty() && text[0] == '@') return {SweepItem{text, std::nullopt}};
  if (text.size() > 5 && text.compare(text.size() - 5, 5, ".json") == 0 && text.find('=') == std::string::npos)
    return {SweepItem{text, std::nullopt}};
  return Expander(text).run();
}

}  // namespace attnsparse::policies
