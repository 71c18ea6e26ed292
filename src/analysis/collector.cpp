#include "analysis/collector.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "core/error.h"

namespace attnsparse::analysis {

const char* const kRowDumpHeader =
    "doc,layer,head,query,n_keys,width_p50,width_p90,width_p95,width_p99,entropy,sink_mass,"
    "recent_1,recent_8,recent_32,recent_64,recent_128\n";

struct DocumentCollector::Slot {
  RowMetrics m;
  bool filled = false;
};

class DocumentCollector::LayerObserver : public ops::RowObserver {
 public:
  explicit LayerObserver(DocumentCollector* c) : c_(c) {}
  int layer = 0;
  void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys,
              int64_t n_keys) override {
    c_->on_row(layer, head, query_pos, probs, keys, n_keys, nullptr);
  }
  void on_row_with_entropy(int head, int64_t query_pos, const float* probs, const int32_t* keys, int64_t n_keys,
                           double entropy) override {
    c_->on_row(layer, head, query_pos, probs, keys, n_keys, &entropy);
  }
  void on_rows(int head, int64_t query_pos0, int n_rows, const float* const* probs, const int32_t* const* keys,
               const int64_t* n_keys, const double* entropy, const float* largest) override {
    c_->on_rows(layer, head, query_pos0, n_rows, probs, keys, n_keys, entropy, largest);
  }

 private:
  DocumentCollector* c_;
};

namespace {

constexpr float kFixedScale = 1073741824.0f;  // 2^30

// Entry j of a row in fixed point, as the persistence buckets sum it.
inline int64_t fixed(const float* p, int64_t j) { return int64_t{static_cast<int32_t>(p[j] * kFixedScale + 0.5f)}; }

// Adds fixed-point probabilities to the bucket; one function per ISA (the library is
// built for baseline x86-64).
__attribute__((target_clones("avx512f", "avx2", "default")))
void add_fixed(int64_t* acc, const float* probs, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += fixed(probs, j);
}

// Four (eight) rows at once: the same integers as four (eight) add_fixed calls, summed in
// registers, so the bucket is read and written once instead of four (eight) times.
__attribute__((target_clones("avx512f", "avx2", "default")))
void add_fixed4(int64_t* acc, const float* const* p, int64_t n) {
  const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
  for (int64_t j = 0; j < n; ++j) acc[j] += fixed(p0, j) + fixed(p1, j) + fixed(p2, j) + fixed(p3, j);
}
__attribute__((target_clones("avx512f", "avx2", "default")))
void add_fixed8(int64_t* acc, const float* const* p, int64_t n) {
  const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3], *p4 = p[4], *p5 = p[5], *p6 = p[6], *p7 = p[7];
  for (int64_t j = 0; j < n; ++j)
    acc[j] += ((fixed(p0, j) + fixed(p1, j)) + (fixed(p2, j) + fixed(p3, j))) +
              ((fixed(p4, j) + fixed(p5, j)) + (fixed(p6, j) + fixed(p7, j)));
}

// Cache slots are strictly increasing, so first 0 and last n-1 means slot j is key j:
// the dense case, which takes the vectorised paths.
bool dense_slots(const int32_t* keys, int64_t n) {
  return keys == nullptr || n == 0 || (keys[0] == 0 && keys[n - 1] == n - 1);
}

}  // namespace

