// Oracle comparison of policy maps against dense attention on the same inputs.
#include "policies/oracle.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "policies/eviction.h"
#include "policies/planner.h"

namespace attnsparse::policies {

void OracleLayerStats::merge(const OracleLayerStats& o) {
  diff2 += o.diff2;
  ref2 += o.ref2;
  tau += o.tau;
  rows += o.rows;
  kept += o.kept;
  visible += o.visible;
}

double OracleLayerStats::relative_l2() const { return ref2 > 0 ? std::sqrt(diff2 / ref2) : 0.0; }

struct OracleHooks::PerMap {
  std::vector<EvictionSimulator> simulators;  // per layer, evicting maps only
  bool evicting = false;
  // Current layer's call:
  std::vector<const Policy*> heads;             // per head
  std::vector<const Policy*> content_heads;     // per head, null unless content
  bool any_content = false;
  std::optional<ops::KeySet> pre;               // key sets of the non-content heads
  std::unique_ptr<ContentSelector> selector;    // selections of the content heads
  std::vector<PlanCache> caches;                // per layer, for the current sequence
};

// Sees every dense row once and, for each map, measures the mass its key set keeps. The
// rows' tail masses are summed in (head, query) order after the call, not per thread as
// the rows arrive, so tau is the same bits for any thread count and schedule.
class OracleHooks::RowTap : public ops::RowObserver {
 public:
  explicit RowTap(OracleHooks& o) : o_(o) {}
  void begin(int layer, const ops::AttentionShape& s, const ops::AttentionArgs& a) {
    layer_ = layer;
    q_pos0_ = s.q_pos0;
    n_q_ = s.n_q;
    n_head_ = s.n_head;
    key_pos_ = a.key_pos;
    threads_ = omp_get_max_threads();
    partial_.assign(static_cast<size_t>(threads_) * o_.maps_.size(), OracleLayerStats{});
    row_tau_.assign(o_.maps_.size() * static_cast<size_t>(n_head_) * static_cast<size_t>(n_q_), 0.0);
    // Per-row results of the chosen queries: [map][head][query of the call].
    chosen_.assign(o_.row_sink_ ? size_t(s.n_q) : 0, 0);
    for (int64_t i = 0; i < int64_t(chosen_.size()); ++i) chosen_[size_t(i)] = o_.chosen_(s.q_pos0 + i);
    rows_.assign(chosen_.empty() ? 0 : o_.maps_.size() * size_t(s.n_head) * size_t(s.n_q), OracleRow{});
  }
  bool chosen(int64_t i) const { return !chosen_.empty() && chosen_[size_t(i)]; }
  OracleRow& row(size_t map, int head, int64_t i) { return rows_[(map * size_t(n_head_) + size_t(head)) * size_t(n_q_) + size_t(i)]; }
  void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys, int64_t n) override {
    const int64_t i = query_pos - q_pos0_;
    if (o_.only_chosen_ && !chosen(i)) return;
    std::vector<int32_t> idx;
    if (keys == nullptr) {
      idx.resize(n);
      for (int64_t x = 0; x < n; ++x) idx[x] = static_cast<int32_t>(x);
      keys = idx.data();
    }
    const int th = omp_get_thread_num();
    for (size_t m = 0; m < o_.maps_.size(); ++m) {
      PerMap& pm = *o_.per_map_[m];
      OracleLayerStats& st = partial_[th * o_.maps_.size() + m];
      double kept_mass = 0;
      int64_t kept = 0;
      if (pm.content_heads[head] != nullptr) {
        pm.selector->on_row(head, query_pos, probs, keys, n);
        const auto& sel = pm.selector->lists().row(head, i);
        // Both sorted by slot: merge.
        size_t y = 0;
        for (int64_t x = 0; x < n && y < sel.size(); ++x) {
          while (y < sel.size() && sel[y] < keys[x]) ++y;
          if (y < sel.size() && sel[y] == keys[x]) kept_mass += probs[x];
        }
        kept = static_cast<int64_t>(sel.size());
      } else if (!pm.pre) {
        for (int64_t x = 0; x < n; ++x) kept_mass += probs[x];
        kept = n;
      } else {
        for (int64_t x = 0; x < n; ++x) {
          const int64_t j = keys[x];
          if (pm.pre->contains(head, i, query_pos, j, key_pos_ ? key_pos_[j] : j)) {
            kept_mass += probs[x];
            ++kept;
          }
        }
      }
      row_tau_[(m * static_cast<size_t>(n_head_) + static_cast<size_t>(head)) * static_cast<size_t>(n_q_) +
               static_cast<size_t>(i)] = std::max(0.0, 1.0 - kept_mass);
      st.kept += kept;
      st.visible += n;
      st.rows += 1;
      if (chosen(i)) {
        OracleRow& r = row(m, head, i);
        r.tau = std::max(0.0, 1.0 - kept_mass);
        r.kept = kept;
        r.visible = n;
      }
    }
  }
  void finish() {
    o_.call_.assign(o_.maps_.size(), OracleLayerStats{});
    if (o_.only_chosen_) return;  // the per-row results only
    for (int th = 0; th < threads_; ++th)
      for (size_t m = 0; m < o_.maps_.size(); ++m)
        o_.call_[m].merge(partial_[th * o_.maps_.size() + m]);  // integer counts
    const size_t per_map = static_cast<size_t>(n_head_) * static_cast<size_t>(n_q_);
    for (size_t m = 0; m < o_.maps_.size(); ++m) {
      double tau = 0;
      for (size_t r = 0; r < per_map; ++r) tau += row_tau_[m * per_map + r];
      o_.call_[m].tau = tau;
    }
  }

