// attnsparse.analyze (the `analyze` verb's engine) and RowStats (the same statistics fed
// with probability rows captured anywhere).
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis/analyze_job.h"
#include "analysis/collector.h"
#include "analysis/plan.h"
#include "analysis/report_json.h"
#include "core/error.h"
#include "python/common.h"
#include "report/analysis_report.h"

namespace attnsparse::python {

namespace {

using namespace pybind11::literals;
using json = nlohmann::json;
using namespace attnsparse::analysis;

// Keyword arguments that are statistics / verdict parameters (the CLI's --set NAME=VALUE).
void apply_settings(AnalysisParams& p, const py::dict& settings) {
  for (const auto& [k, v] : settings) {
    const std::string name = py::str(k);
    if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)))
      fail_usage("{}: expected a number, got {}", name, std::string(py::str(py::type::of(v).attr("__name__"))));
    apply_setting(p, name + "=" + fmt::format("{}", v.cast<double>()));
  }
}

// In-memory documents: dicts with "text" (str) or "tokens" (int ids, used as they are,
// no BOS added: like a .tok file), and optional "id", "dataset".
std::vector<Document> documents_from(const py::list& items, int64_t n_vocab) {
  std::vector<Document> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const py::handle item = items[i];
    const std::string where = fmt::format("documents[{}]", i);
    if (!py::isinstance<py::dict>(item)) fail_usage("{}: expected a dict with 'text' or 'tokens'", where);
    const py::dict d = py::reinterpret_borrow<py::dict>(item);
    Document doc;
    doc.source = "<python>";
    doc.id = d.contains("id") ? std::string(py::str(d["id"])) : where;
    doc.dataset = d.contains("dataset") ? std::string(py::str(d["dataset"])) : "python";
    if (d.contains("text") == d.contains("tokens")) fail_usage("{}: give exactly one of 'text' and 'tokens'", where);
    if (d.contains("text")) {
      const py::object t = d["text"];
      if (py::isinstance<py::str>(t)) doc.text = t.cast<std::string>();
      else if (py::isinstance<py::bytes>(t)) doc.text = std::string(t.cast<py::bytes>());
      else fail_usage("{}: 'text' must be str or bytes", where);
    } else {
      doc.tokens = token_ids(d["tokens"], n_vocab, (where + ".tokens").c_str());
    }
    out.push_back(std::move(doc));
  }
  return out;
}

std::string analyze_json(PyModel& pm, const std::vector<std::string>& data, const py::list& documents,
                         int64_t max_tokens,
                         const std::string& rows, int64_t stride, int64_t min_query, int64_t decode_tokens,
                         int64_t max_rows, uint64_t seed, const py::dict& settings, const std::string& out_dir,
                         bool resume, const std::string& dump_rows, const py::object& progress) {
  AnalysisParams params;
  params.sampling.rows = parse_row_kind(rows);
  params.sampling.stride = stride;
  params.sampling.min_query = min_query;
  params.sampling.max_rows = max_rows;
  params.sampling.decode_tokens = decode_tokens;
  params.sampling.seed = seed;
  params.sampling.max_tokens = max_tokens;
  apply_settings(params, settings);
  validate(params);
  AnalyzeJob job;
  job.model_path = pm.path;
  job.data = data;
  job.documents = documents_from(documents, pm.model->config().n_vocab);
  if (data.empty() && job.documents.empty()) fail_usage("data: give at least one file, directory or document");
  job.out_dir = out_dir;
  job.resume = resume;
  job.dump_rows = dump_rows;
  const Checkpoint cp(progress);
  job.progress = [&cp](const RunProgress& p) { cp(p.rows_done, p.rows_total); };
  std::vector<std::string> notices;
  job.notice = [&notices](const std::string& line) { notices.push_back(line); };
  json report;
  {
    py::gil_scoped_release nogil;
    pm.apply_threads();
    report = run_analysis(*pm.model, params, job);
  }
  for (const std::string& n : notices) {
    const std::string w = "analyze: " + n;
    if (PyErr_WarnEx(PyExc_RuntimeWarning, w.c_str(), 1) != 0) throw py::error_already_set();
  }
  return report.dump(1) + "\n";
}

// ---- RowStats ----