DocumentCollector::DocumentCollector(const DocumentPlan& plan, const AnalysisParams& params,
                                     Accumulator& acc, int64_t doc_slot, RowDumpSink dump,
                                     const std::vector<LayerKind>& layers)
    : plan_(plan), params_(params), acc_(acc), doc_slot_(doc_slot), dump_(std::move(dump)),
      n_heads_(plan.n_heads), windows_(size_t(plan.n_layers), 0), observer_(std::make_unique<LayerObserver>(this)) {
  if (acc.n_layers != plan.n_layers || acc.n_heads != plan.n_heads)
    fail("internal: accumulator shape {}x{} does not match the plan's {}x{}", acc.n_layers,
         acc.n_heads, plan.n_layers, plan.n_heads);
  if (!layers.empty() && int64_t(layers.size()) != plan.n_layers)
    fail("internal: {} layer kinds for {} layers", layers.size(), plan.n_layers);
  for (size_t l = 0; l < layers.size(); ++l) windows_[l] = layers[l].window;
  groups_ = acc_.groups_of(acc_.documents.at(doc_slot));
  candidate_of_.assign(plan.n_tokens, -1);
  for (size_t c = 0; c < plan.queries.size(); ++c) candidate_of_[plan.queries[c]] = int32_t(c);

  const int A = static_cast<int>(plan.anchors.size());
  bucket_of_.assign(plan.prefill_len, -1);
  anchor_of_.assign(plan.prefill_len, -1);
  for (int64_t q = 0, a = 0; q < plan.prefill_len && a < A; ++q) {
    while (a < A && plan.anchors[a] < q) ++a;
    if (a < A) bucket_of_[q] = int32_t(a);
  }
  for (int a = 0; a < A; ++a) anchor_of_[plan.anchors[a]] = a;
  bucket_locks_ = std::vector<std::mutex>(size_t(n_heads_) * A);
}

DocumentCollector::~DocumentCollector() = default;

void DocumentCollector::begin_call(int64_t q_pos0, int64_t n_q) {
  if (q_pos0 < 0 || n_q < 1 || q_pos0 + n_q > plan_.n_tokens)
    fail("internal: call of {} queries at {} outside the document ({} tokens)", n_q, q_pos0, plan_.n_tokens);
  call0_ = q_pos0;
  call_n_ = n_q;
  q_pos0_ = q_pos0;
  n_q_ = n_q;
  chunk_set_ = false;
  persistence_call_ = q_pos0 == 0 && n_q == plan_.prefill_len && !plan_.anchors.empty();
  if (persistence_call_) persistence_.assign(plan_.n_layers, LayerPersistence{});
}

void DocumentCollector::begin_chunk(int layer, int64_t q0, int64_t nq) {
  if (q0 < call0_ || nq < 1 || q0 + nq > call0_ + call_n_)
    fail("internal: micro-batch of {} queries at {} outside the call [{}, {})", nq, q0, call0_, call0_ + call_n_);
  (void)layer;
  q_pos0_ = q0;
  n_q_ = nq;
  chunk_set_ = true;
}

ops::RowObserver* DocumentCollector::observer(int layer) {
  if (!chunk_set_) {  // the whole call as one batch
    q_pos0_ = call0_;
    n_q_ = call_n_;
  }
  // (reduce_rows leaves every slot unfilled)
  if (slots_.size() != size_t(n_heads_) * n_q_) slots_.assign(size_t(n_heads_) * n_q_, Slot{});
  if (persistence_call_ && q_pos0_ == 0) {  // fresh persistence state for this layer
    const size_t A = plan_.anchors.size();
    LayerPersistence& lp = persistence_[layer];
    lp.folded = 0;
    lp.heads.assign(n_heads_, HeadPersistence{});
    for (HeadPersistence& hp : lp.heads) {
      hp.buckets.resize(A);
      hp.heavy.resize(A);
      hp.anchor_top.resize(A);
      hp.pairs.resize(A);
    }
  }
  observer_->layer = layer;
  return observer_.get();
}

template <typename Add>
void DocumentCollector::with_bucket(int layer, int head, int32_t b, Add&& add) {
  std::lock_guard<std::mutex> lock(bucket_locks_[size_t(head) * plan_.anchors.size() + b]);
  std::vector<int64_t>& bucket = persistence_[layer].heads[head].buckets[b];
  if (bucket.empty()) bucket.assign(plan_.anchors[b] + 1, 0);
  add(bucket.data());
}

