// `attnsparse analyze` end to end:
//  - per-row metrics it dumps equal those computed here (naive: full sort, double sums)
//    from llama.cpp's attention tensors for the same model and tokens;
//  - a run killed with SIGKILL and resumed gives exactly the uninterrupted result;
//  - report.json has the documented fields; bad input gives one clear error line.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "cli_support.h"
#include "shared_data.h"
#include "synthetic_support.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace attnsparse::testing_support;
using attnsparse::analysis::testing::CsvRow;
using attnsparse::analysis::testing::read_rows_csv;

namespace {

std::vector<int32_t> read_ids(const std::string& path) {
  std::ifstream in(path);
  std::vector<int32_t> ids;
  int64_t v;
  while (in >> v) ids.push_back(int32_t(v));
  return ids;
}

void write_ids(const std::string& path, const std::vector<int32_t>& ids) {
  std::ofstream out(path);
  for (size_t i = 0; i < ids.size(); ++i) out << ids[i] << (i + 1 < ids.size() ? ' ' : '\n');
}

// Cumulative sums of the row sorted in decreasing order (double), for widths.
std::vector<double> sorted_cumsum(const float* row, int64_t n) {
  std::vector<float> v(row, row + n);
  std::sort(v.begin(), v.end(), std::greater<float>());
  std::vector<double> c(n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) c[i] = (s += v[i]);
  return c;
}

// Naive per-row metrics (full sort, double sums) of one probability row.
struct Naive {
  std::vector<double> cum;  // cumulative mass of the row sorted in decreasing order
  int64_t width[4];
  double entropy, sink, recent[5];
};

Naive naive_metrics(const float* row, int64_t t) {
  const double levels[4] = {0.5, 0.9, 0.95, 0.99};
  const int windows[5] = {1, 8, 32, 64, 128};
  const int64_t k = t + 1;
  Naive m;
  m.cum = sorted_cumsum(row, k);
  for (int li = 0; li < 4; ++li)
    m.width[li] = std::min<int64_t>(
        k, std::find_if(m.cum.begin(), m.cum.end(), [&](double c) { return c >= levels[li]; }) - m.cum.begin() + 1);
  m.entropy = 0;
  for (int64_t j = 0; j < k; ++j)
    if (row[j] > 0) m.entropy -= double(row[j]) * std::log(double(row[j]));
  m.sink = row[0];
  for (int wi = 0; wi < 5; ++wi) {
    m.recent[wi] = 0;
    for (int64_t j = std::max<int64_t>(0, t - windows[wi] + 1); j <= t; ++j) m.recent[wi] += row[j];
  }
  return m;
}

// How close the engine's attention is to llama.cpp's (tests/model measures it: max |dp|
// 1.2e-5 for llama f32, 1.9e-4 for gpt2 f32 whose GELU llama.cpp evaluates on f16-rounded
// inputs), and so how close metrics of the two can be.
struct Tolerance {
  double entropy, mass;
};
Tolerance tolerance_for(const std::string& name) {
  if (name.starts_with("llama")) return {1e-4, 1e-4};
  return {1e-3, 5e-4};
}

class AnalyzeReference : public ::testing::TestWithParam<std::string> {};

// Two comparisons per row:
//  1. analyze's streamed metrics equal the naive metrics of the engine's own attention row
//     (written by `attnsparse attention`): exact widths, entropy and masses to 1e-6;
//  2. the naive metrics of the engine's row and of llama.cpp's row agree: entropy and masses
//     to the case's tolerance, and widths exactly except where the two rows' cumulative masses
//     fall on opposite sides of the level (a genuine near-tie, shown and counted).
TEST_P(AnalyzeReference, DumpedRowMetricsEqualThoseOfLlamaCppAttention) {
  const std::string name = GetParam();
  const std::string ref = reference_dir();
  const std::string manifest_path = ref + "/expected/manifest.json";
  REQUIRE_SHARED_FILE(manifest_path);
  const json manifest = json::parse(slurp(manifest_path));
  json info;
  for (const auto& c : manifest["cases"])
    if (c["case"] == name) info = c;
  ASSERT_FALSE(info.is_null()) << name;
  const int64_t L = info["attn_shape"][0], H = info["attn_shape"][1], n = info["attn_shape"][2];
  const std::vector<float> theirs = read_f32(ref + "/expected/" + info["attn_file"].get<std::string>());
  ASSERT_EQ(int64_t(theirs.size()), L * H * n * n);

  const std::string dir = fresh_dir("ref_" + name);
  const std::string tok = dir + "/" + name + ".tok";
  write_ids(tok, read_ids(ref + "/expected/" + name + ".tokens.txt"));
  const std::string model = ref + "/models/" + info["model"].get<std::string>();
  const auto r = run_cli({"analyze", model, "--data", tok, "--out", dir + "/out", "--min-query", "0",
                          "--dump-rows", dir + "/rows.csv", "--threads", "2"}, Output::merged);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto a = run_cli({"attention", model, "--tokens", tok, "--out", dir + "/attn.f32"}, Output::merged);
  ASSERT_EQ(a.status, 0) << a.out;
  const std::vector<float> ours = read_f32(dir + "/attn.f32");
  ASSERT_EQ(ours.size(), theirs.size());
  const std::vector<CsvRow> rows = read_rows_csv(dir + "/rows.csv");
  ASSERT_EQ(int64_t(rows.size()), L * H * n);

  const double levels[4] = {0.5, 0.9, 0.95, 0.99};
  const Tolerance tol = tolerance_for(name);
  int64_t near_ties = 0;
  double max_dh = 0, max_dm = 0;
  for (const CsvRow& row : rows) {
    const size_t at = size_t(((row.layer * H + row.head) * n + row.query) * n);
    const Naive e = naive_metrics(ours.data() + at, row.query);
    const Naive t = naive_metrics(theirs.data() + at, row.query);
    const std::string where = name + " layer " + std::to_string(row.layer) + " head " + std::to_string(row.head) +
                              " query " + std::to_string(row.query);
    ASSERT_EQ(row.n_keys, row.query + 1) << where;
    for (int li = 0; li < 4; ++li) {
      EXPECT_EQ(row.width[li], e.width[li]) << where << " p " << levels[li];
      if (e.width[li] != t.width[li]) {
        // Some prefix length between the two widths has its cumulative mass on opposite
        // sides of the level in the two rows.
        const int64_t lo = std::min(e.width[li], t.width[li]), hi = std::max(e.width[li], t.width[li]);
        bool straddles = false;
        for (int64_t k = lo; k < hi; ++k)
          straddles |= (e.cum[k - 1] >= levels[li]) != (t.cum[k - 1] >= levels[li]);
        EXPECT_TRUE(straddles) << where << " p " << levels[li];
        EXPECT_LT(std::abs(e.cum[lo - 1] - t.cum[lo - 1]), 10 * tol.mass) << where;
        ++near_ties;
      }
    }
    EXPECT_NEAR(row.entropy, e.entropy, 1e-6) << where;
    EXPECT_NEAR(row.sink_mass, e.sink, 1e-6) << where;
    for (int wi = 0; wi < 5; ++wi) EXPECT_NEAR(row.recent[wi], e.recent[wi], 1e-6) << where;
    max_dh = std::max(max_dh, std::abs(row.entropy - t.entropy));
    max_dm = std::max(max_dm, std::abs(row.sink_mass - t.sink));
    for (int wi = 0; wi < 5; ++wi) max_dm = std::max(max_dm, std::abs(row.recent[wi] - t.recent[wi]));
  }
  EXPECT_LT(max_dh, tol.entropy) << name;
  EXPECT_LT(max_dm, tol.mass) << name;
  std::printf("%s: %zu rows; vs llama.cpp: %lld of %zu widths differ (near-ties), max |dH| %.2e, max |d mass| %.2e\n",
              name.c_str(), rows.size(), (long long)near_ties, 4 * rows.size(), max_dh, max_dm);

  // The report's per-layer means are the means of the dumped rows.
  const json report = json::parse(slurp(dir + "/out/report.json"));
  for (int64_t l = 0; l < L; ++l) {
    double sum = 0;
    int64_t count = 0;
    for (const CsvRow& row : rows)
      if (row.layer == l) sum += row.sink_mass, ++count;
    EXPECT_NEAR(report["per_layer"][l]["metrics"]["sink_mass"]["mean"].get<double>(), sum / double(count), 1e-6);
    EXPECT_EQ(report["per_layer"][l]["rows"], count);
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(F32Models, AnalyzeReference,
                         ::testing::Values("llama-spm-f32.random", "llama-spm-f32.text", "gpt2-f32.random",
                                           "gpt2-f32.text"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace_if(s.begin(), s.end(), [](char c) { return !std::isalnum(c); }, '_');
                           return s;
                         });

std::string gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  std::string out;
  if (!f) return out;
  char buf[65536];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) out.append(buf, size_t(got));
  gzclose(f);
  return out;
}

json without_run(json report) {
  report.erase("run");
  return report;
}

TEST(AnalyzeCli, KilledRunResumesToTheUninterruptedResult) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(model);
  const std::string dir = fresh_dir("kill");
  const std::string data = dir + "/data";
  fs::create_directories(data);
  std::mt19937 rng(5);
  for (int d = 0; d < 24; ++d) {
    std::vector<int32_t> ids(300);
    for (auto& v : ids) v = int32_t(3 + rng() % 31990);
    write_ids(data + "/doc" + std::to_string(100 + d) + ".tok", ids);
  }
  auto args = [&](const std::string& out, const std::string& dump) {
    return std::vector<std::string>{"analyze", model, "--data", data, "--out", out, "--dump-rows", dump,
                                    "--threads", "2", "--max-rows", "30000", "--set", "bootstrap_resamples=200"};
  };
  const auto full = run_cli(args(dir + "/full", dir + "/full.csv.gz"), Output::merged);
  ASSERT_EQ(full.status, 0) << full.out;

