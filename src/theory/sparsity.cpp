#include "theory/sparsity.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>

#include "analysis/row_metrics.h"
#include "core/error.h"

namespace attnsparse::theory {

int64_t k_eps_inplace(std::span<double> w, double eps) {
  if (!(eps > 0.0 && eps < 1.0)) fail("k_eps: eps = {} is outside (0, 1)", eps);
  const int64_t n = static_cast<int64_t>(w.size());
  if (n == 0) return 0;
  // W_{1-eps} of analysis' row metrics, on the unnormalised weights.
  const double need = (1.0 - eps) * std::accumulate(w.begin(), w.end(), 0.0);
  int64_t k = 0;
  analysis::mass_widths_inplace(w.data(), n, &need, 1, &k);
  return k;
}

int64_t k_eps_sorted_inplace(std::span<double> w, double eps) {
  if (!(eps > 0.0 && eps < 1.0)) fail("k_eps: eps = {} is outside (0, 1)", eps);
  const int64_t n = static_cast<int64_t>(w.size());
  if (n == 0) return 0;
  const double need = (1.0 - eps) * std::accumulate(w.begin(), w.end(), 0.0);
  std::sort(w.begin(), w.end(), std::greater<double>());
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    s += w[i];
    if (s >= need) return i + 1;
  }
  return n;
}

double kth_largest_inplace(std::span<double> w, int64_t k, bool full_sort) {
  const int64_t n = static_cast<int64_t>(w.size());
  if (k < 1 || k > n) fail("kth_largest: k = {} is outside [1, {}]", k, n);
  if (full_sort) {
    std::sort(w.begin(), w.end(), std::greater<double>());
  } else {
    std::nth_element(w.begin(), w.begin() + (k - 1), w.end(), std::greater<double>());
  }
  return w[k - 1];
}

int64_t k_eps(std::span<const double> w, double eps) {
  std::vector<double> copy(w.begin(), w.end());
  return k_eps_inplace(copy, eps);
}

TopKStats topk_stats_inplace(std::span<double> w, int64_t k) {
  const int64_t n = static_cast<int64_t>(w.size());
  k = std::clamp<int64_t>(k, 0, n);
  if (k < n && k > 0)
    std::nth_element(w.begin(), w.begin() + (k - 1), w.end(), std::greater<double>());
  double total = 0, kept = 0, sq_kept = 0, sq_tail = 0;
  for (int64_t i = 0; i < n; ++i) total += w[i];
  for (int64_t i = 0; i < k; ++i) {
    kept += w[i];
    sq_kept += w[i] * w[i];
  }
  for (int64_t i = k; i < n; ++i) sq_tail += w[i] * w[i];
  TopKStats st;
  if (total <= 0) return st;
  st.kept = kept / total;
  st.tail = std::max(0.0, (total - kept) / total);
  st.sq_kept = sq_kept / (total * total);
  st.sq_tail = sq_tail / (total * total);
  return st;
}

LineFit fit_line(std::span<const double> x, std::span<const double> y) {
  const size_t m = x.size();
  if (m < 2 || y.size() != m) fail("fit_line: need at least two points (got {})", m);
  double mx = 0, my = 0;
  for (size_t i = 0; i < m; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= m;
  my /= m;
  double sxx = 0, sxy = 0, syy = 0;
  for (size_t i = 0; i < m; ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx <= 0) fail("fit_line: all x values are equal");
  LineFit f;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  f.r2 = syy > 0 ? (sxy * sxy) / (sxx * syy) : 1.0;
  return f;
}

namespace {

double center_of(std::vector<double>& v, Center c) {
  if (c == Center::Mean) return std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  const size_t h = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + h, v.end());
  double m = v[h];
  if (v.size() % 2 == 0) m = 0.5 * (m + *std::max_element(v.begin(), v.begin() + h));
  return m;
}

LineFit fit_curve(std::span<const double> n, const std::vector<std::vector<double>>& values,
                  const std::vector<size_t>& trials, Center center) {
  std::vector<double> x, y, col;
  for (size_t i = 0; i < n.size(); ++i) {
    col.clear();
    for (size_t t : trials) col.push_back(values[t][i]);
    const double c = center_of(col, center);
    if (!(c > 0)) fail("fit_power_law: non-positive value at n = {}", n[i]);
    x.push_back(std::log(n[i]));
    y.push_back(std::log(c));
  }
  return fit_line(x, y);
}

}  // namespace

PowerFit fit_power_law(std::span<const double> n, const std::vector<std::vector<double>>& values,
                       Center center, int resamples, double level, uint64_t seed) {
  if (values.empty()) fail("fit_power_law: no trials");
  for (const auto& row : values)
    if (row.size() != n.size()) fail("fit_power_law: ragged values");
  const size_t T = values.size();
  std::vector<size_t> all(T);
  std::iota(all.begin(), all.end(), 0);
  const LineFit base = fit_curve(n, values, all, center);
  PowerFit pf;
  pf.C = base.slope;
  pf.log_A = base.intercept;
  pf.r2 = base.r2;
  pf.level = level;
  pf.C_lo = pf.C_hi = pf.C;
  if (resamples <= 0 || T < 2) return pf;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, T - 1);
  std::vector<double> slopes;
  slopes.reserve(resamples);
  std::vector<size_t> idx(T);
  for (int b = 0; b < resamples; ++b) {
    for (auto& i : idx) i = pick(rng);
    slopes.push_back(fit_curve(n, values, idx, center).slope);
  }
  std::sort(slopes.begin(), slopes.end());
  const double a = (1.0 - level) / 2;
  auto q = [&](double p) {
    const double pos = p * (slopes.size() - 1);
    const size_t i = static_cast<size_t>(pos);
    const double f = pos - i;
    return i + 1 < slopes.size() ? slopes[i] * (1 - f) + slopes[i + 1] * f : slopes[i];
  };
  pf.C_lo = q(a);
  pf.C_hi = q(1 - a);
  return pf;
}

}  // namespace attnsparse::theory
