// The condensation regulariser (docs/methods.md §9): its value against a naive per-row
// reference (sort, sum the top k), its gradient with respect to the probabilities against
// the closed form (-λ/count on each counted row's top k, 0 elsewhere), its gradient with
// respect to the logits against central finite differences, the skipped rows t < k,
// layer/head selection, and zero loss / zero gradient on rows that are already k-sparse.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "train/reg_spec.h"
#include "train/torch/lm.h"

namespace attnsparse::train {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// Causal softmax of [B, H, T, T] logits (keys j > t masked).
torch::Tensor causal_softmax(const torch::Tensor& logits) {
  const int64_t T = logits.size(-1);
  auto mask = torch::ones({T, T}, torch::kBool).triu(1);
  return torch::softmax(logits.masked_fill(mask, -INFINITY), -1);
}

// Logits whose rows range from nearly uniform to strongly peaked (so hinge terms are
// active on some rows and inactive on others), no ties.
torch::Tensor random_logits(int64_t B, int64_t H, int64_t T, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto base = at::normal(0.0, 1.0, {B, H, T, T}, gen).to(torch::kFloat64);
  auto scale = at::normal(0.0, 1.0, {B, H, T, 1}, gen).to(torch::kFloat64).abs() * 3.0 + 0.2;
  return base * scale;
}

struct NaiveResult {
  double loss = 0;
  // d loss / d probs, per layer [B, H, T, T]
  std::vector<std::vector<double>> grad;
};

// The definition, one row at a time: λ · mean over counted rows of (1 − M_k) or
// max(0, 1 − ε − M_k); counted rows: chosen layers and heads, t >= k_t.
NaiveResult naive(const std::vector<torch::Tensor>& probs, const RegSpec& spec) {
  NaiveResult r;
  double total = 0;
  int64_t count = 0;
  struct Active { size_t layer; int64_t offset; std::vector<int64_t> top; };
  std::vector<Active> active;
  for (size_t l = 0; l < probs.size(); ++l) {
    auto p = probs[l].contiguous();
    const int64_t B = p.size(0), H = p.size(1), T = p.size(2);
    r.grad.emplace_back(p.numel(), 0.0);
    if (!spec.uses_layer(static_cast<int64_t>(l))) continue;
    const double* d = p.data_ptr<double>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        if (!spec.uses_head(h)) continue;
        for (int64_t t = 0; t < T; ++t) {
          const int64_t k = spec.k_for_row(t);
          if (t < k) continue;
          const int64_t off = ((b * H + h) * T + t) * T;
          std::vector<int64_t> idx(t + 1);
          std::iota(idx.begin(), idx.end(), 0);
          std::sort(idx.begin(), idx.end(), [&](int64_t x, int64_t y) { return d[off + x] > d[off + y]; });
          double mk = 0;
          for (int64_t i = 0; i < k; ++i) mk += d[off + idx[i]];
          double term = spec.hinge ? std::max(0.0, 1.0 - spec.eps - mk) : 1.0 - mk;
          total += term;
          ++count;
          if (!spec.hinge || 1.0 - spec.eps - mk > 0)
            active.push_back({l, off, std::vector<int64_t>(idx.begin(), idx.begin() + k)});
        }
      }
  }
  if (count == 0) return r;
  r.loss = spec.lambda * total / count;
  for (const auto& a : active)
    for (int64_t j : a.top) r.grad[a.layer][a.offset + j] = -spec.lambda / count;
  return r;
}

std::vector<torch::Tensor> layer_probs(int n_layers, int64_t B, int64_t H, int64_t T, uint64_t seed,
                                       std::vector<torch::Tensor>* logits_out = nullptr) {
  std::vector<torch::Tensor> probs;
  for (int l = 0; l < n_layers; ++l) {
    auto logits = random_logits(B, H, T, seed + l).requires_grad_(true);
    if (logits_out) logits_out->push_back(logits);
    probs.push_back(causal_softmax(logits));
  }
  return probs;
}

const std::vector<std::string> kSpecs = {
    "topk:k=3,lambda=0.7",
    "topk:k=3,lambda=0.7,hinge=0.05",
    "topk:k=1,lambda=2",
    "dyn:alpha=1,C=0.5,lambda=0.3",
    "dyn:alpha=0.5,C=0.7,lambda=1,hinge=0.1",
    "topk:k=2,lambda=1,layers=1,heads=0,2",
    "dyn:alpha=1,C=0.5,lambda=0.5,heads=1",
};

