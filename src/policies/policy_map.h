// Which policy each (layer, query head) uses.
//
// Text form: rules separated by ';', each "[SELECTOR:]POLICY". A selector is Lx (layers),
// Hy (query heads) or both (LxHy), where x and y are lists of numbers and ranges:
// "L0-3", "H2,5", "L4-7H0-15". "default:" (or no selector) sets the policy for everything
// no rule matches; the first matching rule wins. Example:
//     L0-1:dense;L2-21H0-15:sink=4,window=256;default:topk=64
// JSON form (a path ending in .json, or @path):
//     {"default": "dense",
//      "rules": [{"layers": "0-1", "policy": "dense"},
//                {"layers": "2-21", "heads": "0-15", "policy": "sink=4,window=256"}]}
// Evicting policies (h2o, tova, snapkv) decide what a layer's KV cache holds, which all
// heads of the layer share: they must apply to whole layers, to every layer, and with one
// budget (the cache keeps the same number of slots in every layer).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policies/policy.h"

namespace attnsparse::policies {

class PolicyMap {
 public:
  PolicyMap() = default;
  explicit PolicyMap(Policy uniform);

  // Text or JSON-file form (see above). Throws UsageError / FormatError.
  static PolicyMap parse(std::string_view text);

  const Policy& at(int layer, int head) const;
  // Adds a rule "L<layer>H<head>:<policy>" after the existing ones (maps built in code,
  // e.g. one budget per head).
  void set(int layer, int head, const Policy& policy);
  // Throws UsageError when a rule names a layer/head the model lacks or the evicting
  // policies break the rules above.
  void validate(int n_layer, int n_head) const;

  // Canonical text form (the name used in reports).
  std::string spec() const;

  // The policies the map can produce for a model of this shape (distinct).
  std::vector<Policy> used(int n_layer, int n_head) const;
  bool uniform_in_layer(int layer, int n_head) const;
  bool any_evicting(int n_layer, int n_head) const;
  bool any(int n_layer, int n_head, bool (Policy::*test)() const) const;

 private:
  struct Range {
    int64_t lo, hi;  // inclusive
  };
  struct Rule {
    std::vector<Range> layers, heads;  // empty = all
    Policy policy;
  };
  static bool matches(const std::vector<Range>& ranges, int64_t x);
  static std::vector<Range> parse_ranges(std::string_view text, std::string_view whole);
  static std::string ranges_text(const std::vector<Range>& r);
  static PolicyMap parse_json(const std::string& path);

  std::vector<Rule> rules_;
  Policy default_;
};

}  // namespace attnsparse::policies
