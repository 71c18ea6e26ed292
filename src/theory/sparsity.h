// Row sparsity measures and power-law fits for the n^C-sparsity study (docs/methods.md §8).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace attnsparse::theory {

// k_eps(a) = the smallest k whose top-k mass >= (1 - eps) * sum(a) (= W_{1-eps}(a) of
// docs/methods.md §4). `w` holds non-negative weights (need not sum to 1) and is reordered.
// Computed by analysis' width selection (analysis::mass_widths_inplace, the weighted
// quickselect behind W_p): expected O(n), no full sort.
int64_t k_eps_inplace(std::span<double> w, double eps);
int64_t k_eps(std::span<const double> w, double eps);  // copies
// The same by a full descending sort and a prefix scan: O(n log n), the baseline the
// benchmark compares against (and a second implementation for tests).
int64_t k_eps_sorted_inplace(std::span<double> w, double eps);

// The k-th largest value of w (1 <= k <= n); w is reordered. `full_sort` selects by a
// full sort instead of nth_element (benchmark baseline).
double kth_largest_inplace(std::span<double> w, int64_t k, bool full_sort = false);

// The top-k index set of w with ties broken by the lower index (docs/methods.md §1),
// given t = the k-th largest value: every j with w_j > t, then the lowest indices with
// w_j == t until k are taken. Calls visit(j) for each kept index in increasing order.
template <typename Visit>
void for_each_topk(std::span<const double> w, int64_t k, double t, Visit&& visit) {
  int64_t above = 0;
  for (double x : w) above += x > t;
  int64_t ties_left = k - above;
  for (size_t j = 0; j < w.size(); ++j) {
    if (w[j] > t) {
      visit(j);
    } else if (w[j] == t && ties_left > 0) {
      --ties_left;
      visit(j);
    }
  }
}

// Tail statistics of keeping the k largest of the weights w (sum normalised to 1):
// kept mass M, tail mass tau = 1 - M, and sum of squares over the kept / dropped set.
struct TopKStats {
  double kept = 0, tail = 0, sq_kept = 0, sq_tail = 0;
};
TopKStats topk_stats_inplace(std::span<double> w, int64_t k);

// Least-squares line y = intercept + slope * x with the coefficient of determination.
struct LineFit {
  double slope = 0, intercept = 0, r2 = 0;
};
LineFit fit_line(std::span<const double> x, std::span<const double> y);

// Power-law fit k = A n^C over trials: values[t][i] is the k of trial t at n[i]; the
// curve is the per-n mean (or median) over trials, fitted on log-log axes. The interval
// resamples trials with replacement (percentile bootstrap, `resamples` draws, seeded).
struct PowerFit {
  double C = 0, log_A = 0, r2 = 0;
  double C_lo = 0, C_hi = 0;  // bootstrap interval
  double level = 0.95;
};
enum class Center { Mean, Median };
PowerFit fit_power_law(std::span<const double> n, const std::vector<std::vector<double>>& values,
                       Center center, int resamples, double level, uint64_t seed);

}  // namespace attnsparse::theory
