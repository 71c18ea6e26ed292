// JSON, table and HTML page of `theory fit` (fit_model.h).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "report/svg.h"
#include "theory/fit_model.h"

namespace attnsparse::theory {

using nlohmann::json;

namespace {

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
json nums(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(num(x));
  return a;
}

double mean_finite(const std::vector<double>& v) {
  double s = 0, c = 0;
  for (double x : v)
    if (std::isfinite(x)) s += x, c += 1;
  return c > 0 ? s / c : NAN;
}

std::string fmt3(double v) { return std::isfinite(v) ? fmt::format("{:.3f}", v) : "–"; }

}  // namespace

json fit_json(const FitOptions& o, const FitResult& r) {
  json j;
  j["tool"] = "attnsparse theory fit";
  j["model"] = {{"path", r.model}, {"arch", r.arch}, {"n_layer", r.n_layer}, {"n_head", r.n_head},
                {"n_kv_head", r.n_kv_head}, {"head_dim", r.head_dim}};
  j["data"] = {{"paths", o.data}, {"documents", r.documents}, {"tokens", r.tokens},
               {"documents_skipped_short", r.skipped_short}, {"documents_cut_to_max_tokens", r.cut},
               {"rows_analysed", r.rows}};
  j["params"] = {{"eps", o.eps},
                 {"max_tokens", o.max_tokens},
                 {"window", r.window},
                 {"min_n", o.min_n},
                 {"rows_per_bin", o.rows_per_bin},
                 {"bootstrap", o.bootstrap},
                 {"bootstrap_unit", r.bootstrap_unit},
                 {"ci_level", o.level},
                 {"seed", o.seed},
                 {"bins", "row length n = t+1 in [m, 2m), m = min_n * 2^b; per bin the mean n and mean k_eps of the sampled rows"},
                 {"fit", "least squares of ln(mean k_eps) on ln(mean n) over bins"},
                 {"verdict_rules",
                  {{"collapsed", fmt::format("C_hi < {}", o.collapsed_below)},
                   {"dense", fmt::format("C > {}", o.dense_above)},
                   {"n^C-sparse", fmt::format("0 < C_lo, C_hi < 1, R^2 >= {}", o.min_r2)},
                   {"too few lengths", fmt::format("fewer than {} bins", o.min_bins)}}},
                 {"rules",
                  {{"topk-dyn", "oracle top-k, k = ceil(alpha n^C) from the head's fit at the smallest eps (policy dyntopk=alpha:A,C:C)"},
                   {"topk-fixed", "oracle top-k, fixed k of equal mean cost (policy topk=K)"},
                   {"window-dyn", "min(4, k/2) sink keys + most recent keys, k = ceil(alpha n^C) (policy dynwindow=alpha:A,C:C,sink:4)"},
                   {"window-fixed", "min(4, k/2) sink keys + most recent keys, fixed k of equal mean cost (policy sink=G,window=W)"},
                   {"error", "||o - o_G|| = tau ||mu_tail - mu_G|| from eval-policy's oracle (dense output vs the output over G on the same q/k/v); rel = / ||o||"}}}};
  j["fits"] = json::array();
  j["heads"] = json::array();
  std::map<std::string, int> counts;
  for (const auto& h : r.heads) {
    json hj = {{"layer", h.layer}, {"head", h.head}, {"kv_head", h.kv_head},
               {"bins", {{"n_lo", h.bin_lo}, {"n_mean", h.bin_n}, {"rows", h.bin_rows}}}};
    if (h.window > 0) hj["window"] = h.window;  // rows over the min(t+1, window) visible keys
    hj["k_eps_mean"] = json::array();
    for (size_t e = 0; e < o.eps.size(); ++e) {
      hj["k_eps_mean"].push_back({{"eps", o.eps[e]}, {"k", nums(h.bin_k[e])}});
      const PowerFit& f = h.fits[e];
      json fj = {{"layer", h.layer},  {"head", h.head},       {"eps", o.eps[e]},       {"C", num(f.C)},
                 {"C_ci", {num(f.C_lo), num(f.C_hi)}},         {"A", num(std::exp(f.log_A))},
                 {"r2", num(f.r2)},   {"verdict", h.verdict[e]}};
      j["fits"].push_back(fj);
      ++counts[fmt::format("{:g}|{}", o.eps[e], h.verdict[e])];
    }
    hj["budget"] = {{"alpha", num(h.dyn_alpha)}, {"C", num(h.dyn_C)}, {"k_fixed", h.k_fixed}};
    hj["rules"] = json::array();
    for (int ru = 0; ru < kFitRules && ru < int(h.err.size()); ++ru)
      hj["rules"].push_back({{"name", fit_rule_name(ru)},
                             {"err", nums(h.err[ru])},
                             {"rel_err", nums(h.rel[ru])},
                             {"tau", nums(h.tau[ru])},
                             {"err_all", num(h.err_all[ru])},
                             {"rel_err_all", num(h.rel_all[ru])},
                             {"tau_all", num(h.tau_all[ru])}});
    j["heads"].push_back(hj);
  }
  j["summary"] = json::array();
  for (double e : o.eps) {
    json s = {{"eps", e}};
    for (const char* v : {"n^C-sparse", "dense (C ~ 1)", "collapsed (O(1) entries)", "no clean power law", "too few lengths"})
      s[v] = counts[fmt::format("{:g}|{}", e, v)];
    j["summary"].push_back(s);
  }
  return j;
}

std::string fit_table(const FitOptions& o, const FitResult& r) {
  std::string out = fmt::format("{} ({}: {} layers x {} heads), {} documents, {} tokens, bootstrap over {}\n", r.model,
                                r.arch, r.n_layer, r.n_head, r.documents, r.tokens, r.bootstrap_unit);
  out += fmt::format("\n{:>5} {:>4} {:>6} {:>7} {:>17} {:>6} {:<26} {:>8} {:>10} {:>10} {:>10} {:>10}\n", "layer", "head",
                     "eps", "C", "CI", "R^2", "verdict", "k_fixed", "topk-dyn", "topk-fix", "win-dyn", "win-fix");
  for (const auto& h : r.heads)
    for (size_t e = 0; e < o.eps.size(); ++e) {
      const PowerFit& f = h.fits[e];
      const bool first = e == 0;
      out += fmt::format("{:>5} {:>4} {:>6g} {:>7} {:>17} {:>6} {:<26} {:>8} {:>10} {:>10} {:>10} {:>10}\n", h.layer,
                         h.head, o.eps[e], fmt3(f.C), fmt::format("[{}, {}]", fmt3(f.C_lo), fmt3(f.C_hi)), fmt3(f.r2),
                         h.verdict[e], first ? std::to_string(h.k_fixed) : "",
                         first ? fmt::format("{:.4f}", h.rel_all[kTopkDynamic]) : "",
                         first ? fmt::format("{:.4f}", h.rel_all[kTopkFixed]) : "",
                         first ? fmt::format("{:.4f}", h.rel_all[kWindowDynamic]) : "",
                         first ? fmt::format("{:.4f}", h.rel_all[kWindowFixed]) : "");
    }
  out += "\n(last four columns: mean relative output error ||o - o_G|| / ||o|| over the sampled rows)\n";
  return out;
}

std::string fit_html(const FitOptions& o, const FitResult& r) {
  std::vector<report::Section> sections;
  const std::string intro = report::note(fmt::format(
      "Model {} ({}: {} layers × {} query heads, {} KV heads, head_dim {}). {} documents ({} tokens; each cut to its "
      "first {} tokens), {} sampled rows. k_ε = smallest k whose top-k mass ≥ 1−ε. Rows of length n = t+1 are grouped "
      "into bins [m, 2m), m = {}·2^b, up to {} rows per bin and document; C is the least-squares slope of ln(mean k_ε) "
      "on ln(mean n) over bins, with a {:g}% percentile bootstrap over {} ({} resamples).",
      r.model, r.arch, r.n_layer, r.n_head, r.n_kv_head, r.head_dim, r.documents, r.tokens, r.window, r.rows,
      o.min_n, o.rows_per_bin == 0 ? std::string("all") : std::to_string(o.rows_per_bin), o.level * 100,
      r.bootstrap_unit, o.bootstrap));

  // Summary of verdicts.
  {
    std::vector<std::vector<std::string>> rows;
    const char* kinds[] = {"n^C-sparse", "dense (C ~ 1)", "collapsed (O(1) entries)", "no clean power law",
                           "too few lengths"};
    for (size_t e = 0; e < o.eps.size(); ++e) {
      std::vector<std::string> row = {fmt::format("{:g}", o.eps[e])};
      for (const char* k : kinds) {
        int c = 0;
        for (const auto& h : r.heads) c += h.verdict[e] == k;
        row.push_back(std::to_string(c));
      }
      rows.push_back(row);
    }
    std::string html = report::table({"eps", "n^C-sparse", "dense (C≈1)", "collapsed (O(1))", "no clean power law",
                                      "too few lengths"},
                                     rows);
    html += report::note(fmt::format(
        "Verdicts per head: collapsed if the interval's upper end is below {}; dense if C > {}; n^C-sparse if the "
        "interval lies inside (0, 1) and R² ≥ {}; otherwise no clean power law. At least {} lengths are needed.",
        o.collapsed_below, o.dense_above, o.min_r2, o.min_bins));
    sections.push_back({"Where is real attention n^C-sparse?", html, "summary"});
  }

  // Heatmaps of C per layer x head.
  {
    std::vector<std::string> maps;
    for (size_t e = 0; e < o.eps.size(); ++e) {
      report::HeatmapSpec hm;
      hm.title = fmt::format("fitted C, eps = {:g}", o.eps[e]);
      hm.row_label = "layer";
      hm.col_label = "head";
      hm.values.assign(r.n_layer, std::vector<double>(r.n_head, NAN));
      for (const auto& h : r.heads) hm.values[h.layer][h.head] = h.fits[e].C;
      hm.lo = 0;
      hm.hi = 1;
      hm.note = "grey: no fit";
      maps.push_back(report::heatmap(hm));
    }
    sections.push_back({"C per layer and head", report::grid(maps), "heatmap"});
  }

  // k_eps vs n per layer (one chart per layer and eps, a series per head).
  {
    std::vector<std::string> charts;
    for (int l = 0; l < r.n_layer; ++l)
      for (size_t e = 0; e < o.eps.size(); ++e) {
        std::vector<report::Series> ser;
        for (const auto& h : r.heads) {
          if (h.layer != l) continue;
          report::Series s;
          if (r.n_head <= 10) s.name = fmt::format("h{}: C={}", h.head, fmt3(h.fits[e].C));
          s.color = report::palette(h.head);
          s.x = h.bin_n;
          s.y = h.bin_k[e];
          s.line = false;
          ser.push_back(s);
          if (std::isfinite(h.fits[e].C)) {
            report::Series f;
            f.color = s.color;
            f.dashed = true;
            f.markers = false;
            f.x = h.bin_n;
            for (double n : h.bin_n) f.y.push_back(std::exp(h.fits[e].log_A) * std::pow(n, h.fits[e].C));
            ser.push_back(f);
          }
        }
        report::ChartSpec spec;
        spec.title = fmt::format("layer {}: k_eps vs n, eps = {:g}", l, o.eps[e]);
        spec.x = report::log_axis("n (keys)", true);
        spec.y = report::log_axis("mean k_eps");
        spec.width = 420;
        spec.height = 300;
        charts.push_back(report::chart(spec, ser));
      }
    sections.push_back({"k_eps versus n", report::note("Dots: mean k_ε of the sampled rows per length bin; dashed: the head's fitted A·n^C.") +
                                              report::grid(charts),
                        "keps"});
  }

  // Budget rules: per layer, mean over heads of the relative error per bin.
  {
    std::vector<std::string> charts;
    std::vector<std::vector<std::string>> rows;
    for (int l = 0; l < r.n_layer; ++l) {
      std::vector<const HeadFit*> hs;
      for (const auto& h : r.heads)
        if (h.layer == l) hs.push_back(&h);
      if (hs.empty()) continue;
      std::vector<report::Series> ser;
      for (int ru = 0; ru < kFitRules; ++ru) {
        report::Series s;
        s.name = fit_rule_name(ru);
        s.color = report::palette(ru);
        s.dashed = ru == kTopkFixed || ru == kWindowFixed;
        s.x = hs[0]->bin_n;
        for (size_t b = 0; b < s.x.size(); ++b) {
          std::vector<double> v;
          for (auto* h : hs)
            if (b < h->rel[ru].size()) v.push_back(h->rel[ru][b]);
          s.y.push_back(mean_finite(v));
        }
        ser.push_back(s);
      }
      report::ChartSpec spec;
      spec.title = fmt::format("layer {}: relative error vs n", l);
      spec.x = report::log_axis("n (keys)", true);
      spec.y = report::log_axis("mean ||o − o_G|| / ||o||");
      spec.width = 420;
      spec.height = 300;
      charts.push_back(report::chart(spec, ser));
      std::vector<double> all[kFitRules], kf;
      for (auto* h : hs) {
        for (int ru = 0; ru < kFitRules; ++ru) all[ru].push_back(h->rel_all[ru]);
        kf.push_back(double(h->k_fixed));
      }
      rows.push_back({std::to_string(l), fmt::format("{:.1f}", mean_finite(kf)), fmt::format("{:.4f}", mean_finite(all[0])),
                      fmt::format("{:.4f}", mean_finite(all[1])), fmt::format("{:.4f}", mean_finite(all[2])),
                      fmt::format("{:.4f}", mean_finite(all[3]))});
    }
    std::string html = report::note(
        "Dynamic budget k = ceil(α·n^C) (α, C from the head's own fit at the smallest ε) against a fixed k of equal "
        "mean cost over the analysed positions; each with the oracle top-k selection and with a StreamingLLM window "
        "(min(4, k/2) sink keys + the most recent). Error ||o − o_G|| computed from the row and the head's values "
        "(= τ·||μ_tail − μ_G||), relative to ||o||.");
    html += report::table({"layer", "mean k_fixed", "topk-dyn", "topk-fixed", "window-dyn", "window-fixed"}, rows);
    html += report::grid(charts);
    sections.push_back({"Dynamic vs fixed budget", html, "budgets"});
  }

  // Per-head table.
  {
    std::vector<std::vector<std::string>> rows, classes;
    for (const auto& h : r.heads)
      for (size_t e = 0; e < o.eps.size(); ++e) {
        const PowerFit& f = h.fits[e];
        rows.push_back({fmt::format("L{} H{} (kv {})", h.layer, h.head, h.kv_head), fmt::format("{:g}", o.eps[e]),
                        fmt3(f.C), fmt::format("[{}, {}]", fmt3(f.C_lo), fmt3(f.C_hi)), fmt3(f.r2), h.verdict[e],
                        e == 0 ? std::to_string(h.k_fixed) : "",
                        e == 0 ? fmt::format("{:.4f}", h.rel_all[kTopkDynamic]) : "",
                        e == 0 ? fmt::format("{:.4f}", h.rel_all[kTopkFixed]) : ""});
        classes.push_back({"", "", "", "", "", h.verdict[e] == "n^C-sparse" ? "l good" : "l", "", "", ""});
      }
    sections.push_back({"Per head",
                        report::table({"head", "eps", "C", "CI", "R²", "verdict", "k_fixed", "rel err topk-dyn",
                                       "rel err topk-fixed"},
                                      rows, classes),
                        "heads"});
  }
  return report::html_page("attnsparse theory fit: n^C-sparsity of real attention rows", sections, intro);
}

}  // namespace attnsparse::theory
