#include "train/torch/lm.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf_writer.h"
#include "model/gguf_encode.h"
#include "train/text_tokenizer.h"

namespace attnsparse::train {

namespace F = torch::nn::functional;

std::string LMConfig::to_json() const {
  nlohmann::json j = {{"arch", arch},       {"n_vocab", n_vocab},     {"n_ctx", n_ctx},
                      {"n_embd", n_embd},   {"n_layer", n_layer},     {"n_head", n_head},
                      {"n_kv_head", n_kv_head}, {"n_ff", n_ff},       {"tied", tied},
                      {"rope_base", rope_base}, {"norm_eps", norm_eps}};
  return j.dump();
}

LMConfig LMConfig::from_json(const std::string& s) {
  auto j = nlohmann::json::parse(s);
  LMConfig c;
  c.arch = j.at("arch");
  c.n_vocab = j.at("n_vocab");
  c.n_ctx = j.at("n_ctx");
  c.n_embd = j.at("n_embd");
  c.n_layer = j.at("n_layer");
  c.n_head = j.at("n_head");
  c.n_kv_head = j.at("n_kv_head");
  c.n_ff = j.at("n_ff");
  c.tied = j.at("tied");
  c.rope_base = j.at("rope_base");
  c.norm_eps = j.at("norm_eps");
  return c;
}

LMConfig preset_config(const std::string& arch, const std::string& preset, int64_t n_vocab,
                       int64_t n_ctx) {
  if (arch != "llama" && arch != "gpt2") fail_usage("--arch '{}': expected llama or gpt2", arch);
  LMConfig c;
  c.arch = arch;
  c.n_vocab = n_vocab;
  c.n_ctx = n_ctx;
  bool llama = arch == "llama";
  if (preset == "tiny") {
    c.n_embd = 64, c.n_layer = 2, c.n_head = 4, c.n_kv_head = llama ? 2 : 4;
    c.n_ff = llama ? 128 : 256;
  } else if (preset == "mini") {
    c.n_embd = 128, c.n_layer = 4, c.n_head = 4, c.n_kv_head = 4;
    c.n_ff = llama ? 352 : 512;
  } else if (preset == "small") {
    c.n_embd = 256, c.n_layer = 4, c.n_head = 4, c.n_kv_head = 4;
    c.n_ff = llama ? 704 : 1024;
  } else if (preset == "base") {
    c.n_embd = 384, c.n_layer = 6, c.n_head = 6, c.n_kv_head = 6;
    c.n_ff = llama ? 1024 : 1536;
  } else {
    fail_usage("--preset '{}': expected tiny, mini, small or base", preset);
  }
  if (n_ctx < 2 || n_ctx > 8192) fail_usage("--ctx {}: expected 2..8192", n_ctx);
  return c;
}

torch::Tensor LMImpl::add(const std::string& name, torch::Tensor t) {
  std::string reg = name;
  for (char& c : reg) if (c == '.') c = '_';
  t = register_parameter(reg, std::move(t));
  params_.emplace_back(name, t);
  return t;
}

LMImpl::LMImpl(const LMConfig& cfg, uint64_t seed) : cfg_(cfg) {
  if (cfg.n_embd % cfg.n_head != 0 || cfg.n_head % cfg.n_kv_head != 0 || cfg.head_dim() % 2 != 0)
    fail_usage("bad model shape: n_embd {} n_head {} n_kv_head {}", cfg.n_embd, cfg.n_head,
               cfg.n_kv_head);
  auto gen = at::detail::createCPUGenerator(seed);
  const int64_t d = cfg.n_embd, hd = cfg.head_dim(), ff = cfg.n_ff, V = cfg.n_vocab;
  const double std = 0.02, out_std = 0.02 / std::sqrt(2.0 * cfg.n_layer);
  auto normal = [&](std::vector<int64_t> shape, double s) {
    return at::normal(0.0, s, shape, gen);
  };
  auto ones = [](int64_t n) { return torch::ones({n}); };
  auto zeros = [](int64_t n) { return torch::zeros({n}); };
  add("token_embd.weight", normal({V, d}, std));
  bool llama = cfg.arch == "llama";
  if (!llama) add("position_embd.weight", normal({cfg.n_ctx, d}, 0.01));
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", ones(d));
    if (llama) {
      add(p + "attn_q.weight", normal({cfg.n_head * hd, d}, std));
      add(p + "attn_k.weight", normal({cfg.n_kv_head * hd, d}, std));
      add(p + "attn_v.weight", normal({cfg.n_kv_head * hd, d}, std));
      add(p + "attn_output.weight", normal({d, cfg.n_head * hd}, out_std));
      add(p + "ffn_norm.weight", ones(d));
      add(p + "ffn_gate.weight", normal({ff, d}, std));
      add(p + "ffn_up.weight", normal({ff, d}, std));
      add(p + "ffn_down.weight", normal({d, ff}, out_std));
    } else {
      add(p + "attn_norm.bias", zeros(d));
      add(p + "attn_qkv.weight", normal({3 * d, d}, std));
      add(p + "attn_qkv.bias", zeros(3 * d));
      add(p + "attn_output.weight", normal({d, d}, out_std));
      add(p + "attn_output.bias", zeros(d));
      add(p + "ffn_norm.weight", ones(d));
      add(p + "ffn_norm.bias", zeros(d));
      add(p + "ffn_up.weight", normal({ff, d}, std));
      add(p + "ffn_up.bias", zeros(ff));
      add(p + "ffn_down.weight", normal({d, ff}, out_std));
      add(p + "ffn_down.bias", zeros(d));
    }
  }
  add("output_norm.weight", ones(d));
  if (!llama) add("output_norm.bias", zeros(d));
  if (!cfg.tied) add("output.weight", normal({V, d}, std));
}

