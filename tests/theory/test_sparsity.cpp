// k_eps, top-k selection and the power-law fit against brute force (full sorts written
// here) and hand-computed cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "theory/sparsity.h"

namespace attnsparse::theory {
namespace {

// Brute force: sort a copy descending, the first prefix whose sum reaches (1-eps) * total.
int64_t brute_k_eps(std::vector<double> w, double eps) {
  long double total = 0;
  for (double x : w) total += x;
  std::sort(w.begin(), w.end(), std::greater<>());
  long double s = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    s += w[i];
    if (s >= (1.0L - eps) * total) return int64_t(i + 1);
  }
  return int64_t(w.size());
}

TEST(KEps, HandCases) {
  const std::vector<double> w = {0.2, 0.5, 0.3};
  EXPECT_EQ(k_eps(w, 0.25), 2);   // need 0.75: 0.5, then 0.8
  EXPECT_EQ(k_eps(w, 0.5), 1);    // need 0.5: the largest alone reaches it
  EXPECT_EQ(k_eps(w, 0.01), 3);
  EXPECT_EQ(k_eps(std::vector<double>{7.0}, 0.5), 1);
  EXPECT_EQ(k_eps(std::vector<double>{}, 0.5), 0);
  // Unnormalised weights: scale does not matter.
  EXPECT_EQ(k_eps(std::vector<double>{2, 10, 6}, 0.25), 2);
  // Uniform row of 100: need 95 entries at eps = 0.05.
  EXPECT_EQ(k_eps(std::vector<double>(100, 3.0), 0.05), 95);
  EXPECT_THROW(k_eps(w, 0.0), Error);
  EXPECT_THROW(k_eps(w, 1.0), Error);
}

TEST(KEps, MatchesBruteForceOnRandomRows) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> heavy(0.0, 2.5);
  std::uniform_int_distribution<int> ties(0, 5);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + int(rng() % 3000);
    std::vector<double> w(n);
    const bool tied = trial % 3 == 0;  // many equal values
    for (auto& x : w) x = tied ? double(ties(rng)) + 1e-300 : heavy(rng);
    for (double eps : {0.001, 0.01, 0.05, 0.5, 0.9}) {
      const int64_t want = brute_k_eps(w, eps);
      std::vector<double> a = w, b = w;
      EXPECT_EQ(k_eps_inplace(a, eps), want) << "n=" << n << " eps=" << eps;
      EXPECT_EQ(k_eps_sorted_inplace(b, eps), want) << "n=" << n << " eps=" << eps;
    }
  }
}

TEST(TopK, KthLargestAndTieBreakByLowerIndex) {
  const std::vector<double> w = {1, 5, 3, 5, 3, 3, 0};
  std::vector<double> c = w;
  EXPECT_EQ(kth_largest_inplace(c, 1), 5);
  c = w;
  EXPECT_EQ(kth_largest_inplace(c, 3), 3);
  c = w;
  EXPECT_EQ(kth_largest_inplace(c, 7, /*full_sort=*/true), 0);
  // k = 3: the two 5s and the first 3 (index 2).
  std::vector<size_t> kept;
  for_each_topk(w, 3, 3.0, [&](size_t j) { kept.push_back(j); });
  EXPECT_EQ(kept, (std::vector<size_t>{1, 2, 3}));
  kept.clear();
  for_each_topk(w, 5, 3.0, [&](size_t j) { kept.push_back(j); });
  EXPECT_EQ(kept, (std::vector<size_t>{1, 2, 3, 4, 5}));
  c = w;
  EXPECT_THROW(kth_largest_inplace(c, 0), Error);
  EXPECT_THROW(kth_largest_inplace(c, 8), Error);
}

TEST(TopK, StatsMatchBruteForce) {
  std::mt19937_64 rng(9);
  std::exponential_distribution<double> ex(1.0);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 2 + int(rng() % 500);
    std::vector<double> w(n);
    for (auto& x : w) x = std::exp(3 * ex(rng));
    const int64_t k = 1 + int64_t(rng() % n);
    std::vector<double> s = w;
    std::sort(s.begin(), s.end(), std::greater<>());
    const double total = std::accumulate(w.begin(), w.end(), 0.0);
    double kept = 0, sq_kept = 0, sq_tail = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double a = s[i] / total;
      if (i < k) {
        kept += s[i];
        sq_kept += a * a;
      } else {
        sq_tail += a * a;
      }
    }
    std::vector<double> c = w;
    const TopKStats st = topk_stats_inplace(c, k);
    EXPECT_NEAR(st.kept, kept / total, 1e-12);
    EXPECT_NEAR(st.tail, 1 - kept / total, 1e-12);
    EXPECT_NEAR(st.sq_kept, sq_kept, 1e-12);
    EXPECT_NEAR(st.sq_tail, sq_tail, 1e-12);
  }
}

TEST(Fit, LineIsExact) {
  const std::vector<double> x = {1, 2, 3, 4}, y = {3, 5, 7, 9};
  const LineFit f = fit_line(x, y);
  EXPECT_NEAR(f.slope, 2, 1e-12);
  EXPECT_NEAR(f.intercept, 1, 1e-12);
  EXPECT_NEAR(f.r2, 1, 1e-12);
  EXPECT_THROW(fit_line(std::vector<double>{1}, std::vector<double>{1}), Error);
  EXPECT_THROW(fit_line(std::vector<double>{2, 2}, std::vector<double>{1, 3}), Error);
}

TEST(Fit, PowerLawRecoversPlantedExponent) {
  // k = 3 n^0.6 exactly in every trial: C = 0.6, A = 3, a degenerate interval.
  std::vector<double> n;
  for (int e = 10; e <= 17; ++e) n.push_back(std::ldexp(1.0, e));
  std::vector<std::vector<double>> exact(5);
  for (auto& row : exact)
    for (double x : n) row.push_back(3 * std::pow(x, 0.6));
  const PowerFit f = fit_power_law(n, exact, Center::Mean, 200, 0.95, 1);
  EXPECT_NEAR(f.C, 0.6, 1e-12);
  EXPECT_NEAR(std::exp(f.log_A), 3, 1e-9);
  EXPECT_NEAR(f.C_lo, 0.6, 1e-12);
  EXPECT_NEAR(f.C_hi, 0.6, 1e-12);

  // Multiplicative log-normal noise per trial and n: the interval should cover 0.6 and
  // its width should shrink with more trials (~1/sqrt(T)).
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 0.3);
  auto noisy = [&](int T) {
    std::vector<std::vector<double>> v(T);
    for (auto& row : v)
      for (double x : n) row.push_back(3 * std::pow(x, 0.6) * std::exp(noise(rng)));
    return fit_power_law(n, v, Center::Median, 500, 0.95, 7);
  };
  const PowerFit small = noisy(16), large = noisy(256);
  EXPECT_LT(small.C_lo, 0.6);
  EXPECT_GT(small.C_hi, 0.6);
  EXPECT_LT(large.C_lo, 0.6);
  EXPECT_GT(large.C_hi, 0.6);
  EXPECT_LT(large.C_hi - large.C_lo, 0.5 * (small.C_hi - small.C_lo));
}

}  // namespace
}  // namespace attnsparse::theory
