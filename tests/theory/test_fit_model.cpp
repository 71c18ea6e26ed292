// `theory fit` on the tiny reference models: k_eps of real attention rows against
// llama.cpp's attention matrices, and planted structure (uniform attention: k_eps and
// the budget errors known in closed form from the values; peaked attention: collapse).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/shared_data.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/gguf_encode.h"
#include "model/model.h"
#include "support/run_process.h"
#include "theory/fit_model.h"

namespace attnsparse::theory {
namespace {

namespace fs = std::filesystem;
using attnsparse::testing::ProcessResult;
using attnsparse::testing::run_cli;
using testing_support::read_f32;
using testing_support::reference_dir;

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("attnsparse_fit_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The reference token ids as a .tok document.
fs::path tok_file(const std::string& reference_case, const fs::path& dir) {
  const fs::path dst = dir / (reference_case + ".tok");
  fs::copy_file(reference_dir() + "/expected/" + reference_case + ".tokens.txt", dst,
                fs::copy_options::overwrite_existing);
  return dst;
}

// A copy of an f32 GGUF model with every attn_q weight multiplied by `q_scale`.
void write_scaled_q(const std::string& src, const fs::path& dst, float q_scale) {
  const GgufFile in(src);
  GgufWriter out;
  for (const auto& [key, value] : in.metadata()) out.set(key, value);
  for (const auto& t : in.tensors()) {
    if (t.name.find("attn_q.weight") != std::string::npos) {
      ASSERT_EQ(t.dtype, DType::F32);
      std::vector<float> w(t.numel());
      std::memcpy(w.data(), t.data, w.size() * sizeof(float));
      for (auto& x : w) x *= q_scale;
      add_f32_tensor(out, t.name, DType::F32, t.shape, w.data());
    } else {
      out.add_tensor_raw(t.name, t.dtype, t.shape, t.data, t.nbytes);
    }
  }
  out.write(dst.string());
}

int64_t brute_k_eps(std::vector<double> a, double eps) {
  const double total = std::accumulate(a.begin(), a.end(), 0.0);
  std::sort(a.begin(), a.end(), std::greater<>());
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    s += a[i];
    if (s >= (1 - eps) * total) return int64_t(i + 1);
  }
  return int64_t(a.size());
}

double slope(const std::vector<double>& x, const std::vector<double>& y) {
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += std::log(x[i]) / x.size(), my += std::log(y[i]) / y.size();
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < x.size(); ++i)
    sxy += (std::log(x[i]) - mx) * (std::log(y[i]) - my), sxx += std::pow(std::log(x[i]) - mx, 2);
  return sxy / sxx;
}

FitOptions every_row(const std::string& model, const fs::path& data) {
  FitOptions o;
  o.model_path = model;
  o.data = {data.string()};
  o.min_n = 16;
  o.rows_per_bin = 0;  // every row
  o.bootstrap = 50;
  return o;
}

TEST(FitModel, KEpsOfRealRowsMatchLlamaCpp) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  const std::string attn_path = reference_dir() + "/expected/llama-spm-f32.random.attn.f32";
  REQUIRE_SHARED_FILE(model);
  REQUIRE_SHARED_FILE(attn_path);
  const fs::path dir = temp_dir("ref");
  const FitResult res = fit_model(every_row(model, tok_file("llama-spm-f32.random", dir)));
  const int L = 2, H = 4, T = 300;
  const std::vector<float> attn = read_f32(attn_path);
  ASSERT_EQ(attn.size(), size_t(L) * H * T * T);
  ASSERT_EQ(res.heads.size(), size_t(L * H));
  EXPECT_EQ(res.rows, int64_t(L) * H * (T - 15));
  const std::vector<double> eps = {0.01, 0.05};
  for (const auto& h : res.heads) {
    // Bins [16,32) [32,64) [64,128) [128,256) [256,300].
    ASSERT_EQ(h.bin_lo, (std::vector<int64_t>{16, 32, 64, 128, 256}));
    for (size_t e = 0; e < eps.size(); ++e) {
      std::vector<double> bn, bk;
      for (int64_t lo = 16; lo <= T; lo *= 2) {
        double sn = 0, sk = 0, c = 0;
        for (int64_t n = lo; n < std::min<int64_t>(2 * lo, T + 1); ++n) {
          const int64_t t = n - 1;
          const float* row = attn.data() + ((size_t(h.layer) * H + h.head) * T + t) * T;
          sk += double(brute_k_eps(std::vector<double>(row, row + n), eps[e]));
          sn += double(n), c += 1;
        }
        bn.push_back(sn / c), bk.push_back(sk / c);
      }
      for (size_t b = 0; b < bn.size(); ++b) {
        EXPECT_NEAR(h.bin_n[b], bn[b], 1e-9);
        // Probabilities agree to ~1e-5 (README); a row's k_eps can flip by one where its
        // cumulative mass passes 1 - eps within that. Allow a 2% share of rows flipping.
        EXPECT_NEAR(h.bin_k[e][b], bk[b], 0.02 + 0.002 * bk[b]) << "L" << h.layer << "H" << h.head << " bin " << b;
      }
      EXPECT_NEAR(h.fits[e].C, slope(bn, bk), 0.005) << "L" << h.layer << "H" << h.head;
      EXPECT_TRUE(h.fits[e].C_lo <= h.fits[e].C && h.fits[e].C <= h.fits[e].C_hi);
    }
  }
  fs::remove_all(dir);
}