void DocumentCollector::on_rows(int layer, int head, int64_t query0, int n_rows, const float* const* probs,
                                const int32_t* const* keys, const int64_t* n, const double* entropy,
                                const float* largest) {
  // Four or eight dense rows of one persistence bucket go into it in one pass; anything
  // else row by row.
  bool together = persistence_call_ && (n_rows == 4 || n_rows == 8) && head >= 0 && head < n_heads_ &&
                  query0 - q_pos0_ >= 0 && query0 + n_rows - q_pos0_ <= n_q_;
  for (int k = 0; together && k < n_rows; ++k)
    together = dense_slots(keys[k], n[k]) && bucket_of_[query0 + k] >= 0 && bucket_of_[query0 + k] == bucket_of_[query0];
  for (int k = 0; k < n_rows; ++k)
    on_row(layer, head, query0 + k, probs[k], keys[k], n[k], entropy ? entropy + k : nullptr, !together,
           largest ? largest + k : nullptr);
  if (!together) return;
  with_bucket(layer, head, bucket_of_[query0], [&](int64_t* acc) {
    const int64_t common = *std::min_element(n, n + n_rows);
    if (n_rows == 8) add_fixed8(acc, probs, common);
    else add_fixed4(acc, probs, common);
    for (int k = 0; k < n_rows; ++k) add_fixed(acc + common, probs[k] + common, n[k] - common);
  });
}

void DocumentCollector::on_row(int layer, int head, int64_t query, const float* probs,
                               const int32_t* keys, int64_t n, const double* entropy, bool add_to_bucket,
                               const float* largest) {
  const int64_t i = query - q_pos0_;
  if (i < 0 || i >= n_q_ || head < 0 || head >= n_heads_) return;
  if (dense_slots(keys, n)) keys = nullptr;
  // Analysis runs dense attention without eviction: cache slots are key positions.
  const int32_t c = candidate_of_[query];
  if (c >= 0 && plan_.selected(layer, head, c)) {
    thread_local std::vector<float> scratch;
    Slot& s = slots_[size_t(head) * n_q_ + i];
    s.m = compute_row_metrics(probs, keys, n, query, scratch, entropy, windows_[layer], largest);
    s.filled = true;
  }
  if (!persistence_call_) return;

  LayerPersistence& lp = persistence_[layer];
  HeadPersistence& hp = lp.heads[head];
  const int32_t b = bucket_of_[query];
  if (b >= 0 && add_to_bucket) {
    with_bucket(layer, head, b, [&](int64_t* acc) {
      if (keys == nullptr) {
        add_fixed(acc, probs, n);
      } else {
        for (int64_t j = 0; j < n; ++j) acc[keys[j]] += fixed(probs, j);
      }
    });
  }
  auto position = [keys](int64_t j) -> int64_t { return keys ? keys[j] : j; };
  if (const int32_t a = anchor_of_[query]; a >= 0) {
    std::vector<int32_t> top = topk_indices(probs, n, kTopK.back());
    for (int32_t& j : top) j = static_cast<int32_t>(position(j));
    hp.anchor_top[a] = std::move(top);
  }
  const int64_t window = windows_[layer];
  for (size_t g = 0; g < kPersistenceGaps.size(); ++g) {
    const int64_t t = query - kPersistenceGaps[g];
    if (t < 0) break;
    // A windowed layer's row t + gap sees no key <= t once gap >= window: no pair.
    if (window > 0 && kPersistenceGaps[g] >= window) break;
    const int32_t a = anchor_of_[t];
    if (a < 0) continue;
    PairData& pd = hp.pairs[a][g];
    pd.seen = true;
    pd.row.assign(t + 1, 0.f);
    if (keys == nullptr) {
      std::copy_n(probs, std::min<int64_t>(n, t + 1), pd.row.begin());
    } else {
      for (int64_t j = 0; j < n && keys[j] <= t; ++j) pd.row[keys[j]] = probs[j];
    }
    // The anchor's heavy set is known once its micro-batch has ended (t_a < q_pos0_).
    if (a < lp.folded) compact_pair(hp, a, pd);
  }
}

