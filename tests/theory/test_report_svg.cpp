// The shared SVG/HTML report helpers (src/report/svg.h): escaping, axis handling, and
// that the output is well-formed XML-ish markup (balanced elements, no stray text).
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>

#include "report/svg.h"

namespace attnsparse::report {
namespace {

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// Every opening tag of these elements has a matching closing tag (or is self-closed).
void expect_balanced(const std::string& s) {
  for (const char* tag : {"svg", "text", "title", "table", "tr", "td", "th", "div", "g", "clipPath"}) {
    const std::regex open(std::string("<") + tag + "[ >]");
    const std::regex close(std::string("</") + tag + ">");
    const auto n_open = std::distance(std::sregex_iterator(s.begin(), s.end(), open), std::sregex_iterator());
    const auto n_close = std::distance(std::sregex_iterator(s.begin(), s.end(), close), std::sregex_iterator());
    EXPECT_EQ(n_open, n_close) << "tag " << tag;
  }
}

TEST(ReportSvg, EscapesHtmlSpecials) {
  EXPECT_EQ(html_escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;");
  EXPECT_EQ(html_escape(""), "");
}

TEST(ReportSvg, FormatNumber) {
  EXPECT_EQ(format_number(42), "42");
  EXPECT_EQ(format_number(0.12345, 3), "0.123");
  EXPECT_EQ(format_number(NAN), "n/a");
  EXPECT_EQ(format_number(1.5e-5, 2), "1.5e-05");
}

TEST(ReportSvg, LogChartSkipsNonPositiveAndEscapesLabels) {
  ChartSpec spec;
  spec.title = "k <eps>";
  spec.x = log_axis("n", true);
  spec.y = log_axis("k");
  Series s;
  s.name = "a&b";
  s.x = {1024, 2048, 4096, 8192};
  s.y = {10, 0, 40, -1};  // two points cannot be drawn on a log axis
  s.low = {8, 0, 30, 1};
  s.high = {12, 0, 50, 2};
  const std::string svg = chart(spec, {s});
  EXPECT_NE(svg.find("k &lt;eps&gt;"), std::string::npos);
  EXPECT_NE(svg.find("a&amp;b"), std::string::npos);
  EXPECT_EQ(svg.find("a&b"), std::string::npos);
  EXPECT_EQ(count(svg, "<circle"), 2 + 1);  // two valid points + the legend marker
  EXPECT_NE(svg.find("2^10"), std::string::npos);  // power-of-two ticks
  EXPECT_NE(svg.find("2^12"), std::string::npos);
  EXPECT_EQ(svg.find("2^13"), std::string::npos);  // x = 8192 has no drawable point
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  expect_balanced(svg);
}

TEST(ReportSvg, EmptyChartSaysNoData) {
  ChartSpec spec;
  spec.y = log_axis("y");
  Series s;
  s.x = {1, 2};
  s.y = {0, -3};
  const std::string svg = chart(spec, {s});
  EXPECT_NE(svg.find("no data"), std::string::npos);
  expect_balanced(svg);
}

TEST(ReportSvg, HeatmapColoursAndMissingCells) {
  HeatmapSpec h;
  h.title = "C per head";
  h.row_label = "layer";
  h.col_label = "head";
  h.values = {{0.0, 1.0}, {NAN, 0.5}};
  const std::string svg = heatmap(h);
  EXPECT_NE(svg.find("#dddddd"), std::string::npos);  // the NaN cell
  EXPECT_NE(svg.find("#f7fbff"), std::string::npos);  // lo = white end
  EXPECT_NE(svg.find("#08306b"), std::string::npos);  // hi = dark end
  EXPECT_NE(svg.find("layer 1, head 0: n/a"), std::string::npos);
  expect_balanced(svg);
}

TEST(ReportSvg, PageIsSelfContained) {
  const std::string page = html_page("T<1>", {{"Fits", table({"a", "b"}, {{"x<y", "1"}}), "fits"}}, note("n & m"));
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("<title>T&lt;1&gt;</title>"), std::string::npos);
  EXPECT_NE(page.find("x&lt;y"), std::string::npos);
  EXPECT_NE(page.find("href=\"#fits\""), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos);  // no network resources
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  expect_balanced(page);
}

}  // namespace
}  // namespace attnsparse::report