TEST(CondensationLoss, ValueAndProbabilityGradientMatchTheDefinition) {
  for (const auto& s : kSpecs) {
    SCOPED_TRACE(s);
    RegSpec spec = RegSpec::parse(s);
    // Probabilities as leaves, so autograd gives d loss / d probs directly.
    std::vector<torch::Tensor> probs;
    for (auto& p : layer_probs(2, 2, 3, 12, 42)) probs.push_back(p.detach().requires_grad_(true));
    NaiveResult ref = naive(probs, spec);
    auto loss = condensation_loss(probs, spec);
    ASSERT_EQ(loss.dim(), 0);
    EXPECT_NEAR(loss.item<double>(), ref.loss, 1e-12);
    EXPECT_GT(ref.loss, 0.0);
    loss.backward();
    for (size_t l = 0; l < probs.size(); ++l) {
      // A layer the spec does not use gets no gradient at all (undefined = zero).
      auto g = probs[l].grad().defined() ? probs[l].grad().contiguous() : torch::zeros_like(probs[l]);
      const double* gd = g.data_ptr<double>();
      for (int64_t i = 0; i < g.numel(); ++i)
        ASSERT_NEAR(gd[i], ref.grad[l][i], 1e-14) << "layer " << l << " index " << i;
    }
  }
}

TEST(CondensationLoss, LogitGradientMatchesFiniteDifferences) {
  for (const auto& s : kSpecs) {
    SCOPED_TRACE(s);
    RegSpec spec = RegSpec::parse(s);
    std::vector<torch::Tensor> logits;
    auto probs = layer_probs(2, 1, 3, 9, 7, &logits);
    condensation_loss(probs, spec).backward();
    auto f = [&]() {
      torch::NoGradGuard ng;
      std::vector<torch::Tensor> p;
      for (auto& x : logits) p.push_back(causal_softmax(x));
      return condensation_loss(p, spec).item<double>();
    };
    const double h = 1e-6;
    double max_err = 0, max_grad = 0;
    for (size_t l = 0; l < logits.size(); ++l) {
      auto flat = logits[l].detach().view({-1});  // shares storage with the leaf
      auto grad = (logits[l].grad().defined() ? logits[l].grad() : torch::zeros_like(logits[l]))
                      .contiguous().view({-1});
      const int64_t T = logits[l].size(-1);
      for (int64_t i = 0; i < flat.numel(); ++i) {
        if (i % T > (i / T) % T) continue;  // masked entries (key after query)
        const double x0 = flat[i].item<double>();
        flat[i] = x0 + h;
        const double up = f();
        flat[i] = x0 - h;
        const double down = f();
        flat[i] = x0;
        const double fd = (up - down) / (2 * h);
        max_err = std::max(max_err, std::abs(fd - grad[i].item<double>()));
        max_grad = std::max(max_grad, std::abs(fd));
      }
    }
    EXPECT_GT(max_grad, 1e-4);
    EXPECT_LT(max_err, 1e-7) << "max |fd - autograd| " << max_err;
  }
}

TEST(CondensationLoss, RowsBeforeKAreSkipped) {
  RegSpec spec = RegSpec::parse("topk:k=5,lambda=1");
  std::vector<torch::Tensor> logits;
  auto probs = layer_probs(1, 1, 2, 10, 3, &logits);
  condensation_loss(probs, spec).backward();
  auto g = logits[0].grad();
  // Rows t = 0..4 have t < k: no gradient at all; rows t >= 5 do get one.
  EXPECT_EQ(g.slice(2, 0, 5).abs().max().item<double>(), 0.0);
  EXPECT_GT(g.slice(2, 5, 10).abs().max().item<double>(), 0.0);
  // A sequence shorter than k + 1 has no counted row: loss 0.
  auto short_probs = layer_probs(1, 1, 2, 5, 3);
  EXPECT_EQ(condensation_loss(short_probs, spec).item<double>(), 0.0);
  // Dynamic k = ceil(2 sqrt(t+1)): a row counts when t >= k_t (here t >= 5).
  RegSpec dyn = RegSpec::parse("dyn:alpha=2,C=0.5,lambda=1");
  std::vector<torch::Tensor> lg;
  auto p2 = layer_probs(1, 1, 1, 12, 9, &lg);
  condensation_loss(p2, dyn).backward();
  for (int64_t t = 0; t < 12; ++t) {
    const bool counted = t >= static_cast<int64_t>(std::ceil(2 * std::sqrt(double(t + 1)) - 1e-9));
    const double gmax = lg[0].grad().select(2, t).abs().max().item<double>();
    if (counted) EXPECT_GT(gmax, 0.0) << "t=" << t;
    else EXPECT_EQ(gmax, 0.0) << "t=" << t;
  }
}

