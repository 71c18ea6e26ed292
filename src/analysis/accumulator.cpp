#include "analysis/accumulator.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace attnsparse::analysis {

namespace {
constexpr const char* kMetricNames[kNumMetrics] = {
#define ATTNSPARSE_METRIC_NAME(id, name, rows) name,
    ATTNSPARSE_ROW_METRICS(ATTNSPARSE_METRIC_NAME)
#undef ATTNSPARSE_METRIC_NAME
};
constexpr MetricRows kMetricRows[kNumMetrics] = {
#define ATTNSPARSE_METRIC_ROWS(id, name, rows) rows,
    ATTNSPARSE_ROW_METRICS(ATTNSPARSE_METRIC_ROWS)
#undef ATTNSPARSE_METRIC_ROWS
};
struct HistogramShape {
  const char* name;
  double lo, hi;
  int bins;
  bool log10;
};
constexpr HistogramShape kHistograms[kNumHistograms] = {
#define ATTNSPARSE_HISTOGRAM_SHAPE(id, name, lo, hi, bins, log10) {name, lo, hi, bins, log10},
    ATTNSPARSE_HISTOGRAMS(ATTNSPARSE_HISTOGRAM_SHAPE)
#undef ATTNSPARSE_HISTOGRAM_SHAPE
};
}  // namespace

const char* metric_name(int metric) { return kMetricNames[metric]; }
MetricRows metric_rows(int metric) { return kMetricRows[metric]; }
const char* histogram_name(int kind) { return kHistograms[kind].name; }

std::array<double, kNumMetrics> metric_values(const RowMetrics& m) {
  std::array<double, kNumMetrics> v{};
  const double visible = double(m.visible_keys());
  for (int i = 0; i < 4; ++i) {
    v[kWidthNorm50 + i] = m.norm_width(i);
    v[kWidth50 + i] = m.width[i];
  }
  v[kEntropy] = m.entropy;
  v[kEntropyNorm] = m.norm_entropy();
  v[kEffectiveSupport] = std::exp(m.entropy);
  if (m.sink_visible) {
    v[kSinkMass] = m.sink_mass;
    v[kSinkArgmax] = m.sink_argmax ? 1 : 0;
    v[kSinkTop5] = m.sink_top5 ? 1 : 0;
    v[kSinkRatio] = m.sink_mass * visible;
  }
  for (size_t i = 0; i < kRecencyWindows.size(); ++i) {
    v[kRecent1 + i] = m.recency[i];
    v[kRecentRatio1 + i] = m.recency[i] / m.recency_baseline_of(int(i));
  }
  return v;
}

void MetricSums::add(const std::array<double, kNumMetrics>& v, bool sink_visible) {
  for (int i = 0; i < kNumMetrics; ++i) sum[i] += v[i];
  ++rows;
  sink_rows += sink_visible;
}

void MetricSums::merge(const MetricSums& o) {
  for (int i = 0; i < kNumMetrics; ++i) sum[i] += o.sum[i];
  rows += o.rows;
  sink_rows += o.sink_rows;
}

void PersistenceSums::merge(const PersistenceSums& o) {
  for (size_t g = 0; g < kPersistenceGaps.size(); ++g) {
    for (size_t k = 0; k < kTopK.size(); ++k) {
      overlap[g][k] += o.overlap[g][k];
      h2o[g][k] += o.h2o[g][k];
    }
    pairs[g] += o.pairs[g];
  }
}

// ---- Histogram ----

Histogram::Histogram(double lo_, double hi_, int bins, bool log10_)
    : lo(lo_), hi(hi_), log10(log10_), counts(bins + 2, 0) {}

void Histogram::add(double v) {
  const int n = bins();
  int idx;
  if (!(v > 0) && log10) idx = 0;  // zero, negative, NaN
  else if (std::isnan(v)) idx = 0;
  else {
    const double x = log10 ? std::log10(v) : v;
    if (x < lo) idx = 0;
    else if (x >= hi) idx = x == hi && !log10 ? n : n + 1;  // linear: hi belongs to the last bin
    else idx = 1 + std::min(n - 1, static_cast<int>((x - lo) / (hi - lo) * n));
  }
  ++counts[idx];
}

