#include "theory/theory_report.h"

#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnsparse::theory {

using nlohmann::json;
using report::html_escape;
using report::palette;

// ---------------------------------------------------------------------------------------

namespace {

json setting_params(const Setting& s) {
  json j = {{"regime", s.regime_name()}, {"d", s.d}};
  if (s.regime == Regime::Gaussian) j["sigma"] = s.sigma;
  if (s.regime == Regime::NormBound) j["B"] = s.B, j["F"] = s.F, j["R"] = s.R();
  if (s.regime == Regime::LogitC) j["logit_c"] = s.c;
  return j;
}

std::vector<double> col_summary(const std::vector<std::vector<double>>& m, size_t i,
                                double Summary::*field) {
  std::vector<double> v;
  for (const auto& row : m) v.push_back(row[i]);
  return {summarize(v).*field};
}

std::vector<double> per_n(const std::vector<std::vector<double>>& m, double Summary::*field) {
  std::vector<double> out;
  if (m.empty()) return out;
  for (size_t i = 0; i < m[0].size(); ++i) out.push_back(col_summary(m, i, field)[0]);
  return out;
}

}  // namespace

json simulation_json(const SimOptions& opt, const std::vector<SettingResult>& res) {
  json j;
  j["tool"] = "attnsparse theory simulate";
  json p = {{"n_lo", opt.n_lo},
            {"n_hi", opt.n_hi},
            {"n", res.empty() ? json::array() : json(res[0].n)},
            {"eps", opt.eps},
            {"trials", opt.trials},
            {"seed", opt.seed},
            {"k_const", opt.k_const},
            {"alpha", opt.alpha},
            {"bootstrap", opt.bootstrap},
            {"ci_level", opt.level},
            {"center", opt.center == Center::Mean ? "mean" : "median"},
            {"keys", opt.keys == KeyMethod::Direct ? "direct" : "reduced"},
            {"values", "v_j ~ N(0, I_d) i.i.d., independent of the logits"},
            {"k_eps", "smallest k whose top-k mass >= 1 - eps"},
            {"fit", "C = least-squares slope of ln(center_t k_eps) on ln n; CI: percentile bootstrap over trials"},
            {"prefix_reuse", "one query and one n_max draw of keys/values per trial; the row at n uses keys 0..n-1"}};
  if (std::isnan(opt.exponent)) p["exponent"] = "fit (C of the smallest eps)";
  else p["exponent"] = opt.exponent;
  j["params"] = p;
  j["settings"] = json::array();
  j["fits"] = json::array();
  for (size_t si = 0; si < res.size(); ++si) {
    const auto& r = res[si];
    json s = setting_params(r.setting);
    s["id"] = si;
    s["label"] = r.setting.label();
    s["definition"] = r.setting.definition();
    s["n"] = r.n;
    s["k_eps"] = json::array();
    for (size_t e = 0; e < r.eps.size(); ++e) {
      json k = {{"eps", r.eps[e]},
                {"mean", per_n(r.k_eps[e], &Summary::mean)},
                {"median", per_n(r.k_eps[e], &Summary::median)},
                {"p10", per_n(r.k_eps[e], &Summary::p10)},
                {"p90", per_n(r.k_eps[e], &Summary::p90)},
                {"sd", per_n(r.k_eps[e], &Summary::sd)}};
      if (!r.closed_k.empty()) k["closed_form"] = r.closed_k[e];
      s["k_eps"].push_back(k);
      json f = setting_params(r.setting);
      f["setting"] = si;
      f["label"] = r.setting.label();
      f["eps"] = r.eps[e];
      f["C"] = r.fits[e].C;
      f["C_ci"] = {r.fits[e].C_lo, r.fits[e].C_hi};
      f["ci_level"] = r.fits[e].level;
      f["A"] = std::exp(r.fits[e].log_A);
      f["r2"] = r.fits[e].r2;
      if (!r.closed_C.empty()) f["closed_form_C"] = r.closed_C[e];
      j["fits"].push_back(f);
    }
    s["top1_mean"] = per_n(r.top1, &Summary::mean);
    s["dynamic_rule"] = {{"alpha", r.dyn_alpha}, {"C", r.dyn_C}};
    s["rules"] = json::array();
    for (const auto& rr : r.rules)
      s["rules"].push_back({{"name", rr.name},
                            {"formula", rr.formula},
                            {"k", rr.k},
                            {"err_mean", per_n(rr.err, &Summary::mean)},
                            {"err_sd", per_n(rr.err, &Summary::sd)},
                            {"tail_mean", per_n(rr.tail, &Summary::mean)}});
    j["settings"].push_back(s);
  }
  return j;
}