void DocumentCollector::compact_pair(const HeadPersistence& hp, int32_t anchor, PairData& pd) const {
  const std::vector<float>& r = pd.row;
  const int64_t t = plan_.anchors[anchor];
  pd.top = topk_indices(r.data(), t + 1, kTopK.back());
  pd.mass = segment_sum(r.data(), int64_t(r.size()));
  const std::vector<int32_t>& heavy = hp.heavy[anchor];
  for (size_t ki = 0; ki < kTopK.size(); ++ki) {
    const int64_t k = std::min<int64_t>(kTopK[ki], t + 1);
    double on_heavy = 0;
    for (int64_t x = 0; x < k; ++x) on_heavy += r[heavy[x]];
    pd.on_heavy[ki] = on_heavy;
  }
  pd.row = std::vector<float>();
}

void DocumentCollector::end_layer(int layer) {
  reduce_rows(layer);
  if (persistence_call_) {
    persistence_chunk_done(layer);
    if (q_pos0_ + n_q_ == call0_ + call_n_) reduce_persistence(layer);
  }
  chunk_set_ = false;
  if (on_progress) on_progress(rows_done_);
}

// The anchors whose buckets are complete (t_a before the end of this micro-batch) are
// folded in anchor order into the accumulated attention, which gives their heavy sets;
// later rows that waited for those sets are reduced. Heads are independent and run in
// parallel: this was most of end_layer's serial time between two micro-batches (top-k
// over accumulated rows of up to n keys, for every head).
void DocumentCollector::persistence_chunk_done(int layer) {
  LayerPersistence& lp = persistence_[layer];
  const int32_t A = static_cast<int32_t>(plan_.anchors.size());
  const int64_t end = q_pos0_ + n_q_;
  int32_t folded = lp.folded;
  while (folded < A && plan_.anchors[folded] < end) ++folded;
  const int n_heads = static_cast<int>(lp.heads.size());
  std::exception_ptr error;  // (an exception must not leave the parallel region)
#pragma omp parallel for schedule(dynamic, 1) if (n_heads > 1 && folded > 0)
  for (int h = 0; h < n_heads; ++h) {
    try {
      HeadPersistence& hp = lp.heads[h];
      for (int32_t a = lp.folded; a < folded; ++a) {
        const int64_t t = plan_.anchors[a];
        hp.accumulated.resize(t + 1, 0);
        const std::vector<int64_t>& bucket = hp.buckets[a];
        for (int64_t j = 0; j < int64_t(bucket.size()); ++j) hp.accumulated[j] += bucket[j];
        hp.buckets[a] = std::vector<int64_t>();
        hp.heavy[a] = topk_indices(hp.accumulated.data(), t + 1, kTopK.back());
      }
      for (int32_t a = 0; a < folded; ++a)
        for (PairData& pd : hp.pairs[a])
          if (pd.seen && !pd.row.empty()) compact_pair(hp, a, pd);
    } catch (...) {
#pragma omp critical(attnsparse_persistence_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  lp.folded = folded;
}

void DocumentCollector::reduce_rows(int layer) {
  MetricSums& doc_sums = acc_.doc_layer[doc_slot_][layer];
  DocumentInfo& info = acc_.documents[doc_slot_];
  std::vector<Histogram>& hists = acc_.histograms[layer];
  Reservoir& reservoir = acc_.reservoirs[layer];
  const int wi = recency_window_index(params_.verdict);
  if (dump_ && dump_lines_.size() != size_t(n_q_))
    dump_lines_.assign(n_q_, std::vector<std::string>(plan_.n_layers));
  // (query, head) order: the same sequence of additions however the call is cut into
  // micro-batches.
  for (int64_t i = 0; i < n_q_; ++i) {
    for (int h = 0; h < n_heads_; ++h) {
      Slot& s = slots_[size_t(h) * n_q_ + i];
      if (!s.filled) continue;
      s.filled = false;
      const RowMetrics& m = s.m;
      const int64_t t = q_pos0_ + i;
      if (!std::isfinite(m.entropy) || !std::isfinite(m.sink_mass) || !std::isfinite(m.recency.back()))
        fail("layer {} head {} query {}: the attention row is not finite (the model produced NaN or inf)",
             layer, h, t);
      const auto v = metric_values(m);
      doc_sums.add(v, m.sink_visible);
      for (int g : groups_) acc_.group_head[g][size_t(layer) * n_heads_ + h].add(v, m.sink_visible);
      hists[kHistWidth90].add(v[kWidthNorm90]);
      if (m.sink_visible) hists[kHistSinkMass].add(v[kSinkMass]);
      hists[kHistEntropyNorm].add(v[kEntropyNorm]);
      hists[kHistRecentRatio].add(v[kRecentRatio1 + wi]);
      if (m.sink_visible) hists[kHistSinkRatio].add(v[kSinkRatio]);
      SampledRow r;
      r.key = hash_combine(hash_combine(hash_combine(hash_combine(params_.sampling.seed ^ 0x5a17, plan_.doc), layer), h), t);
      r.recent_diff = float(m.recency[wi] - m.recency_baseline_of(wi));
      r.sink_visible = m.sink_visible;
      r.sink_diff = m.sink_visible ? float(m.sink_mass - 1.0 / double(m.visible_keys())) : 0.f;
      r.width90 = float(v[kWidthNorm90]);
      reservoir.add(r);
      (t < plan_.prefill_len ? info.prefill_rows : info.decode_rows) += 1;
      ++rows_done_;
      if (dump_) {
        std::string& lines = dump_lines_[i][layer];
        fmt::format_to(std::back_inserter(lines), "{},{},{},{},{},{},{},{},{},{:.8g},", plan_.doc, layer, h, t,
                       m.n_keys, m.width[0], m.width[1], m.width[2], m.width[3], m.entropy);
        // An empty sink_mass field: key 0 is outside the layer's window.
        if (m.sink_visible) fmt::format_to(std::back_inserter(lines), "{:.8g}", m.sink_mass);
        for (double rw : m.recency) fmt::format_to(std::back_inserter(lines), ",{:.8g}", rw);
        lines += '\n';
      }
    }
  }
  if (dump_ && layer == plan_.n_layers - 1) {
    std::string lines;
    for (auto& per_layer : dump_lines_)
      for (std::string& l : per_layer) {
        lines += l;
        l.clear();
      }
    if (!lines.empty()) dump_(lines);
  }
}

void DocumentCollector::reduce_persistence(int layer) {
  LayerPersistence& lp = persistence_[layer];
  const size_t A = plan_.anchors.size();
  PersistenceSums& doc_sums = acc_.doc_persistence[doc_slot_][layer];
  for (int h = 0; h < n_heads_; ++h) {
    const HeadPersistence& hp = lp.heads[h];
    for (size_t a = 0; a < A; ++a) {
      const int64_t t = plan_.anchors[a];
      const std::vector<int32_t>& anchor_top = hp.anchor_top[a];
      PersistenceSums one;
      for (size_t g = 0; g < kPersistenceGaps.size(); ++g) {
        const PairData& pd = hp.pairs[a][g];
        if (!pd.seen) continue;
        const std::vector<int32_t>& later_top = pd.top;
        for (size_t ki = 0; ki < kTopK.size(); ++ki) {
          const int64_t k = std::min<int64_t>(kTopK[ki], t + 1);
          int64_t common = 0;
          for (int64_t x = 0; x < k && x < int64_t(anchor_top.size()); ++x)
            common += std::find(later_top.begin(), later_top.begin() + k, anchor_top[x]) != later_top.begin() + k;
          one.overlap[g][ki] = double(common) / double(k);
          one.h2o[g][ki] = pd.mass > 0 ? pd.on_heavy[ki] / pd.mass : 0.0;
        }
        one.pairs[g] = 1;
        doc_sums.merge(one);
        for (int grp : groups_) acc_.group_head_persistence[grp][size_t(layer) * n_heads_ + h].merge(one);
        one = PersistenceSums{};
      }
    }
  }
  lp = LayerPersistence{};
}

}  // namespace attnsparse::analysis
