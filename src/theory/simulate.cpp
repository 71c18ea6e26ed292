#include "theory/simulate.h"

#include <nlohmann/json.hpp>

#include <omp.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>

#include "core/checked.h"
#include "core/error.h"
#include "theory/normal.h"

namespace attnsparse::theory {

std::string Setting::regime_name() const {
  switch (regime) {
    case Regime::Gaussian: return "gaussian";
    case Regime::NormBound: return "norm-bound";
    case Regime::LogitC: return "logit-c";
  }
  return "?";
}

std::string Setting::label() const {
  switch (regime) {
    case Regime::Gaussian: return fmt::format("gaussian d={} sigma={:g}", d, sigma);
    case Regime::NormBound: return fmt::format("norm-bound d={} B={:g} F={:g} R={:g}", d, B, F, R());
    case Regime::LogitC: return fmt::format("logit-c d={} c={:g}", d, c);
  }
  return "?";
}

std::string Setting::definition() const {
  switch (regime) {
    case Regime::Gaussian:
      return fmt::format("s_j = q.k_j/sqrt(d), q,k_j ~ N(0, {:g}^2 I_{}) i.i.d.", sigma, d);
    case Regime::NormBound:
      return fmt::format(
          "s_j = x_q^T W x_j, x = {:g} g/|g| (g ~ N(0,I_{})), W = {:g} G/|G|_F (G ~ N(0,1)), |s_j| <= R = B^2 F = {:g}",
          B, d, F, R());
    case Regime::LogitC:
      return fmt::format("s_j = sigma_n z_j, z_j ~ N(0,1) i.i.d., sigma_n^2 = 2*{:g}*ln n", c);
  }
  return "?";
}

std::vector<int64_t> powers_of_two(int64_t lo, int64_t hi) {
  std::vector<int64_t> out;
  for (int64_t n = 1; n <= hi && n > 0; n *= 2)
    if (n >= lo) out.push_back(n);
  return out;
}

namespace {
int64_t parse_count(const std::string& s, const std::string& whole) {
  // Exact: digits only (or 2^a), no sign, blank, exponent or saturation; the bound on the
  // value itself is validate()'s (--n HI <= kMaxLength).
  std::optional<int64_t> v;
  if (s.size() > 2 && s.compare(0, 2, "2^") == 0) {
    const auto e = parse_int64(s.substr(2));
    if (e && *e >= 0 && *e <= 40 && std::isdigit(static_cast<unsigned char>(s[2]))) v = int64_t{1} << *e;
  } else if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0]))) {
    v = parse_int64(s);
  }
  if (!v)
    fail_usage("--n '{}': '{}' is not an integer (use LO:HI, e.g. 1024:131072 or 2^10:2^17)",
               whole, s);
  return *v;
}
}  // namespace

std::pair<int64_t, int64_t> parse_n_range(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos)
    fail_usage("--n '{}': expected LO:HI, e.g. 1024:131072", text);
  const int64_t lo = parse_count(text.substr(0, colon), text);
  const int64_t hi = parse_count(text.substr(colon + 1), text);
  if (lo < 1 || hi < 1) fail_usage("--n '{}': lengths must be positive", text);
  if (lo > hi) fail_usage("--n '{}': LO = {} is larger than HI = {}", text, lo, hi);
  return {lo, hi};
}

std::vector<Setting> sweep_settings(const std::vector<int>& ds, const std::vector<double>& sigmas,
                                    const std::vector<double>& norm_bounds,
                                    const std::vector<double>& weight_frobenius,
                                    const std::vector<double>& logit_cs) {
  std::vector<Setting> settings;
  for (int d : ds) {
    auto add = [&](Regime regime, auto&& set) {
      Setting st;
      st.regime = regime;
      st.d = d;
      set(st);
      settings.push_back(st);
    };
    for (double sigma : sigmas) add(Regime::Gaussian, [&](Setting& st) { st.sigma = sigma; });
    for (double B : norm_bounds)
      for (double F : weight_frobenius) add(Regime::NormBound, [&](Setting& st) { st.B = B, st.F = F; });
    for (double c : logit_cs) add(Regime::LogitC, [&](Setting& st) { st.c = c; });
  }
  return settings;
}

