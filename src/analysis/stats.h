// Statistical tests used by the conjecture verdicts (docs/methods.md §7). Double precision,
// no external dependencies; each function is tested against textbook values.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace attnsparse::analysis {

// Distribution tails.
double normal_sf(double z);                       // P(Z > z), Z ~ N(0,1)
double chi2_sf(double x, double df);              // P(X > x), X ~ chi-square(df)
double student_t_sf(double t, double df);         // P(T > t), T ~ t(df)
double regularized_gamma_q(double a, double x);   // Q(a, x) = Gamma(a, x) / Gamma(a)
double regularized_beta(double a, double b, double x);  // I_x(a, b)

// Ranks 1..n with ties given their average rank.
std::vector<double> average_ranks(std::span<const double> values);

struct TestResult {
  double statistic = 0;
  double p_value = 1;
  int64_t n = 0;
  bool exact = false;
};

// Spearman rank correlation with a two-sided p-value: exact (all orderings of the ranks)
// for n <= kSpearmanExactMaxN, else from t = r sqrt((n-2)/(1-r^2)) on n-2 degrees of
// freedom (as scipy.stats.spearmanr). n < 3 gives p = 1.
inline constexpr int64_t kSpearmanExactMaxN = 9;
TestResult spearman(std::span<const double> x, std::span<const double> y);

// Kruskal-Wallis H (tie corrected) with p from chi-square(groups - 1).
TestResult kruskal_wallis(const std::vector<std::vector<double>>& groups);

// One-sided Wilcoxon signed-rank test of H1: the differences d tend to be > 0.
// Zero differences are dropped ("wilcox" zero method); statistic = T+ (sum of the ranks
// of the positive differences). Exact null distribution when n <= 50 and there are no
// ties after dropping zeros; otherwise the normal approximation with the tie-corrected
// variance n(n+1)(2n+1)/24 - sum(t^3 - t)/48 and no continuity correction.
TestResult wilcoxon_signed_rank_greater(std::span<const double> d);

// Holm step-down adjusted p-values (same order as the input).
std::vector<double> holm_adjust(std::span<const double> p);

// Percentile bootstrap over documents of a ratio-of-sums mean: document i contributes
// sum[i] over count[i] rows. Returns the (alpha/2, 1 - alpha/2) percentiles of
// sum(sum*)/sum(count*) over `resamples` resamples drawn with `seed`.
struct Interval {
  double low = 0, high = 0;
};
Interval bootstrap_mean_ci(std::span<const double> sums, std::span<const double> counts,
                           int resamples, uint64_t seed, double alpha = 0.05);
// The resample index sets themselves, so several statistics can share them (paired).
std::vector<std::vector<uint32_t>> bootstrap_indices(size_t n_docs, int resamples, uint64_t seed);
Interval percentile_interval(std::vector<double> values, double alpha = 0.05);

// Median (average of the two middle values for even n); NaN for empty input.
double median(std::vector<double> values);

}  // namespace attnsparse::analysis
