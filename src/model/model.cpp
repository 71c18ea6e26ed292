// Model::load and the transformer runtime shared by every architecture.
#include "model/model.h"

#include <atomic>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <optional>
#include <tuple>

#include "core/error.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "model/arch.h"
#include "model/config_validate.h"
#include "model/finite_check.h"
#include "model/forward.h"
#include "model/profile.h"
#include "ops/matmul.h"
#include "ops/norm.h"

namespace attnsparse {

int64_t KVCache::bytes() const {
  if (type != DType::F32) return 2 * static_cast<int64_t>(kq.size()) * n_used * dtype_row_bytes(type, kv_dim);
  return 2 * static_cast<int64_t>(k.size()) * n_used * kv_dim * static_cast<int64_t>(sizeof(float));
}

float* KVCache::new_k(int layer, int64_t slot0, int64_t n) {
  if (type == DType::F32) return k[layer].data() + slot0 * kv_dim;
  stage_k.resize(n * kv_dim);
  return stage_k.data();
}

float* KVCache::new_v(int layer, int64_t slot0, int64_t n) {
  if (type == DType::F32) return v[layer].data() + slot0 * kv_dim;
  stage_v.resize(n * kv_dim);
  return stage_v.data();
}

namespace {
std::atomic<uint32_t> g_default_kv_type{static_cast<uint32_t>(DType::F32)};

void check_kv_type(DType type) {
  if (type != DType::F32 && type != DType::F16 && type != DType::BF16 && type != DType::Q8_0)
    fail_usage("--kv-type {}: the KV cache can be f32, f16, bf16 or q8_0", dtype_name(type));
}
}  // namespace

DType default_kv_type() { return static_cast<DType>(g_default_kv_type.load(std::memory_order_relaxed)); }

void set_default_kv_type(DType type) {
  check_kv_type(type);
  g_default_kv_type.store(static_cast<uint32_t>(type), std::memory_order_relaxed);
}

KVCache Model::make_cache(int64_t capacity) const { return make_cache(capacity, default_kv_type()); }

KVCache Model::make_cache(int64_t capacity, DType type) const {
  const ModelConfig& c = config();
  if (capacity <= 0) fail("KV cache capacity must be positive, got {}", capacity);
  check_kv_type(type);
  KVCache cache;
  cache.capacity = capacity;
  cache.type = type;
  const int64_t kv_dim = c.n_kv_head * c.head_dim;
  cache.kv_dim = kv_dim;
  // Each layer's buffers are made in place (zero-filled once), not copied from a template
  // row: the copy wrote every byte of the cache a second time.
  auto layers = [&](auto& per_layer, int64_t size) {
    per_layer.resize(size_t(c.n_layer));
    for (auto& buffer : per_layer) buffer.resize(size_t(size));
  };
  if (type == DType::F32) {
    layers(cache.k, capacity * kv_dim);
    layers(cache.v, capacity * kv_dim);
  } else {
    if (kv_dim % dtype_traits(type).block_size != 0)
      fail_usage("--kv-type {}: K/V rows of {} elements are not a multiple of its block size {}", dtype_name(type),
                 kv_dim, dtype_traits(type).block_size);
    const int64_t rb = dtype_row_bytes(type, kv_dim);
    layers(cache.kq, capacity * rb);
    layers(cache.vq, capacity * rb);
  }
  layers(cache.positions, capacity);
  return cache;
}

namespace {

class TransformerModel : public Model {
 public:
  TransformerModel(std::string path, ModelConfig config, std::unique_ptr<TensorSource> source,
                   std::unique_ptr<GgufFile> gguf, NameStyle style, ModelLoadOptions options)
      : path_(std::move(path)), cfg_(std::move(config)), source_(std::move(source)),
        gguf_(std::move(gguf)), options_(std::move(options)) {
    const TensorSource& src = gguf_ ? static_cast<const TensorSource&>(*gguf_) : *source_;
    w_ = bind_weights(cfg_, src, style);
    check_small_weights_finite(cfg_, w_, path_);
    arch_ = &arch_info(cfg_.arch);
    ops::RopeParams rope;
    rope.head_dim = static_cast<int>(cfg_.head_dim);
    rope.rope_dim = static_cast<int>(cfg_.rope_dim);
    rope.base = cfg_.rope_base;
    rope.freq_scale = cfg_.rope_freq_scale;
    rope.half_split = cfg_.rope_layout == RopeLayout::HalfSplit;
    if (!w_.rope_freqs.empty()) {
      rope.freq_factors = w_.rope_freqs;
    } else if (cfg_.rope_scaling.type == "llama3") {
      rope.freq_factors = ops::llama3_freq_factors(
          rope.rope_dim, cfg_.rope_base, cfg_.rope_scaling.factor,
          cfg_.rope_scaling.low_freq_factor, cfg_.rope_scaling.high_freq_factor,
          cfg_.rope_scaling.original_context);
    } else if (cfg_.rope_scaling.type == "yarn") {
      rope.ext_factor = 1.f;
      rope.attn_factor = cfg_.rope_scaling.attn_factor;
      std::tie(rope.corr_low, rope.corr_high) = ops::yarn_corr_dims(
          rope.rope_dim, cfg_.rope_scaling.original_context, cfg_.rope_base,
          cfg_.rope_scaling.beta_fast, cfg_.rope_scaling.beta_slow);
    }
    // Per layer: windowed layers of some families rotate with their own base.
    rope_.assign(cfg_.n_layer, rope);
    for (int64_t l = 0; l < cfg_.n_layer && l < static_cast<int64_t>(cfg_.layers.size()); ++l) {
      rope_[l].base = cfg_.layers[l].rope_base;
      if (rope.ext_factor != 0.f)  // YaRN's correction range depends on the layer's base
        std::tie(rope_[l].corr_low, rope_[l].corr_high) = ops::yarn_corr_dims(
            rope.rope_dim, cfg_.rope_scaling.original_context, rope_[l].base,
            cfg_.rope_scaling.beta_fast, cfg_.rope_scaling.beta_slow);
    }
  }