void validate(const SimOptions& o) {
  if (o.n_lo < 2) fail_usage("--n: the smallest length must be at least 2 (got {})", o.n_lo);
  if (o.n_lo > o.n_hi) fail_usage("--n: LO = {} is larger than HI = {}", o.n_lo, o.n_hi);
  if (o.n_hi > kMaxLength) fail_usage("--n: HI = {} is above the limit 2^24", o.n_hi);
  if (powers_of_two(o.n_lo, o.n_hi).size() < 2)
    fail_usage("--n {}:{} holds fewer than two powers of two; a fit needs at least two lengths",
               o.n_lo, o.n_hi);
  if (o.settings.empty()) fail_usage("no settings: give --sigma, --norm-bound/--weight-frobenius or --logit-c");
  for (const auto& s : o.settings) {
    if (s.d < 1 || s.d > 8192) fail_usage("--d {} is outside [1, 8192]", s.d);
    if (int64_t{s.d} * o.n_hi > (int64_t{1} << 28))
      fail_usage("--d {} with n up to {}: the value matrix would exceed 1 GiB per thread", s.d, o.n_hi);
    if (s.regime == Regime::Gaussian && !(s.sigma > 0 && std::isfinite(s.sigma)))
      fail_usage("--sigma {} must be positive and finite", s.sigma);
    if (s.regime == Regime::NormBound) {
      if (!(s.B > 0 && std::isfinite(s.B))) fail_usage("--norm-bound {} must be positive and finite", s.B);
      if (!(s.F > 0 && std::isfinite(s.F))) fail_usage("--weight-frobenius {} must be positive and finite", s.F);
      if (s.R() > 600) fail_usage("R = B^2 F = {:g} is too large (limit 600: exp overflows)", s.R());
    }
    if (s.regime == Regime::LogitC && !(s.c > 0 && s.c <= 4))
      fail_usage("--logit-c {} is outside (0, 4]", s.c);
  }
  if (o.eps.empty()) fail_usage("--eps: give at least one value");
  for (double e : o.eps)
    if (!(e > 0 && e < 1)) fail_usage("--eps {} is outside (0, 1)", e);
  if (o.trials < 2 || o.trials > 100000) fail_usage("--trials {} is outside [2, 100000]", o.trials);
  // k = K and k = ceil(alpha n^C) (C <= 1) are clamped to n <= kMaxLength; these bounds keep every
  // budget computed from them well inside int64 before the clamp.
  if (o.k_const < 1 || o.k_const > kMaxLength)
    fail_usage("--k-const {} is outside [1, {}]", o.k_const, kMaxLength);
  if (!std::isnan(o.alpha) && !(o.alpha > 0 && o.alpha <= double(kMaxLength)))
    fail_usage("--alpha {} is outside (0, {}]", o.alpha, kMaxLength);
  if (!std::isnan(o.exponent) && !(o.exponent >= 0 && o.exponent <= 1))
    fail_usage("--exponent {} is outside [0, 1]", o.exponent);
  if (o.bootstrap < 0 || o.bootstrap > 1000000) fail_usage("--bootstrap {} is outside [0, 1e6]", o.bootstrap);
  if (!(o.level > 0 && o.level < 1)) fail_usage("--level {} is outside (0, 1)", o.level);
}

Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const double m = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  s.mean = m;
  s.sd = v.size() > 1 ? std::sqrt(ss / (v.size() - 1)) : 0;
  auto q = [&](double p) {
    const double pos = p * (v.size() - 1);
    const size_t i = static_cast<size_t>(pos);
    const double f = pos - i;
    return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
  };
  s.median = q(0.5);
  s.p10 = q(0.1);
  s.p90 = q(0.9);
  return s;
}