torch::Tensor LMImpl::param(const std::string& gguf_name) const {
  for (const auto& [n, t] : params_)
    if (n == gguf_name) return t;
  fail("no parameter {}", gguf_name);
}

int64_t LMImpl::num_params() const {
  int64_t n = 0;
  for (const auto& [name, t] : params_) n += t.numel();
  return n;
}

torch::Tensor LMImpl::rope(const torch::Tensor& x) const {
  const int64_t T = x.size(2), hd = x.size(3), half = hd / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(x.device());
  // theta_i = base^(-2i/hd), angle = pos * theta_i (computed in f64, as llama.cpp's f32 is close)
  auto inv = torch::pow(cfg_.rope_base, -torch::arange(0, half, opts) * 2.0 / double(hd));
  auto ang = torch::outer(torch::arange(0, T, opts), inv);  // [T, half]
  auto cos = ang.cos().to(x.dtype()), sin = ang.sin().to(x.dtype());
  auto xr = x.reshape({x.size(0), x.size(1), T, half, 2});
  auto x0 = xr.select(-1, 0), x1 = xr.select(-1, 1);
  auto y0 = x0 * cos - x1 * sin, y1 = x0 * sin + x1 * cos;
  return torch::stack({y0, y1}, -1).reshape(x.sizes());
}

torch::Tensor LMImpl::attention(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, std::vector<torch::Tensor>* probs) {
  const int64_t T = q.size(2);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(q.size(3))));
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
                  .triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
  auto p = torch::softmax(scores, -1);
  if (probs) probs->push_back(p);
  return torch::matmul(p, v);
}

