// Sweeps in policy specs: one field of a spec lists values or a range, and the spec
// expands into one spec per value (docs/policies.md "Sweeps"):
//   topk={8,16,32,64}               a list
//   h2o=budget:{64,128,256},recent:16
//   sink=4,window=32..1024*2        geometric: 32, 64, ..., 1024 (factor > 1)
//   quest=page:16,pages:2..16+2     arithmetic: 2, 4, ..., 16 (step > 0)
//   topp=0.5..0.9+0.1               real fields take real ranges
// A range stops at the last value <= its end. Integer ends give integer values (a real
// factor is rounded, duplicates dropped). One swept field per spec, at most 64 values;
// a range takes at most 4096 steps (a step below its values' resolution is an error).
// Also inside per-layer maps ("L0-1:dense;default:topk={8,16}"); not in JSON map files.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace attnsparse::policies {

struct SweepPoint {
  std::string spec;   // the spec with the sweep, as given ("topk={8,16}")
  std::string field;  // the swept field ("k", "budget", "window", ...)
  std::string value;  // this value as text ("8")
  double number = 0;  // and as a number
  size_t index = 0;   // position in the sweep (0-based)
};

struct SweepItem {
  std::string text;                 // the spec with this value substituted
  std::optional<SweepPoint> sweep;  // empty: the text had no sweep
};

inline constexpr size_t kMaxSweepValues = 64;

// Expands the sweep of one policy (or policy map) text; a text without a sweep is
// returned as it is. Throws UsageError "policy '<text>': <problem>" for a malformed
// sweep (unclosed brace, empty list, a range without a step, two swept fields, ...).
// The values themselves are checked when the expanded specs are parsed.
std::vector<SweepItem> expand_sweep(std::string_view text);

}  // namespace attnsparse::policies
