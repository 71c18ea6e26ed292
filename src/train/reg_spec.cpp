#include "train/reg_spec.h"

#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "core/error.h"

namespace attnsparse::train {
namespace {

double parse_number(const std::string& spec, const std::string& key, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v))
    fail_usage("--reg '{}': {}={} is not a number", spec, key, text);
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

RegSpec RegSpec::parse(const std::string& spec) {
  RegSpec r;
  if (spec.empty() || spec == "none") return r;
  auto colon = spec.find(':');
  std::string kind = spec.substr(0, colon);
  if (kind == "topk") r.kind = Kind::TopK;
  else if (kind == "dyn") r.kind = Kind::Dynamic;
  else fail_usage("--reg '{}': unknown kind '{}' (expected topk:..., dyn:... or none)", spec, kind);
  if (colon == std::string::npos) fail_usage("--reg '{}': missing options, e.g. topk:k=8,lambda=0.1", spec);
  bool have_lambda = false;
  // Items are key=value separated by commas; a bare integer continues a layers=/heads= list.
  std::vector<int64_t>* list = nullptr;
  for (const std::string& item : split(spec.substr(colon + 1), ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos) {
      if (!list) fail_usage("--reg '{}': '{}' is not key=value", spec, item);
      double v = parse_number(spec, "index", item);
      if (v < 0 || v != std::floor(v)) fail_usage("--reg '{}': bad index '{}'", spec, item);
      list->push_back(static_cast<int64_t>(v));
      continue;
    }
    std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    list = nullptr;
    if (key == "layers" || key == "heads") {
      list = key == "layers" ? &r.layers : &r.heads;
      list->clear();
      double v = parse_number(spec, key, val);
      if (v < 0 || v != std::floor(v)) fail_usage("--reg '{}': bad index '{}'", spec, val);
      list->push_back(static_cast<int64_t>(v));
      continue;
    }
    double v = parse_number(spec, key, val);
    if (key == "k" && r.kind == Kind::TopK) {
      if (v < 1 || v != std::floor(v)) fail_usage("--reg '{}': k must be a positive integer", spec);
      r.k = static_cast<int64_t>(v);
    } else if (key == "alpha" && r.kind == Kind::Dynamic) {
      if (v <= 0) fail_usage("--reg '{}': alpha must be > 0", spec);
      r.alpha = v;
    } else if (key == "C" && r.kind == Kind::Dynamic) {
      if (v < 0 || v > 1) fail_usage("--reg '{}': C must be in [0, 1]", spec);
      r.C = v;
    } else if (key == "lambda") {
      if (v < 0) fail_usage("--reg '{}': lambda must be >= 0", spec);
      r.lambda = v;
      have_lambda = true;
    } else if (key == "hinge" || key == "eps") {
      if (v < 0 || v >= 1) fail_usage("--reg '{}': hinge margin must be in [0, 1)", spec);
      r.hinge = true;
      r.eps = v;
    } else {
      fail_usage("--reg '{}': unknown option '{}' for {}", spec, key, kind);
    }
  }
  if (!have_lambda) fail_usage("--reg '{}': lambda= is required", spec);
  return r;
}

std::string RegSpec::to_string() const {
  if (kind == Kind::None) return "none";
  std::string s = kind == Kind::TopK ? fmt::format("topk:k={}", k)
                                     : fmt::format("dyn:alpha={:g},C={:g}", alpha, C);
  s += fmt::format(",lambda={:g}", lambda);
  if (hinge) s += fmt::format(",hinge={:g}", eps);
  if (!layers.empty()) s += ",layers=" + join_ints(layers);
  if (!heads.empty()) s += ",heads=" + join_ints(heads);
  return s;
}

int64_t RegSpec::k_for_row(int64_t t) const {
  if (kind == Kind::Dynamic) {
    // ceil(α·n^C); the small tolerance keeps exact powers (e.g. sqrt(16) = 4) exact.
    double v = alpha * std::pow(static_cast<double>(t + 1), C);
    int64_t k = static_cast<int64_t>(std::ceil(v - 1e-9));
    return k < 1 ? 1 : k;
  }
  return k;
}

bool RegSpec::uses_layer(int64_t layer) const {
  if (layers.empty()) return true;
  for (auto l : layers) if (l == layer) return true;
  return false;
}

bool RegSpec::uses_head(int64_t head) const {
  if (heads.empty()) return true;
  for (auto h : heads) if (h == head) return true;
  return false;
}

}  // namespace attnsparse::train