TEST(CondensationLoss, LayerAndHeadSelection) {
  RegSpec spec = RegSpec::parse("topk:k=2,lambda=1,layers=1,heads=0,2");
  std::vector<torch::Tensor> logits;
  auto probs = layer_probs(3, 1, 4, 8, 5, &logits);
  condensation_loss(probs, spec).backward();
  EXPECT_FALSE(logits[0].grad().defined() && logits[0].grad().abs().max().item<double>() > 0);
  EXPECT_FALSE(logits[2].grad().defined() && logits[2].grad().abs().max().item<double>() > 0);
  auto g = logits[1].grad();
  ASSERT_TRUE(g.defined());
  for (int64_t h = 0; h < 4; ++h) {
    const double gmax = g.select(1, h).abs().max().item<double>();
    if (h == 0 || h == 2) EXPECT_GT(gmax, 0.0) << h;
    else EXPECT_EQ(gmax, 0.0) << h;
  }
}

// Rows with at most k non-zero entries: M_k = 1, so the loss and its gradient vanish.
TEST(CondensationLoss, AlreadySparseRowsGiveZeroLossAndGradient) {
  const int64_t T = 10, k = 3;
  auto gen = at::detail::createCPUGenerator(17);
  auto logits0 = at::normal(0.0, 1.0, {2, 2, T, T}, gen).to(torch::kFloat64);
  // Keep k random keys per row (t >= k), the others -inf.
  auto keep = torch::zeros({2, 2, T, T}, torch::kBool);
  auto perm_gen = at::detail::createCPUGenerator(18);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t t = 0; t < T; ++t) {
        auto perm = torch::randperm(t + 1, perm_gen);
        for (int64_t i = 0; i < std::min<int64_t>(k, t + 1); ++i) keep[b][h][t][perm[i].item<int64_t>()] = true;
      }
  auto logits = logits0.masked_fill(keep.logical_not(), -INFINITY).requires_grad_(true);
  for (const std::string s : {"topk:k=3,lambda=1", "topk:k=3,lambda=1,hinge=0.05"}) {
    SCOPED_TRACE(s);
    if (logits.grad().defined()) logits.grad().zero_();
    auto probs = std::vector<torch::Tensor>{torch::softmax(logits, -1)};
    auto loss = condensation_loss(probs, RegSpec::parse(s));
    EXPECT_NEAR(loss.item<double>(), 0.0, 1e-15);
    loss.backward();
    auto g = logits.grad().masked_fill(keep.logical_not(), 0.0);
    EXPECT_LT(g.abs().max().item<double>(), 1e-15);
  }
  // Hinge: rows that are only nearly sparse (M_k >= 1 - ε) also give exactly zero.
  auto peaked = random_logits(1, 2, T, 23) * 0.0;
  for (int64_t t = 0; t < T; ++t) peaked.index_put_({0, torch::indexing::Slice(), t, 0}, 8.0);
  peaked.requires_grad_(true);
  auto probs = std::vector<torch::Tensor>{causal_softmax(peaked)};
  RegSpec hinge = RegSpec::parse("topk:k=1,lambda=1,hinge=0.05");
  auto m1 = probs[0].select(-1, 0).slice(2, 1, T);
  ASSERT_GT(m1.min().item<double>(), 0.95);  // every counted row has M_1 >= 1 - ε
  ASSERT_LT(m1.max().item<double>(), 1.0);   // ... but is not exactly sparse
  auto loss = condensation_loss(probs, hinge);
  EXPECT_EQ(loss.item<double>(), 0.0);
  loss.backward();
  EXPECT_EQ(peaked.grad().abs().max().item<double>(), 0.0);
  // The tail-mass form still pushes these rows (its gradient is not zero).
  peaked.grad().zero_();
  condensation_loss({causal_softmax(peaked)}, RegSpec::parse("topk:k=1,lambda=1")).backward();
  EXPECT_GT(peaked.grad().abs().max().item<double>(), 0.0);
}

