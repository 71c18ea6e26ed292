#include "theory/theory_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "report/svg.h"

namespace attnsparse::theory {

using nlohmann::json;
using report::html_escape;
using report::palette;

namespace {

json setting_params(const Setting& s) {
  json j = {{"regime", s.regime_name()}, {"d", s.d}};
  if (s.regime == Regime::Gaussian) j["sigma"] = s.sigma;
  if (s.regime == Regime::NormBound) j["B"] = s.B, j["F"] = s.F, j["R"] = s.R();
  if (s.regime == Regime::LogitC) j["logit_c"] = s.c;
  return j;
}

// Column i of a [trial][n] matrix, summarised over trials.
Summary column(const std::vector<std::vector<double>>& m, size_t i) {
  std::vector<double> v;
  for (const auto& row : m)
    if (std::isfinite(row[i])) v.push_back(row[i]);
  return summarize(v);
}

std::vector<double> per_n(const std::vector<std::vector<double>>& m, double Summary::*field) {
  std::vector<double> out;
  if (m.empty()) return out;
  for (size_t i = 0; i < m[0].size(); ++i) out.push_back(column(m, i).*field);
  return out;
}

std::vector<double> as_double(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

const char* center_name(Center c) { return c == Center::Mean ? "mean" : "median"; }

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
            {"bootstrap", opt.bootstrap},
            {"ci_level", opt.level},
            {"center", center_name(opt.center)},
            {"keys", opt.keys == KeyMethod::Direct ? "direct" : "reduced"},
            {"select", opt.select == SelectMethod::Quickselect ? "quickselect" : "sort"},
            {"values", "v_j ~ N(0, I_d) i.i.d., independent of the logits"},
            {"k_eps", "smallest k whose top-k mass >= 1 - eps"},
            {"fit", "C = least-squares slope of ln(center over trials of k_eps) on ln n; CI: percentile bootstrap over trials"},
            {"prefix_reuse", "one query and one n_max draw of keys/values per trial; the row at n uses keys 0..n-1"}};
  p["exponent"] = std::isnan(opt.exponent) ? json("fit (C of the smallest eps, clamped to [0, 1])") : json(opt.exponent);
  p["alpha"] = !std::isnan(opt.alpha) ? json(opt.alpha)
               : std::isnan(opt.exponent) ? json("fit (prefactor A of the smallest eps)")
                                          : json(1.0);
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
                {"sd", per_n(r.k_eps[e], &Summary::sd)},
                {"trials", r.k_eps[e]}};
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
      f["n_range"] = {r.n.front(), r.n.back()};
      if (!r.closed_C.empty()) {
        f["closed_form_C"] = r.closed_C[e];
        f["asymptotic_C"] = std::max(0.0, 1.0 - r.setting.c);
      }
      j["fits"].push_back(f);
    }
    s["top1_mean"] = per_n(r.top1, &Summary::mean);
    s["top1_trials"] = r.top1;
    s["dynamic_rule"] = {{"alpha", r.dyn_alpha}, {"C", r.dyn_C}};
    s["rules"] = json::array();
    for (const auto& rr : r.rules)
      s["rules"].push_back({{"name", rr.name},
                            {"formula", rr.formula},
                            {"k", rr.k},
                            {"err_mean", per_n(rr.err, &Summary::mean)},
                            {"err_p10", per_n(rr.err, &Summary::p10)},
                            {"err_p90", per_n(rr.err, &Summary::p90)},
                            {"rel_err_mean", per_n(rr.rel, &Summary::mean)},
                            {"tail_mean", per_n(rr.tail, &Summary::mean)},
                            // Per trial, so that `attnsparse report` redraws the intervals.
                            {"err_trials", rr.err},
                            {"rel_err_trials", rr.rel},
                            {"tail_trials", rr.tail}});
    j["settings"].push_back(s);
  }
  return j;
}

