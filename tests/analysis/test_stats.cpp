// Statistics against values derived independently of the code (closed forms, hand
// calculations, published worked examples); each assertion says where its number is from.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "analysis/stats.h"

using namespace attnsparse::analysis;

TEST(Stats, NormalTail) {
  EXPECT_NEAR(normal_sf(0), 0.5, 1e-15);
  EXPECT_NEAR(normal_sf(1.959963984540054), 0.025, 1e-12);  // the 97.5% normal quantile
  EXPECT_NEAR(normal_sf(-1.6448536269514722), 0.95, 1e-12);
}

TEST(Stats, ChiSquareSurvivalClosedForms) {
  for (double x : {0.1, 1.0, 3.0, 5.991464547107979, 20.0, 60.0}) {
    // df = 2: the exponential distribution, sf = exp(-x/2).
    EXPECT_NEAR(chi2_sf(x, 2), std::exp(-x / 2), 1e-13) << x;
    // df = 1: sf = erfc(sqrt(x/2)).
    EXPECT_NEAR(chi2_sf(x, 1), std::erfc(std::sqrt(x / 2)), 1e-13) << x;
    // df = 4: sf = exp(-x/2) (1 + x/2).
    EXPECT_NEAR(chi2_sf(x, 4), std::exp(-x / 2) * (1 + x / 2), 1e-13) << x;
  }
  EXPECT_NEAR(chi2_sf(3.841458820694124, 1), 0.05, 1e-12);  // table value chi2_{0.95,1}
  EXPECT_NEAR(chi2_sf(11.070497693516351, 5), 0.05, 1e-10);  // table value chi2_{0.95,5}
}