  const ModelConfig& config() const override { return cfg_; }
  const TensorSource& weights() const override {
    return gguf_ ? static_cast<const TensorSource&>(*gguf_) : *source_;
  }

  const Tokenizer& tokenizer() const override {
    std::call_once(tokenizer_once_, [this] {
      if (!options_.tokenizer.empty()) {
        auto t = Tokenizer::load(options_.tokenizer);
        if (t->n_vocab() > cfg_.n_vocab)
          fail_file(options_.tokenizer, "the tokenizer has {} tokens, more than the {} of the model {}",
                    t->n_vocab(), cfg_.n_vocab, path_);
        tokenizer_ = std::move(t);
      } else if (gguf_) {
        tokenizer_ = Tokenizer::from_gguf(*gguf_);
      } else if (cfg_.source_format == "llama2c") {
        tokenizer_ = load_llama2c_tokenizer(path_, cfg_.n_vocab);
      } else {
        tokenizer_ = Tokenizer::from_hf_dir(path_);
      }
      // Token ids past the embedding would be refused by every forward call.
      if (tokenizer_ && tokenizer_->n_vocab() > cfg_.n_vocab)
        fail_file(path_, "the tokenizer has {} tokens but the embedding only {} rows", tokenizer_->n_vocab(),
                  cfg_.n_vocab);
    });
    if (!tokenizer_) fail("{}: the model has no tokenizer", path_);
    return *tokenizer_;
  }

  void forward_layers(std::span<const int32_t> tokens, KVCache& cache, AttentionHooks* hooks,
                      std::span<const int64_t> rows, std::vector<float>& hidden) const override;
  void output_head(const float* hidden, int64_t m, float* logits) const override;

 private:
  std::string path_;
  ModelConfig cfg_;
  std::unique_ptr<TensorSource> source_;  // HF directories, llama2.c checkpoints
  std::unique_ptr<GgufFile> gguf_;        // GGUF files (also the tokenizer's metadata)
  ModelLoadOptions options_;
  ModelWeights w_;
  const ArchInfo* arch_ = nullptr;
  std::vector<ops::RopeParams> rope_;
  mutable std::once_flag tokenizer_once_;
  mutable std::unique_ptr<Tokenizer> tokenizer_;
};

void TransformerModel::forward_layers(std::span<const int32_t> tokens, KVCache& cache,
                                      AttentionHooks* hooks, std::span<const int64_t> rows,
                                      std::vector<float>& hidden) const {
  const ModelConfig& c = cfg_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) fail("forward: no tokens");
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab)
      fail("token id {} at index {} is out of range (vocabulary size {})", tokens[t], t,
           c.n_vocab);
  if (cache.positions.size() != static_cast<size_t>(c.n_layer) ||
      (cache.type == DType::F32 ? cache.k.size() : cache.kq.size()) != static_cast<size_t>(c.n_layer))
    fail("forward: KV cache was not made for this model");
  if (cache.n_used + n > cache.capacity)
    fail("KV cache too small: {} slots used + {} new tokens > capacity {}", cache.n_used, n,
         cache.capacity);
  if (arch_->learned_positions && cache.next_pos + n > c.n_ctx)
    fail("{} has learned positions up to {}; position {} is out of range", c.arch, c.n_ctx,
         cache.next_pos + n - 1);
  if (cache.next_pos + n > INT32_MAX) fail("positions beyond 2^31 are not supported");
  for (int64_t r : rows)
    if (r < 0 || r >= n) fail("logit row {} is out of range (0..{})", r, n - 1);