 private:
  OracleHooks& o_;
  int layer_ = 0;
  int n_head_ = 0;
  int64_t q_pos0_ = 0, n_q_ = 0;
  std::vector<uint8_t> chosen_;  // [query of the call]
  std::vector<OracleRow> rows_;  // [map][head][query of the call], chosen queries only
  const int32_t* key_pos_ = nullptr;
  int threads_ = 1;
  std::vector<OracleLayerStats> partial_;  // [thread][map]: kept, visible, rows
  std::vector<double> row_tau_;            // [map][head][query]
};

OracleHooks::OracleHooks(const ModelConfig& config, std::vector<PolicyMap> maps)
    : config_(config), maps_(std::move(maps)) {
  const int n_layer = static_cast<int>(config_.n_layer), n_head = static_cast<int>(config_.n_head);
  for (const auto& map : maps_) {
    map.validate(n_layer, n_head);
    per_map_.push_back(std::make_unique<PerMap>());
  }
  stats_.assign(maps_.size(), std::vector<OracleLayerStats>(n_layer));
  call_.assign(maps_.size(), OracleLayerStats{});
  tap_ = std::make_unique<RowTap>(*this);
  reset();
}

OracleHooks::~OracleHooks() = default;

void OracleHooks::reset() {
  const int n_layer = static_cast<int>(config_.n_layer), n_head = static_cast<int>(config_.n_head);
  calls_.assign(maps_.size(), std::vector<std::vector<OracleLayerStats>>(n_layer));
  for (size_t m = 0; m < maps_.size(); ++m) {
    PerMap& pm = *per_map_[m];
    pm.evicting = maps_[m].any_evicting(n_layer, n_head);
    pm.simulators.clear();
    pm.caches.assign(n_layer, PlanCache{});
    if (pm.evicting)
      for (int l = 0; l < n_layer; ++l) pm.simulators.emplace_back(maps_[m].at(l, 0));
  }
}