std::string simulation_table(const SimOptions& opt, const std::vector<SettingResult>& res) {
  std::string out;
  out += fmt::format("n = {}..{} (powers of two), {} trials, seed {}, keys: {}, fit on the {} k_eps\n",
                     opt.n_lo, opt.n_hi, opt.trials, opt.seed,
                     opt.keys == KeyMethod::Direct ? "direct" : "reduced",
                     opt.center == Center::Mean ? "mean" : "median");
  for (const auto& r : res) out += fmt::format("  {:<42} {}\n", r.setting.label(), r.setting.definition());
  out += fmt::format("\n{:<42} {:>6} {:>10} {:>10} {:>7} {:>17} {:>6} {:>8}\n", "setting", "eps", "k(n_lo)",
                     "k(n_hi)", "C", fmt::format("{:g}% CI", opt.level * 100), "R^2", "closed C");
  for (const auto& r : res)
    for (size_t e = 0; e < r.eps.size(); ++e) {
      const auto& f = r.fits[e];
      out += fmt::format("{:<42} {:>6g} {:>10.1f} {:>10.1f} {:>7.3f} {:>17} {:>6.3f} {:>8}\n", r.setting.label(),
                         r.eps[e], col_summary(r.k_eps[e], 0, &Summary::mean)[0],
                         col_summary(r.k_eps[e], r.n.size() - 1, &Summary::mean)[0], f.C,
                         fmt::format("[{:.3f}, {:.3f}]", f.C_lo, f.C_hi), f.r2,
                         r.closed_C.empty() ? std::string("-") : fmt::format("{:.3f}", r.closed_C[e]));
    }
  if (!res.empty() && !res[0].rules.empty()) {
    out += fmt::format("\nOutput error ||o - o_k|| (mean over trials) and dropped mass tau, at n = {} and n = {}\n",
                       res[0].n.front(), res[0].n.back());
    out += fmt::format("{:<42} {:<24} {:>7} {:>10} {:>10} {:>8} {:>8}\n", "setting", "rule", "k(n_hi)", "err(n_lo)",
                       "err(n_hi)", "tau(lo)", "tau(hi)");
    for (const auto& r : res)
      for (const auto& rr : r.rules) {
        const size_t last = r.n.size() - 1;
        out += fmt::format("{:<42} {:<24} {:>7} {:>10.4g} {:>10.4g} {:>8.4f} {:>8.4f}\n", r.setting.label(),
                           rr.formula, rr.k.back(), col_summary(rr.err, 0, &Summary::mean)[0],
                           col_summary(rr.err, last, &Summary::mean)[0], col_summary(rr.tail, 0, &Summary::mean)[0],
                           col_summary(rr.tail, last, &Summary::mean)[0]);
      }
  }
  return out;
}

