// attnsparse attention MODEL --tokens F --out O: every post-softmax attention probability.
#include <fmt/format.h>

#include "cli/verb.h"
#include "core/error.h"
#include "model/model.h"
#include "model/model_util.h"

namespace attnsparse::cli {
namespace {

// Writes each probability row into out[layer, head, query, key] (the one place where an
// n x n buffer per head is allowed).
class DenseRecorder : public AttentionHooks {
 public:
  DenseRecorder(int n_layer, int n_head, int64_t n, float* out)
      : n_head_(n_head), n_(n), out_(out) {
    for (int l = 0; l < n_layer; ++l) observers_.push_back(LayerObserver{this, l});
  }
  ops::RowObserver* observer(int layer) override { return &observers_[layer]; }

 private:
  struct LayerObserver : ops::RowObserver {
    LayerObserver(DenseRecorder* o, int l) : owner(o), layer(l) {}
    DenseRecorder* owner;
    int layer;
    void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys,
                int64_t n_keys) override {
      const int64_t n = owner->n_;
      float* row = owner->out_ + ((static_cast<int64_t>(layer) * owner->n_head_ + head) * n +
                                  query_pos) * n;
      for (int64_t j = 0; j < n_keys; ++j) row[keys ? keys[j] : j] = probs[j];
    }
  };
  int n_head_;
  int64_t n_;
  float* out_;
  std::vector<LayerObserver> observers_;
};

void register_attention(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "attention", "Write the post-softmax attention probabilities of every layer and head");
  sub->footer(
      "Writes little-endian f32 [n_layer x n_head x n x n], zeros above the diagonal.\n"
      "Example: attnsparse attention model.gguf --tokens ids.txt --out attn.f32");
  static std::string model_path, tokens_path, out_path;
  static int threads = 0;
  add_model_options(sub, model_path);
  sub->add_option("--tokens", tokens_path, "file of whitespace-separated token ids")->required();
  sub->add_option("--out", out_path, "output file (f32)")->required();
  add_threads_option(sub, &threads);
  add_ubatch_option(sub);
  add_kv_type_option(sub);
  sub->callback([] {
    apply_threads(threads);
    const std::vector<int32_t> tokens = read_token_file(tokens_path);
    auto model = load_model(model_path);
    const auto& c = model->config();
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] >= c.n_vocab)
        fail_file(tokens_path, "token id {} at index {} is out of range (vocabulary size {})",
                  tokens[i], i, c.n_vocab);
    const int64_t n = static_cast<int64_t>(tokens.size());
    const double bytes = 4.0 * c.n_layer * c.n_head * n * n;
    if (bytes > 8e9)
      fail_usage("{} tokens would need {:.1f} GB of attention output; use fewer tokens", n,
                 bytes / 1e9);
    std::vector<float> out(static_cast<size_t>(c.n_layer * c.n_head * n * n), 0.f);
    DenseRecorder recorder(static_cast<int>(c.n_layer), static_cast<int>(c.n_head), n, out.data());
    KVCache cache = model->make_cache(n);
    ForwardOptions opts;
    opts.no_logits = true;
    opts.hooks = &recorder;
    std::vector<float> logits;
    model->forward(tokens, cache, opts, logits);
    write_file_atomic(out_path, out.data(), out.size() * sizeof(float));
    fmt::print("{} tokens, {} layers x {} heads x {} x {} probabilities -> {}\n", n, c.n_layer,
               c.n_head, n, n, out_path);
  });
}
ATTNSPARSE_VERB(register_attention);

}  // namespace
}  // namespace attnsparse::cli
