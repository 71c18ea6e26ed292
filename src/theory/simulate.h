// The n^C-sparsity simulator (docs/methods.md §8, Deng/Song/Yang): random attention rows of
// growing length n, their k_eps(n), the fitted exponent C = d log k_eps / d log n with a
// bootstrap interval, and the output error of budget rules k = const, ceil(ln n) and
// ceil(alpha n^C) with Gaussian values.
//
// Regimes (the logit of key j, for one query per trial):
//   gaussian    q, k_j ~ N(0, sigma^2 I_d) i.i.d.;      s_j = q . k_j / sqrt(d)
//   norm-bound  x_q, x_k = B g/|g| (uniform on the sphere of radius B), W = F G/|G|_F
//               with G i.i.d. N(0,1) d x d (one W per trial); s_j = x_q^T W x_k, so
//               |s_j| <= R = B^2 F
//   logit-c     s_j = sigma_n z_j, z_j ~ N(0,1) i.i.d., sigma_n^2 = 2 c ln n (no q/k)
// Values v_j ~ N(0, I_d) i.i.d., independent of the logits. Rows a = softmax(s[0..n)).
//
// Prefix reuse: per trial one query and one draw of n_max keys/values; the row at n uses
// keys 0..n-1 (logit-c: the same z_j rescaled by sigma_n). Rows at different n of one
// trial are therefore dependent; trials are independent, and the bootstrap resamples
// whole trials.
//
// Key methods: `direct` draws every key vector (d normals) and computes the logits as a
// GEMV q . K^T (fast vectorised counter-based normals); `reduced` uses the exact
// conditional law given the query (gaussian: s_j ~ N(0, sigma^4 |g_q|^2 / d);
// norm-bound: s_j = B |u| z / sqrt(z^2 + chi^2_{d-1}) with u = W^T x_q) and, for the
// error, ||o - o_k||^2 = (||c||^2) chi^2_d with c the weight differences — identical in
// distribution, d times cheaper.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analysis/shard.h"

#include "theory/sparsity.h"

namespace attnsparse::theory {

enum class Regime { Gaussian, NormBound, LogitC };
enum class KeyMethod { Direct, Reduced };
// How k_eps and the top-k sets are selected: expected-O(n) quickselect (nth_element), or
// a full sort per row (the slow baseline the benchmark compares against).
enum class SelectMethod { Quickselect, FullSort };

struct Setting {
  Regime regime = Regime::Gaussian;
  int d = 128;
  double sigma = 1.0;  // gaussian
  double B = 1.0;      // norm-bound: row norm
  double F = 1.0;      // norm-bound: Frobenius norm of W
  double c = 0.5;      // logit-c
  double R() const { return B * B * F; }
  std::string regime_name() const;
  std::string label() const;       // e.g. "gaussian d=128 sigma=1"
  std::string definition() const;  // the logit formula, spelled out
};

// The longest row simulated (--n HI), and so also the largest budget --k-const and the
// largest prefactor --alpha that can matter (every budget is clamped to n).
constexpr int64_t kMaxLength = int64_t{1} << 24;

struct SimOptions {
  int64_t n_lo = 1024, n_hi = 131072;  // powers of two between these (inclusive)
  std::vector<Setting> settings;
  std::vector<double> eps{0.01, 0.05};
  int trials = 32;
  uint64_t seed = 1;
  int64_t k_const = 8;
  // The dynamic rule k = ceil(alpha n^exponent). exponent NaN: the fitted C of the smallest
  // eps (clamped to [0, 1]); alpha NaN: that fit's prefactor A when the exponent is fitted
  // (so the rule follows the fitted k_eps curve), else 1.
  double alpha = NAN;
  double exponent = NAN;
  int bootstrap = 1000;
  double level = 0.95;
  Center center = Center::Mean;
  KeyMethod keys = KeyMethod::Direct;
  SelectMethod select = SelectMethod::Quickselect;
  bool errors = true;
  // Progress lines (e.g. to stderr); called from the calling thread only. May be empty.
  std::function<void(const std::string&)> progress;
  // Several processes (analysis/shard.h): trial t of every setting runs on rank
  // t % size(); the trials' k_eps and errors are gathered (k_eps to every rank, for the
  // fits; errors to rank 0), so rank 0's results equal one process's exactly. The other
  // ranks' results are incomplete: only rank 0 should write them.
  analysis::ShardComm* comm = nullptr;
};

// Throws UsageError for out-of-range options.
void validate(const SimOptions& opt);

// The settings of a sweep, for every head dimension d in turn: one gaussian setting per
// sigma, one norm-bound setting per (B, F) pair, one logit-c setting per c (in that order;
// an empty list adds none of its regime). The pairing rule of B and F is the caller's.
std::vector<Setting> sweep_settings(const std::vector<int>& ds, const std::vector<double>& sigmas,
                                    const std::vector<double>& norm_bounds,
                                    const std::vector<double>& weight_frobenius,
                                    const std::vector<double>& logit_cs);
// The powers of two in [lo, hi].
std::vector<int64_t> powers_of_two(int64_t lo, int64_t hi);
// "LO:HI" (integers, or 2^a) -> {lo, hi}; UsageError when malformed or lo > hi.
std::pair<int64_t, int64_t> parse_n_range(const std::string& text);

struct Summary {
  double mean = 0, sd = 0, median = 0, p10 = 0, p90 = 0;
};
Summary summarize(std::vector<double> v);

struct RuleResult {
  std::string name;                      // "const", "log", "dyn"
  std::string formula;                   // "k = 8", "k = ceil(ln n)", "k = ceil(1 n^0.66)"
  std::vector<int64_t> k;                // per n
  std::vector<std::vector<double>> err;  // [trial][n]: ||o - o_k||
  std::vector<std::vector<double>> rel;  // [trial][n]: ||o - o_k|| / ||o||
  std::vector<std::vector<double>> tail; // [trial][n]: dropped dense mass
};

struct SettingResult {
  Setting setting;
  std::vector<int64_t> n;
  std::vector<double> eps;
  std::vector<std::vector<std::vector<double>>> k_eps;  // [eps][trial][n]
  std::vector<std::vector<double>> top1;                // [trial][n]: largest weight
  std::vector<PowerFit> fits;                           // per eps
  // logit-c only: closed form n Q(sigma_n + Phi^-1(eps)) and its log-log slope.
  std::vector<std::vector<double>> closed_k;  // [eps][n]
  std::vector<double> closed_C;               // per eps
  double dyn_alpha = 1, dyn_C = 0;
  std::vector<RuleResult> rules;
};

std::vector<SettingResult> simulate(const SimOptions& opt);

// The raw draw of one trial of setting `setting` (an index into opt.settings), exactly as
// simulate() uses it: the n_max logits (logit-c: the standard normal z_j, to be scaled by
// sigma_n) and, for KeyMethod::Direct, the n_max x d values (row-major, row j = v_j).
// For tests that recompute k_eps and errors by brute force.
struct TrialDraw {
  std::vector<float> logits;
  std::vector<float> values;
  int d = 0;
};
TrialDraw draw_trial(const SimOptions& opt, size_t setting, int trial);

// Closed form for i.i.d. N(0, sigma^2) logits: k_eps ~= n Q(sigma + Phi^-1(eps)).
double closed_form_k(int64_t n, double sigma, double eps);

}  // namespace attnsparse::theory
