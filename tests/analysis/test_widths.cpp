// Widths by histogram selection against the definition (full sort, double cumulative sum)
// on rows of every shape the selection treats differently: exactly uniform, flat, peaky,
// long tails down to zero and subnormals, many ties, a few distinct values, long rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "analysis/row_metrics.h"
#include "core/cpu.h"

namespace attnsparse::analysis {
namespace {

std::array<int32_t, 4> naive_widths(const std::vector<float>& row) {
  std::vector<float> v = row;
  std::sort(v.begin(), v.end(), std::greater<float>());
  std::array<int32_t, 4> w{};
  for (int li = 0; li < 4; ++li) {
    double cum = 0;
    w[li] = int32_t(v.size());
    for (size_t k = 0; k < v.size(); ++k) {
      cum += v[k];
      if (cum >= kWidthLevels[li]) {
        w[li] = int32_t(k + 1);
        break;
      }
    }
  }
  return w;
}

std::vector<float> softmax(const std::vector<double>& logits) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  std::vector<double> e(logits.size());
  for (size_t j = 0; j < logits.size(); ++j) total += (e[j] = std::exp(logits[j] - mx));
  std::vector<float> out(logits.size());
  for (size_t j = 0; j < e.size(); ++j) out[j] = float(e[j] / total);
  return out;
}

void expect_matches_definition(const std::vector<float>& row, const std::string& what) {
  std::vector<float> scratch;
  std::array<int32_t, 4> fast{}, hinted{}, quick{};
  widths(row.data(), int64_t(row.size()), kWidthLevels.data(), 4, fast.data(), scratch);
  // The attention kernel hands over each row's largest entry, which skips a pass.
  const float largest = *std::max_element(row.begin(), row.end());
  widths(row.data(), int64_t(row.size()), kWidthLevels.data(), 4, hinted.data(), scratch, &largest);
  widths_quickselect(row.data(), int64_t(row.size()), kWidthLevels.data(), 4, quick.data(), scratch);
  const auto expected = naive_widths(row);
  EXPECT_EQ(fast, expected) << what << " n " << row.size();
  EXPECT_EQ(hinted, expected) << what << " n " << row.size() << " (largest entry given)";
  EXPECT_EQ(quick, expected) << what << " n " << row.size();
}

// Every shape below at the active SIMD level and with the portable fallbacks.
class WidthsAtLevel : public ::testing::TestWithParam<cpu::Level> {};

TEST_P(WidthsAtLevel, MatchTheDefinitionOnRowsOfEveryShape) {
  if (int(cpu::supported()) < int(GetParam())) GTEST_SKIP() << "this CPU lacks the level";
  cpu::ScopedLevel level(GetParam());
  std::mt19937_64 rng(12);
  std::normal_distribution<double> z01(0, 1);
  for (int n : {97, 128, 255, 1000, 4096, 33000}) {
    std::normal_distribution<double> z(0, 1);
    for (double sigma : {0.0, 0.003, 0.05, 0.3, 1.0, 3.0, 10.0, 40.0}) {
      for (int rep = 0; rep < 3; ++rep) {
        std::vector<double> logits(n);
        for (auto& x : logits) x = sigma * z(rng);
        expect_matches_definition(softmax(logits), "gaussian sigma " + std::to_string(sigma));
      }
    }
    // A few distinct values (many exact ties across bucket boundaries).
    std::uniform_int_distribution<int> six(0, 5);
    std::vector<double> logits(n);
    for (auto& x : logits) x = 0.7 * six(rng);
    expect_matches_definition(softmax(logits), "six levels");
    // One dominant key, the rest zeros, subnormals and tiny values.
    std::vector<float> tail(n, 0.f);
    tail[n / 3] = 0.995f;
    for (int j = 0; j < n; j += 3) tail[j] = std::numeric_limits<float>::denorm_min() * float(j + 1);
    for (int j = 1; j < n; j += 7) tail[j] = 1e-4f / float(n);
    expect_matches_definition(tail, "spike with zeros and subnormals");
    // A long flat tail far below the maximum: the levels are crossed among entries more
    // than 2^16 below it (the selection's last, catch-all bucket).
    std::vector<float> far(n);
    far[0] = 1e-6f;
    for (int j = 1; j < n; ++j) far[j] = 1e-12f * float(1 + j % 97);
    double far_total = 0;
    for (float x : far) far_total += x;
    for (float& x : far) x = float(x / far_total);
    expect_matches_definition(far, "tail below the catch-all bucket");
    // Heavy hitters on a flat background (the mass crosses the levels inside the flat part).
    std::vector<double> heavy(n, 0.0);
    for (int j = 0; j < n; j += 50) heavy[j] = 4.0;
    expect_matches_definition(softmax(heavy), "heavy hitters");
    // Values straddling bucket edges: powers of two and their neighbours.
    std::vector<float> edges(n);
    for (int j = 0; j < n; ++j) edges[j] = std::ldexp(1.0f, -(j % 20)) * (j % 3 == 0 ? 1.0f : j % 3 == 1 ? 0.99999994f : 1.0000001f);
    double total = 0;
    for (float x : edges) total += x;
    for (float& x : edges) x = float(x / total);
    expect_matches_definition(edges, "bucket edges");
    // An attention sink over a flat row (neighbours share buckets, the maximum far above
    // them), and the same row sorted (every neighbour in the bucket of the one before).
    std::vector<double> sink(n);
    for (auto& x : sink) x = 0.05 * z01(rng);
    sink[0] = std::log(double(n));
    expect_matches_definition(softmax(sink), "sink over a flat row");
    std::sort(sink.begin(), sink.end());
    expect_matches_definition(softmax(sink), "sorted row");
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, WidthsAtLevel, ::testing::Values(cpu::Level::Portable, cpu::Level::Avx2, cpu::Level::Avx512),
                         [](const auto& info) { return std::string(cpu::name(info.param)); });

TEST(Widths, MatchTheDefinitionOnARowOfOverAMillionKeys) {
  // Longer than one block of the AVX-512 gathering pass's 16-bit counters (32 x 32,767
  // ids): the counts above each boundary bucket carry across blocks. (The other levels
  // have no blocks; the rows of every shape above cover them.)
  if (int(cpu::supported()) < int(cpu::Level::Avx512)) GTEST_SKIP() << "this CPU lacks AVX-512";
  cpu::ScopedLevel level(cpu::Level::Avx512);
  std::mt19937_64 rng(5);
  std::normal_distribution<double> z(0, 1);
  std::vector<double> logits(32 * 32767 * 2 + 4321);
  for (auto& x : logits) x = 2.0 * z(rng);
  expect_matches_definition(softmax(logits), "long gaussian row");
}

TEST(Widths, ALevelReachedExactlyCountsTheEntryThatReachesIt) {
  // Exact binary fractions: two entries of 1/4 reach p = 0.5 exactly, so width_p50 is 2
  // (cumulative mass >= p); then 128 entries of 2^-8 and 126 zeros, shuffled.
  std::vector<float> row = {0.25f, 0.25f};
  for (int j = 0; j < 128; ++j) row.push_back(std::ldexp(1.0f, -8));
  for (int j = 0; j < 126; ++j) row.push_back(0.f);
  std::mt19937_64 rng(3);
  for (int rep = 0; rep < 4; ++rep) {
    std::shuffle(row.begin(), row.end(), rng);
    std::vector<float> scratch;
    std::array<int32_t, 4> w{};
    widths(row.data(), int64_t(row.size()), kWidthLevels.data(), 4, w.data(), scratch);
    // 0.9 - 0.5 = 102.4 entries of 2^-8 -> 103; 0.45 -> 115.2 -> 116; 0.49 -> 125.44 -> 126.
    EXPECT_EQ(w, (std::array<int32_t, 4>{2, 2 + 103, 2 + 116, 2 + 126}));
    EXPECT_EQ(w, naive_widths(row));
  }
}

TEST(Widths, RowsThatNeverReachALevelGiveN) {
  // Mass 0.98 in total: p = 0.99 is never reached, the others are.
  std::vector<float> row(500, 0.98f / 500);
  std::vector<float> scratch;
  int32_t w[4];
  widths(row.data(), 500, kWidthLevels.data(), 4, w, scratch);
  EXPECT_EQ(w[3], 500);
  EXPECT_EQ(w[0], 256);  // ceil(0.5 / (0.98/500)) = 255.1.. -> 256
  std::vector<float> zeros(300, 0.f);
  widths(zeros.data(), 300, kWidthLevels.data(), 4, w, scratch);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(w[i], 300);
}

}  // namespace
}  // namespace attnsparse::analysis
