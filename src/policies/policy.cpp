// Policy spec strings: parsing, canonical form, and the per-row content selection.
#include "policies/policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/error.h"
#include "policies/checked.h"

namespace attnsparse::policies {

namespace {

struct Parser {
  std::string_view spec;

  [[noreturn]] void bad(const std::string& problem) const {
    fail_usage("policy '{}': {} (see --help for the policy syntax)", spec, problem);
  }

  // A size or position parameter in [min, kMaxPolicyParam].
  int64_t integer(std::string_view text, const char* what, int64_t min) const {
    const bool digits = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) bad(fmt::format("{} '{}' is not a non-negative integer", what, text));
    const std::optional<uint64_t> v = parse_decimal(text);
    if (!v || *v > static_cast<uint64_t>(kMaxPolicyParam))
      bad(fmt::format("{} must be at most {} (got {})", what, kMaxPolicyParam, text));
    if (static_cast<int64_t>(*v) < min) bad(fmt::format("{} must be >= {} (got {})", what, min, *v));
    return static_cast<int64_t>(*v);
  }

  // Any uint64 (seeds).
  std::optional<uint64_t> unsigned_integer(std::string_view text, const char* what) const {
    const bool digits = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) bad(fmt::format("{} '{}' is not a non-negative integer", what, text));
    const std::optional<uint64_t> v = parse_decimal(text);
    if (!v) bad(fmt::format("{} '{}' is out of range (at most 18446744073709551615)", what, text));
    return v;
  }

  double real(std::string_view text, const char* what) const {
    const std::string s(text);
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (s.empty() || used != s.size() || !std::isfinite(v)) bad(fmt::format("{} '{}' is not a number", what, text));
    return v;
  }

  // "a:1,b:2" (or "a=1,b=2") -> {a: "1", b: "2"}; every key must be in `allowed`.
  std::map<std::string, std::string> fields(std::string_view text,
                                            std::initializer_list<const char*> allowed) const {
    std::map<std::string, std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find(',', start);
      if (end == std::string_view::npos) end = text.size();
      const std::string_view item = text.substr(start, end - start);
      const size_t sep = item.find_first_of(":=");
      if (sep == std::string_view::npos) bad(fmt::format("'{}' is not key:value", item));
      const std::string key(item.substr(0, sep));
      if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }) == allowed.end()) {
        std::string names;
        for (const char* a : allowed) names += std::string(names.empty() ? "" : ", ") + a;
        bad(fmt::format("unknown field '{}' (expected {})", key, names));
      }
      if (out.count(key)) bad(fmt::format("field '{}' given twice", key));
      out[key] = std::string(item.substr(sep + 1));
      start = end + 1;
    }
    return out;
  }

  std::string need(const std::map<std::string, std::string>& f, const char* key) const {
    auto it = f.find(key);
    if (it == f.end()) bad(fmt::format("missing field '{}'", key));
    return it->second;
  }
};

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// Shortest decimal that round-trips (for canonical specs of real parameters).
std::string real_text(double v) { return fmt::format("{}", v); }

}  // namespace