TEST(CondensationLoss, InactiveSpecGivesZero) {
  auto probs = layer_probs(1, 1, 2, 6, 1);
  EXPECT_EQ(condensation_loss(probs, RegSpec::parse("none")).item<double>(), 0.0);
  EXPECT_EQ(condensation_loss(probs, RegSpec::parse("topk:k=2,lambda=0")).item<double>(), 0.0);
  EXPECT_EQ(condensation_loss({}, RegSpec::parse("topk:k=2,lambda=1")).item<double>(), 0.0);
}

TEST(RegSpec, ParsesAndPrintsCanonically) {
  EXPECT_EQ(RegSpec::parse("").to_string(), "none");
  EXPECT_EQ(RegSpec::parse("none").to_string(), "none");
  EXPECT_EQ(RegSpec::parse("topk:k=8,lambda=0.1").to_string(), "topk:k=8,lambda=0.1");
  EXPECT_EQ(RegSpec::parse("topk:lambda=0.1,k=8,hinge=0.05").to_string(), "topk:k=8,lambda=0.1,hinge=0.05");
  EXPECT_EQ(RegSpec::parse("dyn:alpha=1,C=0.5,lambda=0.1").to_string(), "dyn:alpha=1,C=0.5,lambda=0.1");
  RegSpec r = RegSpec::parse("topk:k=4,lambda=1,layers=0,2,heads=1");
  EXPECT_EQ(r.layers, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(r.heads, (std::vector<int64_t>{1}));
  EXPECT_EQ(RegSpec::parse(r.to_string()).to_string(), r.to_string());
}

TEST(RegSpec, DynamicKIsCeilAlphaNToTheC) {
  RegSpec d = RegSpec::parse("dyn:alpha=1,C=0.5,lambda=1");
  EXPECT_EQ(d.k_for_row(0), 1);   // n = 1
  EXPECT_EQ(d.k_for_row(3), 2);   // sqrt(4) = 2 exactly
  EXPECT_EQ(d.k_for_row(4), 3);   // sqrt(5) = 2.24
  EXPECT_EQ(d.k_for_row(15), 4);  // sqrt(16) = 4 exactly
  EXPECT_EQ(d.k_for_row(255), 16);
  RegSpec d2 = RegSpec::parse("dyn:alpha=2,C=0.25,lambda=1");
  EXPECT_EQ(d2.k_for_row(80), 6);   // 2 · 81^0.25 = 6
  EXPECT_EQ(d2.k_for_row(81), 7);   // 2 · 82^0.25 = 6.02
  EXPECT_EQ(RegSpec::parse("topk:k=8,lambda=1").k_for_row(100), 8);
}

TEST(RegSpec, BadSpecsGiveClearErrors) {
  auto message = [](const std::string& s) {
    try {
      RegSpec::parse(s);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("top:k=8,lambda=1").find("unknown kind 'top'"), std::string::npos);
  EXPECT_NE(message("topk").find("missing options"), std::string::npos);
  EXPECT_NE(message("topk:k=8").find("lambda= is required"), std::string::npos);
  EXPECT_NE(message("topk:k=0,lambda=1").find("k must be a positive integer"), std::string::npos);
  EXPECT_NE(message("topk:k=2.5,lambda=1").find("k must be a positive integer"), std::string::npos);
  EXPECT_NE(message("topk:k=8,lambda=-1").find("lambda must be >= 0"), std::string::npos);
  EXPECT_NE(message("topk:k=8,lambda=x").find("lambda=x is not a number"), std::string::npos);
  EXPECT_NE(message("topk:k=8,lambda=1,hinge=1").find("hinge margin must be in [0, 1)"), std::string::npos);
  EXPECT_NE(message("dyn:alpha=0,lambda=1").find("alpha must be > 0"), std::string::npos);
  EXPECT_NE(message("dyn:C=2,lambda=1").find("C must be in [0, 1]"), std::string::npos);
  EXPECT_NE(message("topk:alpha=1,lambda=1").find("unknown option 'alpha' for topk"), std::string::npos);
  EXPECT_NE(message("topk:k=8,lambda=1,layers=-1").find("bad index"), std::string::npos);
  EXPECT_NE(message("topk:k=8,lambda=1,7").find("'7' is not key=value"), std::string::npos);
}

}  // namespace
}  // namespace attnsparse::train
