// Corpus readers against hand-written files of every format, the LongBench sample in
// ../shared/reference, and hostile files that must fail with "<file>:<line>: <problem>".
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "analysis/shared_data.h"
#include "core/error.h"
#include "io/corpus.h"

namespace fs = std::filesystem;
using attnsparse::Document;
using attnsparse::FormatError;
using attnsparse::read_documents;

namespace {

class CorpusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("attnsparse_corpus_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }

  // The message of the FormatError that reading `paths` throws ("" if none).
  static std::string error_of(const std::vector<std::string>& paths) {
    try {
      read_documents(paths);
    } catch (const FormatError& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
};

TEST_F(CorpusTest, PlainTextIsOneDocumentNamedAfterTheFile) {
  const std::string p = write("genesis.txt", "In the beginning\nGod created.\n");
  const auto docs = read_documents({p});
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].text, "In the beginning\nGod created.\n");
  EXPECT_EQ(docs[0].id, p);
  EXPECT_EQ(docs[0].source, p);
  EXPECT_EQ(docs[0].dataset, "genesis");
  EXPECT_FALSE(docs[0].tokens.has_value());
}

TEST_F(CorpusTest, ByteOrderMarkIsDropped) {
  const auto docs = read_documents({write("bom.txt", "\xEF\xBB\xBFhello")});
  EXPECT_EQ(docs[0].text, "hello");
}

TEST_F(CorpusTest, TokenFileIsUsedAsIs) {
  const auto docs = read_documents({write("ids.tok", "1 15043\n\t29871  2\n")});
  ASSERT_EQ(docs.size(), 1u);
  ASSERT_TRUE(docs[0].tokens.has_value());
  EXPECT_EQ(*docs[0].tokens, (std::vector<int32_t>{1, 15043, 29871, 2}));
  EXPECT_EQ(attnsparse::read_token_file(dir_ / "ids.tok"), *docs[0].tokens);
}

TEST_F(CorpusTest, LongBenchSampleFromReference) {
  const std::string path = attnsparse::testing_support::reference_dir() + "/longbench/sample.jsonl";
  REQUIRE_SHARED_FILE(path);
  const auto docs = read_documents({path});
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].id, "kjv-genesis-0001");
  EXPECT_EQ(docs[0].dataset, "narrativeqa");
  EXPECT_EQ(docs[1].id, "kjv-revelation-0002");
  EXPECT_EQ(docs[1].dataset, "qasper");
  EXPECT_EQ(docs[2].dataset, "gov_report");
  // Context first, then the question.
  EXPECT_TRUE(docs[0].text.starts_with("Genesis 1\nIn the beginning God created the heaven and the earth."));
  EXPECT_TRUE(docs[0].text.ends_with("\n\nWhat did God call the light?"));
  EXPECT_EQ(docs[0].text.size(), 57796u + 2 + std::string("What did God call the light?").size());
  EXPECT_TRUE(docs[2].text.ends_with("\n\nSummarize the passage."));
}

TEST_F(CorpusTest, LongBenchV1AndRulerAreDetectedPerRecord) {
  const std::string p = write(
      "mixed.jsonl",
      "{\"input\": \"Q1?\", \"context\": \"C1\", \"answers\": [\"a\"], \"length\": 1, "
      "\"dataset\": \"hotpotqa\", \"language\": \"en\", \"all_classes\": null, \"_id\": \"x1\"}\n"
      "\r\n"
      "{\"index\": 7, \"input\": \"Find the needle. ...\", \"outputs\": [\"42\"], \"length\": 5}\r\n"
      "{\"context\": \"C3\", \"input\": \"\"}");
  const auto docs = read_documents({p});
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].text, "C1\n\nQ1?");
  EXPECT_EQ(docs[0].id, "x1");
  EXPECT_EQ(docs[0].dataset, "hotpotqa");
  EXPECT_EQ(docs[1].text, "Find the needle. ...");
  EXPECT_EQ(docs[1].id, p + ":7");
  EXPECT_EQ(docs[1].dataset, "mixed");
  EXPECT_EQ(docs[2].text, "C3");            // empty question: context only
  EXPECT_EQ(docs[2].id, p + ":4");          // no _id: file and line
  EXPECT_EQ(docs[2].dataset, "mixed");
}

