#include "theory/theory_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnsparse::theory {

using nlohmann::json;

const char* palette(size_t i) {
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                 "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"};
  return colors[i % 10];
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string html_page(const std::string& title, const std::string& body) {
  return fmt::format(R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{0}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; max-width: 1180px; margin: 24px auto; padding: 0 16px; line-height: 1.45; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }} h2 {{ font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }}
th, td {{ border-bottom: 1px solid #e4e4e4; padding: 3px 10px; text-align: right; }}
th {{ background: #f5f5f5; }} td.l, th.l {{ text-align: left; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.note {{ color: #555; font-size: 0.9em; }} code {{ background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }}
.good {{ color: #1a7f37; }} .bad {{ color: #b42318; }}
svg text {{ font-family: Helvetica, Arial, sans-serif; }}
</style></head><body>
<h1>{0}</h1>
{1}
</body></html>
)",
                     html_escape(title), body);
}

namespace {

struct Axis {
  bool log = true;
  double lo = 0, hi = 1;  // in transformed units
  double tr(double v) const { return log ? std::log10(v) : v; }
};

std::string fmt_tick(double v, bool pow2) {
  if (pow2) {
    const double e = std::log2(v);
    if (std::fabs(e - std::round(e)) < 1e-9) return fmt::format("2^{}", static_cast<int>(std::round(e)));
  }
  if (v != 0 && (std::fabs(v) >= 1e5 || std::fabs(v) < 1e-3)) return fmt::format("{:.0e}", v);
  return fmt::format("{:g}", v);
}

}  // namespace

std::string svg_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series) {
  const double W = spec.width, H = spec.height, ml = 62, mr = 12, mt = 30, mb = 46;
  // Data range.
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  auto ok_x = [&](double v) { return std::isfinite(v) && (!spec.log_x || v > 0); };
  auto ok_y = [&](double v) { return std::isfinite(v) && (!spec.log_y || v > 0); };
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!ok_x(s.x[i]) || !ok_y(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
      if (i < s.y_lo.size() && ok_y(s.y_lo[i])) ymin = std::min(ymin, s.y_lo[i]);
      if (i < s.y_hi.size() && ok_y(s.y_hi[i])) ymax = std::max(ymax, s.y_hi[i]);
    }
  std::string out = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}"><rect width="{0}" height="{1}" fill="white"/>)",
      W, H);
  out += fmt::format(R"(<text x="{}" y="18" font-size="14" font-weight="bold" text-anchor="middle">{}</text>)",
                     W / 2, html_escape(spec.title));
  if (!std::isfinite(xmin)) {
    out += fmt::format(R"(<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#777">no data</text></svg>)",
                       W / 2, H / 2);
    return out;
  }
  Axis ax{spec.log_x}, ay{spec.log_y};
  ax.lo = ax.tr(xmin), ax.hi = ax.tr(xmax);
  ay.lo = ay.tr(ymin), ay.hi = ay.tr(ymax);
  auto pad = [](Axis& a, double frac, double minspan) {
    if (a.hi - a.lo < minspan) {
      const double c = 0.5 * (a.lo + a.hi);
      a.lo = c - minspan / 2, a.hi = c + minspan / 2;
    }
    const double p = (a.hi - a.lo) * frac;
    a.lo -= p, a.hi += p;
  };
  pad(ax, 0.04, ax.log ? 0.3 : 1e-9 + std::fabs(xmin) * 0.1 + 1e-3);
  pad(ay, 0.06, ay.log ? 0.5 : 1e-9 + std::fabs(ymin) * 0.1 + 1e-3);
  const double pw = W - ml - mr, ph = H - mt - mb;
  auto px = [&](double v) { return ml + (ax.tr(v) - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto py = [&](double v) { return mt + ph - (ay.tr(v) - ay.lo) / (ay.hi - ay.lo) * ph; };
  out += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="#fcfcfc" stroke="#bbb"/>)", ml, mt, pw, ph);
  // Ticks.
  auto ticks = [&](const Axis& a, bool pow2) {
    std::vector<double> t;
    if (a.log) {
      const double base = pow2 ? std::log10(2.0) : 1.0;
      const double step = std::max(1.0, std::ceil((a.hi - a.lo) / base / 8));
      for (double e = std::ceil(a.lo / base); e * base <= a.hi + 1e-12; e += step) t.push_back(std::pow(10.0, e * base));
    } else {
      const double span = a.hi - a.lo, raw = span / 6, mag = std::pow(10.0, std::floor(std::log10(raw)));
      const double st = raw / mag < 2 ? 2 * mag : raw / mag < 5 ? 5 * mag : 10 * mag;
      for (double v = std::ceil(a.lo / st) * st; v <= a.hi + 1e-12; v += st) t.push_back(std::fabs(v) < 1e-12 ? 0 : v);
    }
    return t;
  };
  for (double v : ticks(ax, spec.log_x && spec.x_pow2)) {
    const double x = px(v);
    out += fmt::format(R"(<line x1="{0:.1f}" y1="{1}" x2="{0:.1f}" y2="{2}" stroke="#eee"/><text x="{0:.1f}" y="{3}" font-size="11" text-anchor="middle" fill="#444">{4}</text>)",
                       x, mt, mt + ph, mt + ph + 15, html_escape(fmt_tick(v, spec.log_x && spec.x_pow2)));
  }
  for (double v : ticks(ay, false)) {
    const double y = py(v);
    out += fmt::format(R"(<line x1="{0}" y1="{1:.1f}" x2="{2}" y2="{1:.1f}" stroke="#eee"/><text x="{3}" y="{4:.1f}" font-size="11" text-anchor="end" fill="#444">{5}</text>)",
                       ml, y, ml + pw, ml - 5, y + 4, html_escape(fmt_tick(v, false)));
  }
  out += fmt::format(R"(<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>)", ml + pw / 2, H - 8,
                     html_escape(spec.x_label));
  out += fmt::format(R"svg(<text x="14" y="{0}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {0})">{1}</text>)svg",
                     mt + ph / 2, html_escape(spec.y_label));
  // Series.
  int legend_row = 0;
  for (size_t si = 0; si < series.size(); ++si) {
    const auto& s = series[si];
    const std::string color = s.color.empty() ? palette(si) : s.color;
    std::string pts;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!ok_x(s.x[i]) || !ok_y(s.y[i])) continue;
      pts += fmt::format("{:.1f},{:.1f} ", px(s.x[i]), py(s.y[i]));
      if (i < s.y_lo.size() && ok_y(s.y_lo[i]) && ok_y(s.y_hi[i]))
        out += fmt::format(R"(<line x1="{0:.1f}" y1="{1:.1f}" x2="{0:.1f}" y2="{2:.1f}" stroke="{3}" stroke-opacity="0.5"/>)",
                           px(s.x[i]), py(s.y_lo[i]), py(s.y_hi[i]), color);
      if (s.markers)
        out += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", px(s.x[i]), py(s.y[i]), color);
    }
    if (!pts.empty())
      out += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="1.6"{}/>)", pts, color,
                         s.dashed ? R"( stroke-dasharray="5,4")" : "");
    if (!s.name.empty()) {
      const double ly = mt + 12 + 14 * legend_row++;
      out += fmt::format(R"(<line x1="{0}" y1="{1:.1f}" x2="{2}" y2="{1:.1f}" stroke="{3}" stroke-width="2"{4}/><text x="{5}" y="{6:.1f}" font-size="11" fill="#222">{7}</text>)",
                         ml + 8, ly, ml + 28, color, s.dashed ? R"( stroke-dasharray="5,4")" : "", ml + 32, ly + 4,
                         html_escape(s.name));
    }
  }
  out += "</svg>";
  return out;
}