class RowStats {
 public:
  RowStats(int n_layers, int n_heads, const AnalysisParams& params) : params_(params) {
    if (n_layers < 1) fail_usage("n_layers must be positive, got {}", n_layers);
    if (n_heads < 1) fail_usage("n_heads must be positive, got {}", n_heads);
    if (params.sampling.rows != RowKind::Prefill)
      fail_usage("RowStats takes prefill rows (every query of a document with its keys 0..t); rows='{}' is for analyze",
                 row_kind_name(params.sampling.rows));
    if (params.sampling.max_rows != 0)
      fail_usage("RowStats: max_rows needs the whole run in advance; sample the rows you feed instead");
    validate(params_);
    acc_ = Accumulator(n_layers, n_heads, params_.verdict.reservoir);
  }

  int n_layers() const { return acc_.n_layers; }
  int n_heads() const { return acc_.n_heads; }
  const AnalysisParams& params() const { return params_; }
  const Accumulator& accumulator() const { return acc_; }
  int64_t documents() const { return int64_t(acc_.documents.size()); }
  int64_t rows() const { return acc_.total_rows(); }
  bool in_document() const { return doc_ != nullptr; }

  void begin_document(int64_t n_tokens, const std::string& id, const std::string& dataset, const std::string& source,
                      int64_t original_tokens) {
    if (doc_) end_document();
    if (n_tokens < 1) fail_usage("begin_document: n_tokens must be positive, got {}", n_tokens);
    auto d = std::make_unique<Doc>();
    const int64_t index = documents();
    d->plan = plan_document(index, n_tokens, acc_.n_layers, acc_.n_heads, params_);
    d->acc = Accumulator(acc_.n_layers, acc_.n_heads, params_.verdict.reservoir);
    DocumentInfo info;
    info.id = id.empty() ? fmt::format("doc{}", index) : id;
    info.source = source;
    info.dataset = dataset;
    info.tokens = n_tokens;
    info.original_tokens = original_tokens > 0 ? original_tokens : n_tokens;
    info.half = int(index % 2);
    const int64_t slot = d->acc.begin_document(info);
    d->collector = std::make_unique<DocumentCollector>(d->plan, params_, d->acc, slot);
    d->collector->begin_call(0, n_tokens);
    d->fed.assign(size_t(acc_.n_layers), std::vector<uint8_t>());
    d->layer_done.assign(size_t(acc_.n_layers), false);
    doc_ = std::move(d);
  }