TEST_F(CorpusTest, RulerTaskFolderNamesTheDataset) {
  const std::string p = write("niah_single_1/validation.jsonl",
                              "{\"index\": 0, \"input\": \"text\", \"outputs\": [\"1\"]}\n");
  EXPECT_EQ(read_documents({p})[0].dataset, "niah_single_1");
}

TEST_F(CorpusTest, LongBenchV2Array) {
  const std::string p = write("v2.json",
                              "[\n"
                              "  {\"_id\": \"a\", \"domain\": \"Single-Document QA\", \"question\": \"Who?\",\n"
                              "   \"choice_A\": \"x\", \"choice_B\": \"y\", \"choice_C\": \"z\", \"choice_D\": \"w\",\n"
                              "   \"answer\": \"A\", \"context\": \"Long text.\"},\n"
                              "  {\"question\": \"Why?\", \"context\": \"Other [text] {with} \\\"braces\\\"\"}\n"
                              "]\n");
  const auto docs = read_documents({p});
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "Long text.\n\nWho?\n(A) x\n(B) y\n(C) z\n(D) w");
  EXPECT_EQ(docs[0].id, "a");
  EXPECT_EQ(docs[0].dataset, "Single-Document QA");
  EXPECT_EQ(docs[1].text, "Other [text] {with} \"braces\"\n\nWhy?");
  EXPECT_EQ(docs[1].id, p + ":1");
  EXPECT_EQ(docs[1].dataset, "v2");
}

TEST_F(CorpusTest, DirectoriesAreRecursiveAndSorted) {
  write("b/2.txt", "two");
  write("a.txt", "one");
  write("b/c/3.tok", "3 4");
  write("b/notes.md", "ignored");
  write(".hidden/x.txt", "ignored");
  write("b/.swap.txt", "ignored");
  const auto docs = read_documents({dir_.string()});
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].text, "one");
  EXPECT_EQ(docs[1].text, "two");
  EXPECT_EQ(*docs[2].tokens, (std::vector<int32_t>{3, 4}));
  // Paths keep their order on the command line.
  const auto two = read_documents({(dir_ / "b/2.txt").string(), (dir_ / "a.txt").string()});
  EXPECT_EQ(two[0].text, "two");
  EXPECT_EQ(two[1].text, "one");
}

TEST(TruncateMiddle, KeepsHeadAndTailLikeLongBench) {
  const std::vector<int32_t> t = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(attnsparse::truncate_middle(t, 10), t);
  EXPECT_EQ(attnsparse::truncate_middle(t, 20), t);
  EXPECT_EQ(attnsparse::truncate_middle(t, 4), (std::vector<int32_t>{0, 1, 8, 9}));
  EXPECT_EQ(attnsparse::truncate_middle(t, 5), (std::vector<int32_t>{0, 1, 7, 8, 9}));
  EXPECT_EQ(attnsparse::truncate_middle(t, 1), (std::vector<int32_t>{9}));
  EXPECT_THROW(attnsparse::truncate_middle(t, 0), attnsparse::UsageError);
}

// ---- Hostile input: one clear error naming the file (and line), never a crash. ----

TEST_F(CorpusTest, MalformedJsonlNamesFileAndLine) {
  const std::string good = "{\"context\": \"c\", \"input\": \"q\"}\n";
  const std::string p = write("bad.jsonl", good + good + "{\"context\": \"c\", \"input\": \n" + good);
  const std::string e = error_of({p});
  EXPECT_TRUE(e.starts_with(p + ":3: invalid JSON")) << e;
}