double closed_form_k(int64_t n, double sigma, double eps) {
  return static_cast<double>(n) * norm_q(sigma + norm_inv(eps));
}

namespace {

// Random streams depend on the setting's parameters (not its position in the sweep), so a
// setting gives the same rows whatever other settings run with it.
uint64_t setting_stream(const Setting& st) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a of the label
  for (unsigned char ch : st.label()) h = (h ^ ch) * 1099511628211ULL;
  return h;
}

enum Purpose : uint64_t { kQuery = 1, kKeys = 2, kWeight = 3, kValues = 4, kAux = 5, kLogitZ = 6 };

// Per-thread scratch.
struct Scratch {
  std::vector<float> buf, values;
  std::vector<double> w, work, dense, sparse;
  std::vector<int32_t> idx;
};

// The n_max logits of one trial (for logit-c: the standard normal z_j, scaled per n).
void trial_logits(const Setting& st, KeyMethod method, uint64_t seed, uint64_t setting_id, int trial,
                  int64_t n_max, std::vector<float>& s, Scratch& sc) {
  s.resize(n_max);
  const int d = st.d;
  const int64_t P = (d + 1) / 2;  // normal pairs per vector
  if (st.regime == Regime::LogitC) {
    const uint64_t key = stream_key(seed, setting_id, trial, kLogitZ);
    for (int64_t j = 0; j < n_max; j += 2) {
      auto [a, b] = normal_pair_f64(key, j / 2);
      s[j] = static_cast<float>(a);
      if (j + 1 < n_max) s[j + 1] = static_cast<float>(b);
    }
    return;
  }
  // The query direction u such that s_j = scale * u . g_j (/ |g_j| for norm-bound).
  std::vector<float> gq(2 * P);
  normals_f32(stream_key(seed, setting_id, trial, kQuery), 0, gq.data(), P);
  std::vector<double> u(d);
  double scale = 1.0;
  if (st.regime == Regime::Gaussian) {
    for (int i = 0; i < d; ++i) u[i] = gq[i];
    scale = st.sigma * st.sigma / std::sqrt(static_cast<double>(d));
  } else {
    const int64_t PW = (int64_t{d} * d + 1) / 2;
    std::vector<float> G(2 * PW);
    normals_f32(stream_key(seed, setting_id, trial, kWeight), 0, G.data(), PW);
    double gn = 0, qn = 0;
    for (int64_t i = 0; i < int64_t{d} * d; ++i) gn += double(G[i]) * G[i];
    for (int i = 0; i < d; ++i) qn += double(gq[i]) * gq[i];
    const double wscale = st.F / std::sqrt(gn), qscale = st.B / std::sqrt(qn);
    // u = W^T x_q: u_i = sum_r x_q[r] W[r][i]
    for (int r = 0; r < d; ++r)
      for (int i = 0; i < d; ++i) u[i] += qscale * gq[r] * wscale * G[int64_t{r} * d + i];
    scale = st.B;
  }
  if (method == KeyMethod::Reduced) {
    double un = 0;
    for (double x : u) un += x * x;
    un = std::sqrt(un);
    const uint64_t key = stream_key(seed, setting_id, trial, kKeys);
    if (st.regime == Regime::Gaussian) {
      for (int64_t j = 0; j < n_max; j += 2) {
        auto [a, b] = normal_pair_f64(key, j / 2);
        s[j] = static_cast<float>(scale * un * a);
        if (j + 1 < n_max) s[j + 1] = static_cast<float>(scale * un * b);
      }
    } else {
      // u . g / |g| with g ~ N(0, I_d): rotate u onto e_1: z / sqrt(z^2 + chi^2_{d-1}).
      std::mt19937_64 rng(stream_key(seed, setting_id, trial, kAux));
      std::gamma_distribution<double> chi2(0.5 * (d - 1), 2.0);
      for (int64_t j = 0; j < n_max; ++j) {
        const double z = normal_pair_f64(key, j).first;
        const double rest = d > 1 ? chi2(rng) : 0.0;
        s[j] = static_cast<float>(scale * un * z / std::sqrt(z * z + rest));
      }
    }
    return;
  }
  // Direct: draw the keys block by block and take the GEMV with u.
  const int64_t block = 256;
  sc.buf.resize(block * 2 * P);
  std::vector<float> uf(d);
  for (int i = 0; i < d; ++i) uf[i] = static_cast<float>(u[i]);
  const uint64_t key = stream_key(seed, setting_id, trial, kKeys);
  const bool norm = st.regime == Regime::NormBound;
  for (int64_t j0 = 0; j0 < n_max; j0 += block) {
    const int64_t nb = std::min(block, n_max - j0);
    normals_f32(key, j0 * P, sc.buf.data(), nb * P);
    for (int64_t jj = 0; jj < nb; ++jj) {
      const float* g = sc.buf.data() + jj * 2 * P;
      float dot = 0, nn = 0;
#pragma omp simd reduction(+ : dot, nn)
      for (int i = 0; i < d; ++i) {
        dot += uf[i] * g[i];
        nn += g[i] * g[i];
      }
      s[j0 + jj] = static_cast<float>(norm ? scale * dot / std::sqrt(double(nn)) : scale * dot);
    }
  }
}

