// Head clustering (docs/methods.md §6): standardised features, k-means with k-means++ seeding
// and a fixed seed, silhouette, and the adjusted Rand index between two assignments.
#pragma once
#include <cstdint>
#include <vector>

namespace attnsparse::analysis {

using Matrix = std::vector<std::vector<double>>;  // [point][feature]

// z-scores per column (population standard deviation); constant columns become 0.
Matrix standardise(const Matrix& x);

struct KMeansResult {
  int k = 0;
  std::vector<int> labels;       // cluster of each point, 0..k-1
  Matrix centers;
  double inertia = 0;            // sum of squared distances to the assigned centre
};

// Lloyd's algorithm from k-means++ seeds; the best of `restarts` runs by inertia.
// Deterministic for a given seed. Requires 1 <= k <= points.
KMeansResult kmeans(const Matrix& x, int k, uint64_t seed, int restarts = 10, int max_iter = 300);

// Mean silhouette coefficient (Euclidean). Points in singleton clusters score 0
// (Rousseeuw; as scikit-learn). NaN when k < 2 or k >= points.
double silhouette(const Matrix& x, const std::vector<int>& labels);

// Hubert & Arabie's adjusted Rand index of two labelings of the same points.
// 1 for identical partitions (up to renaming); 1 when both put everything in one cluster.
double adjusted_rand_index(const std::vector<int>& a, const std::vector<int>& b);

}  // namespace attnsparse::analysis
