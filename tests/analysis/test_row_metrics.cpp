// Row metrics against a naive implementation written here (full sort, double sums) on
// llama.cpp's attention probabilities and on synthetic rows with ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "analysis/row_metrics.h"
#include "shared_data.h"

using namespace attnsparse::analysis;
using namespace attnsparse::testing_support;

namespace {

struct Naive {
  std::array<int32_t, 4> width{};
  double entropy = 0, sink = 0;
  bool argmax = false, top5 = false;
  std::array<double, 5> recency{};
  std::vector<int32_t> top32;
};

Naive naive_metrics(const std::vector<float>& row, int64_t t) {
  const int64_t n = int64_t(row.size());
  Naive r;
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  for (int li = 0; li < 4; ++li) {
    double cum = 0;
    r.width[li] = int32_t(n);
    for (int64_t k = 0; k < n; ++k) {
      cum += row[idx[k]];
      if (cum >= kWidthLevels[li]) {
        r.width[li] = int32_t(k + 1);
        break;
      }
    }
  }
  for (float p : row)
    if (p > 0) r.entropy -= double(p) * std::log(double(p));
  r.sink = row[0];
  r.argmax = idx[0] == 0;
  r.top5 = std::find(idx.begin(), idx.begin() + std::min<int64_t>(5, n), 0) != idx.begin() + std::min<int64_t>(5, n);
  for (int wi = 0; wi < 5; ++wi)
    for (int64_t j = 0; j < n; ++j)
      if (j > t - kRecencyWindows[wi]) r.recency[wi] += row[j];
  r.top32.assign(idx.begin(), idx.begin() + std::min<int64_t>(32, n));
  return r;
}

void expect_same(const std::vector<float>& row, int64_t t, const std::string& where) {
  std::vector<float> scratch;
  const auto m = compute_row_metrics(row.data(), nullptr, int64_t(row.size()), t, scratch);
  const auto ref = naive_metrics(row, t);
  for (int li = 0; li < 4; ++li) ASSERT_EQ(m.width[li], ref.width[li]) << where << " p=" << kWidthLevels[li];
  ASSERT_NEAR(m.entropy, ref.entropy, 1e-4) << where;
  ASSERT_NEAR(m.sink_mass, ref.sink, 1e-7) << where;
  ASSERT_EQ(m.sink_argmax, ref.argmax) << where;
  ASSERT_EQ(m.sink_top5, ref.top5) << where;
  for (int wi = 0; wi < 5; ++wi) ASSERT_NEAR(m.recency[wi], ref.recency[wi], 1e-6) << where << " w=" << kRecencyWindows[wi];
  ASSERT_EQ(topk_indices(row.data(), int64_t(row.size()), 32), ref.top32) << where;
}

}  // namespace

TEST(RowMetrics, MatchNaiveOnLlamaCppAttention) {
  for (std::string c : {"llama-spm-f32.text", "llama-spm-f32.random", "gpt2-f32.random"}) {
    const std::string path = reference_dir() + "/expected/" + c + ".attn.f32";
    REQUIRE_SHARED_FILE(path);
    const auto attn = read_f32(path);
    // attn_shape [n_layer=2, n_head=4, n, n] for every case in manifest.json.
    const int64_t n = int64_t(std::llround(std::sqrt(double(attn.size()) / 8)));
    ASSERT_EQ(size_t(2 * 4 * n * n), attn.size());
    for (int64_t lh = 0; lh < 8; ++lh)
      for (int64_t t = 0; t < n; ++t) {
        const float* r = attn.data() + (lh * n + t) * n;
        std::vector<float> row(r, r + t + 1);
        expect_same(row, t, c + " lh=" + std::to_string(lh) + " t=" + std::to_string(t));
      }
  }
}

TEST(RowMetrics, MatchNaiveOnRowsWithTiesAndLongRows) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t n = 1 + rng() % (trial < 200 ? 300 : 5000);
    std::vector<float> row(n);
    const int kind = trial % 4;
    for (auto& v : row) {
      if (kind == 0) v = float(rng() % 4);                            // heavy ties
      else if (kind == 1) v = std::exp(float(rng() % 1000) / 60.f);   // peaky
      else if (kind == 2) v = 1.f;                                    // uniform
      else v = float(rng() % 100000) / 1e5f;
    }
    double s = 0;
    for (float v : row) s += v;
    if (s == 0) row[0] = 1, s = 1;
    for (auto& v : row) v = float(v / s);
    expect_same(row, n - 1, "trial " + std::to_string(trial));
  }
}