// Weights w_j = exp(s_j - max) of the row at length n (logit-c: rescaled z).
void row_weights(const Setting& st, const std::vector<float>& s, int64_t n, std::vector<double>& w) {
  const double f = st.regime == Regime::LogitC ? std::sqrt(2.0 * st.c * std::log(double(n))) : 1.0;
  double m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, f * s[j]);
  w.resize(n);
  for (int64_t j = 0; j < n; ++j) w[j] = std::exp(f * s[j] - m);
}

int64_t k_eps_with(std::vector<double>& work, double eps, SelectMethod method) {
  return method == SelectMethod::FullSort ? k_eps_sorted_inplace(work, eps) : k_eps_inplace(work, eps);
}

// The budget of a rule at length n, clamped to [1, n].
int64_t rule_k(int rule, int64_t n, int64_t k_const, double alpha, double C) {
  const double k = rule == 0 ? double(k_const)
                 : rule == 1 ? std::ceil(std::log(double(n)))
                             : std::ceil(alpha * std::pow(double(n), C) - 1e-9);
  // Clamped as a double first: a fitted prefactor can be huge (or NaN), and a double
  // outside int64 has no integer conversion.
  if (!(k >= 1)) return 1;
  if (k >= double(n)) return n;
  return static_cast<int64_t>(k);
}