std::string simulation_table(const SimOptions& opt, const std::vector<SettingResult>& res) {
  std::string out;
  out += fmt::format("n = {}..{} (powers of two), {} trials, seed {}, keys: {}, fit on the {} k_eps\n", opt.n_lo,
                     opt.n_hi, opt.trials, opt.seed, opt.keys == KeyMethod::Direct ? "direct" : "reduced",
                     center_name(opt.center));
  out += fmt::format("\n{:<40} {:>5} {:>9} {:>9} {:>7} {:>17} {:>6} {:>8}\n", "setting", "eps", "k(n_lo)", "k(n_hi)",
                     "C", fmt::format("{:g}% CI", opt.level * 100), "R^2", "closed C");
  for (const auto& r : res)
    for (size_t e = 0; e < r.eps.size(); ++e) {
      const auto& f = r.fits[e];
      out += fmt::format("{:<40} {:>5g} {:>9.1f} {:>9.1f} {:>7.3f} {:>17} {:>6.3f} {:>8}\n", r.setting.label(),
                         r.eps[e], column(r.k_eps[e], 0).mean, column(r.k_eps[e], r.n.size() - 1).mean, f.C,
                         fmt::format("[{:.3f}, {:.3f}]", f.C_lo, f.C_hi), f.r2,
                         r.closed_C.empty() ? std::string("-") : fmt::format("{:.3f}", r.closed_C[e]));
    }
  if (!res.empty() && !res[0].rules.empty()) {
    out += fmt::format("\nOutput error ||o - o_k|| (mean over trials), relative error and dropped mass tau, n = {} -> {}\n",
                       res[0].n.front(), res[0].n.back());
    out += fmt::format("{:<40} {:<24} {:>7} {:>19} {:>15} {:>15}\n", "setting", "rule", "k(n_hi)", "err", "rel err",
                       "tau");
    for (const auto& r : res)
      for (const auto& rr : r.rules) {
        const size_t last = r.n.size() - 1;
        out += fmt::format("{:<40} {:<24} {:>7} {:>19} {:>15} {:>15}\n", r.setting.label(), rr.formula, rr.k.back(),
                           fmt::format("{:.4f} -> {:.4f}", column(rr.err, 0).mean, column(rr.err, last).mean),
                           fmt::format("{:.3f} -> {:.3f}", column(rr.rel, 0).mean, column(rr.rel, last).mean),
                           fmt::format("{:.3f} -> {:.3f}", column(rr.tail, 0).mean, column(rr.tail, last).mean));
      }
  }
  return out;
}

