// Model::load and the transformer runtime shared by every architecture.
#include "model/model.h"

#include <filesystem>
#include <mutex>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/config_validate.h"
#include "model/finite_check.h"
#include "model/forward.h"
#include "model/profile.h"
#include "ops/matmul.h"

namespace attnsparse {

int64_t KVCache::bytes() const {
  int64_t total = 0;
  for (size_t l = 0; l < k.size(); ++l) {
    if (capacity == 0) break;
    const int64_t kv_dim = static_cast<int64_t>(k[l].size()) / capacity;
    total += 2 * n_used * kv_dim * static_cast<int64_t>(sizeof(float));
  }
  return total;
}

KVCache Model::make_cache(int64_t capacity) const {
  const ModelConfig& c = config();
  if (capacity <= 0) fail("KV cache capacity must be positive, got {}", capacity);
  KVCache cache;
  cache.capacity = capacity;
  const int64_t kv_dim = c.n_kv_head * c.head_dim;
  cache.k.assign(c.n_layer, std::vector<float>(capacity * kv_dim));
  cache.v.assign(c.n_layer, std::vector<float>(capacity * kv_dim));
  cache.positions.assign(c.n_layer, std::vector<int32_t>(capacity));
  return cache;
}

namespace {

class TransformerModel : public Model {
 public:
  TransformerModel(std::string path, ModelConfig config, std::unique_ptr<TensorSource> source,
                   std::unique_ptr<GgufFile> gguf, NameStyle style)
      : path_(std::move(path)), cfg_(std::move(config)), source_(std::move(source)),
        gguf_(std::move(gguf)) {
    const TensorSource& src = gguf_ ? static_cast<const TensorSource&>(*gguf_) : *source_;
    w_ = bind_weights(cfg_, src, style);
    check_small_weights_finite(cfg_, w_, path_);
    rope_.head_dim = static_cast<int>(cfg_.head_dim);
    rope_.rope_dim = static_cast<int>(cfg_.rope_dim);
    rope_.base = cfg_.rope_base;
    rope_.freq_scale = cfg_.rope_freq_scale;
    rope_.half_split = cfg_.rope_layout == RopeLayout::HalfSplit;
    if (!w_.rope_freqs.empty()) {
      rope_.freq_factors = w_.rope_freqs;
    } else if (cfg_.rope_scaling.type == "llama3") {
      rope_.freq_factors = ops::llama3_freq_factors(
          rope_.rope_dim, cfg_.rope_base, cfg_.rope_scaling.factor,
          cfg_.rope_scaling.low_freq_factor, cfg_.rope_scaling.high_freq_factor,
          cfg_.rope_scaling.original_context);
    }
  }

  const ModelConfig& config() const override { return cfg_; }
  const TensorSource& weights() const override {
    return gguf_ ? static_cast<const TensorSource&>(*gguf_) : *source_;
  }

  const Tokenizer& tokenizer() const override {
    std::call_once(tokenizer_once_, [this] {
      auto t = gguf_ ? Tokenizer::from_gguf(*gguf_) : Tokenizer::from_hf_dir(path_);
      // Token ids past the embedding would be refused by every forward call.
      if (t && t->n_vocab() > cfg_.n_vocab)
        fail_file(path_, "the tokenizer has {} tokens but the embedding only {} rows", t->n_vocab(),
                  cfg_.n_vocab);
      tokenizer_ = std::move(t);
    });
    if (!tokenizer_) fail("{}: the model has no tokenizer", path_);
    return *tokenizer_;
  }

  void forward(std::span<const int32_t> tokens, KVCache& cache, const ForwardOptions& opts,
               std::vector<float>& logits) const override;

