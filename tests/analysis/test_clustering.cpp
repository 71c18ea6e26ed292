// k-means, silhouette and the adjusted Rand index against hand-computed values and
// planted clusters.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "analysis/clustering.h"

namespace attnsparse::analysis {
namespace {

TEST(AdjustedRandIndex, TextbookValues) {
  // Identical up to renaming.
  EXPECT_DOUBLE_EQ(adjusted_rand_index({0, 0, 1, 1}, {1, 1, 0, 0}), 1.0);
  // Contingency (0,0):2 (1,1):1 (2,1):1 -> index 1, expected 1/3, max 3/2: (2/3)/(7/6) = 4/7.
  EXPECT_NEAR(adjusted_rand_index({0, 0, 1, 2}, {0, 0, 1, 1}), 4.0 / 7.0, 1e-15);
  EXPECT_NEAR(adjusted_rand_index({0, 0, 1, 1}, {0, 0, 1, 2}), 4.0 / 7.0, 1e-15);
  // Crossed halves: index 0, expected 2/3, max 2 -> -1/2.
  EXPECT_NEAR(adjusted_rand_index({0, 0, 1, 1}, {0, 1, 0, 1}), -0.5, 1e-15);
  // Hubert & Arabie (1985) style table: a = {0,0,0,1,1,1}, b = {0,0,1,1,2,2}.
  // index = C(2,2)+C(1,2)+C(1,2)+C(2,2) = 2; sa = 3+3 = 6; sb = 1+1+1 = 3; C(6,2) = 15;
  // expected = 18/15 = 1.2; max = 4.5 -> (2-1.2)/(4.5-1.2) = 0.8/3.3.
  EXPECT_NEAR(adjusted_rand_index({0, 0, 0, 1, 1, 1}, {0, 0, 1, 1, 2, 2}), 0.8 / 3.3, 1e-15);
  EXPECT_DOUBLE_EQ(adjusted_rand_index({0, 0, 0}, {5, 5, 5}), 1.0);  // both trivial
}

TEST(Silhouette, HandComputedOneDimensional) {
  // {0, 1} vs {10, 11}: s(0) = (10.5-1)/10.5, s(1) = (9.5-1)/9.5, symmetric for the others.
  const Matrix x = {{0}, {1}, {10}, {11}};
  const double expected = ((10.5 - 1) / 10.5 + (9.5 - 1) / 9.5) / 2;
  EXPECT_NEAR(silhouette(x, {0, 0, 1, 1}), expected, 1e-15);
  // A singleton cluster scores 0 for its point: {0} | {1, 10, 11}.
  // s(1): a = (9+10)/2 = 9.5, b = 1 -> (1-9.5)/9.5; s(10): a = (9+1)/2 = 5, b = 10 -> 0.5;
  // s(11): a = (10+1)/2 = 5.5, b = 11 -> 0.5.
  const double s1 = (1 - 9.5) / 9.5;
  EXPECT_NEAR(silhouette(x, {0, 1, 1, 1}), (0 + s1 + 0.5 + 0.5) / 4, 1e-15);
  EXPECT_TRUE(std::isnan(silhouette(x, {0, 0, 0, 0})));
  EXPECT_TRUE(std::isnan(silhouette(x, {0, 1, 2, 3})));
}

TEST(KMeans, ClosedFormOneDimensional) {
  const Matrix x = {{0}, {1}, {2}, {10}, {11}, {12}};
  const KMeansResult r = kmeans(x, 2, 7);
  EXPECT_EQ(r.labels, (std::vector<int>{0, 0, 0, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(r.centers[0][0], 1.0);
  EXPECT_DOUBLE_EQ(r.centers[1][0], 11.0);
  EXPECT_DOUBLE_EQ(r.inertia, 4.0);
}

TEST(KMeans, RecoversPlantedBlobsDeterministically) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 0.3);
  const std::vector<std::vector<double>> centers = {{0, 0, 0}, {4, 0, 1}, {0, 5, -2}, {3, 3, 3}};
  Matrix x;
  std::vector<int> truth;
  for (int i = 0; i < 200; ++i) {
    const int c = i % 4;
    std::vector<double> p = centers[c];
    for (double& v : p) v += noise(rng);
    x.push_back(p);
    truth.push_back(c);
  }
  const KMeansResult r = kmeans(x, 4, 11);
  EXPECT_DOUBLE_EQ(adjusted_rand_index(r.labels, truth), 1.0);
  const KMeansResult again = kmeans(x, 4, 11);
  EXPECT_EQ(again.labels, r.labels);
  EXPECT_EQ(again.inertia, r.inertia);
  // The silhouette picks k = 4 among 2..6 for four separated blobs.
  int best = 0;
  double best_s = -2;
  for (int k = 2; k <= 6; ++k) {
    const double s = silhouette(x, kmeans(x, k, 11).labels);
    if (s > best_s) best_s = s, best = k;
  }
  EXPECT_EQ(best, 4);
  EXPECT_GT(best_s, 0.8);
}

TEST(Standardise, ZScoresAndConstantColumns) {
  const Matrix z = standardise({{1, 5}, {2, 5}, {3, 5}});
  const double sd = std::sqrt(2.0 / 3.0);
  EXPECT_NEAR(z[0][0], -1 / sd, 1e-15);
  EXPECT_NEAR(z[1][0], 0, 1e-15);
  EXPECT_NEAR(z[2][0], 1 / sd, 1e-15);
  for (const auto& row : z) EXPECT_EQ(row[1], 0.0);
}

}  // namespace
}  // namespace attnsparse::analysis