  // Rows of one layer: probs [rows, n] (n >= query + 1; keys after the query must be 0),
  // query_pos [rows], heads [rows]. Validated completely before anything is added.
  void add_rows(int layer, const py::handle& probs_in, const py::handle& query_in, const py::handle& heads_in) {
    if (!doc_) fail_usage("add_rows: call begin_document(n_tokens) first");
    Doc& d = *doc_;
    const int L = acc_.n_layers, H = acc_.n_heads;
    const int64_t n_tok = d.plan.n_tokens;
    if (layer < 0 || layer >= L) fail_usage("layer {} is out of range (n_layers {})", layer, L);
    auto probs = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(probs_in);
    if (!probs) {
      PyErr_Clear();
      fail_usage("probs: expected an array of probabilities (numpy, or anything with __array__)");
    }
    if (probs.ndim() == 1) probs = probs.reshape({py::ssize_t(1), probs.shape(0)});
    if (probs.ndim() != 2) fail_usage("probs: expected shape [rows, n], got {} dimensions", probs.ndim());
    const int64_t R = probs.shape(0), n = probs.shape(1);
    auto ints = [R](const py::handle& h, const char* what) {
      auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(h);
      if (!a) {
        PyErr_Clear();
        fail_usage("{}: expected integers", what);
      }
      if (a.ndim() == 0) a = a.reshape({py::ssize_t(1)});
      if (a.ndim() != 1 || a.shape(0) != R)
        fail_usage("{}: expected {} values (one per row of probs), got shape {}", what, R,
                   a.ndim() == 1 ? fmt::format("[{}]", a.shape(0)) : fmt::format("of {} dimensions", a.ndim()));
      return a;
    };
    const auto qa = ints(query_in, "query_pos"), ha = ints(heads_in, "heads");
    const int64_t* q = qa.data();
    const int64_t* h = ha.data();
    const float* p = probs.data();
    if (d.layer_done[size_t(layer)])
      fail_usage("layer {}: its rows for this document were already closed (feed each layer's rows together, "
                 "before the next layer's)", layer);

    // Validation (GIL released: this is O(rows x n)).
    std::string error;
    {
      py::gil_scoped_release nogil;
      std::vector<uint8_t>& fed = d.fed[size_t(layer)];
      if (fed.empty()) fed.assign(size_t(H) * size_t(n_tok), 0);
      for (int64_t r = 0; r < R && error.empty(); ++r) {
        if (q[r] < 0 || q[r] >= n_tok)
          error = fmt::format("query_pos[{}] = {} is outside the document (n_tokens {})", r, q[r], n_tok);
        else if (h[r] < 0 || h[r] >= H)
          error = fmt::format("heads[{}] = {} is out of range (n_heads {})", r, h[r], H);
        else if (q[r] + 1 > n)
          error = fmt::format("row {}: query {} needs {} keys (0..{}), probs has {} columns", r, q[r], q[r] + 1, q[r], n);
        else if (fed[size_t(h[r]) * n_tok + q[r]])
          error = fmt::format("layer {} head {} query {}: this row was already added", layer, h[r], q[r]);
        if (!error.empty()) break;
        fed[size_t(h[r]) * n_tok + q[r]] = 2;  // pending
      }
      if (error.empty()) {
        std::vector<std::string> errors(static_cast<size_t>(R));
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < R; ++r) {
          const float* row = p + r * n;
          double sum = 0, after = 0;
          bool finite = true;
          for (int64_t j = 0; j <= q[r]; ++j) {
            if (!std::isfinite(row[j]) || row[j] < 0) finite = false;
            sum += row[j];
          }
          for (int64_t j = q[r] + 1; j < n; ++j) after += std::fabs(row[j]);
          if (!finite)
            errors[r] = fmt::format("row {} (head {}, query {}): probabilities must be finite and >= 0", r, h[r], q[r]);
          else if (after > 1e-6)
            errors[r] = fmt::format("row {} (head {}, query {}): {:.3g} of attention on keys after the query "
                                    "(rows must be causal)", r, h[r], q[r], after);
          else if (std::fabs(sum - 1) > 1e-2)
            errors[r] = fmt::format("row {} (head {}, query {}): the probabilities sum to {:.6g}, not 1 "
                                    "(give post-softmax rows)", r, h[r], q[r], sum);
        }
        for (const std::string& e : errors)
          if (!e.empty()) {
            error = e;
            break;
          }
      }
      for (int64_t r = 0; r < R; ++r) {  // commit or roll back the pending marks
        if (q[r] < 0 || q[r] >= n_tok || h[r] < 0 || h[r] >= H) continue;
        uint8_t& f = fed[size_t(h[r]) * n_tok + q[r]];
        if (f == 2) f = error.empty() ? 1 : 0;
      }
      if (error.empty()) {
        if (d.layer != layer) {
          if (d.layer >= 0) close_layer(d);
          d.layer = layer;
          d.observer = d.collector->observer(layer);
        }
        ops::RowObserver* obs = d.observer;
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t r = 0; r < R; ++r) obs->on_row(int(h[r]), q[r], p + r * n, nullptr, q[r] + 1);
      }
    }
    if (!error.empty()) throw UsageError(error);
  }

  void end_document() {
    if (!doc_) fail_usage("end_document: no document is open");
    Doc& d = *doc_;
    if (d.layer >= 0) close_layer(d);
    const int64_t n_tok = d.plan.n_tokens;
    for (int l = 0; l < acc_.n_layers; ++l) {
      int64_t got = 0;
      for (uint8_t f : d.fed[size_t(l)]) got += f == 1;
      if (got != int64_t(acc_.n_heads) * n_tok) {
        const std::string id = d.acc.documents[0].id;
        doc_.reset();
        fail_usage("document '{}': layer {} has {} of its {} rows ({} heads x {} queries); every row is needed "
                   "(persistence accumulates all of them) - the document was not added",
                   id, l, got, int64_t(acc_.n_heads) * n_tok, acc_.n_heads, n_tok);
      }
    }
    acc_.merge(d.acc);
    doc_.reset();
  }

  void merge(const RowStats& o) {
    if (doc_ || o.doc_) fail_usage("merge: end the open documents first (end_document)");
    if (o.acc_.n_layers != acc_.n_layers || o.acc_.n_heads != acc_.n_heads)
      fail_usage("merge: shapes differ ({}x{} and {}x{} layers x heads)", acc_.n_layers, acc_.n_heads,
                 o.acc_.n_layers, o.acc_.n_heads);
    if (to_json(o.params_) != to_json(params_)) fail_usage("merge: the two RowStats were made with different options");
    acc_.merge(o.acc_);
  }

  std::string report_json(const py::object& meta_text) {
    if (doc_) end_document();
    if (acc_.documents.empty()) fail_usage("report: no document was added");
    json meta = meta_text.is_none() ? json::object() : json::parse(meta_text.cast<std::string>());
    json report;
    {
      py::gil_scoped_release nogil;
      report = build_report(acc_, params_, meta);
    }
    return report.dump(1) + "\n";
  }

  // Pickle state: the options and the accumulator (exact, CBOR).
  py::bytes state() const {
    if (doc_) fail_usage("RowStats: end the open document before pickling it");
    const json j{{"format", "attnsparse.rowstats/1"}, {"parameters", params_to_state(params_)},
                 {"accumulator", acc_.to_json()}};
    const std::vector<uint8_t> bytes = json::to_cbor(j);
    return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  static std::unique_ptr<RowStats> from_state(const py::bytes& b) {
    const std::string s = b;
    json j;
    try {
      j = json::from_cbor(s);
    } catch (const json::exception& e) {
      fail("RowStats: damaged pickle ({})", e.what());
    }
    if (!j.is_object() || j.value("format", "") != "attnsparse.rowstats/1") fail("RowStats: not a RowStats pickle");
    AnalysisParams p = params_from_state(j.at("parameters"));
    Accumulator acc = Accumulator::from_json(j.at("accumulator"));
    auto rs = std::make_unique<RowStats>(acc.n_layers, acc.n_heads, p);
    rs->acc_ = std::move(acc);
    return rs;
  }

 private:
  struct Doc {
    DocumentPlan plan;
    Accumulator acc;
    std::unique_ptr<DocumentCollector> collector;
    int layer = -1;
    ops::RowObserver* observer = nullptr;
    std::vector<std::vector<uint8_t>> fed;  // [layer][head * n + query]: 1 = added
    std::vector<bool> layer_done;
  };

  void close_layer(Doc& d) {
    d.collector->end_layer(d.layer);
    d.layer_done[size_t(d.layer)] = true;
    d.layer = -1;
    d.observer = nullptr;
  }

  // The parameters as plain values (to_json is for the report and not read back).
  static json params_to_state(const AnalysisParams& p) {
    const SamplingParams& s = p.sampling;
    const PersistenceParams& q = p.persistence;
    const VerdictParams& v = p.verdict;
    return json{{"min_query", s.min_query}, {"stride", s.stride}, {"decode_tokens", s.decode_tokens},
                {"max_tokens", s.max_tokens}, {"seed", s.seed}, {"anchors", q.anchors},
                {"min_anchor", q.min_anchor}, {"feature_gap", q.feature_gap},
                {"bootstrap_resamples", v.bootstrap_resamples}, {"alpha", v.alpha}, {"reservoir", v.reservoir},
                {"c1_rho", v.c1_rho}, {"c1_p", v.c1_p}, {"kmeans_min_k", v.kmeans_min_k},
                {"kmeans_max_k", v.kmeans_max_k}, {"kmeans_restarts", v.kmeans_restarts},
                {"c2_silhouette_supported", v.c2_silhouette_supported}, {"c2_ari_supported", v.c2_ari_supported},
                {"c2_silhouette_partial", v.c2_silhouette_partial}, {"c34_ratio", v.c34_ratio},
                {"c34_p", v.c34_p}, {"c34_supported_share", v.c34_supported_share},
                {"c34_partial_share", v.c34_partial_share}, {"recency_window", v.recency_window},
                {"c5_gap", v.c5_gap}, {"c5_k", v.c5_k}, {"c5_supported", v.c5_supported},
                {"c5_partial", v.c5_partial}};
  }
  static AnalysisParams params_from_state(const json& j) {
    AnalysisParams p;
    SamplingParams& s = p.sampling;
    PersistenceParams& q = p.persistence;
    VerdictParams& v = p.verdict;
    s.min_query = j.at("min_query");
    s.stride = j.at("stride");
    s.decode_tokens = j.at("decode_tokens");
    s.max_tokens = j.at("max_tokens");
    s.seed = j.at("seed");
    q.anchors = j.at("anchors");
    q.min_anchor = j.at("min_anchor");
    q.feature_gap = j.at("feature_gap");
    v.bootstrap_resamples = j.at("bootstrap_resamples");
    v.alpha = j.at("alpha");
    v.reservoir = j.at("reservoir");
    v.c1_rho = j.at("c1_rho");
    v.c1_p = j.at("c1_p");
    v.kmeans_min_k = j.at("kmeans_min_k");
    v.kmeans_max_k = j.at("kmeans_max_k");
    v.kmeans_restarts = j.at("kmeans_restarts");
    v.c2_silhouette_supported = j.at("c2_silhouette_supported");
    v.c2_ari_supported = j.at("c2_ari_supported");
    v.c2_silhouette_partial = j.at("c2_silhouette_partial");
    v.c34_ratio = j.at("c34_ratio");
    v.c34_p = j.at("c34_p");
    v.c34_supported_share = j.at("c34_supported_share");
    v.c34_partial_share = j.at("c34_partial_share");
    v.recency_window = j.at("recency_window");
    v.c5_gap = j.at("c5_gap");
    v.c5_k = j.at("c5_k");
    v.c5_supported = j.at("c5_supported");
    v.c5_partial = j.at("c5_partial");
    return p;
  }

  AnalysisParams params_;
  Accumulator acc_;
  std::unique_ptr<Doc> doc_;
};

}  // namespace