  // Start the same run, SIGKILL it right after its first checkpoint, then --resume.
  const std::string out = dir + "/killed";
  const std::string checkpoint = out + "/checkpoint.cbor";
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  const auto killed_args = args(out, dir + "/killed.csv.gz");
  std::vector<char*> argv = {const_cast<char*>(ATTNSPARSE_BIN)};
  for (const auto& s : killed_args) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execv(ATTNSPARSE_BIN, argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(checkpoint) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  ASSERT_TRUE(fs::exists(checkpoint));
  EXPECT_FALSE(fs::exists(out + "/report.json"));
  EXPECT_FALSE(fs::exists(dir + "/killed.csv.gz"));  // only the .partial exists

  const auto resumed = run_cli([&] {
    auto a = args(out, dir + "/killed.csv.gz");
    a.push_back("--resume");
    return a;
  }(), Output::merged);
  ASSERT_EQ(resumed.status, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed after"), std::string::npos) << resumed.out;
  const json a = json::parse(slurp(dir + "/full/report.json"));
  const json b = json::parse(slurp(out + "/report.json"));
  EXPECT_EQ(without_run(a).dump(), without_run(b).dump());
  EXPECT_GT(b["run"]["documents_resumed"].get<int>(), 0);
  EXPECT_EQ(a["counts"]["rows"], 30000);
  const std::string rows_a = gunzip(dir + "/full.csv.gz"), rows_b = gunzip(dir + "/killed.csv.gz");
  EXPECT_GT(rows_a.size(), 1000u);
  EXPECT_EQ(rows_a, rows_b);
  EXPECT_FALSE(fs::exists(checkpoint));  // removed once the report is written

  // Resuming a finished run (no checkpoint) starts over and says so.
  const auto again = run_cli([&] {
    auto v = args(out, dir + "/again.csv.gz");
    v.push_back("--resume");
    return v;
  }(), Output::merged);
  EXPECT_EQ(again.status, 0);
  EXPECT_NE(again.out.find("no checkpoint"), std::string::npos);
  fs::remove_all(dir);
}

TEST(AnalyzeCli, ReportHasTheDocumentedFields) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  const std::string sample = reference_dir() + "/longbench/sample.jsonl";
  REQUIRE_SHARED_FILE(model);
  REQUIRE_SHARED_FILE(sample);
  const std::string dir = fresh_dir("schema");
  const auto r = run_cli({"analyze", model, "--data", sample, "--out", dir, "--max-tokens", "400", "--rows", "both",
                          "--decode-tokens", "8", "--stride", "2", "--threads", "2", "--json"}, Output::merged);
  ASSERT_EQ(r.status, 0) << r.out;
  const json j = json::parse(slurp(dir + "/report.json"));
  EXPECT_EQ(j["schema"], "attnsparse.analysis/1");
  for (const char* key : {"model", "data", "counts", "parameters", "per_layer", "per_head", "clusters",
                          "persistence", "conjectures", "distributions", "documents", "run"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["counts"]["documents"], 3);
  EXPECT_EQ(j["counts"]["datasets"], 3);
  EXPECT_EQ(j["counts"]["tokens"], 3 * 400);
  // Per document: prefill rows at t = 16, 18, ..., 390 (188) and 8 decode rows, x 2 layers x 4 heads.
  EXPECT_EQ(j["counts"]["prefill_rows"], 3 * 188 * 8);
  EXPECT_EQ(j["counts"]["decode_rows"], 3 * 8 * 8);
  EXPECT_EQ(j["per_layer"].size(), 2u);
  EXPECT_EQ(j["per_head"].size(), 8u);
  EXPECT_EQ(j["per_head"][3]["kv_group"], 1);  // 4 query heads on 2 KV heads
  EXPECT_EQ(j["persistence"].size(), 4u);
  ASSERT_EQ(j["conjectures"].size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const json& c = j["conjectures"][i];
    EXPECT_EQ(c["id"], i + 1);
    EXPECT_TRUE(c["verdict"] == "supported" || c["verdict"] == "partial" || c["verdict"] == "not_supported");
    EXPECT_TRUE(c["name"].is_string());
    EXPECT_TRUE(c["statistics"].is_object());
  }
  EXPECT_EQ(j["parameters"]["sampling"]["rows"], "both");
  EXPECT_EQ(j["parameters"]["c5"]["gap"], 128);
  EXPECT_EQ(j["data"]["documents_truncated"], 3);
  // --json prints the same report on stdout.
  const size_t brace = r.out.find('{');
  ASSERT_NE(brace, std::string::npos);
  EXPECT_EQ(json::parse(r.out.substr(brace))["counts"], j["counts"]);
  fs::remove_all(dir);
}

TEST(AnalyzeCli, BadInputGivesOneClearErrorAndNoReport) {
  const std::string model = reference_dir() + "/models/llama-spm-f32.gguf";
  REQUIRE_SHARED_FILE(model);
  const std::string dir = fresh_dir("bad");
  const std::string good = dir + "/good.txt";
  std::ofstream(good) << "In the beginning God created the heaven and the earth. And the earth was without form.";
  const std::string bad_jsonl = dir + "/bad.jsonl";
  std::ofstream(bad_jsonl) << "{\"context\": \"ok\", \"input\": \"q\"}\n{\"context\": 3}\n";
  const std::string bad_tok = dir + "/bad.tok";
  std::ofstream(bad_tok) << "1 2 99999999\n";
  const std::string a_file = dir + "/file";
  std::ofstream(a_file) << "x";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::string out = dir + "/out";
  const std::vector<Case> cases = {
      {{"analyze", model, "--data", bad_jsonl, "--out", out}, bad_jsonl + ":2: field 'context' is number"},
      {{"analyze", model, "--data", bad_tok, "--out", out}, bad_tok + ": token id 99999999 at index 2 is out of range"},
      {{"analyze", model, "--data", dir + "/missing.txt", "--out", out}, "missing.txt: no such file or directory"},
      {{"analyze", dir + "/missing.gguf", "--data", good, "--out", out}, "missing.gguf"},
      {{"analyze", model, "--data", good, "--out", out, "--rows", "sideways"}, "--rows must be prefill, decode or both"},
      {{"analyze", model, "--data", good, "--out", out, "--stride", "0"}, "--stride must be >= 1"},
      {{"analyze", model, "--data", good, "--out", out, "--set", "nonsense=1"}, "unknown parameter 'nonsense'"},
      {{"analyze", model, "--data", good, "--out", out, "--set", "c5_gap=7"}, "C5 gap must be one of"},
      {{"analyze", model, "--data", good, "--out", out, "--min-query", "5000"}, "--min-query 5000, so the window must be longer"},
      {{"analyze", model, "--data", good, "--out", out, "--min-query", "100"}, "no document has enough tokens"},
      {{"analyze", model, "--data", good, "--out", out, "--max-tokens", "1"}, "--max-tokens 1: a document needs at least 2 tokens"},
      {{"analyze", model, "--data", good, "--out", a_file}, "cannot create the output directory"},
      {{"analyze", reference_dir() + "/models/gpt2-f32.gguf", "--data", good, "--out", out, "--max-tokens", "4096"},
       "gpt2 has learned positions for 512 tokens only"},
  };
  for (const Case& c : cases) {
    const auto r = run_cli(c.args, Output::merged);
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << "expected '" << c.message << "' in: " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_FALSE(fs::exists(out + "/report.json"));
  }
  // A checkpoint from other options is refused by --resume.
  ASSERT_EQ(run_cli({"analyze", model, "--data", good, "--out", out}, Output::merged).status, 0);
  fs::copy_file(dir + "/file", out + "/checkpoint.cbor");
  const auto damaged = run_cli({"analyze", model, "--data", good, "--out", out, "--resume"}, Output::merged);
  EXPECT_EQ(damaged.status, 1);
  EXPECT_NE(damaged.out.find("checkpoint.cbor: damaged checkpoint"), std::string::npos) << damaged.out;
  fs::remove_all(dir);
}

}  // namespace
