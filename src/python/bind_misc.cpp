// attnsparse.Policy (spec strings parsed with the CLI's errors) and theory.simulate.
#include <fmt/format.h>
#include <omp.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "policies/policy.h"
#include "policies/policy_map.h"
#include "python/common.h"
#include "theory/fit_model.h"
#include "theory/simulate.h"
#include "theory/theory_report.h"

namespace attnsparse::python {

namespace {

using namespace pybind11::literals;
using json = nlohmann::json;

std::vector<double> doubles(const py::object& v, const char* what) {
  if (v.is_none()) return {};
  if (py::isinstance<py::bool_>(v)) fail_usage("{}: expected a number or a list of numbers", what);
  if (py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)) return {v.cast<double>()};
  try {
    return v.cast<std::vector<double>>();
  } catch (const py::cast_error&) {
    fail_usage("{}: expected a number or a list of numbers", what);
  }
}

py::tuple simulate(const py::object& n, const py::object& d, const py::object& sigma, const py::object& norm_bound,
                   const py::object& weight_frobenius, const py::object& logit_c, const py::object& eps, int trials,
                   uint64_t seed, int64_t k_const, const py::object& alpha, const py::object& exponent, int bootstrap,
                   double level, const std::string& center, const std::string& keys, const std::string& select,
                   bool errors, int threads, const py::object& progress) {
  theory::SimOptions opt;
  if (py::isinstance<py::str>(n)) {
    const auto [lo, hi] = theory::parse_n_range(n.cast<std::string>());
    opt.n_lo = lo;
    opt.n_hi = hi;
  } else {
    std::vector<int64_t> v;
    try {
      v = n.cast<std::vector<int64_t>>();
    } catch (const py::cast_error&) {
      fail_usage("n: expected 'LO:HI' or a pair (lo, hi)");
    }
    if (v.size() != 2) fail_usage("n: expected 'LO:HI' or a pair (lo, hi)");
    const auto [lo, hi] = theory::parse_n_range(fmt::format("{}:{}", v[0], v[1]));
    opt.n_lo = lo;
    opt.n_hi = hi;
  }
  if (!eps.is_none()) opt.eps = doubles(eps, "eps");
  opt.trials = trials;
  opt.seed = seed;
  opt.k_const = k_const;
  if (!alpha.is_none()) opt.alpha = alpha.cast<double>();
  if (!exponent.is_none()) opt.exponent = exponent.cast<double>();
  opt.bootstrap = bootstrap;
  opt.level = level;
  if (center != "mean" && center != "median") fail_usage("center must be mean or median (got '{}')", center);
  if (keys != "direct" && keys != "reduced") fail_usage("keys must be direct or reduced (got '{}')", keys);
  if (select != "quickselect" && select != "sort") fail_usage("select must be quickselect or sort (got '{}')", select);
  opt.center = center == "median" ? theory::Center::Median : theory::Center::Mean;
  opt.keys = keys == "reduced" ? theory::KeyMethod::Reduced : theory::KeyMethod::Direct;
  opt.select = select == "sort" ? theory::SelectMethod::FullSort : theory::SelectMethod::Quickselect;
  opt.errors = errors;
  std::vector<int> ds;
  for (double x : doubles(d, "d")) {
    if (x != std::floor(x)) fail_usage("d: {} is not an integer", x);
    ds.push_back(int(x));
  }
  const std::vector<double> sig = doubles(sigma, "sigma"), B = doubles(norm_bound, "norm_bound"),
                            F = doubles(weight_frobenius, "weight_frobenius"), C = doubles(logit_c, "logit_c");
  if (B.empty() != F.empty())
    fail_usage("norm_bound and weight_frobenius go together (got only {})", B.empty() ? "weight_frobenius" : "norm_bound");
  opt.settings = theory::sweep_settings(ds, sig, B, F, C);
  if (opt.settings.empty()) fail_usage("give at least one regime: sigma, norm_bound + weight_frobenius, or logit_c");
  theory::validate(opt);
  const py::object cb = progress;
  opt.progress = [&cb](const std::string& line) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!cb.is_none()) cb(line);
  };
  std::string json_text, html;
  {
    py::gil_scoped_release nogil;
    if (threads > 0) omp_set_num_threads(threads);
    const auto results = theory::simulate(opt);
    json_text = theory::simulation_json(opt, results).dump(1) + "\n";
    html = theory::simulation_html(opt, results);
  }
  return py::make_tuple(json_text, html);
}

py::tuple fit(const std::string& model_path, const std::vector<std::string>& data, const py::object& eps,
              int64_t max_tokens, int64_t min_n, int docs, int rows_per_bin, int bootstrap, double level,
              uint64_t seed, int threads, const py::object& progress) {
  theory::FitOptions opt;
  opt.model_path = model_path;
  opt.data = data;
  if (data.empty()) fail_usage("data: give at least one file or directory");
  if (!eps.is_none()) opt.eps = doubles(eps, "eps");
  opt.max_tokens = max_tokens;
  opt.min_n = min_n;
  opt.max_docs = docs;
  opt.rows_per_bin = rows_per_bin;
  opt.bootstrap = bootstrap;
  opt.level = level;
  opt.seed = seed;
  theory::validate(opt);
  const py::object cb = progress;
  opt.progress = [&cb](const std::string& line) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!cb.is_none()) cb(line);
  };
  std::string json_text, html;
  {
    py::gil_scoped_release nogil;
    if (threads > 0) omp_set_num_threads(threads);
    const theory::FitResult res = theory::fit_model(opt);
    json_text = theory::fit_json(opt, res).dump(1) + "\n";
    html = theory::fit_html(opt, res);
  }
  return py::make_tuple(json_text, html);
}

