// The eval-policy report page: Pareto optimality against a hand-checked set of points,
// the page's content from a hand-made report (families, swept-value labels, rings on
// exactly the optimal points, escaping, no external resources), and the page in
// headless Chromium (every chart parses; a screenshot that is not blank).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "report/chromium.h"
#include "report/policy_report.h"

namespace fs = std::filesystem;
using namespace attnsparse;
using nlohmann::json;

namespace {

using attnsparse::testing::in_ci;
using attnsparse::testing::kChromium;
using attnsparse::testing::run_chromium;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

TEST(PolicyHtml, ParetoOptimalPoints) {
  // x smaller and y smaller are better. (0.5, 1) dominates (0.6, 1) and (0.5, 2);
  // (0.2, 5) and (1, 0) are optimal at the ends; NaN never counts; exact duplicates are
  // both optimal (neither is strictly better).
  const std::vector<double> x = {0.5, 0.6, 0.5, 0.2, 1.0, NAN, 0.3, 0.3};
  const std::vector<double> y = {1.0, 1.0, 2.0, 5.0, 0.0, -9.0, 3.0, 3.0};
  EXPECT_EQ(report::pareto_optimal(x, y, true),
            (std::vector<bool>{true, false, false, true, true, false, true, true}));
  // Higher y better: (0.2, 5) dominates every other finite point (x >= 0.2, y <= 5).
  EXPECT_EQ(report::pareto_optimal(x, y, false),
            (std::vector<bool>{false, false, false, true, false, false, false, false}));
}

// A report as eval-policy writes it: a topk sweep, an h2o sweep, a lone window policy.
json hand_made_report() {
  json j;
  j["model"] = "models/<tiny> & \"model\".gguf";
  j["documents"] = 3;
  j["tokens"] = 600;
  j["predicted_tokens"] = 597;
  j["max_tokens"] = 256;
  j["dense"] = {{"ppl", 20.0}, {"wall_s", 1.0}, {"real_decode", {{"ms_per_token", 2.0}}}};
  auto row = [](const std::string& policy, double kept, double kv, double ppl, double top1, double wall,
                const json& sweep) {
    json r = {{"policy", policy},          {"kept_fraction", kept}, {"kv_bytes_relative", kv},
              {"ppl", ppl},                {"delta_ppl", ppl - 20.0}, {"top1_agreement", top1},
              {"tau_mean", 0.1},           {"rel_l2_mean", 0.2},     {"wall_s", wall},
              {"wall_relative", wall / 1.0}, {"real_decode", {{"ms_per_token", 1.5}}}};
    r["layers"] = json::array({{{"layer", 0}, {"rel_l2", 0.3}}, {{"layer", 1}, {"rel_l2", 0.1}}});
    if (!sweep.is_null()) r["sweep"] = sweep;
    return r;
  };
  auto sw = [](const char* spec, const char* field, int value, int index) {
    return json{{"spec", spec}, {"field", field}, {"value", value}, {"index", index}};
  };
  j["policies"] = json::array({
      row("topk=8", 0.1, 1.0, 26.0, 0.7, 1.2, sw("topk={8,32}", "k", 8, 0)),
      row("topk=32", 0.4, 1.0, 20.5, 0.95, 1.3, sw("topk={8,32}", "k", 32, 1)),
      row("h2o=budget:16,recent:4", 0.15, 0.1, 24.0, 0.75, 1.1, sw("h2o=budget:{16,64},recent:4", "budget", 16, 0)),
      row("h2o=budget:64,recent:4", 0.5, 0.3, 21.0, 0.9, 1.1, sw("h2o=budget:{16,64},recent:4", "budget", 64, 1)),
      row("window=<64>", 0.45, 0.25, 22.0, 0.85, 0.5, nullptr),
  });
  j["definitions"] = {{"kept_fraction", "keys kept / causal keys"}};
  return j;
}

TEST(PolicyHtml, FamiliesLabelsRingsAndEscaping) {
  const std::string html = report::policy_html(hand_made_report());
  EXPECT_TRUE(html.starts_with("<!DOCTYPE html>"));
  std::string stripped = std::regex_replace(html, std::regex("http://www.w3.org/2000/svg"), "");
  EXPECT_EQ(stripped.find("http://"), std::string::npos);
  EXPECT_EQ(stripped.find("https://"), std::string::npos);
  EXPECT_FALSE(std::regex_search(html, std::regex(R"((src|href)\s*=\s*["']?(https?:|//))")));
  // One legend entry per family (sweep spec, or the policy name), four frontier charts.
  for (const char* family : {"topk={8,32}", "h2o=budget:{16,64},recent:4", "window"})
    EXPECT_GE(count(html, std::string(">") + family + "</text>"), 4u) << family;
  // Points labelled by the swept value.
  for (const char* label : {">8</text>", ">32</text>", ">16</text>", ">64</text>"}) EXPECT_GE(count(html, label), 4u) << label;
  // Perplexity vs kept (lower better), with dense at (1, 20): optimal are topk=8 (0.1, 26),
  // h2o 16 (0.15, 24), window (0.45, 22), topk=32 (0.4, 20.5) -> window is dominated
  // by topk=32; h2o 64 (0.5, 21) is dominated by topk=32 too; dense (1, 20) is optimal.
  // -> 4 rings. Top-1 vs kept (higher better): topk=8, h2o 16, topk=32, dense -> 4.
  // Perplexity vs KV bytes: h2o 16 (0.1, 24), window (0.25, 22), h2o 64 (0.3, 21),
  // dense (1, 20) -> 4 (topk at kv 1 are dominated by dense). Top-1 vs KV: h2o 16
  // (0.1, .75), window (.25, .85), h2o 64 (.3, .9), dense (1, 1) -> 4. Plus one ring in
  // each chart's legend: 4 * 4 + 4 = 20.
  EXPECT_EQ(count(html, R"(r="6" fill="none")"), 20u);
  // The table marks the same sets: Pareto (kept) for topk=8, h2o 16, topk=32 and dense.
  EXPECT_EQ(count(html, R"(<td class="good">yes</td>)"), 4u + 4u);
  // Escaping: the model name and policy text never appear raw.
  EXPECT_EQ(html.find("<tiny>"), std::string::npos);
  EXPECT_NE(html.find("models/&lt;tiny&gt; &amp; &quot;model&quot;.gguf"), std::string::npos);
  EXPECT_EQ(html.find("window=<64>"), std::string::npos);
  // Per-layer heatmap and the speed charts (with the ideal line and real decoding).
  EXPECT_NE(html.find("ideal 1 / kept"), std::string::npos);
  EXPECT_NE(html.find("Real decoding"), std::string::npos);
  // A report without policies still renders (empty charts say so).
  json empty = hand_made_report();
  empty["policies"] = json::array();
  EXPECT_NE(report::policy_html(empty).find("<svg"), std::string::npos);
  EXPECT_TRUE(report::is_policy_report(hand_made_report()));
  EXPECT_FALSE(report::is_policy_report(json{{"conjectures", json::array()}}));
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(PolicyHtml, RendersInHeadlessChromium) {
  if (!fs::exists(kChromium)) {
    if (in_ci()) FAIL() << "chromium is not installed (scripts/setup.sh installs it)";
    GTEST_SKIP() << "chromium not installed";
  }
  const fs::path dir = fs::temp_directory_path() / ("attnsparse_policy_html_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string html = report::policy_html(hand_made_report());
  size_t svgs = count(html, "<svg");
  ASSERT_EQ(svgs, 7u);  // 4 frontier charts, the layer heatmap, 2 speed charts
  const fs::path page = dir / "report.html";
  std::ofstream(page) << html;
  const std::string flags = attnsparse::testing::kChromiumFlags;
  const std::string url = "file://" + page.string();
  const fs::path dom = dir / "dom.html";
  ASSERT_EQ(run_chromium(flags + "--user-data-dir=" + (dir / "p1").string() + " --dump-dom '" + url + "'", dom), 0);
  const std::string loaded = slurp(dom);
  EXPECT_NE(loaded.find("data-report-ok=\"" + std::to_string(svgs) + "\""), std::string::npos)
      << loaded.substr(std::min(loaded.size(), loaded.find("data-report-error=\"")), 200);
  const fs::path png = dir / "report.png";
  ASSERT_EQ(run_chromium(flags + "--user-data-dir=" + (dir / "p2").string() + " --window-size=1250,3000 --screenshot='" +
                             png.string() + "' '" + url + "'",
                         dir / "shot.log"),
            0);
  const std::string bytes = slurp(png);
  ASSERT_GT(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // Charts and text compress far worse than a blank page (~15 KB at this size).
  EXPECT_GT(bytes.size(), 100000u) << "screenshot looks blank";
  if (!std::getenv("ATTNSPARSE_KEEP_SCREENSHOT")) fs::remove_all(dir);
  else std::printf("screenshot kept: %s\n", png.string().c_str());
}

}  // namespace
