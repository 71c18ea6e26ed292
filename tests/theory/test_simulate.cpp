// The n^C-sparsity simulator: the closed form for i.i.d. Gaussian logits, the fitted
// exponent over n = 2^10..2^17, a brute-force recomputation of every number on tiny
// cases, the logit laws of each regime, and the paper's claims as properties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "theory/simulate.h"

namespace attnsparse::theory {
namespace {

// Phi^-1(eps) for the levels used here (R: qnorm), so the closed form below does not
// depend on the code under test.
double z_of(double eps) {
  if (eps == 0.05) return -1.6448536269514722;
  if (eps == 0.01) return -2.3263478740408408;
  ADD_FAILURE() << "no reference quantile for eps " << eps;
  return NAN;
}
// k_eps ~= n Q(sigma_n + Phi^-1(eps)) with sigma_n^2 = 2 c ln n (docs/methods.md §8).
double closed_k(double n, double c, double eps) {
  const double sigma = std::sqrt(2 * c * std::log(n));
  return n * 0.5 * std::erfc((sigma + z_of(eps)) / std::sqrt(2.0));
}
double slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / x.size();
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / y.size();
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < x.size(); ++i) sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx);
  return sxy / sxx;
}
double mean_col(const std::vector<std::vector<double>>& m, size_t i) {
  double s = 0;
  for (const auto& row : m) s += row[i];
  return s / m.size();
}

Setting logit_c(double c, int d = 16) {
  Setting s;
  s.regime = Regime::LogitC;
  s.c = c;
  s.d = d;
  return s;
}
Setting gaussian(double sigma, int d) {
  Setting s;
  s.regime = Regime::Gaussian;
  s.sigma = sigma;
  s.d = d;
  return s;
}
Setting norm_bound(double B, double F, int d) {
  Setting s;
  s.regime = Regime::NormBound;
  s.B = B;
  s.F = F;
  s.d = d;
  return s;
}

// One shared run over the range (k_eps only): c = 0.25, 0.5; eps = 0.01, 0.05.
const std::vector<SettingResult>& closed_form_run() {
  static const std::vector<SettingResult> res = [] {
    SimOptions o;
    o.n_lo = 1 << 10;
    o.n_hi = 1 << 17;
    o.settings = {logit_c(0.25), logit_c(0.5)};
    o.eps = {0.01, 0.05};
    o.trials = 160;
    o.seed = 2026;
    o.bootstrap = 400;
    o.errors = false;
    return simulate(o);
  }();
  return res;
}

TEST(Simulate, IidLogitsMatchTheClosedFormAtEveryN) {
  // The closed form treats the scores as a continuum; at finite n the largest scores are
  // cut off near sqrt(2 ln n), which pushes the empirical k_eps up. An independent
  // Monte Carlo (Python, full sorts, 3000 trials) gives 181.4 at n = 2^10, c = 0.5,
  // eps = 0.05 against the closed form 165.5 (+9.6%), and 1270 +- 8 at n = 2^14 against
  // 1159 (+9.6%); at c = 0.25 the bias is < 1%. So the bound is 11% (the measured bias
  // with its uncertainty) plus three Monte Carlo standard errors of the simulated mean
  // (k_eps is heavy-tailed: sd/mean ~ 0.22 per trial, 1.7% over 160 trials at c = 0.5).
  for (const auto& r : closed_form_run())
    for (size_t e = 0; e < r.eps.size(); ++e)
      for (size_t i = 0; i < r.n.size(); ++i) {
        const double sim = mean_col(r.k_eps[e], i), cf = closed_k(double(r.n[i]), r.setting.c, r.eps[e]);
        double var = 0;
        for (const auto& row : r.k_eps[e]) var += (row[i] - sim) * (row[i] - sim);
        const double se = std::sqrt(var / (r.k_eps[e].size() - 1) / r.k_eps[e].size()) / sim;
        EXPECT_NEAR(sim / cf, 1.0, 0.11 + 3 * se) << "c=" << r.setting.c << " eps=" << r.eps[e] << " n=" << r.n[i]
                                                  << " simulated " << sim << " closed form " << cf;
      }
}