torch::Tensor LMImpl::forward(const torch::Tensor& idx, std::vector<torch::Tensor>* probs) {
  const int64_t B = idx.size(0), T = idx.size(1), d = cfg_.n_embd, H = cfg_.n_head,
                KV = cfg_.n_kv_head, hd = cfg_.head_dim();
  if (T > cfg_.n_ctx) fail("sequence of {} tokens exceeds the context {}", T, cfg_.n_ctx);
  const double eps = cfg_.norm_eps;
  auto W = [&](const std::string& n) { return param(n); };
  auto x = F::embedding(idx, W("token_embd.weight"));
  const bool llama = cfg_.arch == "llama";
  if (!llama) x = x + W("position_embd.weight").slice(0, 0, T).unsqueeze(0);
  auto rms = [&](const torch::Tensor& h, const torch::Tensor& w) {
    return h * torch::rsqrt(h.pow(2).mean(-1, true) + eps) * w;
  };
  auto ln = [&](const torch::Tensor& h, const std::string& n) {
    return torch::layer_norm(h, {d}, W(n + ".weight"), W(n + ".bias"), eps);
  };
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    if (llama) {
      auto h = rms(x, W(p + "attn_norm.weight"));
      auto q = F::linear(h, W(p + "attn_q.weight")).view({B, T, H, hd}).transpose(1, 2);
      auto k = F::linear(h, W(p + "attn_k.weight")).view({B, T, KV, hd}).transpose(1, 2);
      auto v = F::linear(h, W(p + "attn_v.weight")).view({B, T, KV, hd}).transpose(1, 2);
      q = rope(q);
      k = rope(k);
      if (KV != H) {  // query head h uses KV head h / (H / KV), as llama.cpp
        k = k.repeat_interleave(H / KV, 1);
        v = v.repeat_interleave(H / KV, 1);
      }
      auto o = attention(q, k, v, probs).transpose(1, 2).reshape({B, T, H * hd});
      x = x + F::linear(o, W(p + "attn_output.weight"));
      h = rms(x, W(p + "ffn_norm.weight"));
      auto g = torch::silu(F::linear(h, W(p + "ffn_gate.weight")));
      x = x + F::linear(g * F::linear(h, W(p + "ffn_up.weight")), W(p + "ffn_down.weight"));
    } else {
      auto h = ln(x, p + "attn_norm");
      auto qkv = F::linear(h, W(p + "attn_qkv.weight"), W(p + "attn_qkv.bias"));
      auto parts = qkv.split(d, -1);
      auto q = parts[0].view({B, T, H, hd}).transpose(1, 2);
      auto k = parts[1].view({B, T, H, hd}).transpose(1, 2);
      auto v = parts[2].view({B, T, H, hd}).transpose(1, 2);
      auto o = attention(q, k, v, probs).transpose(1, 2).reshape({B, T, d});
      x = x + F::linear(o, W(p + "attn_output.weight"), W(p + "attn_output.bias"));
      h = ln(x, p + "ffn_norm");
      auto u = F::linear(h, W(p + "ffn_up.weight"), W(p + "ffn_up.bias"));
      if (gelu_f16_table_)
        u = torch::gelu(u.to(torch::kHalf).to(torch::kFloat), "tanh").to(torch::kHalf).to(torch::kFloat);
      else
        u = torch::gelu(u, "tanh");
      x = x + F::linear(u, W(p + "ffn_down.weight"), W(p + "ffn_down.bias"));
    }
  }
  x = llama ? rms(x, W("output_norm.weight")) : ln(x, "output_norm");
  return F::linear(x, cfg_.tied ? W("token_embd.weight") : W("output.weight"));
}