// W_q = 0: every score is 0, every row uniform. Then k_eps = ceil((1-eps) n) (up to one
// key of float rounding), C ~ 1 (dense), and the errors of the budget rules follow from
// the values alone: o = mean of v_0..v_{n-1}, o_G = mean over G (top-k ties go to the
// lowest indices, so top-k = the first k keys; the window = sinks + the most recent).
TEST(FitModel, PlantedUniformAttention) {
  const std::string src = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(src);
  const fs::path dir = temp_dir("uniform");
  const fs::path model = dir / "uniform.gguf";
  write_scaled_q(src, model, 0.0f);
  const fs::path data = tok_file("llama-spm-f32.random", dir);
  FitOptions o = every_row(model.string(), data);
  const FitResult res = fit_model(o);
  const int T = 300;

  // Values from our own forward pass (the KV cache), for the brute-force errors.
  auto m = Model::load(model.string());
  const auto& cfg = m->config();
  std::vector<int32_t> tokens;
  {
    std::ifstream in(data);
    for (int32_t t; in >> t;) tokens.push_back(t);
  }
  ASSERT_EQ(int(tokens.size()), T);
  KVCache cache = m->make_cache(T);
  ForwardOptions fo;
  fo.no_logits = true;
  std::vector<float> logits;
  m->forward(tokens, cache, fo, logits);
  const int D = int(cfg.head_dim), KVH = int(cfg.n_kv_head), H = int(cfg.n_head);

  for (const auto& h : res.heads) {
    for (size_t e = 0; e < o.eps.size(); ++e) {
      std::vector<double> bk;
      for (size_t b = 0; b < h.bin_lo.size(); ++b) {
        double sk = 0, c = 0;
        for (int64_t n = h.bin_lo[b]; n < std::min<int64_t>(2 * h.bin_lo[b], T + 1); ++n)
          sk += std::ceil((1 - o.eps[e]) * double(n) - 1e-9), c += 1;
        bk.push_back(sk / c);
        EXPECT_GE(h.bin_k[e][b], bk.back() - 1e-9);
        EXPECT_LE(h.bin_k[e][b], bk.back() + 1.0);
      }
      EXPECT_NEAR(h.fits[e].C, slope(h.bin_n, bk), 0.01);
      EXPECT_GT(h.fits[e].C, 0.98);
      EXPECT_EQ(h.verdict[e], "dense (C ~ 1)");
    }
    // Budgets: k(n) = ceil(alpha n^C); k_fixed = the mean of k(n) over n = 16..300.
    ASSERT_TRUE(std::isfinite(h.dyn_C));
    auto k_dyn = [&](int64_t n) {
      return std::clamp<int64_t>(int64_t(std::ceil(h.dyn_alpha * std::pow(double(n), h.dyn_C) - 1e-9)), 1, n);
    };
    double cost = 0;
    for (int64_t n = 16; n <= T; ++n) cost += double(k_dyn(n));
    EXPECT_EQ(h.k_fixed, std::llround(cost / (T - 15)));
    const int kvh = h.head / (H / KVH);
    auto v = [&](int64_t j, int c) { return double(cache.v[h.layer][size_t(j) * KVH * D + size_t(kvh) * D + c]); };
    for (int rule = 0; rule < kFitRules; ++rule) {
      for (size_t b = 0; b < h.bin_lo.size(); ++b) {
        double se = 0, cnt = 0;
        for (int64_t n = h.bin_lo[b]; n < std::min<int64_t>(2 * h.bin_lo[b], T + 1); ++n) {
          const bool dyn = rule == kTopkDynamic || rule == kWindowDynamic;
          const int64_t k = std::min<int64_t>(dyn ? k_dyn(n) : h.k_fixed, n);
          std::vector<int64_t> G;
          if (rule == kTopkDynamic || rule == kTopkFixed) {
            for (int64_t j = 0; j < k; ++j) G.push_back(j);
          } else {
            const int64_t sink = std::min<int64_t>(4, k / 2);
            for (int64_t j = 0; j < sink; ++j) G.push_back(j);
            for (int64_t j = std::max(sink, n - (k - sink)); j < n; ++j) G.push_back(j);
          }
          double e2 = 0;
          for (int c = 0; c < D; ++c) {
            double o_all = 0, o_g = 0;
            for (int64_t j = 0; j < n; ++j) o_all += v(j, c);
            for (int64_t j : G) o_g += v(j, c);
            e2 += std::pow(o_all / double(n) - o_g / double(G.size()), 2);
          }
          se += std::sqrt(e2), cnt += 1;
        }
        EXPECT_NEAR(h.err[rule][b], se / cnt, 2e-4 * (1 + se / cnt))
            << fit_rule_name(rule) << " L" << h.layer << "H" << h.head << " bin " << b;
        // Uniform rows: the dropped mass is exactly 1 - |G| / n.
      }
    }
  }
  fs::remove_all(dir);
}