// The simulator against an independent brute-force Monte Carlo written here
// (std::normal_distribution, full sort): mean k_eps at n = 2^10 and 2^12.
TEST(Simulate, IidLogitsMatchAnIndependentMonteCarlo) {
  const int T = 400;
  SimOptions o;
  o.n_lo = 1024;
  o.n_hi = 4096;
  o.settings = {logit_c(0.5)};
  o.eps = {0.05};
  o.trials = T;
  o.bootstrap = 0;
  o.errors = false;
  const auto res = simulate(o);
  std::mt19937_64 rng(12345);
  std::normal_distribution<double> z;
  for (size_t i : {size_t(0), size_t(2)}) {
    const int64_t n = res[0].n[i];
    const double sigma = std::sqrt(std::log(double(n)));  // c = 0.5
    std::vector<double> brute;
    for (int t = 0; t < T; ++t) {
      std::vector<double> w(n);
      double total = 0;
      for (auto& x : w) total += x = std::exp(sigma * z(rng));
      std::sort(w.begin(), w.end(), std::greater<>());
      double s = 0;
      int64_t k = 0;
      while (s < 0.95 * total) s += w[k++];
      brute.push_back(double(k));
    }
    auto mean_se = [](const std::vector<double>& v) {
      const double m = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
      double var = 0;
      for (double x : v) var += (x - m) * (x - m);
      return std::pair{m, std::sqrt(var / (v.size() - 1) / v.size())};
    };
    std::vector<double> sim;
    for (const auto& row : res[0].k_eps[0]) sim.push_back(row[i]);
    const auto [ms, ses] = mean_se(sim);
    const auto [mb, seb] = mean_se(brute);
    EXPECT_LT(std::fabs(ms - mb), 4 * std::hypot(ses, seb)) << "n=" << n << " simulator " << ms << " brute " << mb;
  }
}

TEST(Simulate, FittedExponentOverTwoToTheTenToSeventeen) {
  for (const auto& r : closed_form_run()) {
    if (r.setting.c != 0.5) continue;
    for (size_t e = 0; e < r.eps.size(); ++e) {
      std::vector<double> lx, ly;
      for (int64_t n : r.n) lx.push_back(std::log(double(n))), ly.push_back(std::log(closed_k(double(n), 0.5, r.eps[e])));
      const double closed_C = slope(lx, ly);  // 0.6955 (eps 0.05), 0.7856 (eps 0.01)
      const PowerFit& f = r.fits[e];
      // Tolerance 0.03: the 95% bootstrap half-width at 64 trials is ~0.015, and the
      // finite-n bias of the closed form changes the slope by < 0.005 (it is nearly
      // constant in log space).
      EXPECT_NEAR(f.C, closed_C, 0.03) << "eps " << r.eps[e];
      EXPECT_LE(f.C_lo, f.C);
      EXPECT_GE(f.C_hi, f.C);
      EXPECT_LT(f.C_hi - f.C_lo, 0.06);
      EXPECT_NEAR(r.closed_C[e], closed_C, 1e-9);  // the simulator's own closed-form slope
    }
    // Literal values: ~0.695 at eps = 0.05 and ~0.786 at eps = 0.01 (well below the limit
    // 1 - c = 0.5: the approach is slow). Note an earlier summary quoted ~0.66 for eps = 0.05;
    // neither the closed form (0.6955) nor the simulation reproduces that.
    EXPECT_NEAR(r.fits[1].C, 0.695, 0.03);
    EXPECT_NEAR(r.fits[0].C, 0.786, 0.03);
    EXPECT_GT(r.fits[1].C, 0.5 + 0.1);
  }
}

