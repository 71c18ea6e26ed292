#include "model/finite_check.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/finite.h"

namespace attnsparse {

namespace {

void scan(const float* x, int64_t n, const std::string& path, const std::string& name) {
  if (!x) return;
  const int64_t bad = first_non_finite(x, n);
  if (bad >= 0)
    fail_file(path, "tensor '{}' holds NaN or Inf (element {} is {})", name, bad, x[bad]);
}

void scan_norm(const Norm& nm, int64_t n, const std::string& path, const std::string& base) {
  scan(nm.weight, n, path, base + ".weight");
  scan(nm.bias, n, path, base + ".bias");
}

void scan_bias(const Linear& l, const std::string& path, const std::string& base) {
  scan(l.bias, l.w.n_out, path, base + ".bias");
}

}  // namespace

void check_small_weights_finite(const ModelConfig& c, const ModelWeights& w, const std::string& path) {
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& L = w.layers[i];
    const std::string blk = fmt::format("blk.{}.", i);
    scan_norm(L.attn_norm, c.n_embd, path, blk + "attn_norm");
    scan_norm(L.ffn_norm, c.n_embd, path, blk + "ffn_norm");
    scan_bias(L.q, path, blk + "attn_q");
    scan_bias(L.k, path, blk + "attn_k");
    scan_bias(L.v, path, blk + "attn_v");
    scan_bias(L.qkv, path, blk + "attn_qkv");
    scan_bias(L.o, path, blk + "attn_output");
    scan_bias(L.gate, path, blk + "ffn_gate");
    scan_bias(L.up, path, blk + "ffn_up");
    scan_bias(L.down, path, blk + "ffn_down");
  }
  scan_norm(w.output_norm, c.n_embd, path, "output_norm");
  scan_bias(w.output, path, "output");
  scan(w.rope_freqs.data(), static_cast<int64_t>(w.rope_freqs.size()), path, "rope_freqs.weight");
}

void require_finite_rows(const float* x, int64_t n, int64_t width, int64_t stride, int layer,
                         const char* what, const char* tensor) {
  for (int64_t t = 0; t < n; ++t)
    if (!all_finite(x + t * stride, width))
      throw NonFiniteError(fmt::format(
          "layer {}: the attention {} of token {} hold NaN or Inf (tensor blk.{}.{} or the layer's input)",
          layer, what, t, layer, tensor));
}

void require_finite_activations(const float* x, int64_t n, const std::string& path,
                                const std::string& what) {
  const int64_t bad = first_non_finite(x, n);
  if (bad >= 0)
    fail_file(path, "{} holds NaN or Inf (value {} is {}): the model's weights are not finite or overflow float",
              what, bad, x[bad]);
}

}  // namespace attnsparse
