// The tiled attention core against the naive reference (and the reference against closed
// forms): dense, every key-set kind, GQA ratios, head dims, chunked prefill and decode,
// evicted caches (key_pos), observers, and each SIMD variant the CPU can run.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <random>
#include <tuple>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "ops/attention.h"
#include "ops/keyset.h"

namespace attnsparse::ops {
namespace {

struct Problem {
  AttentionShape s;
  std::vector<float> q, k, v;
  std::vector<int32_t> key_pos;  // empty: slot = position
  int64_t q_stride, k_stride, v_stride, out_stride;

  AttentionArgs args(std::vector<float>& out) const {
    out.assign(s.n_q * out_stride, -7.f);  // poison: every output element must be written
    AttentionArgs a;
    a.q = q.data();
    a.q_stride = q_stride;
    a.k = k.data();
    a.k_stride = k_stride;
    a.v = v.data();
    a.v_stride = v_stride;
    a.out = out.data();
    a.out_stride = out_stride;
    a.key_pos = key_pos.empty() ? nullptr : key_pos.data();
    return a;
  }
};

// Random q/k/v inside wider rows (padding) so strides are exercised.
Problem make_problem(int64_t n_q, int64_t q_pos0, int64_t n_kv, int n_head, int n_kv_head,
                     int head_dim, uint32_t seed, float spread = 1.f) {
  Problem p;
  p.s = {n_q, q_pos0, n_kv, n_head, n_kv_head, head_dim, 1.f / std::sqrt(float(head_dim))};
  p.q_stride = int64_t(n_head) * head_dim + 3;
  p.k_stride = int64_t(n_kv_head) * head_dim + 5;
  p.v_stride = int64_t(n_kv_head) * head_dim + 1;
  p.out_stride = int64_t(n_head) * head_dim + 2;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, spread);
  p.q.resize(n_q * p.q_stride);
  p.k.resize(n_kv * p.k_stride);
  p.v.resize(n_kv * p.v_stride);
  for (auto& x : p.q) x = nd(rng);
  for (auto& x : p.k) x = nd(rng);
  std::normal_distribution<float> nv(0.f, 1.f);
  for (auto& x : p.v) x = nv(rng);
  return p;
}

struct Captured {
  std::vector<int32_t> keys;
  std::vector<float> probs;
};

class CaptureObserver : public RowObserver {
 public:
  void on_row(int head, int64_t pos, const float* probs, const int32_t* keys, int64_t n) override {
    Captured c;
    c.probs.assign(probs, probs + n);
    if (keys) c.keys.assign(keys, keys + n);
    else for (int64_t j = 0; j < n; ++j) c.keys.push_back(int32_t(j));
    std::lock_guard<std::mutex> lock(mu_);
    rows_[{head, pos}] = std::move(c);
    ++calls_;
  }
  // The kernel's blocks: each row's largest probability, when handed over, must be exactly
  // the largest entry of the row (the widths rely on it).
  void on_rows(int head, int64_t pos0, int n_rows, const float* const* probs, const int32_t* const* keys,
               const int64_t* n, const double* entropy, const float* largest) override {
    for (int k = 0; largest != nullptr && k < n_rows; ++k) {
      const float mx = n[k] > 0 ? *std::max_element(probs[k], probs[k] + n[k]) : 0.f;
      if (largest[k] != mx) ++largest_wrong_;
      ++largest_given_;
    }
    RowObserver::on_rows(head, pos0, n_rows, probs, keys, n, entropy, largest);
  }
  std::map<std::pair<int, int64_t>, Captured> rows_;
  int64_t calls_ = 0;
  std::atomic<int64_t> largest_given_{0}, largest_wrong_{0};
  std::mutex mu_;
};

// The instruction-set levels whose attention kernels differ, as far as this CPU runs them.
std::vector<cpu::Level> isas() {
  std::vector<cpu::Level> out;
  for (cpu::Level l : {cpu::Level::Avx512, cpu::Level::Avx2, cpu::Level::Portable})
    if (static_cast<int>(l) <= static_cast<int>(cpu::supported())) out.push_back(l);
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const Problem& p,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (int64_t i = 0; i < p.s.n_q; ++i)
    for (int64_t c = 0; c < int64_t(p.s.n_head) * p.s.head_dim; ++c) {
      const float g = got[i * p.out_stride + c], w = want[i * p.out_stride + c];
      ASSERT_TRUE(std::isfinite(g)) << what << " row " << i << " col " << c;
      worst = std::max(worst, double(std::fabs(g - w)) / (1.0 + std::fabs(w)));
    }
  EXPECT_LT(worst, 3e-5) << what;
}

// Runs the core (every ISA, with and without observer) and the reference on the same key
// set; outputs and observed probability rows must agree.
void check(const Problem& p, const KeySet* keys, const std::string& what) {
  std::vector<float> want, got;
  CaptureObserver ref_obs;
  attention_reference(p.s, p.args(want), keys, &ref_obs);
  EXPECT_EQ(ref_obs.calls_, p.s.n_q * p.s.n_head);
  for (cpu::Level isa : isas()) {
    cpu::ScopedLevel level(isa);
    const std::string tag = what + " [" + attention_isa() + "]";
    attention(p.s, p.args(got), keys, nullptr);
    expect_close(got, want, p, tag);
    CaptureObserver obs;
    attention(p.s, p.args(got), keys, &obs);
    expect_close(got, want, p, tag + " observed");
    ASSERT_EQ(obs.calls_, ref_obs.calls_) << tag;
    EXPECT_EQ(obs.largest_wrong_, 0) << tag << ": rows whose largest probability was handed over wrong, of "
                                     << obs.largest_given_;
    for (const auto& [key, row] : ref_obs.rows_) {
      auto it = obs.rows_.find(key);
      ASSERT_NE(it, obs.rows_.end()) << tag;
      ASSERT_EQ(it->second.keys, row.keys) << tag << " head " << key.first << " pos " << key.second;
      for (size_t x = 0; x < row.probs.size(); ++x)
        ASSERT_NEAR(it->second.probs[x], row.probs[x], 2e-6 + 1e-5 * row.probs[x]) << tag;
    }
  }
}

// ---------------------------------------------------------------- reference sanity

TEST(AttentionReference, EqualKeysGiveTheCausalMeanOfValues) {
  // Identical keys: every causal key gets weight 1/(t+1), so o_t = mean(v_0..v_t).
  Problem p = make_problem(5, 3, 8, 2, 1, 16, 1);
  for (int64_t j = 0; j < 8; ++j)
    for (int d = 0; d < 16; ++d) p.k[j * p.k_stride + d] = 0.25f;
  std::vector<float> out;
  attention_reference(p.s, p.args(out));
  for (int64_t i = 0; i < 5; ++i)
    for (int h = 0; h < 2; ++h)
      for (int d = 0; d < 16; ++d) {
        double mean = 0;
        for (int64_t j = 0; j <= 3 + i; ++j) mean += p.v[j * p.v_stride + d];
        mean /= 4 + i;
        EXPECT_NEAR(out[i * p.out_stride + h * 16 + d], mean, 1e-5);
      }
}

TEST(AttentionReference, TwoKeysFollowTheLogisticFunction) {
  // q at position 1 sees keys 0 and 1: a_1 = sigmoid((s_1 - s_0)).
  Problem p = make_problem(1, 1, 2, 1, 1, 4, 2);
  std::vector<float> out;
  attention_reference(p.s, p.args(out));
  double s[2];
  for (int j = 0; j < 2; ++j) {
    s[j] = 0;
    for (int d = 0; d < 4; ++d) s[j] += p.q[d] * p.k[j * p.k_stride + d] * 0.5;
  }
  const double a1 = 1 / (1 + std::exp(s[0] - s[1]));
  for (int d = 0; d < 4; ++d)
    EXPECT_NEAR(out[d], (1 - a1) * p.v[d] + a1 * p.v[p.v_stride + d], 1e-5);
}

TEST(AttentionReference, SoftcapFollowsTheLogisticOfCappedScores) {
  // Two keys, capped scores c tanh(s / c): a_1 = sigmoid(cap(s_1) - cap(s_0)). Large
  // queries so the cap really bites (|s| several times c).
  Problem p = make_problem(1, 1, 2, 1, 1, 4, 2, 6.f);
  p.s.softcap = 3.f;
  std::vector<float> out;
  attention_reference(p.s, p.args(out));
  double s[2];
  for (int j = 0; j < 2; ++j) {
    s[j] = 0;
    for (int d = 0; d < 4; ++d) s[j] += p.q[d] * p.k[j * p.k_stride + d] * 0.5;
    s[j] = 3.0 * std::tanh(s[j] / 3.0);
  }
  const double a1 = 1 / (1 + std::exp(s[0] - s[1]));
  for (int d = 0; d < 4; ++d)
    EXPECT_NEAR(out[d], (1 - a1) * p.v[d] + a1 * p.v[p.v_stride + d], 1e-5);
}

TEST(AttentionReference, NativeWindowIsTheWindowKeySet) {
  // The layer's own window (shape.window) and the policy key set window(w) are the same
  // set {0 <= t - p < w}: identical results, bit for bit.
  for (int64_t w : {1, 7, 64}) {
    Problem p = make_problem(50, 30, 80, 4, 2, 32, 21);
    std::vector<float> a, b;
    KeySet ks = KeySet::window(w);
    attention_reference(p.s, p.args(a), &ks);
    p.s.window = w;
    attention_reference(p.s, p.args(b));
    EXPECT_EQ(a, b) << "window " << w;
  }
}

// ---------------------------------------------------------------- key set definitions

TEST(KeySet, MembershipMatchesMethodsDefinitions) {
  // docs/methods.md §2, written out independently here.
  for (int64_t t = 0; t < 70; ++t)
    for (int64_t j = 0; j < 80; ++j) {
      const bool causal = j <= t;
      const int64_t d = t - j;
      EXPECT_EQ(KeySet::window(5).contains(0, 0, t, j, j), causal && j >= std::max<int64_t>(0, t - 5 + 1));
      EXPECT_EQ(KeySet::sink_window(3, 5).contains(0, 0, t, j, j), causal && (j < 3 || j > t - 5));
      bool dil = false;
      for (int64_t m = 0; m < 4; ++m) dil |= j == t - 3 * m;
      EXPECT_EQ(KeySet::dilated(4, 3).contains(0, 0, t, j, j), causal && dil);
      EXPECT_EQ(KeySet::strided(6).contains(0, 0, t, j, j), causal && (d < 6 || d % 6 == 0));
      EXPECT_EQ(KeySet::all().contains(0, 0, t, j, j), causal);
      EXPECT_EQ(KeySet::block_local(8).contains(0, 0, t, j, j), causal && j / 8 == t / 8);
    }
}

TEST(KeySet, KeptCountEqualsBruteForce) {
  std::vector<KeySet> sets = {KeySet::all(), KeySet::window(7), KeySet::sink_window(4, 9),
                              KeySet::dilated(5, 3), KeySet::strided(8), KeySet::block_local(6)};
  for (const auto& ks : sets) {
    for (int64_t q_pos0 : {0, 13, 50}) {
      const int64_t n_q = 20, n_kv = q_pos0 + n_q;
      int64_t brute = 0;
      for (int64_t i = 0; i < n_q; ++i)
        for (int64_t j = 0; j < n_kv; ++j) brute += ks.contains(0, i, q_pos0 + i, j, j);
      EXPECT_EQ(ks.kept(3, n_q, q_pos0, n_kv, nullptr), 3 * brute) << ks.describe();
      std::vector<int32_t> identity(n_kv);
      for (int64_t j = 0; j < n_kv; ++j) identity[j] = int32_t(j);
      EXPECT_EQ(ks.kept(3, n_q, q_pos0, n_kv, identity.data()), 3 * brute) << ks.describe();
      // A shuffled cache holds the same positions: the same count.
      std::vector<int32_t> shuffled = identity;
      std::reverse(shuffled.begin(), shuffled.end());
      int64_t brute_shuffled = 0;
      for (int64_t i = 0; i < n_q; ++i)
        for (int64_t j = 0; j < n_kv; ++j) brute_shuffled += ks.contains(0, i, q_pos0 + i, j, shuffled[j]);
      EXPECT_EQ(brute_shuffled, brute) << ks.describe();
      EXPECT_EQ(ks.kept(3, n_q, q_pos0, n_kv, shuffled.data()), 3 * brute) << ks.describe();
    }
  }
}

TEST(KeySet, BadParametersThrow) {
  EXPECT_THROW(KeySet::window(0), Error);
  EXPECT_THROW(KeySet::dilated(4, 0), Error);
  EXPECT_THROW(KeySet::strided(0), Error);
  EXPECT_THROW(KeySet::index_lists(1, 1, {0, 2}, {5, 3}), Error);  // not increasing
  EXPECT_THROW(KeySet::block_mask(16, 16, 0, 2, 2, 1, {1, 0, 1}), Error);
}

// ---------------------------------------------------------------- dense

TEST(Attention, DenseMatchesReferenceAcrossShapes) {
  struct Case { int64_t n_q, q_pos0, n_kv; int heads, kv_heads, dim; };
  const Case cases[] = {
      {100, 0, 100, 4, 4, 64},    // prefill, n not a multiple of the tile
      {129, 0, 129, 8, 4, 80},    // GQA 2, head_dim 80
      {70, 0, 70, 8, 2, 128},     // GQA 4
      {33, 0, 33, 8, 1, 64},      // MQA (GQA 8)
      {1, 200, 201, 8, 2, 128},   // decode
      {37, 150, 187, 4, 1, 80},   // chunked prefill
      {64, 64, 128, 2, 2, 72},    // head_dim not a multiple of the SIMD width
      {3, 0, 3, 1, 1, 256},       // largest head_dim
  };
  uint32_t seed = 10;
  for (const auto& c : cases) {
    Problem p = make_problem(c.n_q, c.q_pos0, c.n_kv, c.heads, c.kv_heads, c.dim, seed++);
    check(p, nullptr, "dense n_q=" + std::to_string(c.n_q) + " dim=" + std::to_string(c.dim));
  }
}

TEST(Attention, AllKeysSetEqualsDense) {
  Problem p = make_problem(90, 10, 100, 4, 2, 64, 3);
  std::vector<float> dense, all;
  attention(p.s, p.args(dense));
  KeySet ks = KeySet::all();
  attention(p.s, p.args(all), &ks);
  EXPECT_EQ(dense, all);
  KeySet wide = KeySet::window(1000);  // W >= n: every causal key
  attention(p.s, p.args(all), &wide);
  EXPECT_EQ(dense, all);
}

TEST(Attention, PeakedScoresStayFinite) {
  // Large logits (spread 30): the online max must keep exp() in range.
  Problem p = make_problem(80, 0, 80, 2, 1, 64, 4, 30.f);
  check(p, nullptr, "peaked");
}

// ---------------------------------------------------------------- sparse key sets

TEST(Attention, PositionalSetsMatchMaskedReference) {
  std::vector<std::pair<KeySet, std::string>> sets = {
      {KeySet::window(50), "window=50"},
      {KeySet::window(1), "window=1"},
      {KeySet::sink_window(4, 70), "sink=4,window=70"},
      {KeySet::sink_window(64, 64), "sink=64,window=64"},
      {KeySet::dilated(20, 3), "dilated=20:3"},
      {KeySet::dilated(10, 1), "dilated=10:1"},
      {KeySet::strided(17), "strided=17"},
  };
  uint32_t seed = 100;
  for (const auto& [ks, name] : sets) {
    Problem prefill = make_problem(200, 0, 200, 8, 2, 64, seed++);
    check(prefill, &ks, name + " prefill");
    Problem chunk = make_problem(45, 160, 205, 4, 4, 80, seed++);
    check(chunk, &ks, name + " chunk");
    Problem decode = make_problem(1, 300, 301, 8, 1, 128, seed++);
    check(decode, &ks, name + " decode");
  }
}

KeySet random_lists(std::mt19937& rng, int64_t n_q, int64_t q_pos0, int64_t n_kv, int heads,
                    int64_t keep);

TEST(Attention, EveryKeySetKindAcrossGqaRatiosAndHeadDims) {
  // Every kind with every GQA ratio; head_dim and the query offset rotate so that every
  // (ratio, head_dim) pair occurs too. n = 77 (from 0 or 45): never a multiple of the tile.
  std::mt19937 rng(15);
  struct Heads { int heads, kv_heads; };
  const Heads gqa[] = {{4, 4}, {4, 2}, {8, 2}, {8, 1}};  // ratios 1, 2, 4, 8
  const int dims[] = {64, 80, 128};
  uint32_t seed = 300;
  for (int kind = 0; kind < 8; ++kind) {
    for (int gi = 0; gi < 4; ++gi) {
      const Heads g = gqa[gi];
      const int dim = dims[(kind + gi) % 3];
      const int64_t n_q = 77, q_pos0 = (kind + gi) % 2 ? 45 : 0, n_kv = n_q + q_pos0;
      const int64_t nqb = (q_pos0 + n_q - 1) / 32 - q_pos0 / 32 + 1, nkb = (n_kv + 31) / 32;
      std::vector<uint8_t> bits(nqb * nkb);
      for (auto& b : bits) b = rng() % 2;
      std::vector<KeySet> heads;
      for (int h = 0; h < g.heads; ++h) heads.push_back(h % 2 ? KeySet::window(9 + h) : KeySet::block_local(16));
      const std::pair<KeySet, std::string> sets[] = {
          {KeySet::window(20), "window"},
          {KeySet::sink_window(3, 30), "sink+window"},
          {KeySet::dilated(12, 4), "dilated"},
          {KeySet::strided(7), "strided"},
          {KeySet::block_local(32), "block local"},
          {KeySet::block_mask(32, 32, q_pos0, nqb, nkb, 1, bits), "block mask"},
          {random_lists(rng, n_q, q_pos0, n_kv, g.heads, 25), "index lists"},
          {KeySet::per_head(heads), "per head"},
      };
      Problem p = make_problem(n_q, q_pos0, n_kv, g.heads, g.kv_heads, dim, seed++);
      check(p, &sets[kind].first,
            sets[kind].second + " heads " + std::to_string(g.heads) + "/" + std::to_string(g.kv_heads) + " dim " +
                std::to_string(dim) + " q_pos0 " + std::to_string(q_pos0));
    }
  }
  // The largest head_dim with a sparse set.
  Problem big = make_problem(70, 0, 70, 4, 2, 256, seed++);
  KeySet sw = KeySet::sink_window(2, 40);
  check(big, &sw, "sink+window dim 256");
  KeySet lists = random_lists(rng, 70, 0, 70, 1, 30);
  check(big, &lists, "index lists dim 256");
}

TEST(Attention, BlockMasksMatchMaskedReference) {
  std::mt19937 rng(5);
  for (int64_t block : {16, 32, 64}) {
    for (int mask_heads : {1, 4}) {
      const int64_t n = 150, q_pos0 = 20, n_kv = n + q_pos0;
      const int64_t nqb = (q_pos0 + n - 1) / block - q_pos0 / block + 1;
      const int64_t nkb = (n_kv + block - 1) / block;
      std::vector<uint8_t> bits(mask_heads * nqb * nkb);
      for (auto& b : bits) b = rng() % 3 != 0;
      KeySet ks = KeySet::block_mask(block, block, q_pos0, nqb, nkb, mask_heads, bits);
      Problem p = make_problem(n, q_pos0, n_kv, 4, 2, 64, uint32_t(block + mask_heads));
      check(p, &ks, "block " + std::to_string(block) + " heads " + std::to_string(mask_heads));
    }
  }
}

KeySet random_lists(std::mt19937& rng, int64_t n_q, int64_t q_pos0, int64_t n_kv, int heads,
                    int64_t keep) {
  std::vector<int64_t> row_ptr{0};
  std::vector<int32_t> slots;
  for (int h = 0; h < heads; ++h)
    for (int64_t i = 0; i < n_q; ++i) {
      std::vector<int32_t> all;
      for (int64_t j = 0; j < n_kv; ++j) if (int64_t(rng() % 100) < keep) all.push_back(int32_t(j));
      slots.insert(slots.end(), all.begin(), all.end());
      row_ptr.push_back(int64_t(slots.size()));
    }
  return KeySet::index_lists(n_q, heads, row_ptr, slots);
}

TEST(Attention, IndexListsMatchMaskedReference) {
  std::mt19937 rng(6);
  for (int heads : {1, 4}) {
    // Lists may name future slots: causality still applies.
    Problem p = make_problem(60, 40, 100, 4, 2, 64, 7 + heads);
    KeySet ks = random_lists(rng, 60, 40, 100, heads, 20);
    check(p, &ks, "index lists heads " + std::to_string(heads));
  }
}

TEST(Attention, PerHeadMixedSetsMatchMaskedReference) {
  std::mt19937 rng(8);
  std::vector<KeySet> heads = {KeySet::window(30), KeySet::all(), KeySet::strided(9),
                               random_lists(rng, 70, 30, 100, 1, 30)};
  KeySet ks = KeySet::per_head(heads);
  Problem p = make_problem(70, 30, 100, 4, 2, 80, 9);
  check(p, &ks, "per head");
}

TEST(Attention, EvictedCacheUsesKeyPositions) {
  // Cache slots hold a sorted subset of positions (as after eviction); the causal mask
  // and the positional sets use positions, not slots.
  std::mt19937 rng(11);
  Problem p = make_problem(8, 400, 150, 4, 2, 64, 12);
  std::vector<int32_t> pos;
  for (int32_t x = 0; x < 408 && int64_t(pos.size()) < 150; ++x)
    if (x < 4 || x >= 300 || rng() % 3 == 0) pos.push_back(x);
  ASSERT_EQ(pos.size(), 150u);
  p.key_pos = pos;
  check(p, nullptr, "evicted dense");
  KeySet sw = KeySet::sink_window(4, 64);
  check(p, &sw, "evicted sink+window");
  KeySet st = KeySet::strided(5);
  check(p, &st, "evicted strided");
  KeySet shared = random_lists(rng, 8, 400, 150, 1, 40);  // gathered tiles, positions per slot
  check(p, &shared, "evicted shared index lists");
  KeySet per_head_lists = random_lists(rng, 8, 400, 150, 4, 40);
  check(p, &per_head_lists, "evicted per-head index lists");
}

TEST(Attention, QueryWithNoVisibleKeyGivesZeros) {
  Problem p = make_problem(2, 0, 10, 2, 1, 16, 13);
  p.key_pos.assign(10, 0);
  for (int j = 0; j < 10; ++j) p.key_pos[j] = 5 + j;  // all keys after the queries
  std::vector<float> out;
  attention(p.s, p.args(out));
  for (int64_t i = 0; i < 2; ++i)
    for (int c = 0; c < 32; ++c) EXPECT_EQ(out[i * p.out_stride + c], 0.f);
}

TEST(Attention, NativeWindowAndSoftcapMatchReference) {
  // The layer's window and logit softcap inside the tiled kernel, the decode path, the
  // gathered index lists and per-head sets: against the naive reference, every ISA.
  std::mt19937 rng(31);
  uint32_t seed = 700;
  for (float cap : {0.f, 2.f}) {
    for (int64_t w : {1, 64, 150}) {
      const std::string tag = "window " + std::to_string(w) + " softcap " + std::to_string(cap);
      Problem prefill = make_problem(200, 0, 200, 8, 2, 64, seed++, 3.f);
      prefill.s.window = w;
      prefill.s.softcap = cap;
      check(prefill, nullptr, tag + " prefill");
      KeySet sink = KeySet::sink_window(4, 100);
      check(prefill, &sink, tag + " prefill with sink+window set");
      Problem chunk = make_problem(45, 160, 205, 4, 4, 80, seed++, 3.f);
      chunk.s.window = w;
      chunk.s.softcap = cap;
      check(chunk, nullptr, tag + " chunk");
      KeySet lists = random_lists(rng, 45, 160, 205, 1, 60);
      check(chunk, &lists, tag + " chunk shared lists");
      KeySet head_lists = random_lists(rng, 45, 160, 205, 4, 60);
      check(chunk, &head_lists, tag + " chunk per-head lists");
      Problem decode = make_problem(1, 300, 301, 8, 1, 128, seed++, 3.f);
      decode.s.window = w;
      decode.s.softcap = cap;
      check(decode, nullptr, tag + " decode");
    }
  }
}

TEST(Attention, ObservedRowsStopAtTheNativeWindow) {
  // No observed key lies at distance >= window, and each row has min(t + 1, w) keys.
  Problem p = make_problem(150, 0, 150, 4, 2, 64, 41);
  p.s.window = 33;
  CaptureObserver obs;
  std::vector<float> out;
  attention(p.s, p.args(out), nullptr, &obs);
  ASSERT_EQ(obs.calls_, 150 * 4);
  for (const auto& [key, row] : obs.rows_) {
    const int64_t t = key.second;
    ASSERT_EQ(int64_t(row.keys.size()), std::min<int64_t>(t + 1, 33)) << "pos " << t;
    for (int32_t j : row.keys) ASSERT_LT(t - j, 33);
  }
}

TEST(Attention, EvictedCacheWithNativeWindowUsesPositions) {
  std::mt19937 rng(43);
  Problem p = make_problem(8, 400, 150, 4, 2, 64, 44);
  std::vector<int32_t> pos;
  for (int32_t x = 0; x < 408 && int64_t(pos.size()) < 150; ++x)
    if (x < 4 || x >= 300 || rng() % 3 == 0) pos.push_back(x);
  p.key_pos = pos;
  p.s.window = 70;
  check(p, nullptr, "evicted, native window");
  KeySet shared = random_lists(rng, 8, 400, 150, 1, 40);
  check(p, &shared, "evicted shared lists, native window");
}

TEST(Attention, BadShapesThrow) {
  Problem p = make_problem(4, 0, 4, 4, 4, 16, 14);
  std::vector<float> out;
  AttentionShape s = p.s;
  s.n_kv_head = 3;
  EXPECT_THROW(attention(s, p.args(out)), Error);
  s = p.s;
  s.head_dim = 300;
  EXPECT_THROW(attention(s, p.args(out)), Error);
  KeySet wrong = KeySet::per_head({KeySet::all(), KeySet::all()});
  EXPECT_THROW(attention(p.s, p.args(out), &wrong), Error);
  s = p.s;
  s.window = -1;
  EXPECT_THROW(attention(s, p.args(out)), Error);
  s = p.s;
  s.softcap = -2.f;
  EXPECT_THROW(attention(s, p.args(out)), Error);
  s.softcap = NAN;
  EXPECT_THROW(attention(s, p.args(out)), Error);
}

}  // namespace
}  // namespace attnsparse::ops
