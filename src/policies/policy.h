// Sparse-attention policies (docs/methods.md §3): named, parameterised objects parsed from
// spec strings such as "sink=4,window=64" or "h2o=budget:256,recent:32".
//
// A policy is one of four families, which decides how it is executed:
//   positional  dense, window, sink+window, dilated, strided, block, bigbird, dynwindow:
//               the key set follows from positions alone (ops::KeySet, or index lists for
//               bigbird and dynwindow);
//   content     topk, dyntopk, topp: select from the dense scores of each row (oracle);
//   paged       quest: select pages of keys by per-page min/max key bounds;
//   evicting    h2o, tova, snapkv: decide which keys stay in the KV cache.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ops/keyset.h"

namespace attnsparse::policies {

enum class Kind {
  Dense, Window, SinkWindow, Dilated, Strided, Block, BigBird, DynWindow,  // positional
  TopK, DynTopK, TopP,                                          // content (oracle)
  Quest,                                                        // paged
  H2O, Tova, SnapKV,                                            // evicting
};

struct Policy {
  Kind kind = Kind::Dense;
  int64_t window = 0;   // window, sink+window (W), bigbird (W), dilated (w), snapkv (window)
  int64_t sink = 0;     // sink+window (G), bigbird global (G), dynwindow (most sink keys)
  int64_t rate = 0;     // dilated (r), strided (l), block (b)
  int64_t random = 0;   // bigbird: random keys per query
  uint64_t seed = 0;    // bigbird
  int64_t k = 0;        // topk
  double alpha = 0, exponent = 0;  // dyntopk, dynwindow: k = ceil(alpha * n^exponent)
  double p = 0;         // topp
  int64_t budget = 0;   // h2o, tova, snapkv: KV-cache slots kept between steps
  int64_t recent = 0;   // h2o: most recent keys always kept
  int64_t pool = 1;     // snapkv: max-pooling kernel over the votes
  int64_t page = 0;     // quest: keys per page
  int64_t pages = 0;    // quest: pages kept per query

  // Throws UsageError "policy '<spec>': <problem>".
  static Policy parse(std::string_view spec);
  // Canonical spec string (parse(spec()) == *this).
  std::string spec() const;

  bool positional() const { return kind <= Kind::DynWindow; }
  bool content() const { return kind == Kind::TopK || kind == Kind::DynTopK || kind == Kind::TopP; }
  bool paged() const { return kind == Kind::Quest; }
  bool evicting() const { return kind == Kind::H2O || kind == Kind::Tova || kind == Kind::SnapKV; }

  // Positional policies except bigbird and dynwindow: the key set (ops/keyset.h), no data
  // needed.
  ops::KeySet positional_keys() const;
  bool has_simple_key_set() const { return positional() && kind != Kind::BigBird && kind != Kind::DynWindow; }

  // Whether a query at a position >= next_query may still visit the key at position
  // `pos` (false: the key can leave the KV cache). Always true for policies whose future
  // sets are not bounded by position (strided, bigbird, content, paged, dense).
  bool may_need(int64_t pos, int64_t next_query) const;

  // Content policies: the number of keys kept from a row of n visible keys
  // (topk: min(k, n); dyntopk: min(n, ceil(alpha * n^exponent))); topp: not defined (-1).
  // dynwindow: its budget k(n) likewise (at least 1).
  int64_t keep_count(int64_t n) const;
  // dynwindow's keys of a query at position t that sees n keys: min(sink, k/2) sink keys
  // (positions 0..) and the k - sinks most recent; k = keep_count(n).
  int64_t dynwindow_sinks(int64_t n) const;

  bool operator==(const Policy&) const = default;
};

// The spec grammar, one line per policy, for --help and the docs.
const char* policy_help();

// Selects the kept keys of one dense probability row (content policies).
// probs[x] is the probability of key index[x] (x < n). Appends the chosen indices to
// `out` in increasing order. Ties go to the lower index (docs/methods.md §1).
// topp: the smallest top set whose mass reaches p.
void select_from_row(const Policy& policy, const float* probs, const int32_t* index, int64_t n,
                     std::vector<int32_t>& out);

}  // namespace attnsparse::policies
