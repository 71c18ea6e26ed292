// A naive double-precision transformer written from the architectures' definitions (llama
// and qwen2 layouts of GGUF: RMSNorm, RoPE, GQA, SwiGLU, optional q/k/v biases and tied
// output), for f32 GGUF files: the independent reference of the engine tests.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf.h"

namespace attnsparse::testing {

struct Naive {
  const GgufFile& f;
  std::string arch;
  int64_t d, n_layer, n_head, n_kv, hd, n_ff, V;
  double eps, base;

  explicit Naive(const GgufFile& file) : f(file) {
    arch = f.architecture();
    const std::string a = arch + ".";
    d = *f.get_int(a + "embedding_length");
    n_layer = *f.get_int(a + "block_count");
    n_head = *f.get_int(a + "attention.head_count");
    n_kv = *f.get_int(a + "attention.head_count_kv");
    n_ff = *f.get_int(a + "feed_forward_length");
    eps = *f.get_float(a + "attention.layer_norm_rms_epsilon");
    base = *f.get_float(a + "rope.freq_base");
    hd = d / n_head;
    V = f.require("token_embd.weight").shape[0];
  }
  const float* t(const std::string& name) const {
    const TensorInfo& ti = f.require(name);
    EXPECT_EQ(ti.dtype, DType::F32) << name;
    return reinterpret_cast<const float*>(ti.data);
  }
  const float* opt(const std::string& name) const {
    const TensorInfo* ti = f.find(name);
    return ti ? reinterpret_cast<const float*>(ti->data) : nullptr;
  }
  static std::vector<double> matvec(const float* w, const float* bias, const std::vector<double>& x,
                                    int64_t n_out) {
    std::vector<double> y(n_out);
    const int64_t n_in = static_cast<int64_t>(x.size());
    for (int64_t o = 0; o < n_out; ++o) {
      double s = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < n_in; ++i) s += static_cast<double>(w[o * n_in + i]) * x[i];
      y[o] = s;
    }
    return y;
  }
  std::vector<double> rms(const std::vector<double>& x, const float* w) const {
    double ms = 0;
    for (double v : x) ms += v * v;
    const double s = 1.0 / std::sqrt(ms / x.size() + eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
    return y;
  }
  // GGUF llama rotates adjacent pairs (2i, 2i+1); qwen2 rotates (i, i + hd/2).
  void rope(std::vector<double>& v, int64_t heads, int64_t pos) const {
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double th = pos * std::pow(base, -2.0 * i / hd);
        const int64_t a = arch == "llama" ? h * hd + 2 * i : h * hd + i;
        const int64_t b = arch == "llama" ? a + 1 : a + hd / 2;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * std::cos(th) - x1 * std::sin(th);
        v[b] = x0 * std::sin(th) + x1 * std::cos(th);
      }
  }

  // Logits of every position. With `probs`, also every attention probability row:
  // (*probs)[layer][head][query] holds the query's query + 1 probabilities.
  using Rows = std::vector<std::vector<std::vector<std::vector<double>>>>;
  std::vector<std::vector<double>> run(const std::vector<int32_t>& toks, Rows* probs = nullptr) const {
    const int64_t n = static_cast<int64_t>(toks.size());
    std::vector<std::vector<double>> x(n, std::vector<double>(d));
    const float* E = t("token_embd.weight");
    for (int64_t p = 0; p < n; ++p)
      for (int64_t i = 0; i < d; ++i) x[p][i] = E[toks[p] * d + i];
    if (probs) probs->assign(n_layer, Rows::value_type(n_head, std::vector<std::vector<double>>(n)));
    for (int64_t l = 0; l < n_layer; ++l) {
      auto blk = [&](const char* what) { return "blk." + std::to_string(l) + "." + what; };
      std::vector<std::vector<double>> q(n), k(n), v(n);
      for (int64_t p = 0; p < n; ++p) {
        const auto xn = rms(x[p], t(blk("attn_norm.weight")));
        q[p] = matvec(t(blk("attn_q.weight")), opt(blk("attn_q.bias")), xn, n_head * hd);
        k[p] = matvec(t(blk("attn_k.weight")), opt(blk("attn_k.bias")), xn, n_kv * hd);
        v[p] = matvec(t(blk("attn_v.weight")), opt(blk("attn_v.bias")), xn, n_kv * hd);
        rope(q[p], n_head, p);
        rope(k[p], n_kv, p);
      }
      for (int64_t p = 0; p < n; ++p) {
        std::vector<double> att(n_head * hd, 0.0);
        for (int64_t h = 0; h < n_head; ++h) {
          const int64_t g = h / (n_head / n_kv);  // the KV head this query head reads
          std::vector<double> s(p + 1);
          double mx = -1e300;
          for (int64_t j = 0; j <= p; ++j) {
            double dot = 0;
            for (int64_t i = 0; i < hd; ++i) dot += q[p][h * hd + i] * k[j][g * hd + i];
            s[j] = dot / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[j]);
          }
          double z = 0;
          for (double& e : s) z += (e = std::exp(e - mx));
          if (probs) {
            std::vector<double>& row = (*probs)[l][h][p];
            for (double e : s) row.push_back(e / z);
          }
          for (int64_t j = 0; j <= p; ++j)
            for (int64_t i = 0; i < hd; ++i) att[h * hd + i] += s[j] / z * v[j][g * hd + i];
        }
        const auto o = matvec(t(blk("attn_output.weight")), nullptr, att, d);
        for (int64_t i = 0; i < d; ++i) x[p][i] += o[i];
        const auto xn = rms(x[p], t(blk("ffn_norm.weight")));
        const auto gt = matvec(t(blk("ffn_gate.weight")), nullptr, xn, n_ff);
        const auto up = matvec(t(blk("ffn_up.weight")), nullptr, xn, n_ff);
        std::vector<double> a(n_ff);
        for (int64_t i = 0; i < n_ff; ++i) a[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
        const auto dn = matvec(t(blk("ffn_down.weight")), nullptr, a, d);
        for (int64_t i = 0; i < d; ++i) x[p][i] += dn[i];
      }
    }
    const float* out = opt("output.weight") ? t("output.weight") : E;  // tied: token_embd
    std::vector<std::vector<double>> logits(n);
    for (int64_t p = 0; p < n; ++p) logits[p] = matvec(out, nullptr, rms(x[p], t("output_norm.weight")), V);
    return logits;
  }
};

}  // namespace attnsparse::testing