std::string svg_heatmap(const std::string& title, const std::string& row_label, const std::string& col_label,
                        const std::vector<std::vector<double>>& values, double lo, double hi,
                        const std::string& note) {
  const size_t R = values.size(), Cn = R ? values[0].size() : 0;
  const double cell = std::clamp(560.0 / std::max<size_t>(Cn, 1), 14.0, 48.0);
  const double ml = 70, mt = 34, W = ml + cell * Cn + 110, H = mt + cell * R + 50;
  std::string out = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}"><rect width="{0}" height="{1}" fill="white"/>)",
      W, H);
  out += fmt::format(R"(<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>)", ml, html_escape(title));
  auto color = [&](double v) {
    if (!std::isfinite(v)) return std::string("#dddddd");
    const double t = std::clamp((v - lo) / (hi - lo), 0.0, 1.0);
    // white -> blue
    const int r = static_cast<int>(247 - t * (247 - 8)), g = static_cast<int>(251 - t * (251 - 69)),
              b = static_cast<int>(255 - t * (255 - 148));
    return fmt::format("#{:02x}{:02x}{:02x}", r, g, b);
  };
  for (size_t r = 0; r < R; ++r) {
    out += fmt::format(R"(<text x="{}" y="{:.1f}" font-size="11" text-anchor="end">{}</text>)", ml - 6,
                       mt + cell * r + cell / 2 + 4, r);
    for (size_t c = 0; c < Cn; ++c) {
      const double v = values[r][c];
      out += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}" stroke="white"><title>{} {} {} {}: {}</title></rect>)",
                         ml + cell * c, mt + cell * r, cell, cell, color(v), row_label, r, col_label, c,
                         std::isfinite(v) ? fmt::format("{:.3f}", v) : "n/a");
      if (cell >= 26 && std::isfinite(v)) {
        const double t = (v - lo) / (hi - lo);
        out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="10" text-anchor="middle" fill="{}">{:.2f}</text>)",
                           ml + cell * c + cell / 2, mt + cell * r + cell / 2 + 3, t > 0.6 ? "white" : "#222", v);
      }
    }
  }
  for (size_t c = 0; c < Cn; ++c)
    out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="11" text-anchor="middle">{}</text>)",
                       ml + cell * c + cell / 2, mt + cell * R + 14, c);
  out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="12" text-anchor="middle">{}</text>)",
                     ml + cell * Cn / 2, mt + cell * R + 32, html_escape(col_label));
  out += fmt::format(R"svg(<text x="14" y="{0:.1f}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {0:.1f})">{1}</text>)svg",
                     mt + cell * R / 2, html_escape(row_label));
  // Colour bar.
  const double bx = ml + cell * Cn + 24;
  for (int i = 0; i < 20; ++i)
    out += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="14" height="{:.1f}" fill="{}"/>)", bx,
                       mt + (19 - i) * (cell * R / 20), cell * R / 20 + 0.5, color(lo + (hi - lo) * (i + 0.5) / 20));
  out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="10">{:g}</text><text x="{:.1f}" y="{:.1f}" font-size="10">{:g}</text>)",
                     bx + 18, mt + 8, hi, bx + 18, mt + cell * R, lo);
  if (!note.empty())
    out += fmt::format(R"(<text x="{}" y="{:.1f}" font-size="10" fill="#555">{}</text>)", ml, H - 4, html_escape(note));
  out += "</svg>";
  return out;
}

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
      std::vector<PlotSeries> ser;
      for (size_t si = 0; si < res.size(); ++si) {
        const auto& r = res[si];
        PlotSeries s;
        s.name = fmt::format("{}  C={:.2f}", r.setting.label(), r.fits[e].C);
        s.color = palette(si);
        for (size_t i = 0; i < r.n.size(); ++i) s.x.push_back(double(r.n[i]));
        s.y = per_n(r.k_eps[e], opt.center == Center::Mean ? &Summary::mean : &Summary::median);
        s.y_lo = per_n(r.k_eps[e], &Summary::p10);
        s.y_hi = per_n(r.k_eps[e], &Summary::p90);
        PlotSeries fl;
        fl.color = palette(si);
        fl.dashed = true;
        fl.markers = false;
        fl.x = s.x;
        for (double x : s.x) fl.y.push_back(std::exp(r.fits[e].log_A) * std::pow(x, r.fits[e].C));
        ser.push_back(s);
        ser.push_back(fl);
        if (!r.closed_k.empty()) {
          PlotSeries cf;
          cf.color = "#888888";
          cf.dashed = true;
          cf.markers = false;
          cf.x = s.x;
          cf.y = r.closed_k[e];
          ser.push_back(cf);
        }
      }
      PlotSpec spec;
      spec.title = fmt::format("k_eps vs n, eps = {:g}", res[0].eps[e]);
      spec.x_label = "n (keys)";
      spec.y_label = "k_eps";
      spec.width = 570;
      spec.height = 380 + 14 * static_cast<int>(res.size() > 8 ? res.size() - 8 : 0);
      b += svg_plot(spec, ser);
    }
  b += "</div>";

  // Error vs n per rule, one plot per setting.
  if (!res.empty() && !res[0].rules.empty()) {
    b += "<h2>Output error versus n per budget rule</h2><p class=\"note\">||o &minus; o<sub>k</sub>|| (mean over trials; o<sub>k</sub> = renormalised top-k output) with Gaussian values; solid: error, dashed: dropped dense mass &tau;.</p><div class=grid>";
    for (const auto& r : res) {
      std::vector<PlotSeries> ser;
      for (size_t ri = 0; ri < r.rules.size(); ++ri) {
        const auto& rr = r.rules[ri];
        PlotSeries s, t;
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
      PlotSpec spec;
      spec.title = r.setting.label();
      spec.x_label = "n (keys)";
      spec.y_label = "error / tail mass";
      spec.width = 380;
      spec.height = 300;
      b += svg_plot(spec, ser);
    }
    b += "</div>";
  }

  // Regime sweep over R (norm-bound).
  std::vector<const SettingResult*> nb;
  for (const auto& r : res)
    if (r.setting.regime == Regime::NormBound) nb.push_back(&r);
  if (nb.size() >= 2 && !res[0].eps.empty()) {
    b += "<h2>Regime sweep over R = B&sup2;&middot;||W||<sub>F</sub></h2><p class=\"note\">As the logit bound R grows, rows collapse onto O(1) large entries: k<sub>&epsilon;</sub> at the largest n falls towards 1 and the largest weight towards 1.</p><div class=grid>";
    std::vector<PlotSeries> ser, ser2;
    for (size_t e = 0; e < res[0].eps.size(); ++e) {
      PlotSeries s;
      s.name = fmt::format("k_eps at n = {}, eps = {:g}", nb[0]->n.back(), res[0].eps[e]);
      s.color = palette(e);
      std::vector<std::pair<double, double>> pts;
      for (auto* r : nb) pts.push_back({r->setting.R(), col_summary(r->k_eps[e], r->n.size() - 1, &Summary::mean)[0]});
      std::sort(pts.begin(), pts.end());
      for (auto [x, y] : pts) s.x.push_back(x), s.y.push_back(y);
      ser.push_back(s);
    }
    PlotSeries t1;
    t1.name = fmt::format("mean largest weight at n = {}", nb[0]->n.back());
    std::vector<std::pair<double, double>> pts;
    for (auto* r : nb) pts.push_back({r->setting.R(), col_summary(r->top1, r->n.size() - 1, &Summary::mean)[0]});
    std::sort(pts.begin(), pts.end());
    for (auto [x, y] : pts) t1.x.push_back(x), t1.y.push_back(y);
    ser2.push_back(t1);
    PlotSpec spec;
    spec.title = "k_eps vs R";
    spec.x_label = "R";
    spec.y_label = "k_eps";
    spec.x_pow2 = false;
    b += svg_plot(spec, ser);
    spec.title = "largest weight vs R";
    spec.y_label = "max_j a_j";
    spec.log_y = false;
    b += svg_plot(spec, ser2);
    b += "</div>";
  }
  return html_page("attnsparse theory simulate: n^C-sparsity of random attention", b);
}

}  // namespace attnsparse::theory
