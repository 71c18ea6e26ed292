#include "model/dense_attention.h"

#include "core/error.h"

namespace attnsparse {

namespace {

// For each model index (layer or head) its position in the output, or -1.
std::vector<int> output_index(const std::vector<int>& chosen, int64_t count, const char* what) {
  std::vector<int> out(static_cast<size_t>(count), -1);
  if (chosen.empty()) {
    for (int i = 0; i < count; ++i) out[size_t(i)] = i;
    return out;
  }
  for (size_t i = 0; i < chosen.size(); ++i) {
    const int x = chosen[i];
    if (x < 0 || x >= count) fail_usage("{} {} is out of range (the model has {})", what, x, count);
    if (out[size_t(x)] >= 0) fail_usage("{} {} is given twice", what, x);
    out[size_t(x)] = static_cast<int>(i);
  }
  return out;
}

// Writes each probability row of the chosen layers and heads into its place in `out`.
class DenseRecorder : public AttentionHooks {
 public:
  DenseRecorder(std::vector<int> layer_out, std::vector<int> head_out, int n_heads_out, int64_t n, float* out,
                const std::function<void(int)>& after_layer)
      : head_out_(std::move(head_out)), n_heads_out_(n_heads_out), n_(n), out_(out), after_layer_(after_layer) {
    for (int out_layer : layer_out) observers_.emplace_back(this, out_layer);
  }
  ops::RowObserver* observer(int layer) override {
    return observers_[size_t(layer)].out_layer >= 0 ? &observers_[size_t(layer)] : nullptr;
  }
  void after_attention(int layer, const ops::AttentionShape&, const ops::AttentionArgs&) override {
    if (after_layer_) after_layer_(layer);
  }

 private:
  struct LayerObserver : ops::RowObserver {
    LayerObserver(DenseRecorder* o, int l) : owner(o), out_layer(l) {}
    DenseRecorder* owner;
    int out_layer;
    void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys, int64_t n_keys) override {
      const int hi = owner->head_out_[size_t(head)];
      if (hi < 0) return;
      const int64_t n = owner->n_;
      float* row = owner->out_ + ((int64_t(out_layer) * owner->n_heads_out_ + hi) * n + query_pos) * n;
      for (int64_t j = 0; j < n_keys; ++j) row[keys ? keys[j] : j] = probs[j];
    }
  };
  std::vector<int> head_out_;
  int n_heads_out_;
  int64_t n_;
  float* out_;
  const std::function<void(int)>& after_layer_;
  std::vector<LayerObserver> observers_;
};

}  // namespace

double dense_attention_bytes(int64_t layers, int64_t heads, int64_t n) {
  return 4.0 * double(layers) * double(heads) * double(n) * double(n);
}

void dense_attention(const Model& model, std::span<const int32_t> tokens, const std::vector<int>& layers,
                     const std::vector<int>& heads, float* out, const std::function<void(int layer)>& after_layer) {
  const ModelConfig& c = model.config();
  std::vector<int> layer_out = output_index(layers, c.n_layer, "layer");
  const std::vector<int> head_out = output_index(heads, c.n_head, "head");
  const int n_heads_out = heads.empty() ? static_cast<int>(c.n_head) : static_cast<int>(heads.size());
  const int64_t n = static_cast<int64_t>(tokens.size());
  DenseRecorder recorder(std::move(layer_out), head_out, n_heads_out, n, out, after_layer);
  KVCache cache = model.make_cache(n);
  ForwardOptions opts;
  opts.no_logits = true;
  opts.hooks = &recorder;
  std::vector<float> logits;
  model.forward(tokens, cache, opts, logits);
}

}  // namespace attnsparse
