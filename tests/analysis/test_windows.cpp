// Layers with a native sliding window: row statistics over the keys the layer lets the
// query see, with planted structure whose answer is known in closed form:
//  - rows uniform over a window of W keys give W_p = the fewest of the W equal masses
//    reaching p (w_p ~ p), entropy ln W (normalised 1) and recency ratio 1;
//  - the first token's statistics exist only for rows whose key 0 is inside the window;
//  - a global layer beside a windowed one is measured exactly as without the window;
//  - persistence pairs need the later row to see the anchor's keys;
//  - C1 judges the global layers and shows the windowed ones apart;
//  - on a real gemma2 model (window 32 on layer 0) the dumped rows equal a naive
//    computation over the visible part of the engine's own attention rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "analysis/accumulator.h"
#include "analysis/row_metrics.h"
#include "io/corpus.h"
#include "cli_support.h"
#include "shared_data.h"
#include "synthetic_support.h"

namespace attnsparse::analysis {
namespace {

using json = nlohmann::json;
using testing::conjecture;
using testing::CsvRow;
using testing::make_documents;
using testing::run_synthetic;

// The fewest of v equal masses float(1/v), summed in double as the definition says, that
// reach p.
int64_t uniform_width(int64_t v, double p) {
  const float a = float(1.0 / double(v));
  double cum = 0;
  for (int64_t k = 1; k <= v; ++k)
    if ((cum += double(a)) >= p) return k;
  return v;
}

TEST(WindowedRows, RowMetricsCountOnlyTheVisibleKeys) {
  const int64_t W = 32;
  std::vector<float> scratch;
  for (int64_t t : {5, 20, 31, 32, 100, 1000}) {
    const int64_t v = std::min(t + 1, W), first = t + 1 - v;
    const std::vector<float> row(static_cast<size_t>(v), float(1.0 / double(v)));
    std::vector<int32_t> pos(static_cast<size_t>(v));
    std::iota(pos.begin(), pos.end(), int32_t(first));
    const RowMetrics m = compute_row_metrics(row.data(), pos.data(), v, t, scratch, nullptr, W);
    const std::string where = "t " + std::to_string(t);
    EXPECT_EQ(m.visible, v) << where;
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(m.width[i], uniform_width(v, kWidthLevels[i])) << where;
      EXPECT_NEAR(m.norm_width(i), kWidthLevels[i], 1.0 / double(v)) << where;
    }
    if (v > 1) {
      EXPECT_NEAR(m.norm_entropy(), 1.0, 1e-6) << where;
    }
    const auto values = metric_values(m);
    for (size_t i = 0; i < kRecencyWindows.size(); ++i) {
      EXPECT_NEAR(m.recency[i], std::min<double>(kRecencyWindows[i], double(v)) / double(v), 1e-6) << where;
      EXPECT_NEAR(values[kRecentRatio1 + i], 1.0, 1e-5) << where;
    }
    EXPECT_EQ(m.sink_visible, t < W) << where;
    if (t < W) {
      EXPECT_NEAR(m.sink_mass, 1.0 / double(t + 1), 1e-7) << where;
      EXPECT_NEAR(values[kSinkRatio], 1.0, 1e-5) << where;
    } else {
      EXPECT_EQ(m.sink_mass, 0.0) << where;
      EXPECT_FALSE(m.sink_argmax) << where;
      EXPECT_EQ(values[kSinkMass], 0.0) << where;
      EXPECT_EQ(values[kSinkRatio], 0.0) << where;
    }
  }
  // The same row in a global layer is a share of all t+1 keys.
  const std::vector<float> row(32, 1.f / 32);
  std::vector<int32_t> pos(32);
  std::iota(pos.begin(), pos.end(), 69);
  const RowMetrics g = compute_row_metrics(row.data(), pos.data(), 32, 100, scratch);
  EXPECT_EQ(g.visible, 101);
  EXPECT_NEAR(g.norm_width(1), 29.0 / 101.0, 1e-12);
  EXPECT_TRUE(g.sink_visible);
}

SyntheticRowSource uniform_source(int layers, int heads) {
  return SyntheticRowSource(layers, heads, [](int, int) { return HeadPattern{}; });
}

TEST(WindowedRows, UniformWindowedLayerBesideAGlobalLayer) {
  const int64_t W = 32;
  auto source = uniform_source(2, 2);
  source.windows = {W, 0};
  AnalysisParams params;
  params.verdict.bootstrap_resamples = 50;
  const auto docs = make_documents(3, 220);
  const auto run = run_synthetic(source, docs, params, /*dump=*/true);
  ASSERT_EQ(run.rows.size(), 3u * 2 * 2 * (220 - 16));

  // Every windowed row against its closed form.
  double width90_sum = 0, sink_sum = 0;
  int64_t rows0 = 0, sink_rows0 = 0;
  for (const CsvRow& r : run.rows) {
    if (r.layer != 0) continue;
    const int64_t v = std::min(r.query + 1, W);
    const std::string where = "t " + std::to_string(r.query);
    ASSERT_EQ(r.n_keys, v) << where;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.width[i], uniform_width(v, kWidthLevels[i])) << where;
    EXPECT_NEAR(r.entropy, std::log(double(v)), 1e-5) << where;
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(r.recent[i], std::min<double>(kRecencyWindows[i], double(v)) / double(v), 1e-5) << where;
    if (r.query < W) {
      EXPECT_NEAR(r.sink_mass, 1.0 / double(v), 1e-7) << where;
      sink_sum += 1.0 / double(v);
      ++sink_rows0;
    } else {
      EXPECT_TRUE(std::isnan(r.sink_mass)) << where << ": the sink field must be empty";
    }
    width90_sum += double(uniform_width(v, 0.9)) / double(v);
    ++rows0;
  }
  const json& l0 = run.report["per_layer"][0];
  EXPECT_EQ(l0["attention"]["kind"], "windowed");
  EXPECT_EQ(l0["attention"]["window"], W);
  EXPECT_EQ(run.report["per_layer"][1]["attention"]["kind"], "global");
  EXPECT_EQ(l0["rows"], rows0);
  EXPECT_EQ(l0["sink_rows"], sink_rows0);
  EXPECT_EQ(sink_rows0, 3 * 2 * (W - 16));
  const json& m = l0["metrics"];
  EXPECT_NEAR(m["width_norm_p90"]["mean"].get<double>(), width90_sum / double(rows0), 1e-12);
  EXPECT_NEAR(m["entropy_norm"]["mean"].get<double>(), 1.0, 1e-5);
  for (int w : kRecencyWindows)
    EXPECT_NEAR(m["recent_ratio_" + std::to_string(w)]["mean"].get<double>(), 1.0, 1e-5) << w;
  // Sink statistics over the rows that see key 0 only.
  EXPECT_NEAR(m["sink_mass"]["mean"].get<double>(), sink_sum / double(sink_rows0), 1e-7);
  EXPECT_NEAR(m["sink_ratio"]["mean"].get<double>(), 1.0, 1e-5);
  int64_t hist = 0;
  for (const json& c : run.report["distributions"]["sink_mass"]["per_layer"][0]) hist += c.get<int64_t>();
  EXPECT_EQ(hist, sink_rows0);
  for (const json& h : run.report["per_head"])
    if (h["layer"] == 0) {
      EXPECT_NEAR(h["metrics"]["sink_ratio"].get<double>(), 1.0, 1e-5);
    }

