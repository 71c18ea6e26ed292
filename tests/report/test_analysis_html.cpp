// The analysis report page in a real browser: Debian's chromium renders report.html
// headless; a script in the page marks <body data-report-ok="N"> only when all N inline
// SVG charts parsed and no script error occurred. Also: the page is self-contained and
// starts with the verdict table; the screenshot is a real image.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "analysis/report_json.h"
#include "analysis/runner.h"
#include "analysis/synthetic_source.h"
#include "report/analysis_report.h"
#include "report/chromium.h"

namespace fs = std::filesystem;
using namespace attnsparse;

namespace {

using attnsparse::testing::in_ci;
using attnsparse::testing::kChromium;
using attnsparse::testing::run_chromium;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A realistic report: two datasets, clusters, persistence, all charts populated; layers
// 1 and 4 have a native sliding window of 64 keys (marked in the tables and charts).
nlohmann::json synthetic_report() {
  using namespace analysis;
  SyntheticRowSource source(6, 8, [](int layer, int head) {
    HeadPattern p;
    p.row_noise = 0.4 + 0.3 * std::abs(layer - 3);
    if (head % 2) p.sink = 4;
    else p.recent = 3;
    p.heavy = 2;
    p.key_noise = 0.5;
    return p;
  });
  source.windows = {0, 64, 0, 0, 64, 0};
  std::vector<RunDocument> docs;
  for (int d = 0; d < 4; ++d) {
    RunDocument doc;
    doc.info.id = "doc <" + std::to_string(d) + "> & \"quoted\"";  // escaping
    doc.info.dataset = d % 2 ? "alpha" : "beta";
    doc.tokens.resize(300);
    for (int i = 0; i < 300; ++i) doc.tokens[i] = d * 1000 + i;
    doc.info.original_tokens = 300;
    docs.push_back(doc);
  }
  AnalysisParams params;
  params.verdict.bootstrap_resamples = 200;
  const Accumulator acc = analyze_documents(source, docs, params, RunControl{}).acc;
  return build_report(acc, params,
                      {{"model", {{"name", "synthetic <model>"}, {"n_kv_heads", 4}}},
                       {"run", {{"threads", 2}}}},
                      source.layer_kinds());
}

TEST(AnalysisHtml, SelfContainedAndVerdictsFirst) {
  const std::string html = report::analysis_html(synthetic_report());
  EXPECT_TRUE(html.starts_with("<!DOCTYPE html>"));
  // No external resources: the only URLs are SVG namespace declarations.
  const std::regex url(R"((src|href)\s*=\s*["']?(https?:|//))");
  EXPECT_FALSE(std::regex_search(html, url));
  std::string stripped = std::regex_replace(html, std::regex("http://www.w3.org/2000/svg"), "");
  EXPECT_EQ(stripped.find("http://"), std::string::npos);
  EXPECT_EQ(stripped.find("https://"), std::string::npos);
  // The verdict table comes before the first chart.
  const size_t verdicts = html.find("<h2 id=\"verdicts\">");
  ASSERT_NE(verdicts, std::string::npos);
  EXPECT_LT(verdicts, html.find("<svg"));
  EXPECT_LT(html.find("<table"), html.find("<svg"));
  for (const char* v : {"C1", "C2", "C3", "C4", "C5"}) EXPECT_NE(html.find(std::string(">") + v + "</td>"), std::string::npos) << v;
  // Escaping: the document id and model name appear escaped, never raw.
  EXPECT_EQ(html.find("doc <0>"), std::string::npos);
  EXPECT_NE(html.find("doc &lt;0&gt; &amp; &quot;quoted&quot;"), std::string::npos);
  EXPECT_EQ(html.find("synthetic <model>"), std::string::npos);
}

TEST(AnalysisHtml, WindowedLayersAreMarkedInTablesAndCharts) {
  const nlohmann::json report = synthetic_report();
  const std::string html = report::analysis_html(report);
  // The per-layer table's attention column.
  EXPECT_NE(html.find("<th>attention</th>"), std::string::npos);
  size_t windowed_cells = 0, global_cells = 0;
  for (size_t p = html.find("<td>window 64</td>"); p != std::string::npos; p = html.find("<td>window 64</td>", p + 1))
    ++windowed_cells;
  for (size_t p = html.find("<td>global</td>"); p != std::string::npos; p = html.find("<td>global</td>", p + 1))
    ++global_cells;
  EXPECT_EQ(windowed_cells, 2u);
  EXPECT_EQ(global_cells, 4u);
  // Rings around the windowed layers' points, with a legend entry, and the notes.
  EXPECT_NE(html.find(">windowed layer<"), std::string::npos);
  EXPECT_NE(html.find("r=\"6\" fill=\"none\""), std::string::npos);
  EXPECT_NE(html.find("C1 is judged over its global layers"), std::string::npos);
  EXPECT_NE(html.find("1 (w 64)"), std::string::npos);  // heatmap row label
  // Without windows: no rings, no notes, every layer global.
  nlohmann::json global = report;
  for (auto& l : global["per_layer"]) l["attention"] = {{"kind", "global"}, {"window", 0}, {"rope_base", nullptr}};
  const std::string plain = report::analysis_html(global);
  EXPECT_EQ(plain.find(">windowed layer<"), std::string::npos);
  EXPECT_EQ(plain.find("C1 is judged over its global layers"), std::string::npos);
  EXPECT_EQ(plain.find("r=\"6\" fill=\"none\""), std::string::npos);
  EXPECT_EQ(plain.find("<td>window 64</td>"), std::string::npos);
}

TEST(AnalysisHtml, RendersInHeadlessChromium) {
  if (!fs::exists(kChromium)) {
    if (in_ci()) FAIL() << "chromium is not installed (scripts/setup.sh installs it)";
    GTEST_SKIP() << "chromium not installed";
  }
  const fs::path dir = fs::temp_directory_path() / ("attnsparse_html_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string html = report::analysis_html(synthetic_report());
  size_t svgs = 0;
  for (size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1)) ++svgs;
  ASSERT_GE(svgs, 10u);
  const fs::path page = dir / "report.html";
  std::ofstream(page) << html;
  const std::string flags = attnsparse::testing::kChromiumFlags;
  const std::string url = "file://" + page.string();

  // 1. The DOM after load: the page's own check ran and found every SVG.
  const fs::path dom = dir / "dom.html";
  ASSERT_EQ(run_chromium(flags + "--user-data-dir=" + (dir / "profile1").string() + " --dump-dom '" + url + "'", dom), 0);
  const std::string loaded = slurp(dom);
  EXPECT_NE(loaded.find("data-report-ok=\"" + std::to_string(svgs) + "\""), std::string::npos)
      << "the page did not confirm its " << svgs << " charts; error marker: "
      << loaded.substr(std::min(loaded.size(), loaded.find("data-report-error=\"")), 200);
  EXPECT_EQ(loaded.find("data-report-error=\""), std::string::npos);  // the attribute, not the script text
  EXPECT_NE(loaded.find("[ok]</title>"), std::string::npos);

  // 2. A screenshot: a real PNG of the page, not a blank one.
  const fs::path png = dir / "report.png";
  ASSERT_EQ(run_chromium(flags + "--user-data-dir=" + (dir / "profile2").string() + " --window-size=1280,4000 --screenshot='" +
                             png.string() + "' '" + url + "'",
                         dir / "shot.log"),
            0);
  ASSERT_TRUE(fs::exists(png));
  const std::string bytes = slurp(png);
  ASSERT_GT(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR width and height (big-endian) are the window size.
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
           (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1280u);
  EXPECT_EQ(be32(20), 4000u);
  // Charts and text compress far worse than an empty page (a blank 1280x4000 PNG is ~20 KB).
  EXPECT_GT(bytes.size(), 150000u) << "screenshot looks blank";

  // 3. The check can fail: an extra, empty chart makes the page report an error.
  std::string broken = html;
  broken.insert(broken.rfind("</body>"), "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>");
  const fs::path broken_page = dir / "broken.html";
  std::ofstream(broken_page) << broken;
  const fs::path broken_dom = dir / "broken_dom.html";
  ASSERT_EQ(run_chromium(flags + "--user-data-dir=" + (dir / "profile3").string() + " --dump-dom 'file://" +
                             broken_page.string() + "'",
                         broken_dom),
            0);
  const std::string b = slurp(broken_dom);
  EXPECT_NE(b.find("data-report-error=\"svgs " + std::to_string(svgs + 1) + " of " + std::to_string(svgs)), std::string::npos);
  EXPECT_EQ(b.find("data-report-ok=\""), std::string::npos);
  if (!std::getenv("ATTNSPARSE_KEEP_SCREENSHOT")) fs::remove_all(dir);
  else std::printf("screenshot kept: %s\n", png.string().c_str());
}

}  // namespace