namespace {

std::string settings_section(const std::vector<SettingResult>& res) {
  std::vector<std::vector<std::string>> rows, classes;
  for (size_t i = 0; i < res.size(); ++i) {
    rows.push_back({std::to_string(i), res[i].setting.label(), res[i].setting.definition()});
    classes.push_back({"", "l", "l mono"});
  }
  return report::table({"#", "setting", "logit"}, rows, classes);
}

std::string fits_section(const SimOptions& opt, const std::vector<SettingResult>& res) {
  std::vector<std::vector<std::string>> rows, classes;
  for (const auto& r : res)
    for (size_t e = 0; e < r.eps.size(); ++e) {
      const auto& f = r.fits[e];
      const bool clean = f.C > 0.02 && f.C < 0.98 && f.r2 > 0.98;
      rows.push_back({r.setting.label(), fmt::format("{:g}", r.eps[e]), fmt::format("{:.1f}", column(r.k_eps[e], 0).mean),
                      fmt::format("{:.1f}", column(r.k_eps[e], r.n.size() - 1).mean), fmt::format("{:.3f}", f.C),
                      fmt::format("[{:.3f}, {:.3f}]", f.C_lo, f.C_hi), fmt::format("{:.4f}", f.r2),
                      r.closed_C.empty() ? "–" : fmt::format("{:.3f}", r.closed_C[e]),
                      r.closed_C.empty() ? "–" : fmt::format("{:.2f}", std::max(0.0, 1 - r.setting.c))});
      classes.push_back({"", "", "", "", clean ? "good" : "", "", "", "", ""});
    }
  return report::table({"setting", "eps", "mean k(n_lo)", "mean k(n_hi)", "C",
                        fmt::format("{:g}% CI", opt.level * 100), "R²", "closed-form C", "1 − c"},
                       rows, classes) +
         report::note("Green: C in (0, 1) with R² > 0.98, a clean n^C law over this range of n. "
                      "closed-form C: the least-squares slope of n·Q(σ_n + Φ⁻¹(ε)) over the same n; "
                      "1 − c: its limit as n → ∞ (approached only slowly).");
}

std::string keps_charts(const SimOptions& opt, const std::vector<SettingResult>& res) {
  std::vector<std::string> charts;
  if (res.empty()) return "";
  for (size_t e = 0; e < res[0].eps.size(); ++e) {
    std::vector<report::Series> ser;
    for (size_t si = 0; si < res.size(); ++si) {
      const auto& r = res[si];
      report::Series s;
      s.name = fmt::format("{}: C = {:.2f}", r.setting.label(), r.fits[e].C);
      s.color = palette(si);
      s.x = as_double(r.n);
      s.y = per_n(r.k_eps[e], opt.center == Center::Mean ? &Summary::mean : &Summary::median);
      s.low = per_n(r.k_eps[e], &Summary::p10);
      s.high = per_n(r.k_eps[e], &Summary::p90);
      s.line = false;
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
        cf.color = "#555555";
        cf.dashed = true;
        cf.markers = false;
        cf.x = s.x;
        cf.y = r.closed_k[e];
        if (si == 0 || res[si - 1].closed_k.empty()) cf.name = "closed form n·Q(σ_n + Φ⁻¹(ε))";
        ser.push_back(cf);
      }
    }
    report::ChartSpec spec;
    spec.title = fmt::format("k_eps vs n, eps = {:g}", res[0].eps[e]);
    spec.x = report::log_axis("n (keys)", true);
    spec.y = report::log_axis("k_eps");
    spec.width = 580;
    spec.height = 380;
    charts.push_back(report::chart(spec, ser));
  }
  return report::note(fmt::format("Dots: {} k_eps over trials, band: 10th–90th percentile; dashed: the fitted A·n^C.",
                                  center_name(opt.center))) +
         report::grid(charts);
}

std::string error_charts(const std::vector<SettingResult>& res) {
  std::vector<std::string> charts;
  for (const auto& r : res) {
    if (r.rules.empty()) continue;
    std::vector<report::Series> err, tail;
    for (size_t ri = 0; ri < r.rules.size(); ++ri) {
      const auto& rr = r.rules[ri];
      report::Series s;
      s.name = rr.formula;
      s.color = palette(ri);
      s.x = as_double(r.n);
      s.y = per_n(rr.err, &Summary::mean);
      s.low = per_n(rr.err, &Summary::p10);
      s.high = per_n(rr.err, &Summary::p90);
      err.push_back(s);
      s.y = per_n(rr.tail, &Summary::mean);
      s.low = per_n(rr.tail, &Summary::p10);
      s.high = per_n(rr.tail, &Summary::p90);
      tail.push_back(s);
    }
    report::ChartSpec spec;
    spec.title = r.setting.label();
    spec.x = report::log_axis("n (keys)", true);
    spec.y = report::log_axis("||o − o_k||");
    spec.width = 400;
    spec.height = 300;
    charts.push_back(report::chart(spec, err));
    spec.y = report::log_axis("dropped mass τ");
    charts.push_back(report::chart(spec, tail));
  }
  return report::note("Per setting: the output error ||o − o_k|| (mean over trials, band 10th–90th percentile) of "
                      "the renormalised top-k output with values v_j ~ N(0, I_d), and the dense mass τ the rule drops. "
                      "The paper's claims: with k = α·n^C the error falls as n grows; with k = ceil(ln n) it does not "
                      "vanish (τ → 1).") +
         report::grid(charts);
}