  // The global layer is measured exactly as when no layer is windowed.
  auto plain = uniform_source(2, 2);
  const auto reference = run_synthetic(plain, docs, params, /*dump=*/true);
  EXPECT_EQ(run.report["per_layer"][1].dump(), reference.report["per_layer"][1].dump());
  for (size_t i = 0; i < run.rows.size(); ++i)
    if (run.rows[i].layer == 1) {
      EXPECT_EQ(run.rows[i].width[1], reference.rows[i].width[1]);
      EXPECT_EQ(run.rows[i].sink_mass, reference.rows[i].sink_mass);
    }

  // Persistence: the row t + gap of the windowed layer sees keys <= t only for gap < W.
  for (const json& g : run.report["persistence"]) {
    const int gap = g["gap"];
    const json& per = g["per_layer"]["overlap_k32"];
    if (gap >= W) {
      EXPECT_TRUE(per[0]["mean"].is_null()) << gap;
    } else {
      EXPECT_FALSE(per[0]["mean"].is_null()) << gap;
    }
    if (gap < 220 - 64) {
      EXPECT_FALSE(per[1]["mean"].is_null()) << gap;
    }
  }

  // The state (with its sink-row counts) survives a checkpoint exactly.
  const Accumulator back = Accumulator::from_json(run.acc.to_json());
  EXPECT_EQ(back.to_json().dump(), run.acc.to_json().dump());
  EXPECT_EQ(build_report(back, params, json::object(), source.layer_kinds()).dump(),
            build_report(run.acc, params, json::object(), source.layer_kinds()).dump());
}

