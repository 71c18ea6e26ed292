// eval-policy's engine shared by several ranks (EvalRun::comm), the ranks as threads of this
// process talking through the in-memory communicator of the analysis tests: rank 0's report
// must be one process's byte for byte (apart from the wall times and the rank fields) for
// any rank count, including more ranks than documents; a failing document on any rank
// stops every rank with the error one process meets first; a run killed under 3 ranks
// resumes under 2 and then in one process to the uninterrupted report; checkpoints refuse
// another run. Small synthetic model (tiny preset: 2 layers, 4 heads, 2 KV heads, f32).
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "analysis/thread_comm.h"
#include "core/error.h"
#include "model/model.h"
#include "model/synth.h"
#include "policies/evaluate.h"

namespace attnsparse::policies {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using analysis::testing::Hub;
using analysis::testing::ThreadComm;

const fs::path& work_dir() {
  static const fs::path dir = [] {
    const fs::path d = fs::path(::testing::TempDir()) / ("eval_shard_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// Removes the folder when the test program ends.
class RemoveWorkDir : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(work_dir()); }
};
const auto* const kRemoveWorkDir = ::testing::AddGlobalTestEnvironment(new RemoveWorkDir);

// The model file: every rank loads its own copy, as separate processes do.
const std::string& model_path() {
  static const std::string path = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.dtype = DType::F32;
    o.seed = 7;
    const std::string p = (work_dir() / "tiny.gguf").string();
    write_synthetic_model(o, p);
    return p;
  }();
  return path;
}

// Seven documents of different lengths; with chunk 16 the longer ones take several
// forward calls, so the oracle adds several per-call sums per layer and document.
std::vector<EvalDocument> documents() {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> tok(3, 511);
  std::vector<EvalDocument> docs;
  for (int n : {40, 70, 23, 55, 31, 64, 12}) {
    EvalDocument d;
    d.id = "doc" + std::to_string(docs.size());
    for (int i = 0; i < n; ++i) d.tokens.push_back(tok(rng));
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<EvalPolicy> policy_set() {
  std::vector<EvalPolicy> out;
  for (const char* t : {"window=8", "topk={4,16}", "h2o=budget:16,recent:4", "quest=page:4,pages:3", "L0:dense;topp=0.9"})
    for (auto& p : parse_eval_policies(t)) out.push_back(std::move(p));
  return out;
}

EvalOptions options() {
  EvalOptions o;
  o.chunk = 16;
  o.decode_tokens = 6;
  o.model_path = model_path();
  o.data_paths = {"synthetic"};
  o.max_tokens = 1024;
  o.threads = 1;
  return o;
}

// The report with the fields that record time and how the run went removed, as text.
std::string comparable(const EvalResult& r) {
  json j = to_json(r);
  j.erase("ranks");
  j.erase("bytes_merged");
  j.erase("documents_resumed");
  j["dense"].erase("wall_s");
  if (j["dense"]["real_decode"].is_object()) j["dense"]["real_decode"].erase("ms_per_token");
  for (json& p : j["policies"]) {
    p.erase("wall_s");
    p.erase("wall_relative");
    if (p["real_decode"].is_object()) p["real_decode"].erase("ms_per_token");
  }
  return j.dump(1);
}

// "" when equal, else the first line where the two texts differ (short failure messages).
std::string first_difference(const std::string& got, const std::string& want) {
  if (got == want) return "";
  std::istringstream a(got), b(want);
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool ma = bool(std::getline(a, la)), mb = bool(std::getline(b, lb));
    if (!ma && !mb) return "differ";
    if (la != lb || ma != mb) return "line " + std::to_string(line) + ": got '" + la + "', want '" + lb + "'";
  }
}

EvalResult one_process(const EvalRun& run = {}) {
  omp_set_num_threads(1);
  const auto model = Model::load(model_path());
  return evaluate_policies(*model, documents(), policy_set(), options(), {}, run);
}

struct RankResult {
  std::optional<EvalResult> result;
  std::string error;
  bool usage_error = false;
};

// evaluate_policies on `ranks` threads, each with its own model; run_of(rank) gives each
// rank's EvalRun (comm is set here).
std::vector<RankResult> run_ranks(int ranks, const std::function<EvalRun(int)>& run_of = {}) {
  Hub hub(ranks);
  std::vector<RankResult> results(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      omp_set_num_threads(1);
      ThreadComm comm(hub, r);
      EvalRun run = run_of ? run_of(r) : EvalRun{};
      run.comm = &comm;
      try {
        const auto model = Model::load(model_path());
        results[size_t(r)].result = evaluate_policies(*model, documents(), policy_set(), options(), {}, run);
      } catch (const UsageError& e) {
        results[size_t(r)].error = e.what();
        results[size_t(r)].usage_error = true;
      } catch (const std::exception& e) {
        results[size_t(r)].error = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return results;
}

TEST(EvaluateSharded, EveryRankCountGivesTheOneProcessReport) {
  const EvalResult one = one_process();
  const std::string want = comparable(one);
  EXPECT_FALSE(to_json(one).contains("ranks"));  // an ordinary run's report has no rank fields
  ASSERT_EQ(one.policies.size(), 6u);
  int64_t bytes_two = 0;
  for (int ranks : {1, 2, 3, 4, 9}) {  // 9 ranks: more than the 7 documents
    SCOPED_TRACE("ranks " + std::to_string(ranks));
    const std::vector<RankResult> rs = run_ranks(ranks);
    ASSERT_TRUE(rs[0].result.has_value()) << rs[0].error;
    EXPECT_EQ(first_difference(comparable(*rs[0].result), want), "");
    const json j = to_json(*rs[0].result);
    EXPECT_EQ(j.at("ranks"), ranks);
    EXPECT_GT(j.at("bytes_merged").get<int64_t>(), 0);
    if (ranks == 2) bytes_two = j.at("bytes_merged").get<int64_t>();
    // The volume is the documents' outcomes: the same for any rank count.
    if (ranks > 2) {
      EXPECT_EQ(j.at("bytes_merged").get<int64_t>(), bytes_two);
    }
    // The other ranks return an empty result and no error.
    for (int r = 1; r < ranks; ++r) {
      EXPECT_EQ(rs[size_t(r)].error, "");
      ASSERT_TRUE(rs[size_t(r)].result.has_value());
      EXPECT_TRUE(rs[size_t(r)].result->policies.empty());
    }
  }
}

TEST(EvaluateSharded, TheThreadCountDoesNotChangeTheReport) {
  // The bundled model (4 layers) on documents long enough for the attention core to use
  // several threads: the oracle's rows then arrive from several threads in a schedule that
  // varies from run to run, and the tail masses need all 53 bits (unlike the tiny model's).
  const auto model = Model::load(std::string(ATTNSPARSE_SOURCE_DIR) + "/models/kjv-llama.gguf");
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(model->config().n_vocab) - 1);
  std::vector<EvalDocument> docs;
  for (int n : {300, 280, 260}) {
    EvalDocument d;
    d.id = "long" + std::to_string(n);
    for (int i = 0; i < n; ++i) d.tokens.push_back(tok(rng));
    docs.push_back(std::move(d));
  }
  EvalOptions o = options();
  o.chunk = 512;
  o.decode_tokens = 0;
  std::vector<EvalPolicy> pols;
  for (const char* t : {"window=8", "topk=16"})
    for (auto& p : parse_eval_policies(t)) pols.push_back(std::move(p));
  std::vector<std::string> reports;
  for (int threads : {1, 2, 3, 2}) {
    omp_set_num_threads(threads);
    reports.push_back(comparable(evaluate_policies(*model, docs, pols, o)));
  }
  omp_set_num_threads(1);
  for (size_t k = 1; k < reports.size(); ++k) EXPECT_EQ(first_difference(reports[k], reports[0]), "") << k;
}

TEST(EvaluateSharded, AFailingDocumentStopsEveryRankWithTheOneProcessError) {
  // Documents 4 and 5 fail (ranks 1 and 2 of the second round under 3 ranks; rank 1 and 0
  // under 2 ranks): every rank stops with document 4's error, as one process does.
  const auto fail_on = [](size_t doc) {
    if (doc == 4 || doc == 5) fail_usage("document {} failed on purpose", doc);
  };
  EvalRun single;
  single.before_document = fail_on;
  try {
    one_process(single);
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "document 4 failed on purpose");
  }
  for (int ranks : {2, 3}) {
    SCOPED_TRACE("ranks " + std::to_string(ranks));
    const fs::path cp = work_dir() / ("fail" + std::to_string(ranks) + ".cbor");
    fs::remove(cp);
    const std::vector<RankResult> rs = run_ranks(ranks, [&](int r) {
      EvalRun run;
      run.before_document = fail_on;
      if (r == 0) run.checkpoint_path = cp.string();
      return run;
    });
    for (const RankResult& r : rs) {
      EXPECT_FALSE(r.result.has_value());
      EXPECT_EQ(r.error, "document 4 failed on purpose");
      EXPECT_TRUE(r.usage_error);  // the error's kind travels too
    }
    // The checkpoint holds the rounds before the failure: 4 documents under 2 ranks, 3 under 3.
    ASSERT_TRUE(fs::exists(cp));
    const std::string raw = [&] {
      std::ifstream in(cp, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    const json c = json::from_cbor(std::vector<uint8_t>(raw.begin(), raw.end()));
    EXPECT_EQ(c.at("next_doc"), ranks == 2 ? 4 : 3);
  }
}

TEST(EvaluateSharded, AJobKilledUnderThreeRanksResumesUnderTwoAndUnderOne) {
  const std::string want = comparable(one_process());
  const std::string cp = (work_dir() / "resume.cbor").string();
  fs::remove(cp);
  struct Killed : std::runtime_error {
    Killed() : std::runtime_error("killed") {}
  };
  // 3 ranks: killed after the first round (3 documents done).
  std::vector<RankResult> rs = run_ranks(3, [&](int r) {
    EvalRun run;
    if (r == 0) {
      run.checkpoint_path = cp;
      run.after_checkpoint = [](size_t done) {
        if (done == 3) throw Killed();
      };
    }
    return run;
  });
  for (const RankResult& r : rs) EXPECT_EQ(r.error, "killed");
  // 2 ranks resume at document 3 and are killed after the next round (5 done).
  std::vector<std::string> notices;
  rs = run_ranks(2, [&](int r) {
    EvalRun run;
    run.resume = true;
    if (r == 0) {
      run.checkpoint_path = cp;
      run.notice = [&notices](const std::string& s) { notices.push_back(s); };
      run.after_checkpoint = [](size_t done) {
        if (done == 5) throw Killed();
      };
    }
    return run;
  });
  for (const RankResult& r : rs) EXPECT_EQ(r.error, "killed");
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0], "resumed after 3 documents from the checkpoint");
  // One process finishes from document 5.
  EvalRun last;
  last.resume = true;
  last.checkpoint_path = cp;
  std::vector<size_t> done;
  last.after_checkpoint = [&done](size_t d) { done.push_back(d); };
  const EvalResult r = one_process(last);
  EXPECT_EQ(done, (std::vector<size_t>{6, 7}));
  EXPECT_EQ(r.documents_resumed, 5u);
  EXPECT_EQ(to_json(r).at("documents_resumed"), 5);
  EXPECT_EQ(first_difference(comparable(r), want), "");
}

TEST(EvaluateSharded, ACheckpointOfAnotherRunIsRefused) {
  const std::string cp = (work_dir() / "other.cbor").string();
  fs::remove(cp);
  EvalRun first;
  first.checkpoint_path = cp;
  first.after_checkpoint = [](size_t done) {
    if (done == 2) throw std::runtime_error("killed");
  };
  EXPECT_THROW(one_process(first), std::runtime_error);
  // The same documents with another chunk size: not the same run.
  omp_set_num_threads(1);
  const auto model = Model::load(model_path());
  EvalOptions other = options();
  other.chunk = 17;
  EvalRun resume;
  resume.resume = true;
  resume.checkpoint_path = cp;
  try {
    evaluate_policies(*model, documents(), policy_set(), other, {}, resume);
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(cp + ": the checkpoint belongs to a run with a different"), std::string::npos)
        << e.what();
  }
  // A damaged file is named too.
  {
    std::ofstream(cp, std::ios::binary | std::ios::trunc) << "not cbor";
  }
  try {
    evaluate_policies(*model, documents(), policy_set(), options(), {}, resume);
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(cp + ": damaged checkpoint", 0), 0u) << e.what();
  }
}

TEST(EvaluateSharded, RanksWithDifferentDocumentsStopWithOneError) {
  // Rank 1 reads one token differently: every rank stops before any forward pass.
  Hub hub(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      omp_set_num_threads(1);
      ThreadComm comm(hub, r);
      EvalRun run;
      run.comm = &comm;
      run.before_document = [](size_t) { ADD_FAILURE() << "a document was evaluated"; };
      std::vector<EvalDocument> docs = documents();
      if (r == 1) docs[3].tokens[5] += 1;
      try {
        const auto model = Model::load(model_path());
        evaluate_policies(*model, docs, policy_set(), options(), {}, run);
      } catch (const UsageError& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], errors[1]);
  EXPECT_NE(errors[0].find("rank 1 has a different run than rank 0"), std::string::npos) << errors[0];
}

}  // namespace
}  // namespace attnsparse::policies