void Histogram::merge(const Histogram& o) {
  if (o.counts.size() != counts.size() || o.lo != lo || o.hi != hi || o.log10 != log10)
    fail("internal: merging histograms of different shapes");
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
}

int64_t Histogram::total() const {
  int64_t t = 0;
  for (int64_t c : counts) t += c;
  return t;
}

double Histogram::bin_low(int i) const {
  const double x = lo + (hi - lo) * (i - 1) / bins();
  return log10 ? std::pow(10.0, x) : x;
}
double Histogram::bin_high(int i) const {
  const double x = lo + (hi - lo) * i / bins();
  return log10 ? std::pow(10.0, x) : x;
}

double Histogram::quantile(double q) const {
  const int64_t n = total();
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const double target = q * double(n);
  double cum = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double c = double(counts[i]);
    if (c > 0 && cum + c >= target) {
      if (i == 0) return log10 ? std::pow(10.0, lo) : lo;
      if (int(i) == bins() + 1) return log10 ? std::pow(10.0, hi) : hi;
      const double f = std::clamp((target - cum) / c, 0.0, 1.0);
      const double x0 = lo + (hi - lo) * double(i - 1) / bins();
      const double x = x0 + f * (hi - lo) / bins();
      return log10 ? std::pow(10.0, x) : x;
    }
    cum += c;
  }
  return log10 ? std::pow(10.0, hi) : hi;
}

Histogram make_histogram(int kind) {
  if (kind < 0 || kind >= kNumHistograms) fail("internal: unknown histogram kind {}", kind);
  const HistogramShape& h = kHistograms[kind];
  return Histogram(h.lo, h.hi, h.bins, h.log10);
}

// ---- Reservoir ----

namespace {
bool key_less(const SampledRow& a, const SampledRow& b) { return a.key < b.key; }
}  // namespace

void Reservoir::add(const SampledRow& r) {
  if (capacity <= 0) return;
  if (static_cast<int>(rows.size()) < capacity) {
    rows.push_back(r);
    std::push_heap(rows.begin(), rows.end(), key_less);
  } else if (r.key < rows.front().key) {
    std::pop_heap(rows.begin(), rows.end(), key_less);
    rows.back() = r;
    std::push_heap(rows.begin(), rows.end(), key_less);
  }
}

void Reservoir::merge(const Reservoir& o) {
  std::vector<SampledRow> all = rows;
  all.insert(all.end(), o.rows.begin(), o.rows.end());
  std::sort(all.begin(), all.end(), key_less);
  if (static_cast<int>(all.size()) > capacity) all.resize(capacity);
  rows = std::move(all);
  std::make_heap(rows.begin(), rows.end(), key_less);
}

void Reservoir::finish() { std::sort(rows.begin(), rows.end(), key_less); }

// ---- Accumulator ----

Accumulator::Accumulator(int layers, int heads, int reservoir_capacity)
    : n_layers(layers), n_heads(heads) {
  histograms.resize(layers);
  for (auto& h : histograms)
    for (int k = 0; k < kNumHistograms; ++k) h.push_back(make_histogram(k));
  reservoirs.resize(layers);
  for (auto& r : reservoirs) r.capacity = reservoir_capacity;
  group_index("all");
}

int Accumulator::group_index(const std::string& name) {
  for (size_t i = 0; i < group_names.size(); ++i)
    if (group_names[i] == name) return static_cast<int>(i);
  group_names.push_back(name);
  group_head.emplace_back(size_t(n_layers) * n_heads);
  group_head_persistence.emplace_back(size_t(n_layers) * n_heads);
  return static_cast<int>(group_names.size()) - 1;
}

std::array<int, 3> Accumulator::groups_of(const DocumentInfo& doc) {
  return {group_index("all"), group_index("dataset:" + doc.dataset),
          group_index("half:" + std::to_string(doc.half))};
}