// Brute force on tiny cases: recompute k_eps, top-1 weight, the rule budgets, the
// renormalised top-k output and its error from the trial's raw draw, with long-double
// softmax and full sorts (ties by lower index).
TEST(Simulate, TinyCasesMatchBruteForce) {
  SimOptions o;
  o.n_lo = 16;
  o.n_hi = 128;
  o.settings = {gaussian(1.3, 8), norm_bound(1.5, 20, 5), logit_c(0.5, 3)};
  o.eps = {0.05, 0.3};
  o.trials = 3;
  o.seed = 5;
  o.k_const = 3;
  o.alpha = 2;
  o.exponent = 0.5;
  o.bootstrap = 0;
  for (SelectMethod sel : {SelectMethod::Quickselect, SelectMethod::FullSort}) {
    o.select = sel;
    const auto res = simulate(o);
    for (size_t si = 0; si < res.size(); ++si) {
      const auto& r = res[si];
      ASSERT_EQ(r.rules.size(), 3u);
      for (int t = 0; t < o.trials; ++t) {
        const TrialDraw draw = draw_trial(o, si, t);
        const int d = draw.d;
        if (r.setting.regime == Regime::NormBound) {
          for (float s : draw.logits) EXPECT_LE(std::fabs(s), r.setting.R() * (1 + 1e-6));
        }
        for (size_t i = 0; i < r.n.size(); ++i) {
          const int64_t n = r.n[i];
          const double f = r.setting.regime == Regime::LogitC ? std::sqrt(2 * 0.5 * std::log(double(n))) : 1.0;
          std::vector<long double> a(n);
          long double mx = -INFINITY, total = 0;
          for (int64_t j = 0; j < n; ++j) mx = std::max<long double>(mx, f * draw.logits[j]);
          for (int64_t j = 0; j < n; ++j) total += a[j] = std::exp((long double)(f * draw.logits[j]) - mx);
          for (auto& x : a) x /= total;
          std::vector<int64_t> order(n);
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return a[x] > a[y]; });
          EXPECT_NEAR(r.top1[t][i], double(a[order[0]]), 1e-12);
          for (size_t e = 0; e < r.eps.size(); ++e) {
            long double s = 0;
            int64_t k = n;
            for (int64_t m = 0; m < n; ++m) {
              s += a[order[m]];
              if (s >= 1 - r.eps[e]) {
                k = m + 1;
                break;
              }
            }
            EXPECT_EQ(r.k_eps[e][t][i], double(k)) << r.setting.label() << " n=" << n << " eps=" << r.eps[e];
          }
          std::vector<long double> o_dense(d, 0);
          for (int64_t j = 0; j < n; ++j)
            for (int c = 0; c < d; ++c) o_dense[c] += a[j] * draw.values[j * d + c];
          const int64_t want_k[3] = {std::min<int64_t>(3, n), int64_t(std::ceil(std::log(double(n)))),
                                     std::min<int64_t>(n, int64_t(std::ceil(2 * std::sqrt(double(n)) - 1e-9)))};
          for (int ri = 0; ri < 3; ++ri) {
            const auto& rr = r.rules[ri];
            ASSERT_EQ(rr.k[i], want_k[ri]) << rr.name << " n=" << n;
            long double kept = 0;
            std::vector<long double> ok(d, 0);
            for (int64_t m = 0; m < want_k[ri]; ++m) {
              const int64_t j = order[m];
              kept += a[j];
              for (int c = 0; c < d; ++c) ok[c] += a[j] * draw.values[j * d + c];
            }
            long double e2 = 0, o2 = 0;
            for (int c = 0; c < d; ++c) {
              const long double diff = o_dense[c] - ok[c] / kept;
              e2 += diff * diff;
              o2 += o_dense[c] * o_dense[c];
            }
            EXPECT_NEAR(rr.tail[t][i], double(1 - kept), 1e-12) << rr.name;
            EXPECT_NEAR(rr.err[t][i], double(std::sqrt(e2)), 1e-9 * (1 + double(std::sqrt(e2)))) << rr.name;
            EXPECT_NEAR(rr.rel[t][i], double(std::sqrt(e2 / o2)), 1e-8) << rr.name;
            // The exact identity of docs/methods.md §2: ||o - o_G|| = tau ||mu_tail - mu_G||.
            if (kept < 1) {
              long double id2 = 0;
              for (int c = 0; c < d; ++c) {
                const long double mu_tail = (o_dense[c] - ok[c]) / (1 - kept), mu_g = ok[c] / kept;
                id2 += (mu_tail - mu_g) * (mu_tail - mu_g);
              }
              EXPECT_NEAR(rr.err[t][i], double((1 - kept) * std::sqrt(id2)), 1e-9);
            }
          }
        }
      }
    }
  }
}