TEST(Stats, StudentTClosedForms) {
  for (double t : {0.0, 0.3, 1.0, 2.5, 10.0}) {
    // df = 1 is the Cauchy distribution: sf = 1/2 - atan(t)/pi.
    EXPECT_NEAR(student_t_sf(t, 1), 0.5 - std::atan(t) / std::numbers::pi, 1e-13) << t;
    // df = 2: sf = 1/2 - t / (2 sqrt(2 + t^2)).
    EXPECT_NEAR(student_t_sf(t, 2), 0.5 - t / (2 * std::sqrt(2 + t * t)), 1e-13) << t;
    EXPECT_NEAR(student_t_sf(-t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-13) << t;
  }
}

TEST(Stats, SpearmanMonotoneIsOne) {
  std::vector<double> x{1, 2, 3, 4, 5, 6, 7}, y{0.1, 0.5, 0.7, 3, 9, 27, 81}, z(y.rbegin(), y.rend());
  EXPECT_DOUBLE_EQ(spearman(x, y).statistic, 1.0);
  EXPECT_DOUBLE_EQ(spearman(x, z).statistic, -1.0);
  // n = 7 is small enough for the exact test: only the identity and the reversal reach
  // |rho| = 1, so p = 2 / 7!.
  EXPECT_TRUE(spearman(x, y).exact);
  EXPECT_NEAR(spearman(x, y).p_value, 2.0 / 5040.0, 1e-15);
  EXPECT_NEAR(spearman(x, z).p_value, 2.0 / 5040.0, 1e-15);
  // Beyond the exact range the t approximation: a perfect order gives p = 0.
  std::vector<double> big(12), big_y(12);
  for (int i = 0; i < 12; ++i) big[i] = i, big_y[i] = i * i;
  EXPECT_FALSE(spearman(big, big_y).exact);
  EXPECT_EQ(spearman(big, big_y).p_value, 0.0);
}

TEST(Stats, SpearmanExactSmallSamples) {
  // n = 3: the six orderings give rho = 1, .5, .5, -.5, -.5, -1, so |rho| >= .5 always.
  std::vector<double> a{1, 2, 3}, b{1, 3, 2};
  EXPECT_NEAR(spearman(a, b).statistic, 0.5, 1e-15);
  EXPECT_NEAR(spearman(a, b).p_value, 1.0, 1e-15);
  // n = 4 in perfect order: 2 of 24 orderings reach |rho| = 1.
  std::vector<double> c{1, 2, 3, 4}, d{40, 30, 20, 10};
  EXPECT_NEAR(spearman(c, d).p_value, 2.0 / 24.0, 1e-15);
  // n = 4, rho = 0.8 (one adjacent swap): |rho| >= 0.8 for the 2 perfect orders and the
  // 3 + 3 single adjacent swaps of each, i.e. 8 of 24 (sum d^2 <= 2).
  std::vector<double> e{1, 2, 4, 3};
  EXPECT_NEAR(spearman(c, e).statistic, 0.8, 1e-12);
  EXPECT_NEAR(spearman(c, e).p_value, 8.0 / 24.0, 1e-15);
}

TEST(Stats, SpearmanWikipediaExample) {
  // en.wikipedia.org/wiki/Spearman's_rank_correlation_coefficient, "Example": IQ vs hours of
  // TV per week; rho = -29/165 = -0.175757..., p = 0.627188 (t-distribution).
  std::vector<double> iq{106, 100, 86, 101, 99, 103, 97, 113, 112, 110};
  std::vector<double> tv{7, 27, 2, 50, 28, 29, 20, 12, 6, 17};
  auto r = spearman(iq, tv);
  EXPECT_NEAR(r.statistic, -29.0 / 165.0, 1e-12);
  EXPECT_NEAR(r.p_value, 0.627188, 1e-5);
}

TEST(Stats, AverageRanksTies) {
  std::vector<double> v{10, 20, 10, 30, 20, 20};
  auto r = average_ranks(v);  // 10,10 -> 1.5; 20x3 -> 4; 30 -> 6
  EXPECT_EQ(r, (std::vector<double>{1.5, 4, 1.5, 6, 4, 4}));
}

TEST(Stats, KruskalWallisByHand) {
  // {1,2,3} vs {4,5,6}: rank sums 6 and 15, H = 12/42 (36/3 + 225/3) - 21 = 27/7.
  auto r = kruskal_wallis({{1, 2, 3}, {4, 5, 6}});
  EXPECT_NEAR(r.statistic, 27.0 / 7.0, 1e-12);
  EXPECT_NEAR(r.p_value, std::erfc(std::sqrt(27.0 / 7.0 / 2)), 1e-12);  // chi2(1) tail
  // Ties: {1,1,2} vs {2,3,3}: rank sums 6.5 and 14.5, H = 64/21, tie correction
  // 1 - 3*6/210 = 32/35, corrected H = 64/21 * 35/32 = 10/3.
  auto t = kruskal_wallis({{1, 1, 2}, {2, 3, 3}});
  EXPECT_NEAR(t.statistic, 10.0 / 3.0, 1e-12);
  // Three groups with df = 2 tail exp(-H/2).
  auto k3 = kruskal_wallis({{1, 2}, {3, 4}, {5, 6}});
  // rank sums 3, 7, 11: H = 12/42 (9/2 + 49/2 + 121/2) - 21 = 12/42 * 89.5 - 21 = 33/7
  EXPECT_NEAR(k3.statistic, 12.0 / 42.0 * 89.5 - 21, 1e-12);
  EXPECT_NEAR(k3.p_value, std::exp(-k3.statistic / 2), 1e-12);
}

TEST(Stats, WilcoxonExactSmall) {
  // All five differences positive: T+ = 15, only 1 of the 2^5 sign patterns reaches it.
  auto a = wilcoxon_signed_rank_greater(std::vector<double>{1, 2, 3, 4, 5});
  EXPECT_TRUE(a.exact);
  EXPECT_EQ(a.statistic, 15);
  EXPECT_DOUBLE_EQ(a.p_value, 1.0 / 32);
  // One negative (rank 1): T+ = 14; patterns with T+ >= 14 are {all}, {all but 1}: 2/32.
  auto b = wilcoxon_signed_rank_greater(std::vector<double>{-0.5, 2, 3, 4, 5, 0.0});
  EXPECT_EQ(b.n, 5);  // the zero is dropped
  EXPECT_EQ(b.statistic, 14);
  EXPECT_DOUBLE_EQ(b.p_value, 2.0 / 32);
  // Symmetric: all negative gives p = 1.
  EXPECT_DOUBLE_EQ(wilcoxon_signed_rank_greater(std::vector<double>{-1, -2, -3}).p_value, 1.0);
}

TEST(Stats, WilcoxonNormalApproximationWithTies) {
  // 40 differences of +1 and 20 of -1: every |d| ties, so each rank is 30.5 and
  // T+ = 30.5 * (#positive). Under H0 #positive ~ Binomial(60, 1/2), so the exact z of
  // the tie-corrected normal approximation is (40 - 30) / sqrt(15).
  std::vector<double> d(40, 1.0);
  d.insert(d.end(), 20, -1.0);
  d.insert(d.end(), 7, 0.0);  // zeros are dropped
  auto r = wilcoxon_signed_rank_greater(d);
  EXPECT_FALSE(r.exact);
  EXPECT_EQ(r.n, 60);
  EXPECT_DOUBLE_EQ(r.statistic, 40 * 30.5);
  EXPECT_NEAR(r.p_value, 0.5 * std::erfc(10 / std::sqrt(15.0) / std::sqrt(2.0)), 1e-12);
}

TEST(Stats, WilcoxonNormalNoTiesLargeN) {
  // d = 1..100 with the first 30 negated: T+ = sum(31..100) = 4585; mean 2525,
  // var = 100*101*201/24 = 84587.5 (no ties).
  std::vector<double> d;
  for (int i = 1; i <= 100; ++i) d.push_back(i <= 30 ? -i : i);
  auto r = wilcoxon_signed_rank_greater(d);
  EXPECT_DOUBLE_EQ(r.statistic, 4585);
  EXPECT_NEAR(r.p_value, 0.5 * std::erfc((4585 - 2525) / std::sqrt(84587.5) / std::sqrt(2.0)), 1e-14);
}

TEST(Stats, HolmByHand) {
  // Sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06).
  auto adj = holm_adjust(std::vector<double>{0.01, 0.04, 0.03, 0.005});
  EXPECT_NEAR(adj[0], 0.03, 1e-15);
  EXPECT_NEAR(adj[1], 0.06, 1e-15);
  EXPECT_NEAR(adj[2], 0.06, 1e-15);
  EXPECT_NEAR(adj[3], 0.02, 1e-15);
  EXPECT_EQ(holm_adjust(std::vector<double>{0.9, 0.8})[0], 1.0);  // capped at 1
}

TEST(Stats, BootstrapTwoDocumentsAndDeterminism) {
  // Two documents with means 0 and 1 (one row each): a resample's mean is 0, 1/2 or 1 with
  // probabilities 1/4, 1/2, 1/4, so with 2000 resamples the 2.5% / 97.5% percentiles are 0, 1.
  std::vector<double> sums{0, 1}, counts{1, 1};
  auto iv = bootstrap_mean_ci(sums, counts, 2000, 7);
  EXPECT_DOUBLE_EQ(iv.low, 0);
  EXPECT_DOUBLE_EQ(iv.high, 1);
  auto again = bootstrap_mean_ci(sums, counts, 2000, 7);
  EXPECT_EQ(iv.low, again.low);
  // Identical documents: a degenerate interval at the mean.
  std::vector<double> s3{2, 4, 6}, c3{1, 2, 3};
  auto d = bootstrap_mean_ci(s3, c3, 500, 1);
  EXPECT_DOUBLE_EQ(d.low, 2);
  EXPECT_DOUBLE_EQ(d.high, 2);
}

TEST(Stats, BootstrapWidthMatchesNormalTheory) {
  // 400 documents with values 0/1 alternating (mean 0.5, sd 0.5): the percentile interval
  // should be close to 0.5 +- 1.96 * 0.5 / sqrt(400) = 0.5 +- 0.049.
  std::vector<double> sums, counts;
  for (int i = 0; i < 400; ++i) {
    sums.push_back(i % 2);
    counts.push_back(1);
  }
  auto iv = bootstrap_mean_ci(sums, counts, 2000, 3);
  EXPECT_NEAR(iv.high - iv.low, 2 * 0.049, 0.012);
  EXPECT_NEAR(0.5 * (iv.high + iv.low), 0.5, 0.01);
}

TEST(Stats, Median) {
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_TRUE(std::isnan(median({})));
}