TEST_F(CorpusTest, HostileJsonlRecords) {
  struct Case {
    std::string line, problem;
  };
  const std::vector<Case> cases = {
      {"[1, 2]", "record is array (expected a JSON object)"},
      {"\"just a string\"", "record is string"},
      {"{\"context\": 5, \"input\": \"q\"}", "field 'context' is number (expected a string)"},
      {"{\"context\": \"c\", \"input\": [\"q\"]}", "field 'input' is array"},
      {"{\"input\": \"q\"}", "neither LongBench v1 fields"},
      {"{\"input\": 3, \"outputs\": []}", "field 'input' is number"},
      {"{\"context\": \"\", \"input\": \"\"}", "empty document"},
      {"{\"context\": \"\xff\xfe\", \"input\": \"q\"}", "invalid JSON"},
      {"\x01\x02\x03\x04binary", "invalid JSON"},
      {"{\"context\": \"c\"} trailing", "invalid JSON"},
      {std::string(200000, '['), "invalid JSON"},  // deep nesting, truncated
  };
  for (const Case& c : cases) {
    const std::string p = write("h.jsonl", "{\"context\": \"ok\"}\n" + c.line + "\n");
    const std::string e = error_of({p});
    EXPECT_TRUE(e.starts_with(p + ":2: ")) << c.line.substr(0, 40) << " -> " << e;
    EXPECT_NE(e.find(c.problem), std::string::npos) << c.line.substr(0, 40) << " -> " << e;
    // One printable line: nothing of the hostile bytes is echoed raw.
    for (char ch : e) EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << "control byte in: " << e;
  }
}

TEST_F(CorpusTest, HostileWholeFiles) {
  struct Case {
    std::string name, content, problem;
  };
  const std::vector<Case> cases = {
      {"empty.jsonl", "", "no records"},
      {"blank.jsonl", "\n  \n\r\n", "no records"},
      {"empty.txt", "", "empty document"},
      {"spaces.txt", " \n\t\n", "empty document"},
      {"empty.tok", "", "no token ids"},
      {"neg.tok", "1 -2 3", "'-2' (token 1) is not a token id"},
      {"word.tok", "1 2 three", "'three' (token 2) is not a token id"},
      {"huge.tok", "1 99999999999", "not a token id"},
      {"frac.tok", "1.5", "not a token id"},
      {"obj.json", "{\"context\": \"c\", \"question\": \"q\"}", "expected a JSON array"},
      {"empty.json", "[]", "no records"},
      {"trunc.json", "[{\"context\": \"c\", \"question\":", "invalid JSON"},
      {"data.csv", "a,b", "unknown data format '.csv'"},
  };
  for (const Case& c : cases) {
    const std::string p = write(c.name, c.content);
    const std::string e = error_of({p});
    EXPECT_TRUE(e.starts_with(p + ":")) << c.name << " -> " << e;
    EXPECT_NE(e.find(c.problem), std::string::npos) << c.name << " -> " << e;
  }
}