// The logit law of each regime, from the raw draws (second moments are exact formulas:
// gaussian E s^2 = sigma^4; norm-bound E s^2 = R^2 / d^2 for unit rows uniform on the
// sphere and W normalised to Frobenius norm F; logit-c z ~ N(0, 1)).
TEST(Simulate, LogitSecondMomentsPerRegime) {
  SimOptions o;
  o.n_lo = 1024;
  o.n_hi = 2048;
  o.settings = {gaussian(1.5, 16), norm_bound(2, 24, 16), logit_c(0.5, 4)};
  o.trials = 64;
  const double want[3] = {std::pow(1.5, 4), std::pow(4.0 * 24 / 16, 2), 1.0};
  // Relative tolerances: ~4 standard errors of the per-trial factor (|g_q|^2/d has
  // relative sd sqrt(2/d) = 0.35, over 64 trials 0.044; similar for the norm-bound
  // query direction; logit-c averages 131072 i.i.d. squares).
  const double tol[3] = {0.18, 0.2, 0.01};
  for (size_t si = 0; si < 3; ++si) {
    double m2 = 0, cnt = 0;
    for (int t = 0; t < o.trials; ++t) {
      const TrialDraw draw = draw_trial(o, si, t);
      for (float s : draw.logits) m2 += double(s) * s, cnt += 1;
    }
    EXPECT_NEAR(m2 / cnt / want[si], 1.0, tol[si]) << o.settings[si].label();
  }
}

TEST(Simulate, ReducedKeysHaveTheSameLawAsDirect) {
  SimOptions o;
  o.n_lo = 256;
  o.n_hi = 4096;
  o.settings = {gaussian(1.8, 16), norm_bound(1, 160, 16)};
  o.eps = {0.05};
  o.trials = 96;
  o.bootstrap = 0;
  o.exponent = 0.7;
  o.alpha = 1;
  o.keys = KeyMethod::Direct;
  const auto direct = simulate(o);
  o.keys = KeyMethod::Reduced;
  o.seed = 77;  // independent draws
  const auto reduced = simulate(o);
  for (size_t si = 0; si < 2; ++si) {
    const size_t last = direct[si].n.size() - 1;
    auto compare = [&](const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                       const char* what) {
      double ma = 0, mb = 0, va = 0, vb = 0;
      const double T = double(a.size());
      for (size_t t = 0; t < a.size(); ++t) ma += std::log(a[t][last]) / T, mb += std::log(b[t][last]) / T;
      for (size_t t = 0; t < a.size(); ++t)
        va += std::pow(std::log(a[t][last]) - ma, 2) / (T - 1), vb += std::pow(std::log(b[t][last]) - mb, 2) / (T - 1);
      const double se = std::sqrt(va / T + vb / T);
      EXPECT_LT(std::fabs(ma - mb), 4.5 * se + 1e-9) << o.settings[si].label() << " " << what;
    };
    compare(direct[si].k_eps[0], reduced[si].k_eps[0], "log k_eps");
    compare(direct[si].rules[2].err, reduced[si].rules[2].err, "log error of the dynamic rule");
    compare(direct[si].rules[0].err, reduced[si].rules[0].err, "log error of the fixed rule");
  }
}

