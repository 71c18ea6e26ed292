// Helpers for the model tests: the llama.cpp reference cases, error metrics and small
// file utilities (temp dirs and ../shared lookup come from io_test_util.h, running the CLI
// from support/run_process.h).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "support/run_process.h"

namespace attnsparse::testing {

inline std::vector<float> read_f32_file(const std::string& path) {
  const std::vector<uint8_t> b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

inline std::vector<int32_t> read_ids(const std::string& path) {
  std::ifstream in(path);
  std::vector<int32_t> ids;
  long long v;
  while (in >> v) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// max over rows of max_i |got - want| / std(want row): the metric of
// ../shared/reference/README.md.
struct RowError {
  double max_rel = 0;   // worst row
  double mean_rel = 0;  // mean over rows
  int argmax_mismatch = 0;
};
inline RowError logit_error(const std::vector<float>& got, const std::vector<float>& want,
                            int64_t n_vocab) {
  RowError e;
  const int64_t rows = static_cast<int64_t>(want.size()) / n_vocab;
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = got.data() + r * n_vocab;
    const float* w = want.data() + r * n_vocab;
    double mean = 0, var = 0, mx = 0;
    for (int64_t i = 0; i < n_vocab; ++i) mean += w[i];
    mean /= n_vocab;
    for (int64_t i = 0; i < n_vocab; ++i) var += (w[i] - mean) * (w[i] - mean);
    const double sd = std::sqrt(var / n_vocab);
    int64_t ag = 0, aw = 0;
    for (int64_t i = 0; i < n_vocab; ++i) {
      const double d = std::fabs(static_cast<double>(g[i]) - w[i]);
      if (!(d <= mx)) mx = d;  // NaN propagates as a failure
      if (g[i] > g[ag]) ag = i;
      if (w[i] > w[aw]) aw = i;
    }
    const double rel = mx / sd;
    e.max_rel = std::isnan(rel) || rel > e.max_rel ? rel : e.max_rel;
    e.mean_rel += rel / rows;
    if (ag != aw) ++e.argmax_mismatch;
  }
  return e;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= m)) m = d;
  }
  return a.size() == b.size() ? m : INFINITY;
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace attnsparse::testing
