// The theory pages redrawn from their JSON (attnsparse report): the options and results
// are read back from what simulation_json / fit_json wrote, then drawn by the same
// simulation_html / fit_html as the run itself.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/model_limits.h"  // a layer x head heatmap is allocated from the model's shape
#include "io/json_file.h"
#include "theory/fit_model.h"
#include "theory/theory_report.h"

namespace attnsparse::theory {

namespace {

using nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double num(const json& j) { return j.is_number() ? j.get<double>() : kNaN; }
double num(const json& j, const char* key) { return j.is_object() && j.contains(key) ? num(j[key]) : kNaN; }

std::vector<double> nums(const json& j) {
  std::vector<double> v;
  if (j.is_array())
    for (const json& x : j) v.push_back(num(x));
  return v;
}

std::vector<std::vector<double>> matrix(const json& j) {
  std::vector<std::vector<double>> m;
  if (j.is_array())
    for (const json& row : j) m.push_back(nums(row));
  return m;
}

// A [1][n] matrix of per-n means, when a file has no per-trial values.
std::vector<std::vector<double>> one_trial(const json& means) { return {nums(means)}; }

const json& field(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) fail("missing field '{}'", key);
  return j[key];
}

// The last number of a rule's text: "C_hi < 0.15" -> 0.15, "0 < C_lo, C_hi < 1, R^2 >= 0.9"
// -> 0.9, "fewer than 3 bins" -> 3.
double threshold(const json& rules, const char* key, double fallback) {
  if (!rules.is_object() || !rules.contains(key) || !rules[key].is_string()) return fallback;
  const std::string s = rules[key].get<std::string>();
  double value = fallback;
  for (size_t i = 0; i < s.size();) {
    const size_t b = s.find_first_not_of(' ', i);
    if (b == std::string::npos) break;
    size_t e = s.find(' ', b);
    if (e == std::string::npos) e = s.size();
    const std::string token = s.substr(b, e - b);
    char* end = nullptr;
    const double v = std::strtod(token.c_str(), &end);
    if (end != token.c_str() && *end == '\0') value = v;
    i = e;
  }
  return value;
}

// Integer fields through json_int (get<int>() on 1e308 is undefined behaviour): name is
// the field's place in the file for the message.
int64_t int_field(const json& j, const char* key, const std::string& name, int64_t lo, int64_t hi) {
  return json_int(field(j, key), name, lo, hi);
}
constexpr int64_t kIntMax = std::numeric_limits<int>::max();

// The pages index these as rectangles: every row as long as the lengths n.
void check_rows(const std::vector<std::vector<double>>& m, size_t cols, const std::string& what) {
  if (m.empty()) fail("{}: no values", what);
  for (const auto& row : m)
    if (row.size() != cols) fail("{}: a row of {} values for {} lengths", what, row.size(), cols);
}

}  // namespace