// The paper's claims in its regime (logits with variance growing like ln n: i.i.d.
// logits with c = 0.5, whose k_eps grows like n^(1-c) asymptotically): keeping
// k = n^C entries with C = 0.75 > 1 - c gives an error that falls as n grows; keeping
// ceil(ln n) entries does not (the dropped mass tends to 1, the error stays O(1)).
TEST(Simulate, PaperClaimsAsProperties) {
  SimOptions o;
  o.n_lo = 1 << 10;
  o.n_hi = 1 << 17;
  o.settings = {logit_c(0.5, 32)};
  o.eps = {0.05};
  o.trials = 16;
  o.bootstrap = 0;
  o.exponent = 0.75;
  o.alpha = 1;
  o.k_const = 8;
  const auto res = simulate(o);
  const auto& r = res[0];
  const size_t N = r.n.size();
  auto mean_of = [&](const std::vector<std::vector<double>>& m) {
    std::vector<double> v;
    for (size_t i = 0; i < N; ++i) v.push_back(mean_col(m, i));
    return v;
  };
  const auto dyn = mean_of(r.rules[2].err), dyn_tail = mean_of(r.rules[2].tail);
  const auto log_err = mean_of(r.rules[1].err), log_tail = mean_of(r.rules[1].tail);
  const auto fixed_tail = mean_of(r.rules[0].tail);
  int falls = 0;
  for (size_t i = 1; i < N; ++i) falls += dyn[i] < dyn[i - 1];
  EXPECT_GE(falls, int(N) - 2) << "the n^C rule's error should fall at (almost) every doubling";
  EXPECT_LT(dyn.back(), 0.5 * dyn.front());
  EXPECT_LT(dyn_tail.back(), dyn_tail.front());
  // ceil(ln n): no vanishing error; the dropped mass grows.
  EXPECT_GT(*std::min_element(log_err.begin(), log_err.end()), 0.75 * log_err.front());
  EXPECT_GT(log_err.back(), 10 * dyn.back());
  EXPECT_GT(log_tail.back(), log_tail.front() + 0.05);
  EXPECT_GT(fixed_tail.back(), fixed_tail.front() + 0.05);
}

// Collapse: with norm-bounded inputs the logits are bounded by R; as R grows the row
// concentrates on O(1) entries (k_eps falls, the largest weight rises, C drops).
TEST(Simulate, CollapseAsTheLogitBoundGrows) {
  SimOptions o;
  o.n_lo = 256;
  o.n_hi = 4096;
  o.settings = {norm_bound(1, 8, 32), norm_bound(1, 64, 32), norm_bound(1, 256, 32), norm_bound(1, 512, 32)};
  o.eps = {0.05};
  o.trials = 16;
  o.bootstrap = 0;
  o.errors = false;
  const auto res = simulate(o);
  const size_t last = res[0].n.size() - 1;
  for (size_t i = 1; i < res.size(); ++i) {
    EXPECT_LT(mean_col(res[i].k_eps[0], last), mean_col(res[i - 1].k_eps[0], last)) << res[i].setting.label();
    EXPECT_GT(mean_col(res[i].top1, last), mean_col(res[i - 1].top1, last)) << res[i].setting.label();
  }
  EXPECT_GT(res[0].fits[0].C, 0.97);  // nearly uniform: k_eps proportional to n
  EXPECT_LT(res.back().fits[0].C, res[0].fits[0].C - 0.2);
  EXPECT_LT(mean_col(res.back().k_eps[0], last), 0.01 * 4096);
  EXPECT_GT(mean_col(res.back().top1, last), 0.2);
}

TEST(Simulate, OptionValidation) {
  SimOptions o;
  o.settings = {logit_c(0.5)};
  EXPECT_NO_THROW(validate(o));
  auto bad = [&](auto change) {
    SimOptions b = o;
    change(b);
    EXPECT_THROW(validate(b), UsageError);
  };
  bad([](SimOptions& b) { b.n_lo = 4096, b.n_hi = 4096; });  // one length: no fit
  bad([](SimOptions& b) { b.eps = {0.0}; });
  bad([](SimOptions& b) { b.trials = 1; });
  bad([](SimOptions& b) { b.settings.clear(); });
  bad([](SimOptions& b) { b.settings = {norm_bound(10, 10, 8)}; });  // R = 1000: exp overflow
  bad([](SimOptions& b) { b.exponent = 1.5; });
  bad([](SimOptions& b) { b.alpha = -1; });
  EXPECT_EQ(parse_n_range("2^10:2^17"), (std::pair<int64_t, int64_t>{1024, 131072}));
  EXPECT_THROW(parse_n_range("10-20"), UsageError);
  EXPECT_THROW(parse_n_range("20:10"), UsageError);
  EXPECT_THROW(parse_n_range("x:10"), UsageError);
  EXPECT_EQ(powers_of_two(1000, 5000), (std::vector<int64_t>{1024, 2048, 4096}));
}

}  // namespace
}  // namespace attnsparse::theory