int64_t Accumulator::begin_document(const DocumentInfo& info) {
  documents.push_back(info);
  doc_layer.emplace_back(n_layers);
  doc_persistence.emplace_back(n_layers);
  groups_of(info);  // create the groups in document order
  return static_cast<int64_t>(documents.size()) - 1;
}

void Accumulator::merge(const Accumulator& o) {
  if (o.n_layers != n_layers || o.n_heads != n_heads)
    fail("internal: merging accumulators of different shapes");
  documents.insert(documents.end(), o.documents.begin(), o.documents.end());
  doc_layer.insert(doc_layer.end(), o.doc_layer.begin(), o.doc_layer.end());
  doc_persistence.insert(doc_persistence.end(), o.doc_persistence.begin(), o.doc_persistence.end());
  for (size_t g = 0; g < o.group_names.size(); ++g) {
    const int mine = group_index(o.group_names[g]);
    for (size_t i = 0; i < o.group_head[g].size(); ++i) {
      group_head[mine][i].merge(o.group_head[g][i]);
      group_head_persistence[mine][i].merge(o.group_head_persistence[g][i]);
    }
  }
  for (int l = 0; l < n_layers; ++l) {
    for (int k = 0; k < kNumHistograms; ++k) histograms[l][k].merge(o.histograms[l][k]);
    reservoirs[l].merge(o.reservoirs[l]);
  }
}

int64_t Accumulator::total_rows() const {
  int64_t n = 0;
  for (const auto& d : doc_layer)
    for (const auto& m : d) n += m.rows;
  return n;
}

// ---- Serialisation (exact: doubles are written in round-trip form) ----

namespace {
using json = nlohmann::json;

// sink_rows only where it differs from rows (windowed layers): the state of an all-global
// run is written as before.
json sums_json(const MetricSums& m) {
  json j{{"sum", m.sum}, {"rows", m.rows}};
  if (m.sink_rows != m.rows) j["sink_rows"] = m.sink_rows;
  return j;
}
MetricSums sums_from(const json& j) {
  MetricSums m;
  m.sum = j.at("sum").get<std::array<double, kNumMetrics>>();
  m.rows = j.at("rows").get<int64_t>();
  m.sink_rows = j.contains("sink_rows") ? j.at("sink_rows").get<int64_t>() : m.rows;
  if (m.sink_rows < 0 || m.sink_rows > m.rows) throw FormatError("inconsistent accumulator state (sink rows)");
  return m;
}
json pers_json(const PersistenceSums& p) {
  return json{{"overlap", p.overlap}, {"h2o", p.h2o}, {"pairs", p.pairs}};
}
PersistenceSums pers_from(const json& j) {
  PersistenceSums p;
  j.at("overlap").get_to(p.overlap);
  j.at("h2o").get_to(p.h2o);
  j.at("pairs").get_to(p.pairs);
  return p;
}
template <typename T, typename F>
json list_json(const std::vector<T>& v, F f) {
  json a = json::array();
  for (const auto& x : v) a.push_back(f(x));
  return a;
}
}  // namespace

json Accumulator::to_json() const {
  json j;
  j["n_layers"] = n_layers;
  j["n_heads"] = n_heads;
  j["documents"] = list_json(documents, [](const DocumentInfo& d) {
    return json{{"id", d.id}, {"source", d.source}, {"dataset", d.dataset}, {"tokens", d.tokens},
                {"original_tokens", d.original_tokens}, {"prefill_rows", d.prefill_rows},
                {"decode_rows", d.decode_rows}, {"half", d.half}};
  });
  j["doc_layer"] = list_json(doc_layer, [](const auto& v) { return list_json(v, sums_json); });
  j["doc_persistence"] = list_json(doc_persistence, [](const auto& v) { return list_json(v, pers_json); });
  j["group_names"] = group_names;
  j["group_head"] = list_json(group_head, [](const auto& v) { return list_json(v, sums_json); });
  j["group_head_persistence"] =
      list_json(group_head_persistence, [](const auto& v) { return list_json(v, pers_json); });
  j["histograms"] = list_json(histograms, [](const auto& v) {
    return list_json(v, [](const Histogram& h) {
      return json{{"lo", h.lo}, {"hi", h.hi}, {"log10", h.log10}, {"counts", h.counts}};
    });
  });
  j["reservoirs"] = list_json(reservoirs, [](const Reservoir& r) {
    Reservoir sorted = r;
    sorted.finish();
    json rows = json::array();
    for (const SampledRow& s : sorted.rows) {
      rows.push_back(json::array({s.key, s.recent_diff, s.sink_diff, s.width90}));
      if (!s.sink_visible) rows.back().push_back(false);
    }
    return json{{"capacity", r.capacity}, {"rows", rows}};
  });
  return j;
}