std::string simulation_html_from_json(const json& j) {
  const json& p = field(j, "params");
  SimOptions opt;
  // Printed on the page, not used to size anything: bounds are the types' (and the run's
  // own minimums), so no file the tool wrote is refused.
  opt.n_lo = int_field(p, "n_lo", "params.n_lo", 1, kJsonIntMax);
  opt.n_hi = int_field(p, "n_hi", "params.n_hi", 1, kJsonIntMax);
  opt.eps = nums(field(p, "eps"));
  opt.trials = int(int_field(p, "trials", "params.trials", 1, kIntMax));
  opt.seed = json_uint64(field(p, "seed"), "params.seed");
  opt.k_const = json_int_or(p, "k_const", "params.k_const", 8, 1, kJsonIntMax);
  opt.bootstrap = int(int_field(p, "bootstrap", "params.bootstrap", 0, kIntMax));
  opt.level = field(p, "ci_level").get<double>();
  opt.center = p.value("center", std::string("mean")) == "median" ? Center::Median : Center::Mean;
  opt.keys = p.value("keys", std::string("direct")) == "reduced" ? KeyMethod::Reduced : KeyMethod::Direct;
  opt.select = p.value("select", std::string("quickselect")) == "sort" ? SelectMethod::FullSort : SelectMethod::Quickselect;
  opt.exponent = num(p, "exponent");
  opt.alpha = num(p, "alpha");
  std::vector<SettingResult> res;
  for (const json& s : field(j, "settings")) {
    const std::string at = fmt::format("settings[{}]", res.size());
    SettingResult r;
    const std::string regime = field(s, "regime").get<std::string>();
    r.setting.regime = regime == "norm-bound" ? Regime::NormBound : regime == "logit-c" ? Regime::LogitC : Regime::Gaussian;
    r.setting.d = int(int_field(s, "d", at + ".d", 1, kIntMax));
    if (s.contains("sigma")) r.setting.sigma = num(s["sigma"]);
    if (s.contains("B")) r.setting.B = num(s["B"]);
    if (s.contains("F")) r.setting.F = num(s["F"]);
    if (s.contains("logit_c")) r.setting.c = num(s["logit_c"]);
    r.n = json_int_array(field(s, "n"), at + ".n", 1, kJsonIntMax);
    for (const json& k : field(s, "k_eps")) {
      r.eps.push_back(num(field(k, "eps")));
      r.k_eps.push_back(k.contains("trials") ? matrix(k["trials"]) : one_trial(field(k, "mean")));
      if (k.contains("closed_form")) r.closed_k.push_back(nums(k["closed_form"]));
    }
    r.top1 = s.contains("top1_trials") ? matrix(s["top1_trials"]) : one_trial(field(s, "top1_mean"));
    r.dyn_alpha = num(field(s, "dynamic_rule"), "alpha");
    r.dyn_C = num(field(s, "dynamic_rule"), "C");
    for (const json& rr : field(s, "rules")) {
      RuleResult rule;
      rule.name = field(rr, "name").get<std::string>();
      rule.formula = field(rr, "formula").get<std::string>();
      rule.k = json_int_array(field(rr, "k"), fmt::format("{}.rules[{}].k", at, r.rules.size()), kJsonIntMin, kJsonIntMax);
      rule.err = rr.contains("err_trials") ? matrix(rr["err_trials"]) : one_trial(field(rr, "err_mean"));
      rule.rel = rr.contains("rel_err_trials") ? matrix(rr["rel_err_trials"]) : one_trial(field(rr, "rel_err_mean"));
      rule.tail = rr.contains("tail_trials") ? matrix(rr["tail_trials"]) : one_trial(field(rr, "tail_mean"));
      r.rules.push_back(std::move(rule));
    }
    res.push_back(std::move(r));
  }
  // Fits: in file order, per setting and eps.
  size_t fi = 0;
  for (const json& f : field(j, "fits")) {
    const std::string at = fmt::format("fits[{}].setting", fi++);
    if (res.empty()) fail("{}: the file has no settings", at);
    const size_t si = size_t(int_field(f, "setting", at, 0, int64_t(res.size()) - 1));
    PowerFit pf;
    pf.C = num(field(f, "C"));
    pf.C_lo = num(field(f, "C_ci").at(0));
    pf.C_hi = num(field(f, "C_ci").at(1));
    pf.level = num(field(f, "ci_level"));
    pf.log_A = std::log(num(field(f, "A")));
    pf.r2 = num(field(f, "r2"));
    res[si].fits.push_back(pf);
    if (f.contains("closed_form_C")) res[si].closed_C.push_back(num(f["closed_form_C"]));
  }
  for (const auto& r : res) {
    const std::string name = r.setting.label();
    const size_t cols = r.n.size();
    if (cols == 0) fail("setting {}: no lengths n", name);
    if (r.eps.size() != opt.eps.size() || r.eps.empty())
      fail("setting {}: {} eps values, the run has {}", name, r.eps.size(), opt.eps.size());
    if (r.fits.size() != r.eps.size()) fail("setting {}: {} fits for {} eps values", name, r.fits.size(), r.eps.size());
    if (!r.closed_C.empty() && r.closed_C.size() != r.eps.size()) fail("setting {}: closed-form C per eps", name);
    if (!r.closed_k.empty() && r.closed_k.size() != r.eps.size()) fail("setting {}: closed-form k_eps per eps", name);
    if (r.closed_C.empty() != r.closed_k.empty()) fail("setting {}: closed forms incomplete", name);
    for (const auto& k : r.k_eps) check_rows(k, cols, name + " k_eps");
    for (const auto& k : r.closed_k)
      if (k.size() != cols) fail("setting {}: closed-form k_eps of {} values for {} lengths", name, k.size(), cols);
    check_rows(r.top1, cols, name + " top1");
    for (const auto& rule : r.rules) {
      check_rows(rule.err, cols, name + " " + rule.name + " err");
      check_rows(rule.rel, cols, name + " " + rule.name + " rel_err");
      check_rows(rule.tail, cols, name + " " + rule.name + " tail");
    }
  }
  return simulation_html(opt, res);
}