Policy Policy::parse(std::string_view raw) {
  const std::string text = trim(raw);
  Parser ps{raw};
  if (text.empty()) ps.bad("empty policy");
  Policy p;
  const size_t eq = text.find('=');
  const std::string name = text.substr(0, eq);
  const std::string_view rest = eq == std::string::npos ? std::string_view() : std::string_view(text).substr(eq + 1);
  auto no_args = [&] {
    if (eq != std::string::npos) ps.bad(fmt::format("'{}' takes no parameters", name));
  };
  auto needs_args = [&] {
    if (eq == std::string::npos || rest.empty()) ps.bad(fmt::format("'{}' needs parameters", name));
  };
  if (name == "dense") {
    no_args();
    p.kind = Kind::Dense;
  } else if (name == "window") {
    needs_args();
    p.kind = Kind::Window;
    p.window = ps.integer(rest, "window", 1);
  } else if (name == "sink") {
    needs_args();
    p.kind = Kind::SinkWindow;
    const size_t comma = rest.find(',');
    if (comma == std::string_view::npos) ps.bad("expected sink=G,window=W");
    p.sink = ps.integer(rest.substr(0, comma), "sink", 0);
    const auto f = ps.fields(rest.substr(comma + 1), {"window"});
    p.window = ps.integer(ps.need(f, "window"), "window", 1);
  } else if (name == "dilated") {
    needs_args();
    p.kind = Kind::Dilated;
    const size_t colon = rest.find(':');
    if (colon == std::string_view::npos) ps.bad("expected dilated=W:R");
    p.window = ps.integer(rest.substr(0, colon), "dilated window", 1);
    p.rate = ps.integer(rest.substr(colon + 1), "dilation rate", 1);
  } else if (name == "strided") {
    needs_args();
    p.kind = Kind::Strided;
    p.rate = ps.integer(rest, "stride", 1);
  } else if (name == "block") {
    needs_args();
    p.kind = Kind::Block;
    p.rate = ps.integer(rest, "block", 1);
  } else if (name == "bigbird") {
    needs_args();
    p.kind = Kind::BigBird;
    const auto f = ps.fields(rest, {"global", "window", "random", "seed"});
    p.sink = ps.integer(ps.need(f, "global"), "global", 0);
    p.window = ps.integer(ps.need(f, "window"), "window", 1);
    p.random = ps.integer(ps.need(f, "random"), "random", 0);
    p.seed = f.count("seed") ? *ps.unsigned_integer(f.at("seed"), "seed") : 0;
  } else if (name == "topk") {
    needs_args();
    p.kind = Kind::TopK;
    p.k = ps.integer(rest, "k", 1);
  } else if (name == "dyntopk") {
    needs_args();
    p.kind = Kind::DynTopK;
    const auto f = ps.fields(rest, {"alpha", "C"});
    p.alpha = ps.real(ps.need(f, "alpha"), "alpha");
    p.exponent = ps.real(ps.need(f, "C"), "C");
    if (!(p.alpha > 0)) ps.bad("alpha must be > 0");
    if (!(p.exponent >= 0 && p.exponent <= 1)) ps.bad("C must be in [0, 1]");
  } else if (name == "dynwindow") {
    needs_args();
    p.kind = Kind::DynWindow;
    const auto f = ps.fields(rest, {"alpha", "C", "sink"});
    p.alpha = ps.real(ps.need(f, "alpha"), "alpha");
    p.exponent = ps.real(ps.need(f, "C"), "C");
    p.sink = f.count("sink") ? ps.integer(f.at("sink"), "sink", 0) : 4;
    if (!(p.alpha > 0)) ps.bad("alpha must be > 0");
    if (!(p.exponent >= 0 && p.exponent <= 1)) ps.bad("C must be in [0, 1]");
  } else if (name == "topp") {
    needs_args();
    p.kind = Kind::TopP;
    p.p = ps.real(rest, "p");
    if (!(p.p > 0 && p.p <= 1)) ps.bad("p must be in (0, 1]");
  } else if (name == "h2o") {
    needs_args();
    p.kind = Kind::H2O;
    const auto f = ps.fields(rest, {"budget", "recent"});
    p.budget = ps.integer(ps.need(f, "budget"), "budget", 1);
    p.recent = ps.integer(ps.need(f, "recent"), "recent", 0);
    if (p.recent >= p.budget) ps.bad("recent must be smaller than budget");
  } else if (name == "tova") {
    needs_args();
    p.kind = Kind::Tova;
    const auto f = ps.fields(rest, {"budget"});
    p.budget = ps.integer(ps.need(f, "budget"), "budget", 1);
  } else if (name == "snapkv") {
    needs_args();
    p.kind = Kind::SnapKV;
    const auto f = ps.fields(rest, {"budget", "window", "pool"});
    p.budget = ps.integer(ps.need(f, "budget"), "budget", 1);
    p.window = ps.integer(ps.need(f, "window"), "window", 1);
    p.pool = f.count("pool") ? ps.integer(f.at("pool"), "pool", 1) : 1;
    if (p.window >= p.budget) ps.bad("window must be smaller than budget");
  } else if (name == "quest") {
    needs_args();
    p.kind = Kind::Quest;
    const auto f = ps.fields(rest, {"page", "pages"});
    p.page = ps.integer(ps.need(f, "page"), "page", 1);
    p.pages = ps.integer(ps.need(f, "pages"), "pages", 1);
  } else {
    ps.bad(fmt::format("unknown policy '{}'", name));
  }
  return p;
}

std::string Policy::spec() const {
  switch (kind) {
    case Kind::Dense: return "dense";
    case Kind::Window: return fmt::format("window={}", window);
    case Kind::SinkWindow: return fmt::format("sink={},window={}", sink, window);
    case Kind::Dilated: return fmt::format("dilated={}:{}", window, rate);
    case Kind::Strided: return fmt::format("strided={}", rate);
    case Kind::Block: return fmt::format("block={}", rate);
    case Kind::BigBird:
      return fmt::format("bigbird=global:{},window:{},random:{},seed:{}", sink, window, random, seed);
    case Kind::DynWindow:
      return fmt::format("dynwindow=alpha:{},C:{},sink:{}", real_text(alpha), real_text(exponent), sink);
    case Kind::TopK: return fmt::format("topk={}", k);
    case Kind::DynTopK: return fmt::format("dyntopk=alpha:{},C:{}", real_text(alpha), real_text(exponent));
    case Kind::TopP: return fmt::format("topp={}", real_text(p));
    case Kind::Quest: return fmt::format("quest=page:{},pages:{}", page, pages);
    case Kind::H2O: return fmt::format("h2o=budget:{},recent:{}", budget, recent);
    case Kind::Tova: return fmt::format("tova=budget:{}", budget);
    case Kind::SnapKV: return fmt::format("snapkv=budget:{},window:{},pool:{}", budget, window, pool);
  }
  return "?";
}