TEST(RowMetrics, ClosedFormsAndKeyPositions) {
  // Uniform row over t+1 keys: W_p = ceil(p (t+1)), H = ln(t+1), R_w = baseline.
  const int64_t n = 256;  // 1/256 is exact in binary, so the cumulative sums are exact
  std::vector<float> row(n, 1.f / n);
  std::vector<float> scratch;
  auto m = compute_row_metrics(row.data(), nullptr, n, n - 1, scratch);
  EXPECT_EQ(m.width[0], 128);  // 128/256 = 0.5 reaches p exactly
  EXPECT_EQ(m.width[1], 231);  // ceil(0.9 * 256)
  EXPECT_EQ(m.width[3], 254);  // ceil(0.99 * 256)
  EXPECT_NEAR(m.entropy, std::log(256.0), 1e-5);
  EXPECT_NEAR(m.norm_entropy(), 1.0, 1e-6);
  for (int wi = 0; wi < 5; ++wi)
    EXPECT_NEAR(m.recency[wi], RowMetrics::recency_baseline(kRecencyWindows[wi], n - 1), 1e-5);
  EXPECT_TRUE(m.sink_argmax);  // every entry ties; key 0 wins ties
  // Sparse key set (an evicting cache): keys at positions {3, 50, 90, 99}, query t = 99.
  std::vector<int32_t> pos{3, 50, 90, 99};
  std::vector<float> p{0.4f, 0.3f, 0.2f, 0.1f};
  auto s = compute_row_metrics(p.data(), pos.data(), 4, 99, scratch);
  EXPECT_EQ(s.sink_mass, 0.0);  // position 0 is not among the keys
  EXPECT_NEAR(s.recency[0], 0.1, 1e-7);   // w=1: position 99
  EXPECT_NEAR(s.recency[1], 0.1, 1e-7);   // w=8: positions > 91
  EXPECT_NEAR(s.recency[2], 0.3, 1e-7);   // w=32: positions > 67
  EXPECT_NEAR(s.recency[3], 0.6, 1e-7);   // w=64: positions > 35
  EXPECT_NEAR(s.recency[4], 1.0, 1e-7);   // w=128
  EXPECT_EQ(s.width[0], 2);
}

namespace attnsparse::analysis {
namespace {

template <typename T>
std::vector<int32_t> naive_topk(const std::vector<T>& v, int k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  idx.resize(std::min<size_t>(size_t(k), idx.size()));
  return idx;
}

}  // namespace

TEST(RowMetrics, TopkIndicesMatchAStableSortOnFloatAndInt64Rows) {
  // Rows whose later entries keep entering the kept set (ascending), never do (descending
  // after a peak), plateaus of equal values (ties go to the lower index), one value
  // throughout (every entry reaches the chunk-maxima bound) and noise, at lengths below,
  // at and above k and the 4k chunks the bound is taken over.
  std::mt19937_64 rng(21);
  for (int n : {1, 5, 16, 17, 31, 32, 33, 100, 127, 128, 129, 257, 1000, 4099}) {
    for (int shape = 0; shape < 5; ++shape) {
      std::vector<float> f(n);
      std::vector<int64_t> q(n);
      for (int j = 0; j < n; ++j) {
        const double x = shape == 0   ? j
                         : shape == 1 ? n - j
                         : shape == 2 ? double((j * 7) % 5)
                         : shape == 3 ? 0.25
                                      : std::uniform_real_distribution<double>(0, 1)(rng);
        f[j] = float(x);
        q[j] = int64_t(x * 1000);
      }
      for (int k : {1, 8, 32, 64}) {
        EXPECT_EQ(topk_indices(f.data(), n, k), naive_topk(f, k)) << "float n " << n << " shape " << shape << " k " << k;
        EXPECT_EQ(topk_indices(q.data(), n, k), naive_topk(q, k)) << "int64 n " << n << " shape " << shape << " k " << k;
      }
    }
  }
}

}  // namespace attnsparse::analysis
