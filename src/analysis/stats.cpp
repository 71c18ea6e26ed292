#include "analysis/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace attnsparse::analysis {

double normal_sf(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

namespace {
// Series for P(a, x) (Numerical Recipes gser), valid for x < a + 1.
double gamma_p_series(double a, double x) {
  double sum = 1.0 / a, term = sum, ap = a;
  for (int i = 0; i < 1000; ++i) {
    ap += 1;
    term *= x / ap;
    sum += term;
    if (std::fabs(term) < std::fabs(sum) * 1e-16) break;
  }
  return sum * std::exp(-x + a * std::log(x) - std::lgamma(a));
}
// Continued fraction for Q(a, x) (modified Lentz), valid for x >= a + 1.
double gamma_q_cf(double a, double x) {
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-16) break;
  }
  return std::exp(-x + a * std::log(x) - std::lgamma(a)) * h;
}
// Continued fraction for the incomplete beta function (Numerical Recipes betacf).
double beta_cf(double a, double b, double x) {
  const double tiny = 1e-300;
  double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m < 1000; ++m) {
    const int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-16) break;
  }
  return h;
}
}  // namespace

double regularized_gamma_q(double a, double x) {
  if (x <= 0) return 1.0;
  if (x < a + 1) return 1.0 - gamma_p_series(a, x);
  return gamma_q_cf(a, x);
}

double chi2_sf(double x, double df) { return regularized_gamma_q(df / 2, x / 2); }

double regularized_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_cf(a, b, x) / a;
  return 1 - front * beta_cf(b, a, 1 - x) / b;
}

double student_t_sf(double t, double df) {
  const double tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t));
  return t >= 0 ? tail : 1 - tail;
}

std::vector<double> average_ranks(std::span<const double> values) {
  const size_t n = values.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return values[a] < values[b]; });
  std::vector<double> ranks(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && values[order[j + 1]] == values[order[i]]) ++j;
    const double r = 0.5 * double(i + j) + 1.0;
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = r;
    i = j + 1;
  }
  return ranks;
}

TestResult spearman(std::span<const double> x, std::span<const double> y) {
  TestResult r;
  r.n = int64_t(std::min(x.size(), y.size()));
  if (r.n < 2) return r;
  const auto rx = average_ranks(x.subspan(0, r.n)), ry = average_ranks(y.subspan(0, r.n));
  const double mx = std::accumulate(rx.begin(), rx.end(), 0.0) / r.n;
  const double my = std::accumulate(ry.begin(), ry.end(), 0.0) / r.n;
  double sxy = 0, sxx = 0, syy = 0;
  for (int64_t i = 0; i < r.n; ++i) {
    sxy += (rx[i] - mx) * (ry[i] - my);
    sxx += (rx[i] - mx) * (rx[i] - mx);
    syy += (ry[i] - my) * (ry[i] - my);
  }
  if (sxx == 0 || syy == 0) {  // a constant variable: correlation undefined
    r.statistic = std::numeric_limits<double>::quiet_NaN();
    r.p_value = 1;
    return r;
  }
  r.statistic = std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
  if (r.n < 3) return r;
  if (r.n <= kSpearmanExactMaxN) {
    // Exact permutation distribution: every ordering of y's ranks against x's is equally
    // likely under independence. The t approximation is far off for so few points (it
    // gives p = 0 for a perfect order of 4 layers, whose exact two-sided p is 1/12).
    std::vector<double> perm = ry;
    std::sort(perm.begin(), perm.end());
    const double observed = std::fabs(sxy) * (1 - 1e-12);
    int64_t total = 0, extreme = 0;
    do {
      double s = 0;
      for (int64_t i = 0; i < r.n; ++i) s += (rx[i] - mx) * (perm[i] - my);
      ++total;
      if (std::fabs(s) >= observed) ++extreme;
    } while (std::next_permutation(perm.begin(), perm.end()));
    // next_permutation walks distinct orderings; with tied y ranks each stands for the
    // same number of orderings of the original values, so the ratio is unchanged.
    r.p_value = double(extreme) / double(total);
    r.exact = true;
    return r;
  }
  const double df = double(r.n - 2);
  const double denom = 1 - r.statistic * r.statistic;
  if (denom <= 0) {
    r.p_value = 0;
    return r;
  }
  const double t = r.statistic * std::sqrt(df / denom);
  r.p_value = std::min(1.0, 2 * student_t_sf(std::fabs(t), df));
  return r;
}

