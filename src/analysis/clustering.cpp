#include "analysis/clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "core/error.h"

namespace attnsparse::analysis {

namespace {
double dist2(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}
}  // namespace

Matrix standardise(const Matrix& x) {
  if (x.empty()) return x;
  const size_t n = x.size(), d = x[0].size();
  Matrix z(n, std::vector<double>(d, 0.0));
  for (size_t f = 0; f < d; ++f) {
    double mean = 0;
    for (const auto& row : x) mean += row[f];
    mean /= double(n);
    double var = 0;
    for (const auto& row : x) var += (row[f] - mean) * (row[f] - mean);
    const double sd = std::sqrt(var / double(n));
    if (!(sd > 1e-12 * std::max(1.0, std::abs(mean)))) continue;  // constant column
    for (size_t i = 0; i < n; ++i) z[i][f] = (x[i][f] - mean) / sd;
  }
  return z;
}

KMeansResult kmeans(const Matrix& x, int k, uint64_t seed, int restarts, int max_iter) {
  const int n = static_cast<int>(x.size());
  if (k < 1 || k > n) fail("internal: k-means with k = {} on {} points", k, n);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  KMeansResult best;
  best.inertia = std::numeric_limits<double>::infinity();
  for (int run = 0; run < std::max(1, restarts); ++run) {
    // k-means++ seeding: each next centre drawn with probability proportional to D(x)^2.
    Matrix centers;
    centers.push_back(x[std::min(n - 1, int(unit(rng) * n))]);
    std::vector<double> d2(n);
    for (int i = 0; i < n; ++i) d2[i] = dist2(x[i], centers[0]);
    while (int(centers.size()) < k) {
      double total = 0;
      for (double v : d2) total += v;
      int pick = n - 1;
      if (total > 0) {
        double r = unit(rng) * total;
        for (int i = 0; i < n; ++i) {
          r -= d2[i];
          if (r < 0) { pick = i; break; }
        }
      } else {
        pick = std::min(n - 1, int(unit(rng) * n));  // all points coincide with centres
      }
      centers.push_back(x[pick]);
      for (int i = 0; i < n; ++i) d2[i] = std::min(d2[i], dist2(x[i], centers.back()));
    }
    // Lloyd iterations.
    std::vector<int> labels(n, -1);
    for (int it = 0; it < max_iter; ++it) {
      bool changed = false;
      for (int i = 0; i < n; ++i) {
        int arg = 0;
        double bd = dist2(x[i], centers[0]);
        for (int c = 1; c < k; ++c) {
          const double dd = dist2(x[i], centers[c]);
          if (dd < bd) { bd = dd; arg = c; }
        }
        if (labels[i] != arg) { labels[i] = arg; changed = true; }
      }
      if (!changed) break;
      Matrix sums(k, std::vector<double>(x[0].size(), 0.0));
      std::vector<int> counts(k, 0);
      for (int i = 0; i < n; ++i) {
        ++counts[labels[i]];
        for (size_t f = 0; f < x[i].size(); ++f) sums[labels[i]][f] += x[i][f];
      }
      for (int c = 0; c < k; ++c) {
        if (counts[c] == 0) continue;  // an empty cluster keeps its centre
        for (auto& v : sums[c]) v /= counts[c];
        centers[c] = sums[c];
      }
    }
    double inertia = 0;
    for (int i = 0; i < n; ++i) inertia += dist2(x[i], centers[labels[i]]);
    if (inertia < best.inertia) {
      best.k = k;
      best.labels = labels;
      best.centers = centers;
      best.inertia = inertia;
    }
  }
  // Canonical label order: clusters numbered by their first point.
  std::vector<int> rename(k, -1);
  int next = 0;
  for (int& l : best.labels) {
    if (rename[l] < 0) rename[l] = next++;
    l = rename[l];
  }
  Matrix centers(k);
  for (int c = 0; c < k; ++c)
    if (rename[c] >= 0) centers[rename[c]] = best.centers[c];
  for (int c = 0, free = next; c < k; ++c)
    if (rename[c] < 0) centers[free++] = best.centers[c];
  best.centers = centers;
  return best;
}

double silhouette(const Matrix& x, const std::vector<int>& labels) {
  const int n = static_cast<int>(x.size());
  const int k = labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
  std::vector<int> size(k, 0);
  for (int l : labels) ++size[l];
  const int used = static_cast<int>(std::count_if(size.begin(), size.end(), [](int s) { return s > 0; }));
  if (used < 2 || used >= n) return std::numeric_limits<double>::quiet_NaN();
  double total = 0;
  std::vector<double> sum(k);
  for (int i = 0; i < n; ++i) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int j = 0; j < n; ++j)
      if (j != i) sum[labels[j]] += std::sqrt(dist2(x[i], x[j]));
    const int own = labels[i];
    if (size[own] <= 1) continue;  // singleton: s = 0
    const double a = sum[own] / (size[own] - 1);
    double b = std::numeric_limits<double>::infinity();
    for (int c = 0; c < k; ++c)
      if (c != own && size[c] > 0) b = std::min(b, sum[c] / size[c]);
    const double m = std::max(a, b);
    total += m > 0 ? (b - a) / m : 0.0;
  }
  return total / n;
}

double adjusted_rand_index(const std::vector<int>& a, const std::vector<int>& b) {
  if (a.size() != b.size()) fail("internal: ARI of labelings of different sizes");
  const size_t n = a.size();
  if (n < 2) return std::numeric_limits<double>::quiet_NaN();
  std::map<std::pair<int, int>, int64_t> table;
  std::map<int, int64_t> rows, cols;
  for (size_t i = 0; i < n; ++i) {
    ++table[{a[i], b[i]}];
    ++rows[a[i]];
    ++cols[b[i]];
  }
  auto c2 = [](int64_t m) { return double(m) * double(m - 1) / 2.0; };
  double index = 0, sa = 0, sb = 0;
  for (const auto& [key, m] : table) index += c2(m);
  for (const auto& [key, m] : rows) sa += c2(m);
  for (const auto& [key, m] : cols) sb += c2(m);
  const double expected = sa * sb / c2(int64_t(n));
  const double max_index = 0.5 * (sa + sb);
  if (max_index == expected) return 1.0;  // both trivial (one cluster, or all singletons)
  return (index - expected) / (max_index - expected);
}

}  // namespace attnsparse::analysis
