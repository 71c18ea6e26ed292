// `attnsparse report` on hostile inputs: what is not a regular file (a FIFO, a directory,
// a device) is refused at once with the file named, duplicate keys are an error, and
// tampered integers in real result files (1e308, -1, a count that would size gigabytes)
// are one error line naming the field, never undefined behaviour or a huge allocation.
// Also the checked integer getter itself (io/json_file.h).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "io/json_file.h"
#include "support/files.h"
#include "report_support.h"
#include "support/run_process.h"

namespace fs = std::filesystem;

namespace {

using attnsparse::FormatError;
using attnsparse::testing::ProcessResult;
using attnsparse::testing::run_cli;
using attnsparse::testing::run_command;
using attnsparse::testing::shell_quote;
using nlohmann::json;

const std::string kShared = ATTNSPARSE_SHARED_DIR "/reference";

fs::path work_dir() { return fs::path(::testing::TempDir()) / ("report_hostile_" + std::to_string(::getpid())); }

using attnsparse::testing::analyze_reference_case;
using attnsparse::testing::slurp;

size_t lines(const std::string& s) { return size_t(std::count(s.begin(), s.end(), '\n')); }

// `report FILE -o OUT` under a time limit (status 124 when it hangs).
ProcessResult report(const fs::path& file, const fs::path& out) {
  return run_command("timeout 30 " + shell_quote(ATTNSPARSE_BIN) + " report " + shell_quote(file.string()) + " -o " +
                     shell_quote(out.string()));
}

// Writes j with one field changed, runs report on it and expects one error line that
// names the file and holds every needle, and no page.
void expect_refused(const fs::path& dir, const std::string& name, const std::string& text,
                    std::initializer_list<std::string> needles) {
  const fs::path file = dir / (name + ".json"), out = dir / (name + ".html");
  std::ofstream(file) << text;
  const ProcessResult r = report(file, out);
  EXPECT_EQ(r.status, 1) << name << ": " << r.err;
  EXPECT_NE(r.err.find(file.string()), std::string::npos) << r.err;
  for (const std::string& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << name << ": " << r.err;
  EXPECT_EQ(r.err.find("json.exception"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_FALSE(fs::exists(out)) << name;
}

TEST(JsonInt, AcceptsIntegralValuesInRangeOnly) {
  using attnsparse::json_int;
  EXPECT_EQ(json_int(json(7), "x", 1, 10), 7);
  EXPECT_EQ(json_int(json(7.0), "x", 1, 10), 7);  // a float with an integral value
  EXPECT_EQ(json_int(json(-3), "x", -5, 0), -3);
  EXPECT_EQ(json_int(json::parse("9223372036854775807"), "x", attnsparse::kJsonIntMin, attnsparse::kJsonIntMax),
            attnsparse::kJsonIntMax);
  for (const char* bad : {"1e308", "-1e308", "2.5", "-1", "11", "\"7\"", "null", "true", "[1]",
                          "18446744073709551615", "9223372036854775808.0"}) {
    try {
      json_int(json::parse(bad), "counts.heads", 0, 10);
      ADD_FAILURE() << bad << " accepted";
    } catch (const FormatError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("field 'counts.heads' must be an integer in [0, 10], got "), std::string::npos) << m;
    }
  }
  try {
    json_int(json(1e308), "counts.heads", 1, 4096, "f.json");
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()), "f.json: field 'counts.heads' must be an integer in [1, 4096], got 1e+308");
  }
  EXPECT_EQ(attnsparse::json_uint64(json::parse("18446744073709551615"), "seed"), 18446744073709551615ull);
  EXPECT_THROW(attnsparse::json_uint64(json(-1), "seed"), FormatError);
  EXPECT_THROW(attnsparse::json_uint64(json(1e300), "seed"), FormatError);
  EXPECT_EQ(attnsparse::json_int_array(json::array({1, 2}), "n", 0, 5), (std::vector<int64_t>{1, 2}));
  try {
    attnsparse::json_int_array(json::array({1, 1e308}), "settings[0].n", 0, 5);
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'settings[0].n[1]'"), std::string::npos) << e.what();
  }
}

TEST(ReportHostile, FifoDirectoryAndDeviceAreRefusedAtOnce) {
  const fs::path dir = work_dir() / "special";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path fifo = dir / "f.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto t0 = std::chrono::steady_clock::now();
  const ProcessResult f = report(fifo, dir / "f.html");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(f.status, 124) << "report waited on the FIFO";
  EXPECT_EQ(f.status, 1) << f.err;
  EXPECT_LT(seconds, 10.0);
  EXPECT_NE(f.err.find(fifo.string()), std::string::npos) << f.err;
  EXPECT_NE(f.err.find("FIFO"), std::string::npos) << f.err;
  EXPECT_EQ(lines(f.err), 1u) << f.err;
  EXPECT_FALSE(fs::exists(dir / "f.html"));

  const fs::path sub = dir / "adir.json";
  fs::create_directories(sub);
  const ProcessResult d = report(sub, dir / "d.html");
  EXPECT_EQ(d.status, 1) << d.err;
  EXPECT_NE(d.err.find(sub.string()), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("is a directory"), std::string::npos) << d.err;
  EXPECT_EQ(d.err.find("basic_filebuf"), std::string::npos) << d.err;
  EXPECT_EQ(lines(d.err), 1u) << d.err;

  if (fs::exists("/dev/zero")) {
    const ProcessResult z = report("/dev/zero", dir / "z.html");
    EXPECT_EQ(z.status, 1) << z.err;
    EXPECT_NE(z.err.find("/dev/zero"), std::string::npos) << z.err;
    EXPECT_NE(z.err.find("character device"), std::string::npos) << z.err;
    EXPECT_FALSE(fs::exists(dir / "z.html"));
  }
}

TEST(ReportHostile, DuplicateKeysAndHugeNumbersAreCleanErrors) {
  const fs::path dir = work_dir() / "syntax";
  fs::remove_all(dir);
  fs::create_directories(dir);
  expect_refused(dir, "dup", R"({"tool": "attnsparse theory simulate", "tool": "attnsparse theory fit"})",
                 {"duplicate key 'tool'"});
  expect_refused(dir, "dup_inner", R"({"counts": {"heads": 1, "heads": 2}})", {"duplicate key 'heads'", "'counts'"});
  expect_refused(dir, "big", R"({"x": 1e400})", {"invalid JSON"});
}

// A real theory simulate result with integer fields tampered.
TEST(ReportHostile, TamperedTheorySimulateIntegers) {
  const fs::path dir = work_dir() / "theory";
  fs::remove_all(dir);
  const ProcessResult sim = run_cli("theory simulate --n 64:256 --d 8 --sigma 1 --trials 3 --bootstrap 20 --threads 1 --out '" +
                                    (dir / "sim").string() + "'");
  ASSERT_EQ(sim.status, 0) << sim.err;
  const json base = json::parse(slurp(dir / "sim" / "theory.json"));
  {
    const ProcessResult ok = report(dir / "sim" / "theory.json", dir / "ok.html");
    ASSERT_EQ(ok.status, 0) << ok.err;
  }
  struct Case {
    const char* name;
    void (*edit)(json&);
    std::string needle;
  };
  const Case cases[] = {
      {"k_const_huge", [](json& j) { j["params"]["k_const"] = 1e308; }, "field 'params.k_const' must be an integer >= 1, got 1e+308"},
      {"n_lo_huge", [](json& j) { j["params"]["n_lo"] = 1e308; }, "field 'params.n_lo'"},
      {"trials_frac", [](json& j) { j["params"]["trials"] = 2.5; }, "field 'params.trials'"},
      {"seed_neg", [](json& j) { j["params"]["seed"] = -1; }, "field 'params.seed'"},
      {"bootstrap_huge", [](json& j) { j["params"]["bootstrap"] = 1e308; }, "field 'params.bootstrap'"},
      {"d_huge", [](json& j) { j["settings"][0]["d"] = 1e308; }, "field 'settings[0].d'"},
      {"n_elem", [](json& j) { j["settings"][0]["n"][1] = 1e308; }, "field 'settings[0].n[1]'"},
      {"fit_setting_huge", [](json& j) { j["fits"][0]["setting"] = 1e308; }, "field 'fits[0].setting' must be an integer in [0, 0]"},
      {"fit_setting_neg", [](json& j) { j["fits"][0]["setting"] = -1; }, "field 'fits[0].setting'"},
  };
  for (const Case& c : cases) {
    json j = base;
    c.edit(j);
    expect_refused(dir, c.name, j.dump(), {"malformed theory simulate result", c.needle});
  }
}

// A real analyze report.json (the reference model; skipped without it) tampered.
TEST(ReportHostile, TamperedAnalysisIntegers) {
  const std::string model = kShared + "/models/llama-spm-f32.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << model;
  const fs::path dir = work_dir() / "analysis";
  const ProcessResult a = analyze_reference_case(dir, model);
  ASSERT_EQ(a.status, 0) << a.err;
  const json base = json::parse(slurp(dir / "out" / "report.json"));
  ASSERT_TRUE(base["distributions"].contains("width_norm_p90"));
  ASSERT_TRUE(base["clusters"]["best_k"].is_number());
  struct Case {
    const char* name;
    void (*edit)(json&);
    std::string needle;
  };
  const Case cases[] = {
      {"heads_huge", [](json& j) { j["counts"]["heads"] = 1e308; },
       "field 'counts.heads' must be an integer in [1, 4096], got 1e+308"},
      {"heads_neg", [](json& j) { j["counts"]["heads"] = -1; }, "field 'counts.heads' must be an integer in [1, 4096], got -1"},
      {"heads_200m", [](json& j) { j["counts"]["heads"] = 200000000; }, "field 'counts.heads' must be an integer in [1, 4096], got 200000000"},
      {"layers_huge", [](json& j) { j["counts"]["layers"] = 1e308; }, "field 'counts.layers'"},
      {"cells", [](json& j) { j["counts"]["layers"] = 4096; j["counts"]["heads"] = 4096; }, "more than 262144 heads"},
      {"bins_huge", [](json& j) { j["distributions"]["width_norm_p90"]["bins"] = 1e308; },
       "field 'distributions.width_norm_p90.bins' must be an integer in [1, 100000], got 1e+308"},
      {"bins_mismatch", [](json& j) { j["distributions"]["width_norm_p90"]["bins"] = 100000; },
       "field 'distributions.width_norm_p90.counts' must be an array of bins + 2 = 100002 counts"},
      {"best_k_huge", [](json& j) { j["clusters"]["best_k"] = 1e308; }, "field 'clusters.best_k'"},
      {"cluster_huge", [](json& j) { j["per_head"][0]["cluster"] = 2147483647; }, "field 'per_head[0].cluster'"},
      {"head_neg", [](json& j) { j["per_head"][0]["head"] = -1; }, "field 'per_head[0].head'"},
      {"window_huge", [](json& j) { j["per_layer"][0]["attention"]["window"] = 1e308; },
       "field 'per_layer[0].attention.window' must be an integer, got 1e+308"},
      {"id_huge", [](json& j) { j["conjectures"][0]["id"] = 1e308; }, "field 'conjectures[0].id'"},
      {"gap_huge", [](json& j) { j["persistence"][0]["gap"] = 1e308; }, "field 'persistence[0].gap'"},
      {"type", [](json& j) { j["conjectures"][0]["name"] = 5; }, "type must be string"},
  };
  for (const Case& c : cases) {
    json j = base;
    c.edit(j);
    expect_refused(dir, c.name, j.dump(), {"malformed analyze report", c.needle});
  }
  // A layer number far outside the table does not index it (size_t of a huge double).
  json j = base;
  j["per_layer"][0]["layer"] = 1e308;
  std::ofstream(dir / "layer_far.json") << j.dump();
  const ProcessResult far = report(dir / "layer_far.json", dir / "layer_far.html");
  EXPECT_EQ(far.status, 0) << far.err;
}

}  // namespace