std::string simulation_html(const SimOptions& opt, const std::vector<SettingResult>& res) {
  std::string b;
  b += fmt::format(
      "<p class=\"note\">Random attention rows of length n = {}..{} (powers of two), {} trials per setting, seed {}. "
      "k<sub>&epsilon;</sub> is the smallest k whose top-k mass is at least 1&minus;&epsilon;. "
      "C is the least-squares slope of ln({} k<sub>&epsilon;</sub>) on ln n; the interval is a {:g}% percentile bootstrap over trials. "
      "Each trial draws one query and one set of n<sub>max</sub> keys and values; the row at n uses the first n (prefix reuse). "
      "Keys: <code>{}</code>. Values v<sub>j</sub> ~ N(0, I<sub>d</sub>).</p>",
      opt.n_lo, opt.n_hi, opt.trials, opt.seed, opt.center == Center::Mean ? "mean" : "median", opt.level * 100,
      opt.keys == KeyMethod::Direct ? "direct (GEMV over drawn key vectors)" : "reduced (exact conditional law of the logits)");
  b += "<h2>Settings and logit definitions</h2><table><tr><th class=l>#</th><th class=l>setting</th><th class=l>logit</th></tr>";
  for (size_t i = 0; i < res.size(); ++i)
    b += fmt::format("<tr><td class=l>{}</td><td class=l>{}</td><td class=l><code>{}</code></td></tr>", i,
                     html_escape(res[i].setting.label()), html_escape(res[i].setting.definition()));
  b += "</table>";
  b += "<h2>Fitted exponents</h2><table><tr><th class=l>setting</th><th>&epsilon;</th><th>mean k(n<sub>lo</sub>)</th>"
       "<th>mean k(n<sub>hi</sub>)</th><th>C</th><th>CI</th><th>R&sup2;</th><th>closed-form C</th></tr>";
  for (const auto& r : res)
    for (size_t e = 0; e < r.eps.size(); ++e) {
      const auto& f = r.fits[e];
      const bool nc = f.C > 0.02 && f.C < 0.98 && f.r2 > 0.98;
      b += fmt::format("<tr><td class=l>{}</td><td>{:g}</td><td>{:.1f}</td><td>{:.1f}</td><td class=\"{}\">{:.3f}</td>"
                       "<td>[{:.3f}, {:.3f}]</td><td>{:.3f}</td><td>{}</td></tr>",
                       html_escape(r.setting.label()), r.eps[e], col_summary(r.k_eps[e], 0, &Summary::mean)[0],
                       col_summary(r.k_eps[e], r.n.size() - 1, &Summary::mean)[0], nc ? "good" : "", f.C, f.C_lo,
                       f.C_hi, f.r2, r.closed_C.empty() ? std::string("&ndash;") : fmt::format("{:.3f}", r.closed_C[e]));
    }
  b += "</table><p class=\"note\">Green: C in (0,1) with R&sup2; &gt; 0.98 (a clean n<sup>C</sup> law over this range).</p>";

  // k_eps vs n, one plot per eps.
  b += "<h2>k<sub>&epsilon;</sub> versus n</h2><p class=\"note\">Points: mean over trials (bars: 10th&ndash;90th percentile); dashed: fitted A&middot;n<sup>C</sup>; grey dotted: closed form n&middot;Q(&sigma;<sub>n</sub>+&Phi;<sup>&minus;1</sup>(&epsilon;)) for the logit-c regime.</p><div class=grid>";
  if (!res.empty())
    for (size_t e = 0; e < res[0].eps.size(); ++e) {
      std::vector<report::Series> ser;
      for (size_t si = 0; si < res.size(); ++si) {
        const auto& r = res[si];
        report::Series s;
        s.name = fmt::format("{}  C={:.2f}", r.setting.label(), r.fits[e].C);
        s.color = palette(si);
        for (size_t i = 0; i < r.n.size(); ++i) s.x.push_back(double(r.n[i]));
        s.y = per_n(r.k_eps[e], opt.center == Center::Mean ? &Summary::mean : &Summary::median);
        s.low = per_n(r.k_eps[e], &Summary::p10);
        s.high = per_n(r.k_eps[e], &Summary::p90);
        report::Series fl;
        fl.color = palette(si);
        fl.dashed = true;
        fl.markers = false;
        fl.x = s.x;
        for (double x : s.x) fl.y.push_back(std::exp(r.fits[e].log_A) * std::pow(x, r.fits[e].C));
        ser.push_back(s);
        ser.push_back(fl);
        if (!r.closed_k.empty()) {
          report::Series cf;
          cf.color = "#888888";
          cf.dashed = true;
          cf.markers = false;
          cf.x = s.x;
          cf.y = r.closed_k[e];
          ser.push_back(cf);
        }
      }
      report::ChartSpec spec;
      spec.title = fmt::format("k_eps vs n, eps = {:g}", res[0].eps[e]);
      spec.x = report::log_axis("n (keys)", true);
      spec.y = report::log_axis("k_eps");
      spec.width = 570;
      spec.height = 380 + 14 * static_cast<int>(res.size() > 8 ? res.size() - 8 : 0);
      b += report::chart(spec, ser);
    }
  b += "</div>";

  // Error vs n per rule, one plot per setting.
  if (!res.empty() && !res[0].rules.empty()) {
    b += "<h2>Output error versus n per budget rule</h2><p class=\"note\">||o &minus; o<sub>k</sub>|| (mean over trials; o<sub>k</sub> = renormalised top-k output) with Gaussian values; solid: error, dashed: dropped dense mass &tau;.</p><div class=grid>";
    for (const auto& r : res) {
      std::vector<report::Series> ser;
      for (size_t ri = 0; ri < r.rules.size(); ++ri) {
        const auto& rr = r.rules[ri];
        report::Series s, t;
        s.name = rr.formula;
        s.color = t.color = palette(ri);
        for (int64_t n : r.n) s.x.push_back(double(n));
        t.x = s.x;
        s.y = per_n(rr.err, &Summary::mean);
        t.y = per_n(rr.tail, &Summary::mean);
        t.dashed = true;
        t.markers = false;
        ser.push_back(s);
        ser.push_back(t);
      }
      report::ChartSpec spec;
      spec.title = r.setting.label();
      spec.x = report::log_axis("n (keys)", true);
      spec.y = report::log_axis("error / tail mass");
      spec.width = 380;
      spec.height = 300;
      b += report::chart(spec, ser);
    }
    b += "</div>";
  }

  // Regime sweep over R (norm-bound).
  std::vector<const SettingResult*> nb;
  for (const auto& r : res)
    if (r.setting.regime == Regime::NormBound) nb.push_back(&r);
  if (nb.size() >= 2 && !res[0].eps.empty()) {
    b += "<h2>Regime sweep over R = B&sup2;&middot;||W||<sub>F</sub></h2><p class=\"note\">As the logit bound R grows, rows collapse onto O(1) large entries: k<sub>&epsilon;</sub> at the largest n falls towards 1 and the largest weight towards 1.</p><div class=grid>";
    std::vector<report::Series> ser, ser2;
    for (size_t e = 0; e < res[0].eps.size(); ++e) {
      report::Series s;
      s.name = fmt::format("k_eps at n = {}, eps = {:g}", nb[0]->n.back(), res[0].eps[e]);
      s.color = palette(e);
      std::vector<std::pair<double, double>> pts;
      for (auto* r : nb) pts.push_back({r->setting.R(), col_summary(r->k_eps[e], r->n.size() - 1, &Summary::mean)[0]});
      std::sort(pts.begin(), pts.end());
      for (auto [x, y] : pts) s.x.push_back(x), s.y.push_back(y);
      ser.push_back(s);
    }
    report::Series t1;
    t1.name = fmt::format("mean largest weight at n = {}", nb[0]->n.back());
    std::vector<std::pair<double, double>> pts;
    for (auto* r : nb) pts.push_back({r->setting.R(), col_summary(r->top1, r->n.size() - 1, &Summary::mean)[0]});
    std::sort(pts.begin(), pts.end());
    for (auto [x, y] : pts) t1.x.push_back(x), t1.y.push_back(y);
    ser2.push_back(t1);
    report::ChartSpec spec;
    spec.title = "k_eps vs R";
    spec.x = report::log_axis("R");
    spec.y = report::log_axis("k_eps");
    b += report::chart(spec, ser);
    spec.title = "largest weight vs R";
    spec.y = report::linear_axis("max_j a_j");
    b += report::chart(spec, ser2);
    b += "</div>";
  }
  return report::html_page("attnsparse theory simulate: n^C-sparsity of random attention", b);
}

}  // namespace attnsparse::theory