TEST(WindowedVerdicts, C1JudgesTheGlobalLayersAndShowsTheWindowedOnesApart) {
  // Even layers global, their rows sharper with depth (width falls); odd layers windowed
  // and uniform: w_0.9 ~ 0.9 whatever the depth.
  const int L = 12;
  auto pattern = [](int layer, int) {
    HeadPattern p;
    if (layer % 2 == 0) p.row_noise = 0.3 + 0.35 * layer;
    return p;
  };
  SyntheticRowSource source(L, 3, pattern);
  for (int l = 0; l < L; ++l) source.windows.push_back(l % 2 ? 16 : 0);
  AnalysisParams params;
  params.verdict.bootstrap_resamples = 200;
  const auto docs = make_documents(4, 200);
  const auto run = run_synthetic(source, docs, params);
  const json& c1 = conjecture(run.report, 1);
  EXPECT_EQ(c1["verdict"], "supported") << c1.dump(1);
  const json& st = c1["statistics"];
  EXPECT_EQ(st["layers"], "global");
  ASSERT_EQ(st["per_layer"].size(), 6u);
  ASSERT_EQ(st["windowed_layers"].size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(st["per_layer"][i]["layer"], 2 * i);
    EXPECT_EQ(st["windowed_layers"][i]["layer"], 2 * i + 1);
    EXPECT_EQ(st["windowed_layers"][i]["window"], 16);
    EXPECT_NEAR(st["windowed_layers"][i]["mean"].get<double>(), 0.9, 1.0 / 16);
  }
  EXPECT_EQ(st["spearman"]["n"], 6);
  EXPECT_NE(c1["detail"].get<std::string>().find("6 windowed layers apart"), std::string::npos) << c1["detail"];

  // The same rows with every layer counted as global: the uniform odd layers break the
  // trend, which is why windowed layers are kept apart.
  SyntheticRowSource all_global(L, 3, pattern);
  const auto mixed = run_synthetic(all_global, docs, params);
  EXPECT_NE(conjecture(mixed.report, 1)["verdict"], "supported");

  // Every layer windowed (Mistral-style): judged over all of them.
  SyntheticRowSource mistral(6, 3, [](int layer, int) {
    HeadPattern p;
    p.row_noise = 0.3 + 0.7 * layer;
    return p;
  });
  mistral.windows.assign(6, 64);
  const auto every = run_synthetic(mistral, docs, params);
  const json& e1 = conjecture(every.report, 1);
  EXPECT_EQ(e1["statistics"]["layers"], "all (every layer windowed)");
  EXPECT_EQ(e1["statistics"]["per_layer"].size(), 6u);
  EXPECT_EQ(e1["statistics"]["windowed_layers"].size(), 0u);
  EXPECT_EQ(e1["verdict"], "supported") << e1.dump(1);
}