Accumulator Accumulator::from_json(const json& j) {
  Accumulator a;
  a.n_layers = j.at("n_layers").get<int>();
  a.n_heads = j.at("n_heads").get<int>();
  for (const json& d : j.at("documents")) {
    DocumentInfo info;
    info.id = d.at("id").get<std::string>();
    info.source = d.at("source").get<std::string>();
    info.dataset = d.at("dataset").get<std::string>();
    info.tokens = d.at("tokens").get<int64_t>();
    info.original_tokens = d.at("original_tokens").get<int64_t>();
    info.prefill_rows = d.at("prefill_rows").get<int64_t>();
    info.decode_rows = d.at("decode_rows").get<int64_t>();
    info.half = d.at("half").get<int>();
    a.documents.push_back(info);
  }
  for (const json& d : j.at("doc_layer")) {
    a.doc_layer.emplace_back();
    for (const json& m : d) a.doc_layer.back().push_back(sums_from(m));
  }
  for (const json& d : j.at("doc_persistence")) {
    a.doc_persistence.emplace_back();
    for (const json& m : d) a.doc_persistence.back().push_back(pers_from(m));
  }
  a.group_names = j.at("group_names").get<std::vector<std::string>>();
  for (const json& g : j.at("group_head")) {
    a.group_head.emplace_back();
    for (const json& m : g) a.group_head.back().push_back(sums_from(m));
  }
  for (const json& g : j.at("group_head_persistence")) {
    a.group_head_persistence.emplace_back();
    for (const json& m : g) a.group_head_persistence.back().push_back(pers_from(m));
  }
  for (const json& l : j.at("histograms")) {
    a.histograms.emplace_back();
    for (const json& h : l) {
      Histogram hist;
      hist.lo = h.at("lo").get<double>();
      hist.hi = h.at("hi").get<double>();
      hist.log10 = h.at("log10").get<bool>();
      hist.counts = h.at("counts").get<std::vector<int64_t>>();
      a.histograms.back().push_back(std::move(hist));
    }
  }
  for (const json& r : j.at("reservoirs")) {
    Reservoir res;
    res.capacity = r.at("capacity").get<int>();
    for (const json& s : r.at("rows"))
      res.rows.push_back({s.at(0).get<uint64_t>(), s.at(1).get<float>(), s.at(2).get<float>(),
                          s.at(3).get<float>(), s.size() > 4 ? s.at(4).get<bool>() : true});
    std::make_heap(res.rows.begin(), res.rows.end(), key_less);
    a.reservoirs.push_back(std::move(res));
  }
  const size_t L = size_t(a.n_layers), G = a.group_names.size();
  bool ok = a.n_layers > 0 && a.n_heads > 0 && a.doc_layer.size() == a.documents.size() &&
            a.doc_persistence.size() == a.documents.size() && a.group_head.size() == G &&
            a.group_head_persistence.size() == G && a.histograms.size() == L &&
            a.reservoirs.size() == L;
  for (size_t d = 0; ok && d < a.documents.size(); ++d)
    ok = a.doc_layer[d].size() == L && a.doc_persistence[d].size() == L;
  for (size_t g = 0; ok && g < G; ++g)
    ok = a.group_head[g].size() == L * a.n_heads && a.group_head_persistence[g].size() == L * a.n_heads;
  for (size_t l = 0; ok && l < L; ++l) ok = a.histograms[l].size() == kNumHistograms;
  if (!ok) throw FormatError("inconsistent accumulator state");
  return a;
}

}  // namespace attnsparse::analysis