torch::Tensor condensation_loss(const std::vector<torch::Tensor>& probs, const RegSpec& spec) {
  if (probs.empty() || !spec.active()) {
    auto opts = probs.empty() ? torch::TensorOptions() : probs[0].options();
    return torch::zeros({}, opts);
  }
  const int64_t T = probs[0].size(-1);
  // Per query row: k_t, and whether the row counts (t >= k_t).
  std::vector<int64_t> kidx(T), valid_rows;
  int64_t kmax = 1;
  for (int64_t t = 0; t < T; ++t) {
    int64_t k = spec.k_for_row(t);
    kidx[t] = std::min(k, T) - 1;
    if (t >= k) {
      valid_rows.push_back(t);
      kmax = std::max(kmax, k);
    }
  }
  auto dev = probs[0].device();
  auto zero = torch::zeros({}, probs[0].options());
  if (valid_rows.empty()) return zero;
  auto rows = torch::tensor(valid_rows, torch::TensorOptions().dtype(torch::kInt64)).to(dev);
  std::vector<int64_t> krows;
  for (int64_t t : valid_rows) krows.push_back(kidx[t]);
  auto kk = torch::tensor(krows, torch::TensorOptions().dtype(torch::kInt64)).to(dev);
  torch::Tensor total = zero;
  int64_t count = 0;
  for (size_t l = 0; l < probs.size(); ++l) {
    if (!spec.uses_layer(static_cast<int64_t>(l))) continue;
    auto p = probs[l];  // [B, H, T, T]
    if (!spec.heads.empty()) {
      std::vector<int64_t> hs;
      for (int64_t h : spec.heads)
        if (h < p.size(1)) hs.push_back(h);
      if (hs.empty()) continue;
      p = p.index_select(1, torch::tensor(hs, torch::TensorOptions().dtype(torch::kInt64)).to(dev));
    }
    p = p.index_select(2, rows);                                // [B, H, R, T]
    auto top = std::get<0>(p.topk(kmax, -1, true, true));        // [B, H, R, kmax]
    auto cum = top.cumsum(-1);
    auto g = kk.view({1, 1, -1, 1}).expand({p.size(0), p.size(1), kk.size(0), 1});
    auto mk = cum.gather(-1, g).squeeze(-1);                     // [B, H, R]
    auto term = spec.hinge ? torch::relu(1.0 - spec.eps - mk) : 1.0 - mk;
    total = total + term.sum();
    count += term.numel();
  }
  if (count == 0) return zero;
  return total * (spec.lambda / double(count));
}

void SparsityStats::add(const std::vector<torch::Tensor>& probs, int64_t k, double eps) {
  torch::NoGradGuard ng;
  for (const auto& p0 : probs) {
    const int64_t T = p0.size(-1);
    if (T <= k) continue;
    auto p = p0.slice(2, k, T);  // rows t >= k
    auto mk = std::get<0>(p.topk(k, -1)).sum(-1).to(torch::kFloat64);
    mass_sum += mk.sum().item<double>();
    sparse += (mk >= 1.0 - eps).sum().item<int64_t>();
    rows += mk.numel();
  }
}

void export_gguf(LM& model, const TextTokenizer& tok, const std::string& path, bool f16,
                 const std::vector<std::pair<std::string, std::string>>& extra) {
  const LMConfig& c = model->config();
  if (tok.n_vocab() != c.n_vocab)
    fail("tokenizer has {} tokens but the model {}", tok.n_vocab(), c.n_vocab);
  GgufWriter w;
  const std::string a = c.arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "attnsparse-trained-" + a);
  tok.export_gguf(w);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(c.n_ctx));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.n_embd));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(c.n_layer));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.n_ff));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_head));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_kv_head));
  if (a == "llama") {
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps));
    w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.head_dim()));
    w.set_f32(a + ".rope.freq_base", static_cast<float>(c.rope_base));
  } else {
    w.set_f32(a + ".attention.layer_norm_epsilon", static_cast<float>(c.norm_eps));
  }
  for (const auto& [k, v] : extra) w.set_string("attnsparse.train." + k, v);
  auto write = [&](const std::string& name, const torch::Tensor& t0) {
    auto t = t0.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
    DType type = (f16 && t.dim() == 2) ? DType::F16 : DType::F32;
    add_f32_tensor(w, name, type, shape, t.data_ptr<float>());
  };
  for (const auto& [name, t] : model->gguf_params()) write(name, t);
  // Tied models also get an explicit output.weight, so every reader finds the head.
  if (c.tied) write("output.weight", model->param("token_embd.weight"));
  w.write(path);
}

}  // namespace attnsparse::train
