// Where attention rows come from: a model's forward pass, or a synthetic generator with
// planted structure (tests). Both drive the same DocumentCollector, so everything after
// the rows (statistics, persistence, verdicts) is shared.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "analysis/layer_kind.h"

namespace attnsparse {
class Model;
}

namespace attnsparse::analysis {

class DocumentCollector;

class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual int n_layers() const = 0;
  virtual int n_heads() const = 0;
  virtual int n_kv_heads() const = 0;
  // Each layer's native window and RoPE base (default: every layer global, no RoPE).
  virtual std::vector<LayerKind> layer_kinds() const { return std::vector<LayerKind>(size_t(n_layers())); }
  // Evaluates tokens[0, prefill_len) as one causal batch from position 0, then each later
  // token as one decode step (teacher forcing), driving the collector: begin_call before
  // each call, rows to observer(layer), end_layer after each layer's attention.
  virtual void run_document(std::span<const int32_t> tokens, int64_t prefill_len,
                            DocumentCollector& collector) = 0;
};

// Rows from the model's attention core (dense attention, f32 KV cache, no logits).
class ModelRowSource : public RowSource {
 public:
  explicit ModelRowSource(const Model& model) : model_(model) {}
  int n_layers() const override;
  int n_heads() const override;
  int n_kv_heads() const override;
  std::vector<LayerKind> layer_kinds() const override;
  void run_document(std::span<const int32_t> tokens, int64_t prefill_len,
                    DocumentCollector& collector) override;

 private:
  const Model& model_;
};

}  // namespace attnsparse::analysis
