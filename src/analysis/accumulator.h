// Mergeable statistics of an analysis run. Everything here is a sum, a count, a histogram
// or a bottom-k hash sample, so documents (and whole runs) combine with merge() in any
// grouping, and the state serialises exactly (checkpoint / --resume).
//
// Memory is O(documents x layers + groups x layers x heads + layers x (bins + reservoir)),
// independent of the number of rows.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/params.h"
#include "analysis/row_metrics.h"

namespace attnsparse::analysis {

// The per-row quantities summed per (document, layer) and per (group, layer, head): one
// line per metric, X(identifier, name in report.json, rows it is averaged over). The enum
// Metric (kWidthNorm50, ...), metric_name() and metric_rows() are generated from this one
// table; metric_values() computes them. "Visible" is the number of keys the layer lets the
// query see (t+1, or min(t+1, W) in a layer with a native window W). Sink metrics are
// averaged over the rows whose key 0 is visible (kSinkRows), the others over all rows.
// Metrics of one family (widths, recency) stay adjacent and in kWidthLevels /
// kRecencyWindows order: the code indexes them as kWidthNorm50 + i.
#define ATTNSPARSE_ROW_METRICS(X)                                                         \
  X(WidthNorm50, "width_norm_p50", kAllRows)      /* w_p = W_p / visible */               \
  X(WidthNorm90, "width_norm_p90", kAllRows)                                              \
  X(WidthNorm95, "width_norm_p95", kAllRows)                                              \
  X(WidthNorm99, "width_norm_p99", kAllRows)                                              \
  X(Width50, "width_p50", kAllRows)               /* W_p */                               \
  X(Width90, "width_p90", kAllRows)                                                       \
  X(Width95, "width_p95", kAllRows)                                                       \
  X(Width99, "width_p99", kAllRows)                                                       \
  X(Entropy, "entropy", kAllRows)                 /* H */                                 \
  X(EntropyNorm, "entropy_norm", kAllRows)        /* H / ln(visible) */                   \
  X(EffectiveSupport, "effective_support", kAllRows) /* exp(H) */                         \
  X(SinkMass, "sink_mass", kSinkRows)             /* a_0 */                               \
  X(SinkArgmax, "sink_argmax", kSinkRows)         /* [key 0 is the arg-max] */            \
  X(SinkTop5, "sink_top5", kSinkRows)             /* [key 0 is in the top 5] */           \
  X(SinkRatio, "sink_ratio", kSinkRows)           /* a_0 * visible */                     \
  X(Recent1, "recent_1", kAllRows)                /* R_w */                               \
  X(Recent8, "recent_8", kAllRows)                                                        \
  X(Recent32, "recent_32", kAllRows)                                                      \
  X(Recent64, "recent_64", kAllRows)                                                      \
  X(Recent128, "recent_128", kAllRows)                                                    \
  X(RecentRatio1, "recent_ratio_1", kAllRows)     /* R_w / (min(w, visible) / visible) */ \
  X(RecentRatio8, "recent_ratio_8", kAllRows)                                             \
  X(RecentRatio32, "recent_ratio_32", kAllRows)                                           \
  X(RecentRatio64, "recent_ratio_64", kAllRows)                                           \
  X(RecentRatio128, "recent_ratio_128", kAllRows)

enum MetricRows : int { kAllRows, kSinkRows };

enum Metric : int {
#define ATTNSPARSE_METRIC_ENUM(id, name, rows) k##id,
  ATTNSPARSE_ROW_METRICS(ATTNSPARSE_METRIC_ENUM)
#undef ATTNSPARSE_METRIC_ENUM
  kNumMetrics
};
static_assert(kWidth50 - kWidthNorm50 == int(kWidthLevels.size()) && kEntropy - kWidth50 == int(kWidthLevels.size()));
static_assert(kRecentRatio1 - kRecent1 == int(kRecencyWindows.size()) &&
              kNumMetrics - kRecentRatio1 == int(kRecencyWindows.size()));
const char* metric_name(int metric);
MetricRows metric_rows(int metric);  // the rows a metric is averaged over
// The value of each Metric for one row (sink metrics 0 when key 0 is not visible).
std::array<double, kNumMetrics> metric_values(const RowMetrics& m);

struct MetricSums {
  std::array<double, kNumMetrics> sum{};
  int64_t rows = 0;
  int64_t sink_rows = 0;  // rows whose key 0 is visible (= rows in global layers)
  void add(const std::array<double, kNumMetrics>& v, bool sink_visible = true);
  void merge(const MetricSums& o);
  // The rows metric m is averaged over.
  int64_t rows_of(int m) const { return metric_rows(m) == kSinkRows ? sink_rows : rows; }
};

// Persistence per gap (kPersistenceGaps) and k (kTopK): the top-k overlap and the H2O
// mass, summed over (anchor, gap) pairs.
struct PersistenceSums {
  // [gap][k]
  std::array<std::array<double, kTopK.size()>, kPersistenceGaps.size()> overlap{}, h2o{};
  std::array<int64_t, kPersistenceGaps.size()> pairs{};
  void merge(const PersistenceSums& o);
};

// Fixed-bin histogram (linear or log10 bins) with under- and overflow bins.
struct Histogram {
  double lo = 0, hi = 1;
  bool log10 = false;
  std::vector<int64_t> counts;  // [0] underflow (and zero / NaN), [1..bins], [bins+1] overflow
  Histogram() = default;
  Histogram(double lo, double hi, int bins, bool log10);
  int bins() const { return static_cast<int>(counts.size()) - 2; }
  void add(double v);
  void merge(const Histogram& o);
  int64_t total() const;
  // Quantile q in [0,1], interpolated within the bin (in log space for log bins). NaN when
  // empty; the range limit when the quantile falls in an under/overflow bin.
  double quantile(double q) const;
  double bin_low(int i) const;  // i in 1..bins
  double bin_high(int i) const;
};

// Per-layer distributions, one line per kind: X(identifier, name in report.json, lo, hi,
// bins, log10 axis). kHistRecentRatio is R_w / baseline for the C3 window
// (VerdictParams::recency_window); kHistSinkRatio is a_0 (t+1). Log axes are in log10
// units, 0.02 decades (4.7%) per bin.
#define ATTNSPARSE_HISTOGRAMS(X)                             \
  X(Width90, "width_norm_p90", 0, 1, 50, false)              \
  X(SinkMass, "sink_mass", 0, 1, 50, false)                  \
  X(EntropyNorm, "entropy_norm", 0, 1, 50, false)            \
  X(RecentRatio, "recent_ratio", -3, 3, 300, true)           \
  X(SinkRatio, "sink_ratio", -3, 5, 400, true)

enum HistogramKind : int {
#define ATTNSPARSE_HISTOGRAM_ENUM(id, name, lo, hi, bins, log10) kHist##id,
  ATTNSPARSE_HISTOGRAMS(ATTNSPARSE_HISTOGRAM_ENUM)
#undef ATTNSPARSE_HISTOGRAM_ENUM
  kNumHistograms
};
const char* histogram_name(int kind);
Histogram make_histogram(int kind);

// Bottom-k sample by a hash of (seed, document, layer, head, query): mergeable and
// independent of the order rows arrive in. Used for the rank tests per layer.
struct SampledRow {
  uint64_t key = 0;
  float recent_diff = 0;  // R_w - min(w, visible)/visible for the C3 window
  float sink_diff = 0;    // a_0 - 1/visible (when key 0 is visible)
  float width90 = 0;      // w_0.9
  bool sink_visible = true;
};
struct Reservoir {
  int capacity = 0;
  std::vector<SampledRow> rows;  // a max-heap by key while filling; sorted by key after finish()
  void add(const SampledRow& r);
  void merge(const Reservoir& o);
  void finish();  // sort by key (canonical order)
};

struct DocumentInfo {
  std::string id, source, dataset;
  int64_t tokens = 0;           // after truncation
  int64_t original_tokens = 0;  // before truncation
  int64_t prefill_rows = 0, decode_rows = 0;
  int half = 0;  // split-half group (the run's document index % 2), fixed when the document is added
};

struct Accumulator {
  int n_layers = 0, n_heads = 0;
  std::vector<DocumentInfo> documents;
  std::vector<std::vector<MetricSums>> doc_layer;             // [doc][layer]
  std::vector<std::vector<PersistenceSums>> doc_persistence;  // [doc][layer]
  // Per group ("all", each dataset, "half:0" / "half:1" = even / odd documents): [layer * n_heads + head].
  std::vector<std::string> group_names;
  std::vector<std::vector<MetricSums>> group_head;
  std::vector<std::vector<PersistenceSums>> group_head_persistence;
  std::vector<std::vector<Histogram>> histograms;  // [layer][HistogramKind]
  std::vector<Reservoir> reservoirs;               // [layer]

  Accumulator() = default;
  Accumulator(int n_layers, int n_heads, int reservoir_capacity);

  // Adds one document (its index is documents.size()) and returns its index.
  int64_t begin_document(const DocumentInfo& info);
  int group_index(const std::string& name);  // creates the group on first use
  // The groups a document counts in: "all", its dataset, its half.
  std::array<int, 3> groups_of(const DocumentInfo& doc);

  // Appends another accumulator's documents (renumbered after ours) and merges the rest.
  void merge(const Accumulator& o);

  int64_t total_rows() const;
  nlohmann::json to_json() const;                       // exact (doubles round-trip)
  static Accumulator from_json(const nlohmann::json& j);
};

}  // namespace attnsparse::analysis