TestResult kruskal_wallis(const std::vector<std::vector<double>>& groups) {
  TestResult r;
  std::vector<double> all;
  int k = 0;
  for (const auto& g : groups) {
    if (g.empty()) continue;
    ++k;
    all.insert(all.end(), g.begin(), g.end());
  }
  const double n = double(all.size());
  r.n = int64_t(all.size());
  if (k < 2 || n < 2) return r;
  const auto ranks = average_ranks(all);
  double h = 0;
  size_t off = 0;
  for (const auto& g : groups) {
    if (g.empty()) continue;
    double rs = 0;
    for (size_t i = 0; i < g.size(); ++i) rs += ranks[off + i];
    off += g.size();
    h += rs * rs / double(g.size());
  }
  h = 12.0 / (n * (n + 1)) * h - 3 * (n + 1);
  // Tie correction: divide by 1 - sum(t^3 - t) / (n^3 - n).
  std::vector<double> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  double ties = 0;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
    const double t = double(j - i);
    ties += t * t * t - t;
    i = j;
  }
  const double c = 1 - ties / (n * n * n - n);
  if (c <= 0) return r;  // all values equal
  r.statistic = h / c;
  r.p_value = chi2_sf(r.statistic, k - 1);
  return r;
}

TestResult wilcoxon_signed_rank_greater(std::span<const double> d) {
  TestResult r;
  std::vector<double> nz, absd;
  for (double v : d)
    if (v != 0 && !std::isnan(v)) nz.push_back(v);
  const int64_t n = int64_t(nz.size());
  r.n = n;
  if (n == 0) return r;
  for (double v : nz) absd.push_back(std::fabs(v));
  const auto ranks = average_ranks(absd);
  double tplus = 0;
  for (int64_t i = 0; i < n; ++i)
    if (nz[i] > 0) tplus += ranks[i];
  r.statistic = tplus;
  // Ties among |d|?
  std::vector<double> sorted = absd;
  std::sort(sorted.begin(), sorted.end());
  double tie_term = 0;
  bool has_ties = false;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
    const double t = double(j - i);
    if (t > 1) has_ties = true;
    tie_term += t * t * t - t;
    i = j;
  }
  if (n <= 50 && !has_ties) {
    // Exact: number of subsets of {1..n} with rank sum s, under H0 each sign is a coin flip.
    const int64_t max_sum = n * (n + 1) / 2;
    std::vector<double> count(max_sum + 1, 0.0);
    count[0] = 1;
    for (int64_t k = 1; k <= n; ++k)
      for (int64_t s = max_sum; s >= k; --s) count[s] += count[s - k];
    double upper = 0;
    for (int64_t s = int64_t(std::llround(tplus)); s <= max_sum; ++s) upper += count[s];
    r.p_value = std::min(1.0, upper / std::ldexp(1.0, int(n)));
    r.exact = true;
    return r;
  }
  const double nn = double(n);
  const double mean = nn * (nn + 1) / 4;
  const double var = nn * (nn + 1) * (2 * nn + 1) / 24 - tie_term / 48;
  if (var <= 0) {
    r.p_value = 1;
    return r;
  }
  r.p_value = normal_sf((tplus - mean) / std::sqrt(var));
  return r;
}

std::vector<double> holm_adjust(std::span<const double> p) {
  const size_t m = p.size();
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<double> adj(m);
  double running = 0;
  for (size_t i = 0; i < m; ++i) {
    running = std::max(running, std::min(1.0, double(m - i) * p[order[i]]));
    adj[order[i]] = running;
  }
  return adj;
}

std::vector<std::vector<uint32_t>> bootstrap_indices(size_t n_docs, int resamples, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint32_t>> out(resamples, std::vector<uint32_t>(n_docs));
  for (auto& sample : out)
    for (auto& i : sample) i = uint32_t(rng() % n_docs);
  return out;
}

Interval percentile_interval(std::vector<double> values, double alpha) {
  Interval iv;
  std::erase_if(values, [](double v) { return std::isnan(v); });
  if (values.empty()) {
    iv.low = iv.high = std::numeric_limits<double>::quiet_NaN();
    return iv;
  }
  std::sort(values.begin(), values.end());
  auto at = [&](double q) {  // linear interpolation between order statistics (numpy default)
    const double pos = q * double(values.size() - 1);
    const size_t i = size_t(std::floor(pos));
    const double f = pos - double(i);
    return i + 1 < values.size() ? values[i] * (1 - f) + values[i + 1] * f : values[i];
  };
  iv.low = at(alpha / 2);
  iv.high = at(1 - alpha / 2);
  return iv;
}

Interval bootstrap_mean_ci(std::span<const double> sums, std::span<const double> counts,
                           int resamples, uint64_t seed, double alpha) {
  const size_t n = std::min(sums.size(), counts.size());
  if (n == 0) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  std::vector<double> stats;
  stats.reserve(resamples);
  for (const auto& sample : bootstrap_indices(n, resamples, seed)) {
    double s = 0, c = 0;
    for (uint32_t i : sample) {
      s += sums[i];
      c += counts[i];
    }
    stats.push_back(c > 0 ? s / c : std::numeric_limits<double>::quiet_NaN());
  }
  return percentile_interval(std::move(stats), alpha);
}

double median(std::vector<double> values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  const double hi = values[mid];
  if (values.size() % 2) return hi;
  return 0.5 * (hi + *std::max_element(values.begin(), values.begin() + mid));
}

}  // namespace attnsparse::analysis