// Q scaled by 1e3: every row puts (almost) all mass on its arg-max key, so k_eps stays
// O(1) at every length: collapsed.
TEST(FitModel, PlantedPeakedAttentionCollapses) {
  const std::string src = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(src);
  const fs::path dir = temp_dir("peaked");
  const fs::path model = dir / "peaked.gguf";
  write_scaled_q(src, model, 1000.0f);
  const FitResult res = fit_model(every_row(model.string(), tok_file("llama-spm-f32.random", dir)));
  for (const auto& h : res.heads) {
    for (size_t e = 0; e < 2; ++e) {
      for (double k : h.bin_k[e]) EXPECT_LT(k, 1.5) << "L" << h.layer << "H" << h.head;
      EXPECT_EQ(h.verdict[e], "collapsed (O(1) entries)") << "L" << h.layer << "H" << h.head << " C " << h.fits[e].C;
    }
    // With one key carrying the mass, the oracle top-k keeps it: tiny error.
    EXPECT_LT(h.rel_all[kTopkDynamic], 1e-2);
  }
  fs::remove_all(dir);
}

// gemma2 reference (window 32 on layer 0, layer 1 global): a windowed layer's rows hold
// min(t+1, 32) keys, are binned by that length, and their k_eps equal a brute force over
// llama.cpp's attention rows (exactly 0 outside the window).
TEST(FitModel, WindowedLayerRowsAreMeasuredOverTheVisibleKeys) {
  const std::string arch = reference_dir() + "/arch";
  const std::string model = arch + "/models/gemma2-f16.gguf";
  const std::string attn_path = arch + "/expected/gemma2-f16.text.attn.f32";
  REQUIRE_SHARED_FILE(model);
  REQUIRE_SHARED_FILE(attn_path);
  const fs::path dir = temp_dir("window");
  const fs::path data = dir / "text.tok";
  fs::copy_file(arch + "/expected/gemma2-f16.text.tokens.txt", data, fs::copy_options::overwrite_existing);
  const FitResult res = fit_model(every_row(model, data));
  const int H = 4, T = 142, W = 32;
  const std::vector<float> attn = read_f32(attn_path);
  ASSERT_EQ(attn.size(), size_t(2) * H * T * T);
  const std::vector<double> eps = {0.01, 0.05};
  for (const auto& h : res.heads) {
    const int64_t window = h.layer == 0 ? W : 0;
    EXPECT_EQ(h.window, window);
    // Rows t = 15..141 by their length v = min(t+1, 32) (layer 0) or t+1 (layer 1).
    std::map<int64_t, std::vector<int64_t>> bins;  // bin lower edge -> positions
    for (int64_t t = 15; t < T; ++t) {
      const int64_t v = window > 0 ? std::min<int64_t>(t + 1, W) : t + 1;
      int64_t lo = 16;
      while (2 * lo <= v) lo *= 2;
      bins[lo].push_back(t);
    }
    std::vector<int64_t> edges;
    for (const auto& [lo, _] : bins) edges.push_back(lo);
    ASSERT_EQ(h.bin_lo, edges) << "L" << h.layer << "H" << h.head;
    size_t b = 0;
    for (const auto& [lo, positions] : bins) {
      double sn = 0;
      std::vector<double> sk(eps.size(), 0.0);
      for (int64_t t : positions) {
        const int64_t v = window > 0 ? std::min<int64_t>(t + 1, W) : t + 1;
        const float* row = attn.data() + ((size_t(h.layer) * H + h.head) * T + t) * T;
        for (int64_t j = 0; j < t + 1 - v; ++j) ASSERT_EQ(row[j], 0.f);
        sn += double(v);
        for (size_t e = 0; e < eps.size(); ++e)
          sk[e] += double(brute_k_eps(std::vector<double>(row + (t + 1 - v), row + t + 1), eps[e]));
      }
      const double c = double(positions.size());
      EXPECT_NEAR(h.bin_n[b], sn / c, 1e-9) << "L" << h.layer << " bin " << lo;
      for (size_t e = 0; e < eps.size(); ++e)
        EXPECT_NEAR(h.bin_k[e][b], sk[e] / c, 0.02 + 0.002 * sk[e] / c) << "L" << h.layer << "H" << h.head << " bin " << lo;
      ++b;
    }
    // The windowed layer's longest bin holds every row from t = 31 on, at n = 32.
    if (window > 0) {
      EXPECT_EQ(h.bin_lo.back(), 32);
      EXPECT_EQ(h.bin_rows.back(), T - 31);
    }
  }
  fs::remove_all(dir);
}

