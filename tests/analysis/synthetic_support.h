// Helpers for the synthetic-source tests: documents, a run through the real runner, and
// the --dump-rows CSV parsed back.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "analysis/report_json.h"
#include "analysis/runner.h"
#include "analysis/synthetic_source.h"

namespace attnsparse::analysis::testing {

inline std::vector<RunDocument> make_documents(int n_docs, int n_tokens,
                                               const std::vector<std::string>& datasets = {"synthetic"}) {
  std::vector<RunDocument> docs;
  for (int d = 0; d < n_docs; ++d) {
    RunDocument doc;
    doc.info.id = "doc" + std::to_string(d);
    doc.info.source = "synthetic";
    doc.info.dataset = datasets[size_t(d) % datasets.size()];
    for (int i = 0; i < n_tokens; ++i) doc.tokens.push_back(d * 7919 + i);
    doc.info.original_tokens = n_tokens;
    docs.push_back(std::move(doc));
  }
  return docs;
}

struct CsvRow {
  int64_t doc, layer, head, query, n_keys;
  int64_t width[4];
  double entropy, sink_mass, recent[5];  // sink_mass NaN: empty field (key 0 outside the window)
};

inline std::vector<CsvRow> read_rows_csv(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  // The header exactly as the issue specifies it.
  EXPECT_EQ(line,
            "doc,layer,head,query,n_keys,width_p50,width_p90,width_p95,width_p99,entropy,sink_mass,"
            "recent_1,recent_8,recent_32,recent_64,recent_128");
  std::vector<CsvRow> rows;
  while (std::getline(in, line)) {
    // An empty sink_mass field (windowed layers) reads as NaN.
    const size_t sink_at = [&] {
      size_t at = 0;
      for (int i = 0; i < 10; ++i) at = line.find(',', at) + 1;
      return at;
    }();
    const bool no_sink = sink_at < line.size() && line[sink_at] == ',';
    if (no_sink) line.insert(sink_at, "nan");
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream ss(line);
    CsvRow r;
    std::string sink;
    ss >> r.doc >> r.layer >> r.head >> r.query >> r.n_keys >> r.width[0] >> r.width[1] >> r.width[2] >>
        r.width[3] >> r.entropy >> sink;
    r.sink_mass = no_sink ? std::nan("") : std::stod(sink);
    for (double& x : r.recent) ss >> x;
    EXPECT_FALSE(ss.fail()) << line;
    rows.push_back(r);
  }
  return rows;
}

struct SyntheticRun {
  Accumulator acc;
  nlohmann::json report;
  std::vector<CsvRow> rows;  // when dumped
};

inline std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("attnsparse_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

inline SyntheticRun run_synthetic(RowSource& source, const std::vector<RunDocument>& docs,
                                  const AnalysisParams& params, bool dump = false) {
  RunControl control;
  const std::string csv = temp_path("rows.csv");
  if (dump) control.dump_path = csv;
  SyntheticRun r;
  r.acc = analyze_documents(source, docs, params, control).acc;
  r.report = build_report(r.acc, params, nlohmann::json{{"model", {{"n_kv_heads", source.n_kv_heads()}}}},
                          source.layer_kinds());
  if (dump) {
    r.rows = read_rows_csv(csv);
    std::filesystem::remove(csv);
  }
  return r;
}

// Three layers x four heads whose sink and recency bonuses grow with head and layer, with
// persistent heavy hitters and key and row noise: every statistic has something to show.
inline SyntheticRowSource mixed_source() {
  return SyntheticRowSource(3, 4, [](int layer, int head) {
    HeadPattern p;
    p.sink = head;
    p.recent = layer;
    p.heavy = 2;
    p.key_noise = 0.5;
    p.row_noise = 0.8;
    return p;
  });
}

inline const nlohmann::json& conjecture(const nlohmann::json& report, int id) {
  for (const auto& c : report["conjectures"])
    if (c["id"] == id) return c;
  throw std::runtime_error("no conjecture");
}

}  // namespace attnsparse::analysis::testing