std::string c_per_setting(const SimOptions& opt, const std::vector<SettingResult>& res) {
  if (res.empty()) return "";
  std::vector<report::Series> ser;
  for (size_t e = 0; e < res[0].eps.size(); ++e) {
    report::Series s;
    s.name = fmt::format("eps = {:g} (fit, {:g}% CI)", res[0].eps[e], opt.level * 100);
    s.line = false;
    s.interval = report::IntervalStyle::Bars;
    report::Series cf;
    cf.name = fmt::format("eps = {:g}, closed form", res[0].eps[e]);
    cf.line = false;
    cf.color = e == 0 ? "#555555" : "#aaaaaa";
    for (size_t si = 0; si < res.size(); ++si) {
      const auto& f = res[si].fits[e];
      s.x.push_back(double(si));
      s.y.push_back(f.C);
      s.low.push_back(f.C_lo);
      s.high.push_back(f.C_hi);
      if (!res[si].closed_C.empty()) cf.x.push_back(double(si)), cf.y.push_back(res[si].closed_C[e]);
    }
    ser.push_back(s);
    if (!cf.x.empty()) ser.push_back(cf);
  }
  report::ChartSpec spec;
  spec.title = "fitted exponent C per setting";
  spec.x = report::linear_axis("setting # (see the table above)");
  spec.x.min = -0.5;
  spec.x.max = double(res.size()) - 0.5;
  spec.y = report::linear_axis("C");
  spec.y_rules = {{1.0, "C = 1 (not sparse)"}, {0.0, ""}};
  spec.width = std::max(480, 60 * static_cast<int>(res.size()) + 120);
  std::string out = report::chart(spec, ser);

  // The closed-form regime: C against c with the finite-range closed form and 1 - c.
  std::vector<const SettingResult*> lc;
  for (const auto& r : res)
    if (r.setting.regime == Regime::LogitC) lc.push_back(&r);
  if (lc.size() >= 2) {
    std::sort(lc.begin(), lc.end(), [](auto* a, auto* b) { return a->setting.c < b->setting.c; });
    std::vector<report::Series> cs;
    for (size_t e = 0; e < res[0].eps.size(); ++e) {
      report::Series s, cf;
      s.name = fmt::format("simulated, eps = {:g}", res[0].eps[e]);
      s.color = palette(e);
      s.interval = report::IntervalStyle::Bars;
      cf.name = fmt::format("closed form, eps = {:g}", res[0].eps[e]);
      cf.color = palette(e);
      cf.dashed = true;
      cf.markers = false;
      for (auto* r : lc) {
        s.x.push_back(r->setting.c);
        s.y.push_back(r->fits[e].C);
        s.low.push_back(r->fits[e].C_lo);
        s.high.push_back(r->fits[e].C_hi);
        cf.x.push_back(r->setting.c);
        cf.y.push_back(r->closed_C[e]);
      }
      cs.push_back(s);
      cs.push_back(cf);
    }
    report::Series lim;
    lim.name = "1 − c (n → ∞)";
    lim.color = "#777777";
    lim.dashed = true;
    lim.markers = false;
    for (auto* r : lc) lim.x.push_back(r->setting.c), lim.y.push_back(std::max(0.0, 1 - r->setting.c));
    cs.push_back(lim);
    report::ChartSpec sc;
    sc.title = "i.i.d. logits, σ_n² = 2c·ln n: C vs c";
    sc.x = report::linear_axis("c");
    sc.y = report::linear_axis("C");
    out += cs.empty() ? "" : report::chart(sc, cs);
  }
  return report::grid({out});
}