  std::vector<int32_t> pos(n);
  for (int64_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>(cache.next_pos + t);
  const int64_t slot0 = cache.n_used;
  for (int l = 0; l < c.n_layer; ++l)
    std::copy(pos.begin(), pos.end(), cache.positions[l].begin() + slot0);

  ForwardContext fc{c, w_, rope_, cache, hooks, n, pos.data(), slot0};
  // The activation buffers live on between calls of one thread: a document's micro-batches
  // reuse them instead of zero-filling and faulting in fresh pages each time (~8% of a
  // 512-token micro-batch's time on the TinyLlama shape). A call longer than
  // kKeepScratchTokens (a whole-sequence batch) gives them back when it ends. A forward
  // started inside another on the same thread (a hook or a Python progress callback that
  // runs the model) gets buffers of its own, so it cannot overwrite the outer hidden state.
  struct Buffers {
    std::vector<float> x;
    Scratch scratch;
  };
  constexpr int64_t kKeepScratchTokens = 1024;
  thread_local Buffers kept;
  thread_local bool kept_in_use = false;
  std::optional<Buffers> own;
  Buffers& buf = kept_in_use ? own.emplace() : kept;
  struct Release {
    bool holds_kept, give_back;
    ~Release() {
      if (!holds_kept) return;
      kept_in_use = false;
      if (give_back) kept = Buffers{};
    }
  } release{!own.has_value(), n > kKeepScratchTokens};
  kept_in_use = true;
  std::vector<float>& x = buf.x;
  Scratch& scratch = buf.scratch;
  x.resize(n * c.n_embd);
  embed_tokens(fc, tokens.data(), x.data());
  require_finite_activations(x.data(), n * c.n_embd, path_,
                             "the embedding of the input (token_embd.weight / position_embd.weight)");
  try {
    for (int l = 0; l < c.n_layer; ++l) {
      arch_->layer(fc, l, x.data(), scratch);
      require_finite_activations(x.data(), n * c.n_embd, path_,
                                 fmt::format("the hidden state after layer {} (tensors blk.{}.*)", l, l));
    }
  } catch (const NonFiniteError& e) {
    fail_file(path_, "{}", e.what());
  }
  cache.n_used += n;
  cache.next_pos += n;
  const size_t h0 = hidden.size();
  hidden.resize(h0 + rows.size() * c.n_embd);
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(x.data() + rows[i] * c.n_embd, c.n_embd, hidden.data() + h0 + i * c.n_embd);
}

void TransformerModel::output_head(const float* hidden, int64_t m, float* logits) const {
  const ModelConfig& c = cfg_;
  std::vector<float> normed(m * c.n_embd);
  {
    profile::Scope timer(profile::Norm);
    if (arch_->norm == NormKind::LayerNorm)
      ops::layer_norm(hidden, m, c.n_embd, w_.output_norm.weight, w_.output_norm.bias, c.norm_eps,
                      normed.data());
    else
      ops::rms_norm(hidden, m, c.n_embd, w_.output_norm.weight, c.norm_eps, normed.data());
  }
  profile::Scope timer(profile::Logits);
  ops::matmul(w_.output.w, normed.data(), m, logits);
  require_finite_activations(logits, m * c.n_vocab, path_, "the logits (output_norm.weight / output.weight)");
  if (c.final_softcap > 0.f) {
    // gemma2: logits -> c tanh(logits / c), scaled as llama.cpp does (x * (1/c), tanh, x c).
    const float inv = 1.0f / c.final_softcap;
    for (int64_t i = 0; i < m * c.n_vocab; ++i) logits[i] = std::tanh(logits[i] * inv) * c.final_softcap;
  }
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const ModelLoadOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string cfg_path = (fs::path(path) / "config.json").string();
    if (!fs::exists(cfg_path, ec)) fail_file(path, "not a model directory (no config.json)");
    ModelConfig cfg = config_from_hf_json(cfg_path);
    validate_config(cfg, cfg_path);
    auto source = open_safetensors_dir(path);
    hf_tie_from_storage(cfg, cfg_path, *source);
    return std::make_unique<TransformerModel>(path, std::move(cfg), std::move(source), nullptr,
                                              NameStyle::HuggingFace, options);
  }
  if (!fs::exists(path, ec) && !ec) fail_file(path, "no such file or directory");
  // A FIFO, device or symlink loop: GgufFile (MappedFile) names the reason.
  if (is_llama2c_path(path)) {  // no magic: a .bin whose header matches its size
    auto file = std::make_unique<Llama2cFile>(path);
    ModelConfig cfg = config_from_llama2c(*file);
    validate_config(cfg, path);
    return std::make_unique<TransformerModel>(path, std::move(cfg), std::move(file), nullptr,
                                              NameStyle::Gguf, options);
  }
  auto gguf = std::make_unique<GgufFile>(path);
  ModelConfig cfg = config_from_gguf(*gguf);
  validate_config(cfg, path);
  return std::make_unique<TransformerModel>(path, std::move(cfg), nullptr, std::move(gguf),
                                            NameStyle::Gguf, options);
}

}  // namespace attnsparse