void bind_analysis(py::module_& m) {
  m.def("analyze_json", &analyze_json, "model"_a, "data"_a, "documents"_a, "max_tokens"_a, "rows"_a, "stride"_a, "min_query"_a,
        "decode_tokens"_a, "max_rows"_a, "seed"_a, "settings"_a, "out_dir"_a, "resume"_a, "dump_rows"_a,
        "progress"_a);
  m.def(
      "report_html", [](const std::string& text) { return report::analysis_html(json::parse(text)); }, "report_json"_a);
  m.def(
      "verdict_table", [](const std::string& text) { return report::verdict_table_text(json::parse(text)); },
      "report_json"_a);
  m.def("setting_names", &setting_names);

  py::class_<RowStats>(m, "RowStatsCore")
      .def(py::init([](int n_layers, int n_heads, int64_t min_query, int64_t stride, uint64_t seed,
                       const std::string& rows, int64_t max_rows, int64_t max_tokens, const py::dict& settings) {
             AnalysisParams p;
             p.sampling.max_tokens = max_tokens;
             p.sampling.rows = parse_row_kind(rows);
             p.sampling.min_query = min_query;
             p.sampling.stride = stride;
             p.sampling.seed = seed;
             p.sampling.max_rows = max_rows;
             apply_settings(p, settings);
             return std::make_unique<RowStats>(n_layers, n_heads, p);
           }),
           "n_layers"_a, "n_heads"_a, "min_query"_a, "stride"_a, "seed"_a, "rows"_a, "max_rows"_a, "max_tokens"_a,
           "settings"_a)
      .def_property_readonly("n_layers", &RowStats::n_layers)
      .def_property_readonly("n_heads", &RowStats::n_heads)
      .def_property_readonly("documents", &RowStats::documents)
      .def_property_readonly("rows", &RowStats::rows)
      .def_property_readonly("in_document", &RowStats::in_document)
      .def("parameters_json", [](const RowStats& r) { return to_json(r.params()).dump(); })
      .def("begin_document", &RowStats::begin_document, "n_tokens"_a, "id"_a = "", "dataset"_a = "", "source"_a = "",
           "original_tokens"_a = 0)
      .def("end_document", &RowStats::end_document)
      .def("add_rows", &RowStats::add_rows, "layer"_a, "probs"_a, "query_pos"_a, "heads"_a)
      .def("merge", &RowStats::merge, "other"_a)
      .def("report_json", &RowStats::report_json, "meta_json"_a = py::none())
      .def("state", &RowStats::state)
      .def_static("from_state", &RowStats::from_state, "state"_a);
}

}  // namespace attnsparse::python