std::string collapse_section(const std::vector<SettingResult>& res) {
  std::vector<const SettingResult*> nb;
  for (const auto& r : res)
    if (r.setting.regime == Regime::NormBound) nb.push_back(&r);
  if (nb.size() < 2 || res[0].eps.empty()) return "";
  std::sort(nb.begin(), nb.end(), [](auto* a, auto* b) { return a->setting.R() < b->setting.R(); });
  std::map<int, std::vector<const SettingResult*>> by_d;
  for (auto* r : nb) by_d[r->setting.d].push_back(r);
  std::vector<report::Series> ks, top, cs;
  size_t color = 0;
  for (const auto& [d, group] : by_d) {
    for (size_t e = 0; e < res[0].eps.size(); ++e, ++color) {
      report::Series s, c;
      s.name = fmt::format("d = {}, eps = {:g}", d, res[0].eps[e]);
      c.name = s.name;
      s.color = c.color = palette(color);
      c.interval = report::IntervalStyle::Bars;
      for (auto* r : group) {
        const size_t last = r->n.size() - 1;
        s.x.push_back(r->setting.R());
        s.y.push_back(column(r->k_eps[e], last).mean);
        s.low.push_back(column(r->k_eps[e], last).p10);
        s.high.push_back(column(r->k_eps[e], last).p90);
        c.x.push_back(r->setting.R());
        c.y.push_back(r->fits[e].C);
        c.low.push_back(r->fits[e].C_lo);
        c.high.push_back(r->fits[e].C_hi);
      }
      ks.push_back(s);
      cs.push_back(c);
    }
    report::Series t;
    t.name = fmt::format("d = {}", d);
    t.color = palette(color++);
    for (auto* r : group) {
      t.x.push_back(r->setting.R());
      t.y.push_back(column(r->top1, r->n.size() - 1).mean);
    }
    top.push_back(t);
  }
  const int64_t n_max = nb[0]->n.back();
  report::ChartSpec spec;
  spec.title = fmt::format("k_eps at n = {} vs R", n_max);
  spec.x = report::log_axis("R = B²·||W||_F");
  spec.y = report::log_axis("k_eps");
  std::string charts = report::chart(spec, ks);
  spec.title = "fitted C vs R";
  spec.y = report::linear_axis("C");
  charts += report::chart(spec, cs);
  spec.title = fmt::format("largest weight at n = {} vs R", n_max);
  spec.y = report::linear_axis("mean max_j a_j");
  charts += report::chart(spec, top);
  return report::note("Norm-bounded inputs: |logit| ≤ R. Small R: the row stays near uniform (k_eps ∝ n, C ≈ 1). "
                      "As R grows the row collapses onto O(1) large entries: k_eps at the largest n drops towards 1 "
                      "and the largest weight towards 1.") +
         report::grid({charts});
}

}  // namespace

std::string simulation_html(const SimOptions& opt, const std::vector<SettingResult>& res) {
  const std::string intro = fmt::format(
      "<p class=\"note\">Random attention rows of length n = {}..{} (powers of two), {} trials per setting, seed {}. "
      "k<sub>ε</sub> is the smallest k whose top-k mass is at least 1−ε. "
      "C is the least-squares slope of ln({} k<sub>ε</sub>) on ln n; its interval is a {:g}% percentile bootstrap "
      "over trials ({} resamples). Each trial draws one query and one set of n<sub>max</sub> keys and values; the row "
      "at n uses the first n (prefix reuse). Keys: <code>{}</code>. Values v<sub>j</sub> ~ N(0, I<sub>d</sub>).</p>",
      opt.n_lo, opt.n_hi, opt.trials, opt.seed, center_name(opt.center), opt.level * 100, opt.bootstrap,
      opt.keys == KeyMethod::Direct ? "direct (GEMV over drawn key vectors)"
                                    : "reduced (exact conditional law of the logits)");
  std::vector<report::Section> sections;
  sections.push_back({"Settings and logit definitions", settings_section(res), "settings"});
  sections.push_back({"Fitted exponents", fits_section(opt, res) + c_per_setting(opt, res), "fits"});
  sections.push_back({"k_eps versus n", keps_charts(opt, res), "keps"});
  if (!res.empty() && !res[0].rules.empty())
    sections.push_back({"Output error versus n per budget rule", error_charts(res), "errors"});
  const std::string collapse = collapse_section(res);
  if (!collapse.empty()) sections.push_back({"Regime sweep over R: collapse", collapse, "collapse"});
  return report::html_page("attnsparse theory simulate: n^C-sparsity of random attention rows", sections, intro);
}

}  // namespace attnsparse::theory