TEST_F(CorpusTest, InvalidUtf8TextNamesTheLine) {
  for (const std::string bad : {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80"}) {
    const std::string p = write("bad.txt", "line one\nline two\nline " + bad + " three\n");
    const std::string e = error_of({p});
    EXPECT_TRUE(e.starts_with(p + ":3: invalid UTF-8")) << e;
  }
  // Valid multi-byte text passes.
  const std::string ok = write("ok.txt", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(read_documents({ok})[0].text, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST_F(CorpusTest, LongBenchV2ErrorsNameTheRecordLine) {
  const std::string p = write("v2.json",
                              "[\n"
                              "  {\"question\": \"q\", \"context\": \"c\"},\n"
                              "  {\"question\": \"q\",\n"
                              "   \"context\": 17}\n"
                              "]\n");
  EXPECT_TRUE(error_of({p}).starts_with(p + ":3: field 'context' is number")) << error_of({p});
  const std::string q = write("v2b.json", "[{\"question\": \"q\", \"context\": \"c\"},\n 5]");
  EXPECT_TRUE(error_of({q}).starts_with(q + ":2: record 1 is number")) << error_of({q});
  const std::string r = write("v2c.json", "[{\"context\": \"c\"}]");
  EXPECT_TRUE(error_of({r}).starts_with(r + ":1: LongBench v2 record has no field 'question'"))
      << error_of({r});
  const std::string s = write("v2d.json", "[\n{\"context\": \"c\",\n \"question\": \"q\",,}]");
  EXPECT_TRUE(error_of({s}).starts_with(s + ":3: invalid JSON")) << error_of({s});
}

// A repeated key was read silently (the last `context` won); docs/security.md promises an
// error, as for config.json and tokenizer.json.
TEST_F(CorpusTest, DuplicateKeysAreRefusedWithTheFileAndLine) {
  const std::string p = write("dup.jsonl", "{\"context\": \"a\"}\n{\"context\": \"a b\", \"input\": \"q\", \"context\": \"b\"}\n");
  EXPECT_TRUE(error_of({p}).starts_with(p + ":2: duplicate key 'context'")) << error_of({p});
  const std::string q = write("dup.json",
                              "[{\"context\": \"x\", \"question\": \"q\", \"choice_A\": \"a\", \"choice_B\": \"b\", "
                              "\"choice_C\": \"c\", \"choice_D\": \"d\", \"question\": \"r\"}]");
  EXPECT_TRUE(error_of({q}).starts_with(q + ": duplicate key 'question'")) << error_of({q});
}

// Found by fuzz_corpus: a number beyond double range threw nlohmann's out_of_range, which
// only the catch-all in main reported (without the file). And special files are refused.
TEST_F(CorpusTest, NumberOverflowAndSpecialFilesAreFormatErrors) {
  const std::string p = write("big.jsonl", "{\"context\": \"c\"}\n888888888888e7777777777\n");
  EXPECT_TRUE(error_of({p}).starts_with(p + ":2: invalid JSON (number overflow parsing")) << error_of({p});
  const std::string q = write("big.json", "[{\"context\": \"c\", \"question\": 1e999}]");
  EXPECT_TRUE(error_of({q}).starts_with(q + ": invalid JSON (number overflow parsing")) << error_of({q});
  ASSERT_EQ(::mkfifo((dir_ / "pipe.jsonl").c_str(), 0600), 0);
  EXPECT_NE(error_of({(dir_ / "pipe.jsonl").string()}).find("pipe.jsonl: is a FIFO (named pipe)"), std::string::npos);
  fs::create_symlink("/dev/zero", dir_ / "zero.tok");
  EXPECT_NE(error_of({(dir_ / "zero.tok").string()}).find("zero.tok: is a character device"), std::string::npos);
  fs::create_symlink(dir_ / "b.txt", dir_ / "a.txt");
  fs::create_symlink(dir_ / "a.txt", dir_ / "b.txt");
  EXPECT_NE(error_of({(dir_ / "a.txt").string()}).find("a.txt: cannot open: Too many levels of symbolic links"),
            std::string::npos) << error_of({(dir_ / "a.txt").string()});
}

TEST_F(CorpusTest, MissingPathsAndEmptyDirectories) {
  const std::string missing = (dir_ / "nope.txt").string();
  EXPECT_EQ(error_of({missing}), missing + ": no such file or directory");
  fs::create_directories(dir_ / "empty");
  write("empty/readme.md", "x");
  const std::string e = error_of({(dir_ / "empty").string()});
  EXPECT_NE(e.find("holds no .txt, .tok, .jsonl or .json files"), std::string::npos) << e;
  EXPECT_THROW(read_documents({}), attnsparse::UsageError);
  // A directory named like a data file.
  fs::create_directories(dir_ / "dir.tok");
  write("dir.tok/a.txt", "x");
  EXPECT_EQ(read_documents({(dir_ / "dir.tok").string()}).size(), 1u);
}

TEST_F(CorpusTest, ErrorInOneFileOfADirectoryNamesThatFile) {
  write("a.txt", "fine");
  const std::string bad = write("sub/b.jsonl", "{\"context\": \"c\"}\nnot json\n");
  const std::string e = error_of({dir_.string()});
  EXPECT_TRUE(e.starts_with(bad + ":2: invalid JSON")) << e;
}

}  // namespace