 private:
  std::string path_;
  ModelConfig cfg_;
  std::unique_ptr<TensorSource> source_;  // HF directories
  std::unique_ptr<GgufFile> gguf_;        // GGUF files (also the tokenizer's metadata)
  ModelWeights w_;
  ops::RopeParams rope_;
  mutable std::once_flag tokenizer_once_;
  mutable std::unique_ptr<Tokenizer> tokenizer_;
};

void TransformerModel::forward(std::span<const int32_t> tokens, KVCache& cache,
                               const ForwardOptions& opts, std::vector<float>& logits) const {
  const ModelConfig& c = cfg_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) fail("forward: no tokens");
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab)
      fail("token id {} at index {} is out of range (vocabulary size {})", tokens[t], t,
           c.n_vocab);
  if (cache.k.size() != static_cast<size_t>(c.n_layer))
    fail("forward: KV cache was not made for this model");
  if (cache.n_used + n > cache.capacity)
    fail("KV cache too small: {} slots used + {} new tokens > capacity {}", cache.n_used, n,
         cache.capacity);
  if (c.arch == "gpt2" && cache.next_pos + n > c.n_ctx)
    fail("gpt2 has learned positions up to {}; position {} is out of range", c.n_ctx,
         cache.next_pos + n - 1);
  if (cache.next_pos + n > INT32_MAX) fail("positions beyond 2^31 are not supported");
  for (int64_t r : opts.logit_rows)
    if (r < 0 || r >= n) fail("logit row {} is out of range (0..{})", r, n - 1);

  std::vector<int32_t> pos(n);
  for (int64_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>(cache.next_pos + t);
  const int64_t slot0 = cache.n_used;
  for (int l = 0; l < c.n_layer; ++l)
    std::copy(pos.begin(), pos.end(), cache.positions[l].begin() + slot0);

  ForwardContext fc{c, w_, rope_, cache, opts.hooks, n, pos.data(), slot0};
  std::vector<float> x(n * c.n_embd);
  Scratch scratch;
  embed_tokens(fc, tokens.data(), x.data());
  require_finite_activations(x.data(), n * c.n_embd, path_,
                             "the embedding of the input (token_embd.weight / position_embd.weight)");
  const bool gpt2 = c.arch == "gpt2";
  try {
    for (int l = 0; l < c.n_layer; ++l) {
      if (gpt2) gpt2_layer(fc, l, x.data(), scratch);
      else llama_layer(fc, l, x.data(), scratch);
      require_finite_activations(x.data(), n * c.n_embd, path_,
                                 fmt::format("the hidden state after layer {} (tensors blk.{}.*)", l, l));
    }
  } catch (const NonFiniteError& e) {
    fail_file(path_, "{}", e.what());
  }
  cache.n_used += n;
  cache.next_pos += n;

  if (opts.no_logits) {
    logits.clear();
    return;
  }
  // Output head only for the requested rows.
  std::vector<int64_t> rows = opts.logit_rows;
  if (rows.empty()) {
    rows.resize(n);
    for (int64_t t = 0; t < n; ++t) rows[t] = t;
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  std::vector<float> sel(m * c.n_embd), normed(m * c.n_embd);
  for (int64_t i = 0; i < m; ++i)
    std::copy_n(x.data() + rows[i] * c.n_embd, c.n_embd, sel.data() + i * c.n_embd);
  if (gpt2) gpt2_output_norm(c, w_, sel.data(), m, normed.data());
  else llama_output_norm(c, w_, sel.data(), m, normed.data());
  logits.resize(m * c.n_vocab);
  profile::Scope timer(profile::Logits);
  ops::matmul(w_.output.w, normed.data(), m, logits.data());
  require_finite_activations(logits.data(), m * c.n_vocab, path_,
                             "the logits (output_norm.weight / output.weight)");
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string cfg_path = (fs::path(path) / "config.json").string();
    if (!fs::exists(cfg_path, ec)) fail_file(path, "not a model directory (no config.json)");
    ModelConfig cfg = config_from_hf_json(cfg_path);
    validate_config(cfg, cfg_path);
    auto source = open_safetensors_dir(path);
    return std::make_unique<TransformerModel>(path, std::move(cfg), std::move(source), nullptr,
                                              NameStyle::HuggingFace);
  }
  if (!fs::exists(path, ec) && !ec) fail_file(path, "no such file or directory");
  // A FIFO, device or symlink loop: GgufFile (MappedFile) names the reason.
  auto gguf = std::make_unique<GgufFile>(path);
  ModelConfig cfg = config_from_gguf(*gguf);
  validate_config(cfg, path);
  return std::make_unique<TransformerModel>(path, std::move(cfg), nullptr, std::move(gguf),
                                            NameStyle::Gguf);
}

}  // namespace attnsparse
