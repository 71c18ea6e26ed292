#include "model/config_validate.h"

#include <cmath>

#include "core/checked.h"
#include "core/error.h"

namespace attnsparse {

namespace {

// Far above every published model, far below any overflow of the sizes derived from them.
constexpr int64_t kMaxEmbd = int64_t{1} << 20;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxFf = int64_t{1} << 22;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxContext = int64_t{1} << 27;  // 134M positions
constexpr double kMaxRopeBase = 1e12;

void finite_positive(double v, double hi, const std::string& path, const char* field) {
  if (!std::isfinite(v) || v <= 0 || v > hi)
    fail_file(path, "{} is {}; it must be a finite number in (0, {:g}]", field, v, hi);
}

}  // namespace

void validate_config(const ModelConfig& c, const std::string& path) {
  require_in_range(c.n_layer, 1, kMaxLayers, path, "the layer count");
  require_in_range(c.n_embd, 1, kMaxEmbd, path, "the embedding size");
  require_in_range(c.n_head, 1, kMaxHeads, path, "the head count");
  require_in_range(c.n_kv_head, 1, c.n_head, path, "the key/value head count");
  if (c.n_head % c.n_kv_head != 0)
    fail_file(path, "the key/value head count {} does not divide the head count {}", c.n_kv_head, c.n_head);
  require_in_range(c.head_dim, 1, kMaxHeadDim, path, "the head size");
  if (c.n_head * c.head_dim > kMaxEmbd)
    fail_file(path, "head count {} x head size {} is larger than {}", c.n_head, c.head_dim, kMaxEmbd);
  require_in_range(c.n_ff, 1, kMaxFf, path, "the feed-forward size");
  require_in_range(c.n_vocab, 1, kMaxVocab, path, "the vocabulary size");
  require_in_range(c.n_ctx, 1, kMaxContext, path, "the context length");
  // A negative, zero or NaN epsilon turns every normalised row into NaN or Inf.
  finite_positive(c.norm_eps, 1.0, path, "the normalisation epsilon");
  if (c.rope_layout != RopeLayout::None) {
    require_in_range(c.rope_dim, 2, c.head_dim, path, "the RoPE dimension count");
    if (c.rope_dim % 2 != 0) fail_file(path, "the RoPE dimension count {} is odd", c.rope_dim);
    // base^(-2i/d) with a base <= 1 gives no rotation or growing angles.
    if (!std::isfinite(c.rope_base) || c.rope_base <= 1 || c.rope_base > kMaxRopeBase)
      fail_file(path, "the RoPE base (rope_theta / rope.freq_base) is {}; it must be in (1, {:g}]",
                c.rope_base, kMaxRopeBase);
    finite_positive(c.rope_freq_scale, 1e6, path, "the RoPE frequency scale");
    finite_positive(c.rope_scaling.factor, 1e6, path, "the RoPE scaling factor");
    if (c.rope_scaling.type == "llama3") {
      finite_positive(c.rope_scaling.low_freq_factor, 1e6, path, "rope_scaling.low_freq_factor");
      finite_positive(c.rope_scaling.high_freq_factor, 1e6, path, "rope_scaling.high_freq_factor");
      require_in_range(c.rope_scaling.original_context, 1, kMaxContext, path,
                       "the RoPE scaling original context length");
    }
    if (c.rope_scaling.type == "yarn") {
      require_in_range(c.rope_scaling.original_context, 1, kMaxContext, path,
                       "the RoPE scaling original context length");
      finite_positive(c.rope_scaling.beta_fast, 1e6, path, "the YaRN beta_fast");
      finite_positive(c.rope_scaling.beta_slow, 1e6, path, "the YaRN beta_slow");
      finite_positive(c.rope_scaling.attn_factor, 1e3, path, "the YaRN attention factor");
      if (c.rope_freq_scale > 1.f)
        fail_file(path, "the YaRN scaling factor {} must be >= 1", c.rope_scaling.factor);
    }
  }
}

}  // namespace attnsparse