TEST(WindowedVerdicts, C4CountsOnlyRowsThatSeeTheFirstToken) {
  // A strong sink in every head: in the windowed layer only rows t < W can see it.
  const int64_t W = 24;
  SyntheticRowSource source(2, 2, [](int, int) {
    HeadPattern p;
    p.sink = 6;
    return p;
  });
  source.windows = {W, 0};
  AnalysisParams params;
  params.verdict.bootstrap_resamples = 50;
  const auto run = run_synthetic(source, make_documents(2, 300), params);
  const json& c4 = conjecture(run.report, 4);
  // Every row that sees key 0 has it as its arg-max, in both layers.
  for (const json& s : c4["statistics"]["argmax_share_per_layer"]) EXPECT_NEAR(s.get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(c4["statistics"]["argmax_share"].get<double>(), 1.0, 1e-12);
  ASSERT_EQ(c4["statistics"]["per_layer"].size(), 2u);
  // The windowed layer's rank test uses only its sampled rows with key 0 visible.
  const int64_t visible_rows = 2 * 2 * (W - 16);
  EXPECT_LE(c4["statistics"]["per_layer"][0]["n"].get<int64_t>(), visible_rows);
  EXPECT_GT(c4["statistics"]["per_layer"][0]["n"].get<int64_t>(), 0);
  EXPECT_EQ(run.report["per_layer"][0]["sink_rows"], visible_rows);
}

// ---- a real model with a window (gemma2 reference: window 32 on layer 0) ----

TEST(WindowedModel, Gemma2RowsAreMeasuredOverTheVisibleKeys) {
  using namespace attnsparse::testing_support;
  const std::string arch = reference_dir() + "/arch";
  const std::string model = arch + "/models/gemma2-f16.gguf";
  REQUIRE_SHARED_FILE(model);
  const std::string dir = fresh_dir("window_gemma2");
  const std::string tok = dir + "/text.tok";
  {
    std::ofstream out(tok);
    for (int32_t id : read_token_file(arch + "/expected/gemma2-f16.text.tokens.txt")) out << id << ' ';
  }
  const auto r = run_cli({"analyze", model, "--data", tok, "--out", dir + "/out", "--min-query", "0",
                          "--dump-rows", dir + "/rows.csv", "--threads", "2"},
                         Output::merged);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto a = run_cli({"attention", model, "--tokens", tok, "--out", dir + "/attn.f32"}, Output::merged);
  ASSERT_EQ(a.status, 0) << a.out;
  const std::vector<float> attn = read_f32(dir + "/attn.f32");
  const int64_t L = 2, H = 4, n = 142, W = 32;
  ASSERT_EQ(int64_t(attn.size()), L * H * n * n);
  const std::vector<CsvRow> rows = testing::read_rows_csv(dir + "/rows.csv");
  ASSERT_EQ(int64_t(rows.size()), L * H * n);
  std::vector<double> width90(L, 0), ratio32(L, 0), sink(L, 0);
  std::vector<int64_t> count(L, 0), sink_count(L, 0);
  for (const CsvRow& row : rows) {
    const int64_t t = row.query, v = row.layer == 0 ? std::min(t + 1, W) : t + 1, first = t + 1 - v;
    const float* p = attn.data() + size_t(((row.layer * H + row.head) * n + t) * n);
    const std::string where = "layer " + std::to_string(row.layer) + " head " + std::to_string(row.head) + " t " +
                              std::to_string(t);
    ASSERT_EQ(row.n_keys, v) << where;
    // Naive: the visible keys sorted, cumulative double sums; nothing outside the window.
    for (int64_t j = 0; j < first; ++j) ASSERT_EQ(p[j], 0.f) << where;
    std::vector<float> vis(p + first, p + t + 1);
    std::sort(vis.begin(), vis.end(), std::greater<float>());
    double cum = 0;
    int64_t w90 = v;
    for (int64_t k = 0; k < v; ++k)
      if ((cum += vis[size_t(k)]) >= 0.9) {
        w90 = k + 1;
        break;
      }
    EXPECT_EQ(row.width[1], w90) << where;
    double r32 = 0;
    for (int64_t j = std::max<int64_t>(first, t - 31); j <= t; ++j) r32 += p[j];
    EXPECT_NEAR(row.recent[2], r32, 1e-6) << where;
    if (first == 0) {
      EXPECT_NEAR(row.sink_mass, p[0], 1e-7) << where;
      sink[row.layer] += p[0];
      ++sink_count[row.layer];
    } else {
      EXPECT_TRUE(std::isnan(row.sink_mass)) << where;
    }
    width90[row.layer] += double(w90) / double(v);
    ratio32[row.layer] += r32 / (double(std::min<int64_t>(32, v)) / double(v));
    ++count[row.layer];
  }
  const json report = json::parse(slurp(dir + "/out/report.json"));
  EXPECT_EQ(report["per_layer"][0]["attention"], json({{"kind", "windowed"}, {"window", 32}, {"rope_base", 10000.0}}));
  EXPECT_EQ(report["per_layer"][1]["attention"]["kind"], "global");
  EXPECT_EQ(sink_count[0], H * W);
  for (int64_t l = 0; l < L; ++l) {
    const json& m = report["per_layer"][l]["metrics"];
    EXPECT_EQ(report["per_layer"][l]["sink_rows"], sink_count[l]);
    EXPECT_NEAR(m["width_norm_p90"]["mean"].get<double>(), width90[l] / double(count[l]), 1e-9) << l;
    EXPECT_NEAR(m["recent_ratio_32"]["mean"].get<double>(), ratio32[l] / double(count[l]), 1e-5) << l;
    EXPECT_NEAR(m["sink_mass"]["mean"].get<double>(), sink[l] / double(sink_count[l]), 1e-6) << l;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace attnsparse::analysis