std::string kind_name(const policies::Policy& p) {
  const std::string s = p.spec();
  const size_t eq = s.find('=');
  return eq == std::string::npos ? s : s.substr(0, eq);
}

}  // namespace

void bind_misc(py::module_& m) {
  py::class_<policies::Policy>(m, "Policy", "A sparse-attention policy parsed from a spec string (docs/policies.md).")
      .def(py::init([](const std::string& spec) { return policies::Policy::parse(spec); }), "spec"_a)
      .def_property_readonly("spec", &policies::Policy::spec)
      .def_property_readonly("kind", &kind_name)
      .def_property_readonly("family",
                             [](const policies::Policy& p) {
                               return p.positional() ? "positional"
                                      : p.content()  ? "content"
                                      : p.paged()    ? "paged"
                                                     : "evicting";
                             })
      .def("keep_count", &policies::Policy::keep_count, "n"_a)
      .def(
          "mask",
          [](const policies::Policy& p, int64_t n) {
            if (!p.has_simple_key_set())
              fail_usage("policy '{}': mask() is for positional policies other than bigbird (this one is {})",
                         p.spec(), p.positional() ? "bigbird" : p.content() ? "content" : p.paged() ? "paged" : "evicting");
            if (n < 1 || n > 65536) fail_usage("mask: n must be in 1..65536, got {}", n);
            const ops::KeySet ks = p.positional_keys();
            py::array_t<bool> out({py::ssize_t(n), py::ssize_t(n)});
            auto m = out.mutable_unchecked<2>();
            for (int64_t t = 0; t < n; ++t)
              for (int64_t j = 0; j < n; ++j) m(t, j) = ks.contains(0, t, t, j, j);
            return out;
          },
          "n"_a, "[n, n] bool: the keys (columns) each query position (row) visits, causal")
      .def(
          "select",
          [](const policies::Policy& p, const py::handle& row) {
            if (!p.content()) fail_usage("policy '{}': select() is for content policies (topk, dyntopk, topp)", p.spec());
            auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(row);
            if (!a || a.ndim() != 1) {
              PyErr_Clear();
              fail_usage("select: expected a 1-D row of probabilities");
            }
            const int64_t n = a.shape(0);
            std::vector<int32_t> index(static_cast<size_t>(n)), kept;
            for (int64_t j = 0; j < n; ++j) index[size_t(j)] = int32_t(j);
            policies::select_from_row(p, a.data(), index.data(), n, kept);
            return py::array_t<int32_t>(py::ssize_t(kept.size()), kept.data());
          },
          "probs"_a, "the key indices a content policy keeps from one row, increasing")
      .def("__eq__", [](const policies::Policy& a, const policies::Policy& b) { return a == b; })
      .def("__hash__", [](const policies::Policy& p) { return py::hash(py::str(p.spec())); })
      .def("__repr__", [](const policies::Policy& p) { return fmt::format("attnsparse.Policy('{}')", p.spec()); })
      .def(py::pickle([](const policies::Policy& p) { return p.spec(); },
                      [](const std::string& s) { return policies::Policy::parse(s); }));
  py::class_<policies::PolicyMap>(
      m, "PolicyMap", "Which policy each (layer, head) uses: 'L0-1:dense;L2-5H0-3:window=64;default:topk=8' or a .json file.")
      .def(py::init([](const std::string& spec) { return policies::PolicyMap::parse(spec); }), "spec"_a)
      .def_property_readonly("spec", &policies::PolicyMap::spec)
      .def("at", &policies::PolicyMap::at, "layer"_a, "head"_a)
      .def("validate", &policies::PolicyMap::validate, "n_layer"_a, "n_head"_a)
      .def("used", &policies::PolicyMap::used, "n_layer"_a, "n_head"_a)
      .def("__repr__", [](const policies::PolicyMap& p) { return fmt::format("attnsparse.PolicyMap('{}')", p.spec()); })
      .def(py::pickle([](const policies::PolicyMap& p) { return p.spec(); },
                      [](const std::string& s) { return policies::PolicyMap::parse(s); }));
  m.attr("POLICY_HELP") = policies::policy_help();
  m.def("simulate", &simulate, "n"_a, "d"_a, "sigma"_a, "norm_bound"_a, "weight_frobenius"_a, "logit_c"_a, "eps"_a,
        "trials"_a, "seed"_a, "k_const"_a, "alpha"_a, "exponent"_a, "bootstrap"_a, "level"_a, "center"_a, "keys"_a,
        "select"_a, "errors"_a, "threads"_a, "progress"_a);
  m.def("fit", &fit, "model_path"_a, "data"_a, "eps"_a, "max_tokens"_a, "min_n"_a, "docs"_a, "rows_per_bin"_a,
        "bootstrap"_a, "level"_a, "seed"_a, "threads"_a, "progress"_a);
}

}  // namespace attnsparse::python