// Pass 2 for one trial: for every n the dense output o (Gaussian values) and, per rule,
// the renormalised top-k output o_k, the error ||o - o_k||, its relative size and the
// dropped dense mass. Values are drawn once per trial (prefix reuse, like the keys).
void trial_errors(const SimOptions& opt, const Setting& st, uint64_t sid, int t,
                  const std::vector<int64_t>& ns, const std::vector<float>& logits,
                  std::vector<RuleResult>& rules, Scratch& sc) {
  const size_t N = ns.size();
  const int64_t n_max = ns.back();
  const int d = st.d;
  const int64_t P = (d + 1) / 2, ld = 2 * P;
  const bool direct = opt.keys == KeyMethod::Direct;
  // Normalised weights of every prefix row.
  std::vector<std::vector<double>> a(N);
  for (size_t i = 0; i < N; ++i) {
    row_weights(st, logits, ns[i], a[i]);
    const double total = std::accumulate(a[i].begin(), a[i].end(), 0.0);
    for (double& x : a[i]) x /= total;
  }
  std::vector<std::vector<double>> o(N, std::vector<double>(direct ? d : 0, 0.0));
  if (direct) {
    sc.values.resize(size_t(n_max) * ld);
    normals_f32(stream_key(opt.seed, sid, t, kValues), 0, sc.values.data(), n_max * P);
    // Dense outputs of all prefixes in one pass over the value rows (block by block, so
    // a block stays in cache while every prefix that contains it is updated).
    const int64_t block = 256;
    for (int64_t j0 = 0; j0 < n_max; j0 += block) {
      for (size_t i = 0; i < N; ++i) {
        const int64_t j1 = std::min(j0 + block, ns[i]);
        double* oi = o[i].data();
        for (int64_t j = j0; j < j1; ++j) {
          const double w = a[i][j];
          const float* v = sc.values.data() + j * ld;
#pragma omp simd
          for (int c = 0; c < d; ++c) oi[c] += w * v[c];
        }
      }
    }
  }
  std::mt19937_64 rng(stream_key(opt.seed, sid, t, kAux + 100));
  std::normal_distribution<double> gauss;
  std::vector<double> ok(d);
  for (size_t i = 0; i < N; ++i) {
    const std::vector<double>& w = a[i];
    double o_norm = 0;
    for (int c = 0; c < (direct ? d : 0); ++c) o_norm += o[i][c] * o[i][c];
    o_norm = std::sqrt(o_norm);
    double sq_all = 0;
    if (!direct)
      for (double x : w) sq_all += x * x;
    for (auto& rr : rules) {
      const int64_t k = rr.k[i];
      sc.work.assign(w.begin(), w.end());
      const double thr = kth_largest_inplace(sc.work, k, opt.select == SelectMethod::FullSort);
      double kept = 0, sq_kept = 0;
      std::fill(ok.begin(), ok.end(), 0.0);
      for_each_topk(w, k, thr, [&](size_t j) {
        kept += w[j];
        sq_kept += w[j] * w[j];
        if (direct) {
          const float* v = sc.values.data() + int64_t(j) * ld;
          const double x = w[j];
#pragma omp simd
          for (int c = 0; c < d; ++c) ok[c] += x * v[c];
        }
      });
      const double tail = std::max(0.0, 1.0 - kept);
      rr.tail[t][i] = tail;
      if (direct) {
        double e2 = 0;
        for (int c = 0; c < d; ++c) {
          const double diff = o[i][c] - ok[c] / kept;
          e2 += diff * diff;
        }
        rr.err[t][i] = std::sqrt(e2);
        rr.rel[t][i] = o_norm > 0 ? rr.err[t][i] / o_norm : NAN;
      } else {
        // o = sum_j a_j v_j and o - o_k = sum_j c_j v_j (c = a - a': -a_j tau/M on the kept
        // set, a_j on the tail) are, per coordinate, jointly normal with variances
        // S = sum a^2, |c|^2 = (tau/M)^2 S_kept + S_tail and covariance
        // sum a c = S_tail - (tau/M) S_kept: draw the d coordinate pairs exactly.
        const double sq_tail = std::max(0.0, sq_all - sq_kept);
        const double r = tail / kept;
        const double var_e = r * r * sq_kept + sq_tail, cov = sq_tail - r * sq_kept;
        const double slope = cov / sq_all, resid = std::sqrt(std::max(0.0, var_e - cov * slope));
        double e2 = 0, o2 = 0;
        for (int c = 0; c < d; ++c) {
          const double z1 = gauss(rng), z2 = gauss(rng);
          const double oc = std::sqrt(sq_all) * z1, ec = slope * oc + resid * z2;
          o2 += oc * oc;
          e2 += ec * ec;
        }
        rr.err[t][i] = std::sqrt(e2);
        rr.rel[t][i] = o2 > 0 ? std::sqrt(e2 / o2) : NAN;
      }
    }
  }
}

}  // namespace