TEST(FitModel, VerdictRules) {
  FitOptions o;
  PowerFit f;
  f.C = 0.6, f.C_lo = 0.5, f.C_hi = 0.7, f.r2 = 0.99;
  EXPECT_EQ(fit_verdict(f, 5, o), "n^C-sparse");
  EXPECT_EQ(fit_verdict(f, 2, o), "too few lengths");
  f.r2 = 0.5;
  EXPECT_EQ(fit_verdict(f, 5, o), "no clean power law");
  f.C = 0.97, f.C_lo = 0.9, f.C_hi = 1.05;
  EXPECT_EQ(fit_verdict(f, 5, o), "dense (C ~ 1)");
  f.C = 0.02, f.C_lo = -0.05, f.C_hi = 0.1;
  EXPECT_EQ(fit_verdict(f, 5, o), "collapsed (O(1) entries)");
  f.C = NAN;
  EXPECT_EQ(fit_verdict(f, 5, o), "too few lengths");
}

TEST(FitModel, CliWritesJsonAndHtmlAndFailsCleanly) {
  const std::string model = reference_dir() + "/models/qwen2-f16.gguf";
  REQUIRE_SHARED_FILE(model);
  const fs::path dir = temp_dir("cli");
  const std::string text = reference_dir() + "/expected/text_a.txt";
  const ProcessResult ok = run_cli("theory fit " + model + " --data " + text + " --min-n 8 --rows-per-bin 8 --bootstrap 20 "
                               "--threads 2 --out " + (dir / "out").string());
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.err.find("pass 2/2"), std::string::npos);
  std::ifstream jin(dir / "out" / "theory_fit.json");
  const auto j = nlohmann::json::parse(jin);
  EXPECT_EQ(j["model"]["arch"], "qwen2");
  ASSERT_EQ(j["fits"].size(), size_t(2 * 4 * 2));  // layers x heads x eps
  for (const auto& f : j["fits"]) {
    ASSERT_TRUE(f.contains("layer") && f.contains("head") && f.contains("eps") && f.contains("C") && f.contains("verdict"));
    ASSERT_EQ(f["C_ci"].size(), 2u);
  }
  EXPECT_EQ(j["heads"][0]["rules"].size(), size_t(kFitRules));
  EXPECT_TRUE(fs::exists(dir / "out" / "theory_fit.html"));

  const ProcessResult bad = run_cli("theory fit " + model + " --data " + (dir / "missing.txt").string() + " --out " +
                                    (dir / "bad").string());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("missing.txt"), std::string::npos) << bad.err;
  // One error line (progress notes may precede it).
  EXPECT_EQ(bad.err.find("error:"), bad.err.rfind("error:")) << bad.err;
  EXPECT_EQ(bad.err.find('\n', bad.err.find("error:")), bad.err.size() - 1) << bad.err;
  EXPECT_FALSE(fs::exists(dir / "bad" / "theory_fit.json"));
  const ProcessResult help = run_cli("theory fit --help");
  EXPECT_NE(help.out.find("Example"), std::string::npos);
  fs::remove_all(dir);
}