const ops::KeySet* OracleHooks::plan(int layer, const ops::AttentionShape& s, const ops::AttentionArgs& a) {
  static const Policy kDense;
  for (size_t m = 0; m < maps_.size(); ++m) {
    PerMap& pm = *per_map_[m];
    pm.heads.assign(s.n_head, nullptr);
    pm.content_heads.assign(s.n_head, nullptr);
    pm.any_content = false;
    pm.pre.reset();
    pm.selector.reset();
    if (pm.evicting) {
      pm.pre = pm.simulators[layer].plan(s, a);
      continue;
    }
    std::vector<const Policy*> non_content(s.n_head);
    for (int h = 0; h < s.n_head; ++h) {
      const Policy& p = maps_[m].at(layer, h);
      pm.heads[h] = &p;
      if (p.content()) {
        pm.content_heads[h] = &p;
        pm.any_content = true;
      }
      non_content[h] = p.content() ? &kDense : &p;
    }
    pm.pre = plan_call(non_content, s, a, nullptr, &pm.caches[layer]);
    if (pm.any_content) pm.selector = std::make_unique<ContentSelector>(pm.content_heads, s.n_q, s.q_pos0);
  }
  tap_->begin(layer, s, a);
  return nullptr;  // the model itself runs dense
}

ops::RowObserver* OracleHooks::observer(int layer) { return tap_.get(); }

void OracleHooks::after_attention(int layer, const ops::AttentionShape& s, const ops::AttentionArgs& a) {
  tap_->finish();
  const int64_t width = static_cast<int64_t>(s.n_head) * s.head_dim;
  std::vector<float> sparse(static_cast<size_t>(s.n_q) * width);
  for (size_t m = 0; m < maps_.size(); ++m) {
    PerMap& pm = *per_map_[m];
    std::optional<ops::KeySet> keys;
    if (pm.any_content) keys = plan_call(pm.heads, s, a, &pm.selector->lists(), &pm.caches[layer]);
    else keys = std::move(pm.pre);
    pm.pre.reset();
    pm.selector.reset();
    double diff2 = 0, ref2 = 0;
    if (keys) {
      ops::AttentionArgs b = a;
      b.out = sparse.data();
      b.out_stride = width;
      ops::attention(s, b, &*keys, nullptr);
    }
    for (int64_t i = 0; i < s.n_q && !only_chosen_; ++i) {
      const float* o = a.out + i * a.out_stride;
      const float* g = keys ? sparse.data() + i * width : o;
      for (int64_t c = 0; c < width; ++c) {
        const double d = static_cast<double>(o[c]) - g[c];
        diff2 += d * d;
        ref2 += static_cast<double>(o[c]) * o[c];
      }
    }
    // The call's sums first, then the running total (one merge per call: a total kept
    // elsewhere replays calls_ with the same roundings). With only_chosen the totals stay
    // empty: the per-row results only.
    if (!only_chosen_) {
      call_[m].diff2 += diff2;
      call_[m].ref2 += ref2;
      stats_[m][layer].merge(call_[m]);
      calls_[m][layer].push_back(call_[m]);
    }
    if (!row_sink_) continue;
    // The chosen rows, one head's slice of the output at a time.
    for (int64_t i = 0; i < s.n_q; ++i) {
      if (!tap_->chosen(i)) continue;
      for (int h = 0; h < s.n_head; ++h) {
        const int64_t c0 = int64_t(h) * s.head_dim;
        const float* o = a.out + i * a.out_stride + c0;
        const float* g = keys ? sparse.data() + i * width + c0 : o;
        double d2 = 0, r2 = 0;
        for (int c = 0; c < s.head_dim; ++c) {
          const double d = static_cast<double>(o[c]) - g[c];
          d2 += d * d;
          r2 += static_cast<double>(o[c]) * o[c];
        }
        OracleRow& r = tap_->row(m, h, i);
        r.map = m;
        r.layer = layer;
        r.head = h;
        r.query = s.q_pos0 + i;
        r.diff2 = d2;
        r.ref2 = r2;
        row_sink_(r);
      }
    }
  }
}

void OracleHooks::report_rows(std::function<bool(int64_t)> chosen, std::function<void(const OracleRow&)> sink,
                              bool only_chosen) {
  chosen_ = chosen && sink ? std::move(chosen) : nullptr;
  row_sink_ = chosen_ ? std::move(sink) : nullptr;
  only_chosen_ = row_sink_ && only_chosen;
}

}  // namespace attnsparse::policies
