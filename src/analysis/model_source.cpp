#include <vector>

#include "analysis/collector.h"
#include "analysis/row_source.h"
#include "model/model.h"

namespace attnsparse::analysis {

namespace {
// The model's hooks, forwarded to the collector.
class CollectorHooks : public AttentionHooks {
 public:
  explicit CollectorHooks(DocumentCollector& c) : c_(c) {}
  const ops::KeySet* plan(int layer, const ops::AttentionShape& shape, const ops::AttentionArgs&) override {
    c_.begin_chunk(layer, shape.q_pos0, shape.n_q);  // this micro-batch's queries
    return nullptr;                                   // dense attention
  }
  ops::RowObserver* observer(int layer) override { return c_.observer(layer); }
  void after_attention(int layer, const ops::AttentionShape&, const ops::AttentionArgs&) override {
    c_.end_layer(layer);
  }

 private:
  DocumentCollector& c_;
};
}  // namespace

int ModelRowSource::n_layers() const { return static_cast<int>(model_.config().n_layer); }
int ModelRowSource::n_heads() const { return static_cast<int>(model_.config().n_head); }
int ModelRowSource::n_kv_heads() const { return static_cast<int>(model_.config().n_kv_head); }
std::vector<LayerKind> ModelRowSource::layer_kinds() const { return analysis::layer_kinds(model_.config()); }

std::vector<LayerKind> layer_kinds(const ModelConfig& c) {
  std::vector<LayerKind> kinds(size_t(c.n_layer));
  for (size_t l = 0; l < kinds.size() && l < c.layers.size(); ++l) {
    kinds[l].window = c.layers[l].window;
    if (c.rope_layout != RopeLayout::None) kinds[l].rope_base = c.layers[l].rope_base;
  }
  return kinds;
}

void ModelRowSource::run_document(std::span<const int32_t> tokens, int64_t prefill_len,
                                  DocumentCollector& collector) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  KVCache cache = model_.make_cache(n);
  CollectorHooks hooks(collector);
  ForwardOptions opts;
  opts.no_logits = true;
  opts.hooks = &hooks;
  std::vector<float> logits;
  collector.begin_call(0, prefill_len);
  model_.forward(tokens.first(prefill_len), cache, opts, logits);
  for (int64_t t = prefill_len; t < n; ++t) {
    collector.begin_call(t, 1);
    model_.forward(tokens.subspan(t, 1), cache, opts, logits);
  }
}

}  // namespace attnsparse::analysis
