// Policy specs and per-layer/head maps in their text form, with sweeps, on arbitrary
// bytes: expand_sweep -> PolicyMap::parse -> validate, and for every accepted policy the
// properties the rest of the program relies on:
//   - the canonical text is a fixed point (parse(spec()) gives the same policy / map);
//   - a positional policy's key set is the documented one (policy_help(), checked here
//     key by key against a naive statement of each formula) and its kept count agrees;
//   - may_need never drops a key a later query still visits;
//   - content policies keep min(k, n) keys (topk), a count in [1, n] (dyntopk) or a top
//     set whose mass reaches p (topp), sorted and distinct.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "ops/keyset.h"
#include "policies/policy.h"
#include "policies/policy_map.h"
#include "policies/sweep.h"

namespace {

using namespace attnsparse;
using namespace attnsparse::policies;

[[noreturn]] void broken(const std::string& what, const std::string& spec) {
  std::fprintf(stderr, "policy '%s': %s\n", spec.c_str(), what.c_str());
  std::abort();
}

// The documented key set of a positional policy (policy_help(); t = query, p = key).
bool naive_contains(const Policy& pol, int64_t t, int64_t p) {
  if (p > t) return false;
  const int64_t d = t - p;
  switch (pol.kind) {
    case Kind::Dense: return true;
    case Kind::Window: return p > t - pol.window;
    case Kind::SinkWindow: return p < pol.sink || p > t - pol.window;
    case Kind::Dilated:
      if (d > 4096) return d % pol.rate == 0 && d / pol.rate < pol.window;  // far probes
      for (int64_t m = 0; m < pol.window && pol.rate * m <= d; ++m)
        if (d == pol.rate * m) return true;
      return false;
    case Kind::Strided: return d < pol.rate || d % pol.rate == 0;
    case Kind::Block: return p / pol.rate == t / pol.rate;
    default: return false;
  }
}

void check_positional(const Policy& pol, const std::string& spec) {
  const ops::KeySet keys = pol.positional_keys();
  constexpr int64_t kN = 24;
  for (int64_t t = 0; t < kN; ++t) {
    int64_t count = 0;
    for (int64_t p = 0; p <= t; ++p) {
      const bool want = naive_contains(pol, t, p);
      if (keys.contains(0, t, t, p, p) != want)
        broken("key set differs from the definition at t " + std::to_string(t) + " p " + std::to_string(p), spec);
      count += want;
    }
    if (keys.kept(1, 1, t, t + 1, nullptr) != count)
      broken("kept count differs from the key set at t " + std::to_string(t), spec);
  }
  // may_need(pos, next) == false promises no query at next or later visits pos; also at
  // positions near the int32 limit of cache positions.
  auto check_may_need = [&](int64_t pos, int64_t next) {
    if (pol.may_need(pos, next)) return;
    for (int64_t t = next; t < next + kN; ++t)
      if (naive_contains(pol, t, pos))
        broken("may_need(" + std::to_string(pos) + ", " + std::to_string(next) + ") is false but query " +
                   std::to_string(t) + " visits the key",
               spec);
  };
  for (int64_t next = 1; next < kN; ++next)
    for (int64_t pos = 0; pos < next; ++pos) check_may_need(pos, next);
  constexpr int64_t kTop = INT32_MAX;
  for (int64_t pos : {int64_t{0}, int64_t{1}, kTop / 2, kTop - 40, kTop - 2})
    for (int64_t next : {pos + 1, pos + 17, kTop - 1, kTop})
      if (next > pos) check_may_need(pos, next);
}

void check_content(const Policy& pol, const std::string& spec, const uint8_t* data, size_t size) {
  for (int64_t n : {1, 2, 7, 33}) {
    std::vector<float> probs(n);
    std::vector<int32_t> index(n);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      // Weights from the input (ties included), normalised to a probability row.
      probs[i] = 1.f + static_cast<float>(size ? data[(i * 7) % size] % 5 : 0);
      total += probs[i];
      index[i] = static_cast<int32_t>(3 * i + 1);
    }
    for (auto& p : probs) p = static_cast<float>(p / total);
    std::vector<int32_t> out;
    select_from_row(pol, probs.data(), index.data(), n, out);
    if (!std::is_sorted(out.begin(), out.end()) || std::adjacent_find(out.begin(), out.end()) != out.end())
      broken("selection is not sorted and distinct", spec);
    for (int32_t k : out)
      if (k < 1 || (k - 1) % 3 != 0 || (k - 1) / 3 >= n) broken("selection holds a key not in the row", spec);
    const int64_t kept = static_cast<int64_t>(out.size());
    if (pol.kind == Kind::TopP) {
      double mass = 0;
      for (int32_t k : out) mass += probs[(k - 1) / 3];
      if (kept < 1 || kept > n || (kept < n && mass < pol.p * (1 - 1e-6)))
        broken("topp selection misses its mass", spec);
    } else {
      const int64_t want = pol.keep_count(n);
      if (kept != want || want < 1 || want > n) broken("selection size differs from keep_count", spec);
      if (pol.kind == Kind::TopK && want != std::min<int64_t>(pol.k, n)) broken("topk keeps the wrong count", spec);
    }
  }
}

void check_policy(const Policy& pol, const uint8_t* data, size_t size) {
  const std::string spec = pol.spec();
  const Policy again = Policy::parse(spec);
  if (!(again == pol)) broken("canonical spec does not parse back to the same policy", spec);
  if (pol.has_simple_key_set()) check_positional(pol, spec);
  if (pol.content()) check_content(pol, spec, data, size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // specs are command-line options
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_error_or_success([&] {
    for (const SweepItem& item : expand_sweep(text)) {
      // A text that names a JSON map file is read from disk: fuzz_policy_map_json covers
      // that form; here no input may make the target open files.
      const auto first = item.text.find_first_not_of(" \t\n\v\f\r");
      if (first != std::string::npos && item.text[first] == '@') continue;
      if (item.text.find(".json") != std::string::npos && item.text.find('=') == std::string::npos) continue;
      const PolicyMap map = PolicyMap::parse(item.text);
      const std::string spec = map.spec();
      if (PolicyMap::parse(spec).spec() != spec) broken("canonical map text is not a fixed point", spec);
      for (const Policy& pol : map.used(6, 4)) check_policy(pol, data, size);
      fuzz::expect_error_or_success([&] { map.validate(6, 4); });
    }
  });
  return 0;
}