namespace {

// Rows [trial] of each table: rank r filled the trials t with t % size == r; afterwards
// rank 0 (and with `everyone` every rank) holds all of them, bit for bit.
void share_trials(analysis::ShardComm& comm, const std::vector<std::vector<std::vector<double>>*>& tables,
                  int trials, bool everyone) {
  const int R = comm.rank(), N = comm.size();
  nlohmann::json mine = nlohmann::json::array();
  for (const auto* table : tables) {
    nlohmann::json rows = nlohmann::json::array();
    for (int t = R; t < trials; t += N) rows.push_back((*table)[size_t(t)]);
    mine.push_back(std::move(rows));
  }
  const std::vector<std::vector<uint8_t>> parts = comm.gather(nlohmann::json::to_cbor(mine));
  std::vector<uint8_t> all;
  if (R == 0) {
    for (int r = 1; r < N; ++r) {
      const nlohmann::json theirs = nlohmann::json::from_cbor(parts[size_t(r)]);
      for (size_t i = 0; i < tables.size(); ++i) {
        size_t j = 0;
        for (int t = r; t < trials; t += N) (*tables[i])[size_t(t)] = theirs.at(i).at(j++).get<std::vector<double>>();
      }
    }
    if (everyone) {
      nlohmann::json full = nlohmann::json::array();
      for (const auto* table : tables) full.push_back(*table);
      all = nlohmann::json::to_cbor(full);
    }
  }
  if (!everyone) return;
  const nlohmann::json full = nlohmann::json::from_cbor(comm.broadcast(all));
  if (R != 0)
    for (size_t i = 0; i < tables.size(); ++i) *tables[i] = full.at(i).get<std::vector<std::vector<double>>>();
}

}  // namespace