std::string fit_html_from_json(const json& j) {
  const json& p = field(j, "params");
  const json& m = field(j, "model");
  const json& d = field(j, "data");
  FitOptions o;
  o.eps = nums(field(p, "eps"));
  o.max_tokens = int_field(p, "max_tokens", "params.max_tokens", 0, kJsonIntMax);
  o.min_n = int_field(p, "min_n", "params.min_n", 0, kJsonIntMax);
  o.rows_per_bin = int(int_field(p, "rows_per_bin", "params.rows_per_bin", 0, kIntMax));
  o.bootstrap = int(int_field(p, "bootstrap", "params.bootstrap", 0, kIntMax));
  o.level = field(p, "ci_level").get<double>();
  o.seed = json_uint64(field(p, "seed"), "params.seed");
  const json& rules = p.contains("verdict_rules") ? p["verdict_rules"] : json();
  o.collapsed_below = threshold(rules, "collapsed", o.collapsed_below);
  o.dense_above = threshold(rules, "dense", o.dense_above);
  o.min_r2 = threshold(rules, "n^C-sparse", o.min_r2);
  o.min_bins = static_cast<int>(threshold(rules, "too few lengths", o.min_bins));
  if (d.contains("paths")) o.data = d["paths"].get<std::vector<std::string>>();
  FitResult r;
  r.model = field(m, "path").get<std::string>();
  r.arch = field(m, "arch").get<std::string>();
  // n_layer x n_head sizes the heatmaps; the rest is printed.
  r.n_layer = int(int_field(m, "n_layer", "model.n_layer", 1, kMaxLayers));
  r.n_head = int(int_field(m, "n_head", "model.n_head", 1, kMaxHeads));
  if (int64_t{r.n_layer} * r.n_head > kMaxLayerHeads)
    fail("model.n_layer x model.n_head = {} x {} is more than {} heads", r.n_layer, r.n_head, kMaxLayerHeads);
  r.n_kv_head = int(int_field(m, "n_kv_head", "model.n_kv_head", 0, kIntMax));
  r.head_dim = int(int_field(m, "head_dim", "model.head_dim", 0, kIntMax));
  r.window = int_field(p, "window", "params.window", kJsonIntMin, kJsonIntMax);
  r.documents = int_field(d, "documents", "data.documents", 0, kJsonIntMax);
  r.tokens = int_field(d, "tokens", "data.tokens", 0, kJsonIntMax);
  r.rows = int_field(d, "rows_analysed", "data.rows_analysed", 0, kJsonIntMax);
  r.skipped_short = json_int_or(d, "documents_skipped_short", "data.documents_skipped_short", 0, 0, kJsonIntMax);
  r.cut = json_int_or(d, "documents_cut_to_max_tokens", "data.documents_cut_to_max_tokens", 0, 0, kJsonIntMax);
  r.bootstrap_unit = p.value("bootstrap_unit", std::string("documents"));
  for (const json& hj : field(j, "heads")) {
    const std::string at = fmt::format("heads[{}]", r.heads.size());
    HeadFit h;
    // Indices of the heatmaps: inside the model's n_layer x n_head.
    h.layer = int(int_field(hj, "layer", at + ".layer", 0, r.n_layer - 1));
    h.head = int(int_field(hj, "head", at + ".head", 0, r.n_head - 1));
    h.kv_head = int(int_field(hj, "kv_head", at + ".kv_head", 0, kIntMax));
    const json& bins = field(hj, "bins");
    h.bin_lo = json_int_array(field(bins, "n_lo"), at + ".bins.n_lo", kJsonIntMin, kJsonIntMax);
    h.bin_n = nums(field(bins, "n_mean"));
    h.bin_rows = json_int_array(field(bins, "rows"), at + ".bins.rows", kJsonIntMin, kJsonIntMax);
    for (const json& k : field(hj, "k_eps_mean")) h.bin_k.push_back(nums(field(k, "k")));
    const json& b = field(hj, "budget");
    h.dyn_alpha = num(b, "alpha");
    h.dyn_C = num(b, "C");
    h.k_fixed = json_int_or(b, "k_fixed", at + ".budget.k_fixed", 0, kJsonIntMin, kJsonIntMax);
    for (const json& ru : field(hj, "rules")) {
      h.err.push_back(nums(field(ru, "err")));
      h.rel.push_back(nums(field(ru, "rel_err")));
      h.tau.push_back(nums(field(ru, "tau")));
      h.err_all.push_back(num(ru, "err_all"));
      h.rel_all.push_back(num(ru, "rel_err_all"));
      h.tau_all.push_back(num(ru, "tau_all"));
    }
    if (h.err.size() != kFitRules)
      fail("head L{}H{}: {} budget rules, expected {}", h.layer, h.head, h.err.size(), int(kFitRules));
    if (h.bin_k.size() != o.eps.size()) fail("head L{}H{}: {} k_eps series for {} eps", h.layer, h.head, h.bin_k.size(), o.eps.size());
    h.fits.assign(o.eps.size(), PowerFit{kNaN, kNaN, kNaN, kNaN, kNaN, o.level});
    h.verdict.assign(o.eps.size(), "too few lengths");
    r.heads.push_back(std::move(h));
  }
  size_t fi = 0;
  for (const json& f : field(j, "fits")) {
    const std::string at = fmt::format("fits[{}]", fi++);
    const int64_t layer = int_field(f, "layer", at + ".layer", kJsonIntMin, kJsonIntMax);
    const int64_t head = int_field(f, "head", at + ".head", kJsonIntMin, kJsonIntMax);
    const double eps = num(field(f, "eps"));
    for (HeadFit& h : r.heads) {
      if (h.layer != layer || h.head != head) continue;
      for (size_t e = 0; e < o.eps.size(); ++e) {
        if (o.eps[e] != eps) continue;
        PowerFit& pf = h.fits[e];
        pf.C = num(field(f, "C"));
        pf.C_lo = num(field(f, "C_ci").at(0));
        pf.C_hi = num(field(f, "C_ci").at(1));
        pf.log_A = std::log(num(field(f, "A")));
        pf.r2 = num(field(f, "r2"));
        h.verdict[e] = field(f, "verdict").get<std::string>();
      }
    }
  }
  return fit_html(o, r);
}

}  // namespace attnsparse::theory