// Hostile numbers: each is refused before the model loads, with one line naming the option
// and its range, a non-zero status and no output (--min-n 2^63-1 once overflowed 4 x
// --min-n; the rest saturated, wrapped or were silently read as 0; --bootstrap 0 printed
// C [C, C] as an interval).
TEST(FitModel, CliRefusesHostileNumbersWithTheOptionAndItsRange) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(model);
  const fs::path dir = temp_dir("hostile");
  const fs::path text = dir / "story.txt";
  {
    std::ofstream t(text);
    for (int i = 0; i < 12; ++i) t << "Once upon a time a small cat sat by the river and watched the boats go by. ";
  }
  const fs::path out = dir / "out";
  const std::string base = "theory fit " + model + " --data " + text.string() + " --threads 1 --out " + out.string() + " ";
  struct Case {
    std::string args, option, range;
  };
  const std::vector<Case> cases = {
      {"--max-tokens 64 --min-n 9223372036854775807", "--min-n", "[2, 16]"},
      {"--max-tokens 64 --min-n 17", "--min-n", "[2, 16]"},
      {"--max-tokens 64 --min-n ''", "--min-n", "an empty value is not allowed"},
      {"--max-tokens 18446744073709551616", "--max-tokens", "[8, 16777216]"},
      {"--max-tokens 1e3", "--max-tokens", "[8, 16777216]"},
      {"--max-tokens ''", "--max-tokens", "an empty value is not allowed"},
      {"--seed 18446744073709551616", "--seed", "[0, 9223372036854775807]"},
      {"--seed -1", "--seed", "[0, 9223372036854775807]"},
      {"--seed ''", "--seed", "an empty value is not allowed"},
      {"--bootstrap ''", "--bootstrap", "an empty value is not allowed"},
      {"--bootstrap 0", "--bootstrap", "[20, 100000]"},
      {"--docs ''", "--docs", "an empty value is not allowed"},
      {"--docs -1", "--docs", "[0, 1000000]"},
      {"--rows-per-bin ''", "--rows-per-bin", "an empty value is not allowed"},
      {"--rows-per-bin 99999999999", "--rows-per-bin", "[0, 16777216]"},
      {"--eps nan", "--eps", "not a finite number"},
  };
  for (const Case& c : cases) {
    const ProcessResult r = run_cli(base + c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.err.find("error: " + c.option), std::string::npos) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.range), std::string::npos) << c.args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << ": " << r.err;
    EXPECT_FALSE(fs::exists(out)) << c.args;
  }
  // The same document with valid numbers runs, and its interval comes from 20 resamples.
  const ProcessResult ok = run_cli(base + "--max-tokens 64 --min-n 8 --rows-per-bin 4 --bootstrap 20");
  ASSERT_EQ(ok.status, 0) << ok.err;
  std::ifstream jin(out / "theory_fit.json");
  const auto j = nlohmann::json::parse(jin);
  EXPECT_EQ(j["params"]["bootstrap"].get<int>(), 20);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace attnsparse::theory