std::vector<SettingResult> simulate(const SimOptions& opt) {
  validate(opt);
  const int ranks = opt.comm ? opt.comm->size() : 1, rank = opt.comm ? opt.comm->rank() : 0;
  const std::vector<int64_t> ns = powers_of_two(opt.n_lo, opt.n_hi);
  const int64_t n_max = ns.back();
  const int T = opt.trials;
  const size_t N = ns.size(), E = opt.eps.size();
  std::vector<double> nd(ns.begin(), ns.end());
  std::vector<SettingResult> results;
  auto say = [&](const std::string& line) {
    if (opt.progress) opt.progress(line);
  };

  for (size_t si = 0; si < opt.settings.size(); ++si) {
    const Setting& st = opt.settings[si];
    const uint64_t sid = setting_stream(st);
    say(fmt::format("setting {}/{}: {} ({} trials, n = {}..{})", si + 1, opt.settings.size(), st.label(), T,
                    ns.front(), n_max));
    SettingResult res;
    res.setting = st;
    res.n = ns;
    res.eps = opt.eps;
    res.k_eps.assign(E, std::vector<std::vector<double>>(T, std::vector<double>(N)));
    res.top1.assign(T, std::vector<double>(N));
    std::vector<std::vector<float>> logits(T);

    // Pass 1: logits and k_eps.
#pragma omp parallel
    {
      Scratch sc;
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < T; ++t) {
        if (t % ranks != rank) continue;
        trial_logits(st, opt.keys, opt.seed, sid, t, n_max, logits[t], sc);
        for (size_t i = 0; i < N; ++i) {
          row_weights(st, logits[t], ns[i], sc.w);
          const double total = std::accumulate(sc.w.begin(), sc.w.end(), 0.0);
          res.top1[t][i] = 1.0 / total;  // the max weight is exp(0) = 1
          for (size_t e = 0; e < E; ++e) {
            sc.work.assign(sc.w.begin(), sc.w.end());
            res.k_eps[e][t][i] = static_cast<double>(k_eps_with(sc.work, opt.eps[e], opt.select));
          }
        }
      }
    }

    if (ranks > 1) {  // every rank gets every trial's k_eps and top-1 weight
      std::vector<std::vector<std::vector<double>>*> parts{&res.top1};
      for (auto& k : res.k_eps) parts.push_back(&k);
      share_trials(*opt.comm, parts, T, true);
    }

    // Fits.
    size_t e_min = 0;
    for (size_t e = 0; e < E; ++e) {
      res.fits.push_back(fit_power_law(nd, res.k_eps[e], opt.center, opt.bootstrap, opt.level,
                                       stream_key(opt.seed, sid, e, 99)));
      if (opt.eps[e] < opt.eps[e_min]) e_min = e;
    }
    if (st.regime == Regime::LogitC) {
      std::vector<double> lx;
      for (double n : nd) lx.push_back(std::log(n));
      for (size_t e = 0; e < E; ++e) {
        std::vector<double> ks, ly;
        for (int64_t n : ns) {
          ks.push_back(closed_form_k(n, std::sqrt(2.0 * st.c * std::log(double(n))), opt.eps[e]));
          ly.push_back(std::log(ks.back()));
        }
        res.closed_k.push_back(ks);
        res.closed_C.push_back(fit_line(lx, ly).slope);
      }
    }

    // Pass 2: budget rules and output errors.
    const bool fitted_C = std::isnan(opt.exponent);
    res.dyn_C = fitted_C ? std::clamp(res.fits[e_min].C, 0.0, 1.0) : opt.exponent;
    res.dyn_alpha = !std::isnan(opt.alpha) ? opt.alpha : fitted_C ? std::exp(res.fits[e_min].log_A) : 1.0;
    if (opt.errors) {
      const char* names[3] = {"const", "log", "dyn"};
      const std::string formulas[3] = {
          fmt::format("k = {}", opt.k_const), "k = ceil(ln n)",
          fmt::format("k = ceil({:.3g} n^{:.3f})", res.dyn_alpha, res.dyn_C)};
      for (int r = 0; r < 3; ++r) {
        RuleResult rr;
        rr.name = names[r];
        rr.formula = formulas[r];
        for (int64_t n : ns) rr.k.push_back(rule_k(r, n, opt.k_const, res.dyn_alpha, res.dyn_C));
        rr.err.assign(T, std::vector<double>(N));
        rr.rel.assign(T, std::vector<double>(N));
        rr.tail.assign(T, std::vector<double>(N));
        res.rules.push_back(std::move(rr));
      }
#pragma omp parallel
      {
        Scratch sc;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < T; ++t)
          if (t % ranks == rank) trial_errors(opt, st, sid, t, ns, logits[t], res.rules, sc);
      }
      if (ranks > 1) {  // rank 0 gets every trial's errors
        std::vector<std::vector<std::vector<double>>*> parts;
        for (RuleResult& rr : res.rules) {
          parts.push_back(&rr.err);
          parts.push_back(&rr.rel);
          parts.push_back(&rr.tail);
        }
        share_trials(*opt.comm, parts, T, false);
      }
    }
    results.push_back(std::move(res));
  }
  return results;
}

TrialDraw draw_trial(const SimOptions& opt, size_t setting, int trial) {
  validate(opt);
  if (setting >= opt.settings.size()) fail("draw_trial: setting {} out of range", setting);
  const Setting& st = opt.settings[setting];
  const int64_t n_max = powers_of_two(opt.n_lo, opt.n_hi).back();
  const uint64_t sid = setting_stream(st);
  TrialDraw out;
  out.d = st.d;
  Scratch sc;
  trial_logits(st, opt.keys, opt.seed, sid, trial, n_max, out.logits, sc);
  if (opt.keys == KeyMethod::Direct) {
    const int64_t P = (st.d + 1) / 2;
    std::vector<float> buf(size_t(n_max) * 2 * P);
    normals_f32(stream_key(opt.seed, sid, trial, kValues), 0, buf.data(), n_max * P);
    out.values.resize(size_t(n_max) * st.d);
    for (int64_t j = 0; j < n_max; ++j)
      std::copy_n(buf.data() + j * 2 * P, st.d, out.values.data() + j * st.d);
  }
  return out;
}

}  // namespace attnsparse::theory
