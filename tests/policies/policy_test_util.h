// Shared helpers of the policy tests: random attention problems and a float64 naive
// attention that exposes the dense probability rows.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "ops/attention.h"
#include "policies/policy.h"

namespace attnsparse::policies::testing {

struct Problem {
  ops::AttentionShape s;
  std::vector<float> q, k, v;
  std::vector<int32_t> key_pos;  // empty: slot = position

  ops::AttentionArgs args(std::vector<float>& out) const {
    out.assign(s.n_q * s.n_head * s.head_dim, -7.f);
    ops::AttentionArgs a;
    a.q = q.data();
    a.q_stride = int64_t(s.n_head) * s.head_dim;
    a.k = k.data();
    a.k_stride = int64_t(s.n_kv_head) * s.head_dim;
    a.v = v.data();
    a.v_stride = a.k_stride;
    a.out = out.data();
    a.out_stride = a.q_stride;
    a.key_pos = key_pos.empty() ? nullptr : key_pos.data();
    return a;
  }
  int64_t pos(int64_t j) const { return key_pos.empty() ? j : key_pos[j]; }
  const float* qrow(int h, int64_t i) const { return q.data() + (i * s.n_head + h) * s.head_dim; }
  const float* krow(int h, int64_t j) const {
    return k.data() + (j * s.n_kv_head + h / (s.n_head / s.n_kv_head)) * s.head_dim;
  }
  const float* vrow(int h, int64_t j) const {
    return v.data() + (j * s.n_kv_head + h / (s.n_head / s.n_kv_head)) * s.head_dim;
  }

  // Scores s_j = q.k / sqrt(d) in float64 for every slot (causal or not).
  std::vector<double> scores(int h, int64_t i) const {
    std::vector<double> out(s.n_kv);
    const float* qq = qrow(h, i);
    for (int64_t j = 0; j < s.n_kv; ++j) {
      const float* kk = krow(h, j);
      double dot = 0;
      for (int d = 0; d < s.head_dim; ++d) dot += double(qq[d]) * kk[d];
      out[j] = dot * s.scale;
    }
    return out;
  }
  // Dense causal probabilities over all slots (0 for keys after the query).
  std::vector<double> dense_probs(int h, int64_t i) const {
    const int64_t t = s.q_pos0 + i;
    std::vector<double> sc = scores(h, i), p(s.n_kv, 0.0);
    double mx = -1e300, sum = 0;
    for (int64_t j = 0; j < s.n_kv; ++j)
      if (pos(j) <= t) mx = std::max(mx, sc[j]);
    for (int64_t j = 0; j < s.n_kv; ++j)
      if (pos(j) <= t) sum += p[j] = std::exp(sc[j] - mx);
    for (auto& x : p) x /= sum;
    return p;
  }
};

inline Problem make_problem(int64_t n_q, int64_t q_pos0, int64_t n_kv, int n_head, int n_kv_head, int head_dim,
                            uint32_t seed, float spread = 1.f) {
  Problem p;
  p.s = {n_q, q_pos0, n_kv, n_head, n_kv_head, head_dim, 1.f / std::sqrt(float(head_dim))};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, spread), nv(0.f, 1.f);
  p.q.resize(n_q * n_head * head_dim);
  p.k.resize(n_kv * n_kv_head * head_dim);
  p.v.resize(n_kv * n_kv_head * head_dim);
  for (auto& x : p.q) x = nd(rng);
  for (auto& x : p.k) x = nd(rng);
  for (auto& x : p.v) x = nv(rng);
  return p;
}

// methods.md §1, written out independently: is position pj in G_t?
inline bool positional_truth(const Policy& pol, int64_t t, int64_t pj) {
  if (pj > t) return false;
  switch (pol.kind) {
    case Kind::Dense: return true;
    case Kind::Window: return pj >= std::max<int64_t>(0, t - pol.window + 1);
    case Kind::SinkWindow: return pj < pol.sink || pj >= std::max<int64_t>(0, t - pol.window + 1);
    case Kind::Dilated: {
      for (int64_t m = 0; m < pol.window; ++m)
        if (t - pol.rate * m == pj) return true;
      return false;
    }
    case Kind::Strided: return t - pj < pol.rate || (t - pj) % pol.rate == 0;
    case Kind::Block: return pj / pol.rate == t / pol.rate;
    default: return false;
  }
}

}  // namespace attnsparse::policies::testing
