// The condensation regulariser's settings (docs/methods.md §9), parsed from a spec string:
//   topk:k=8,lambda=0.1               tail-mass form  λ·mean(1 − M_k(a_t))
//   topk:k=8,lambda=0.1,hinge=0.05    hinge form      λ·mean(max(0, 1 − ε − M_k(a_t)))
//   dyn:alpha=1,C=0.5,lambda=0.1      k_t = ceil(α·n^C) with n = t + 1 (hinge= works too)
//   ...,layers=0,1  ...,heads=2,3     restrict to these layers / query heads (default all)
// Rows with t < k_t are skipped (they are trivially covered). "none" or "" = no regulariser.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace attnsparse::train {

struct RegSpec {
  enum class Kind { None, TopK, Dynamic };
  Kind kind = Kind::None;
  int64_t k = 8;         // TopK
  double alpha = 1.0;    // Dynamic
  double C = 0.5;        // Dynamic
  double lambda = 0.0;
  bool hinge = false;
  double eps = 0.0;      // hinge margin ε
  std::vector<int64_t> layers;  // empty = all
  std::vector<int64_t> heads;   // empty = all

  // Throws UsageError naming the bad part of the spec.
  static RegSpec parse(const std::string& spec);
  std::string to_string() const;  // canonical spec string ("none" when off)
  bool active() const { return kind != Kind::None && lambda != 0.0; }
  // k for query row t (0-based; the row sees n = t + 1 keys).
  int64_t k_for_row(int64_t t) const;
  bool uses_layer(int64_t layer) const;
  bool uses_head(int64_t head) const;
};

}  // namespace attnsparse::train