ops::KeySet Policy::positional_keys() const {
  switch (kind) {
    case Kind::Dense: return ops::KeySet::all();
    case Kind::Window: return ops::KeySet::window(window);
    case Kind::SinkWindow: return ops::KeySet::sink_window(sink, window);
    case Kind::Dilated: return ops::KeySet::dilated(window, rate);
    case Kind::Strided: return ops::KeySet::strided(rate);
    case Kind::Block: return ops::KeySet::block_local(rate);
    default: fail("policy {} has no positional key set", spec());
  }
}

bool Policy::may_need(int64_t pos, int64_t next_query) const {
  const int64_t d = next_query - pos;  // distance to the nearest future query
  switch (kind) {
    case Kind::Window: return d < window;
    case Kind::SinkWindow: return pos < sink || d < window;
    case Kind::Dilated: return d <= saturating_mul(rate, window - 1);
    case Kind::Block: return pos / rate >= next_query / rate;
    default: return true;
  }
}

int64_t Policy::keep_count(int64_t n) const {
  switch (kind) {
    case Kind::TopK: return std::min(k, n);
    case Kind::DynTopK:
    case Kind::DynWindow: {
      if (n <= 0) return 0;
      const double want = std::ceil(alpha * std::pow(static_cast<double>(n), exponent));
      return std::clamp<int64_t>(static_cast<int64_t>(std::min(want, 1e18)), 1, n);
    }
    default: return -1;
  }
}

int64_t Policy::dynwindow_sinks(int64_t n) const { return std::min(sink, keep_count(n) / 2); }

const char* policy_help() {
  return "Policies (docs/methods.md §3; t = query position, p = key position):\n"
         "  dense                                   every causal key\n"
         "  window=W                                p > t-W\n"
         "  sink=G,window=W                         p < G or p > t-W (StreamingLLM)\n"
         "  dilated=W:R                             t-p = R*m, m = 0..W-1\n"
         "  strided=L                               t-p < L or (t-p) mod L = 0\n"
         "  block=B                                 floor(p/B) = floor(t/B)\n"
         "  bigbird=global:G,window:W,random:R,seed:S   p < G, p > t-W, and R random others\n"
         "  dynwindow=alpha:A,C:C[,sink:S]          k = ceil(A*n^C) of the n visible keys:\n"
         "                                          min(S, k/2) sinks (default S 4) + the\n"
         "                                          most recent rest (StreamingLLM)\n"
         "  topk=K                                  the K largest scores (oracle)\n"
         "  dyntopk=alpha:A,C:C                     top ceil(A*n^C) of the n visible keys\n"
         "  topp=P                                  smallest top set with dense mass >= P\n"
         "  quest=page:P,pages:K                    K pages of P keys with the largest\n"
         "                                          upper bound from per-page min/max keys\n"
         "  h2o=budget:B,recent:R                   KV cache of B keys: R most recent + heavy\n"
         "                                          hitters by accumulated attention\n"
         "  tova=budget:B                           KV cache of B keys: drop the key the\n"
         "                                          newest query attends least\n"
         "  snapkv=budget:B,window:W,pool:K         KV cache of B keys: last W keys + the\n"
         "                                          keys the last W queries vote for\n"
         "                                          (max-pooled over K neighbours)\n";
}

void select_from_row(const Policy& policy, const float* probs, const int32_t* index, int64_t n,
                     std::vector<int32_t>& out) {
  if (n <= 0) return;
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // Larger probability first; ties to the lower key index.
  auto before = [&](int32_t a, int32_t b) {
    return probs[a] != probs[b] ? probs[a] > probs[b] : index[a] < index[b];
  };
  int64_t keep = 0;
  if (policy.kind == Kind::TopP) {
    // Grow a candidate top set until its mass reaches p, then find the exact cut in it.
    int64_t cand = std::min<int64_t>(n, 16);
    for (;;) {
      std::nth_element(order.begin(), order.begin() + (cand - 1), order.end(), before);
      double mass = 0;
      for (int64_t x = 0; x < cand; ++x) mass += probs[order[x]];
      if (mass >= policy.p || cand == n) break;
      cand = std::min(n, cand * 4);
    }
    std::sort(order.begin(), order.begin() + cand, before);
    double mass = 0;
    keep = cand;
    for (int64_t x = 0; x < cand; ++x) {
      mass += probs[order[x]];
      if (mass >= policy.p) {
        keep = x + 1;
        break;
      }
    }
  } else {
    keep = policy.keep_count(n);
    if (keep < 0) fail("policy {} does not select from score rows", policy.spec());
    if (keep < n) std::nth_element(order.begin(), order.begin() + (keep - 1), order.end(), before);
  }
  const size_t base = out.size();
  for (int64_t x = 0; x < keep; ++x) out.push_back(index[order[x]]);
  std::sort(out.begin() + base, out.end());
}

}  // namespace attnsparse::policies
