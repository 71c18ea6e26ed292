// Model::forward: the one micro-batch loop of the runtime. A call's tokens go through the
// layers at most `ubatch` tokens at a time against the growing KV cache, so activations
// are held for one micro-batch while the cache grows with the document; the output head
// runs only for the requested rows, once, on their saved final hidden states.
#include <algorithm>
#include <atomic>

#include "core/error.h"
#include "model/model.h"
#include "model/profile.h"
#include "ops/matmul.h"

namespace attnsparse {

namespace {
std::atomic<int64_t> g_default_ubatch{512};
}  // namespace

int64_t default_ubatch() { return g_default_ubatch.load(std::memory_order_relaxed); }

void set_default_ubatch(int64_t ubatch) {
  if (ubatch < 0) fail_usage("--ubatch must be 0 (one batch) or a positive number of tokens, got {}", ubatch);
  g_default_ubatch.store(ubatch, std::memory_order_relaxed);
}

void Model::forward(std::span<const int32_t> tokens, KVCache& cache, const ForwardOptions& opts,
                    std::vector<float>& logits) const {
  const ModelConfig& c = config();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) fail("forward: no tokens");
  for (int64_t r : opts.logit_rows)
    if (r < 0 || r >= n) fail("logit row {} is out of range (0..{})", r, n - 1);
  if (cache.n_used + n > cache.capacity)
    fail("KV cache too small: {} slots used + {} new tokens > capacity {}", cache.n_used, n,
         cache.capacity);

  // Rows whose logits are wanted, in the caller's order.
  std::vector<int64_t> rows;
  if (!opts.no_logits) {
    rows = opts.logit_rows;
    if (rows.empty()) {
      rows.resize(n);
      for (int64_t t = 0; t < n; ++t) rows[t] = t;
    }
  }
  int64_t ub = opts.ubatch < 0 ? default_ubatch() : opts.ubatch;
  if (ub == 0 || ub > n) ub = n;

  // A prefill takes the large-batch kernels in every micro-batch (also a short last
  // one), so that its sums do not depend on the micro-batch size.
  ops::ScopedBatchInvariant invariant(n >= kPrefillMinTokens);

  // Requested rows by micro-batch: order[i] is the index into `rows` of the i-th row
  // handed to forward_layers, in micro-batch order.
  std::vector<int64_t> order(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return rows[a] < rows[b]; });

  std::vector<float> hidden;  // final hidden states of the requested rows (micro-batch order)
  std::vector<int64_t> local;
  std::vector<float> chunk_logits;
  size_t next = 0;  // first entry of `order` not yet handed out
  for (int64_t b = 0; b < n;) {
    const int64_t e = std::min(n, b + ub);
    local.clear();
    while (next < order.size() && rows[order[next]] < e) local.push_back(rows[order[next++]] - b);
    if (opts.on_logits) hidden.clear();
    forward_layers(tokens.subspan(b, e - b), cache, opts.hooks, local, hidden);
    if (opts.on_logits && !local.empty()) {
      const int64_t m = static_cast<int64_t>(local.size());
      chunk_logits.resize(m * c.n_vocab);
      output_head(hidden.data(), m, chunk_logits.data());
      for (int64_t i = 0; i < m; ++i) opts.on_logits(b + local[i], chunk_logits.data() + i * c.n_vocab);
    }
    b = e;
  }
  logits.clear();
  if (opts.no_logits || opts.on_logits || rows.empty()) return;
  // One output head over every requested row: the same product, with the same m, as an
  // unbatched call, so the small-batch kernels may serve a few rows (bench, generate).
  const int64_t m = static_cast<int64_t>(rows.size());
  std::vector<float> sorted(m * c.n_vocab);
  {
    ops::ScopedBatchInvariant as_usual(false);
    output_head(hidden.data(), m, sorted.data());
  }
  logits.resize(m * c.n_vocab);
  for (int64_t i = 0; i < m; ++i)
    std::copy_n(sorted.data() + i * c.n_vocab, c.n_vocab, logits.data() + order[i] * c.n_vocab);
}

}  // namespace attnsparse
