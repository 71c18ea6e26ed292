// Hostile policy inputs (docs/security.md): the JSON map file goes through the checked
// reader of every input file (regular files of bounded size only, duplicate keys refused,
// file content escaped in messages), and a sweep whose step is far below its values'
// resolution is refused instead of running for ~10^15 rounds. Cases that used to block or
// spin run in a child process with an alarm, so a regression fails instead of hanging.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "core/error.h"
#include "policies/policy_map.h"
#include "policies/sweep.h"

namespace attnsparse::policies {
namespace {

namespace fs = std::filesystem;

class Tmp {
 public:
  Tmp() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("attnsparse-policy-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~Tmp() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& n) const { return (path_ / n).string(); }

 private:
  fs::path path_;
};

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Runs f in a child process killed by SIGALRM after `seconds`; the child exits 0 when f
// returns true. Gives "ok", "hung" or "failed".
std::string in_child(int seconds, const std::function<bool()>& f) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(static_cast<unsigned>(seconds));
    bool ok = false;
    try {
      ok = f();
    } catch (...) {
    }
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) return "hung";
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed";
}

bool has(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return true;
  std::fprintf(stderr, "'%s' not in: %s\n", needle.c_str(), haystack.c_str());
  return false;
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "'" << (needle) << "' not in: " << (haystack)

// It was read with std::ifstream: a FIFO blocked in open() (and then waited for the end
// of the data), a device was parsed as JSON, duplicate keys kept the last value.
TEST(PolicyMapHostile, JsonFileMustBeARegularFile) {
  Tmp t;
  const std::string fifo = t.file("fifo.json");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // A writer holds the FIFO open with a valid map in it, so a reader that opened it would
  // read the map and then wait forever for the end of the file.
  const int writer = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(writer, 0);
  const std::string map = R"({"default": "dense"})";
  ASSERT_EQ(::write(writer, map.data(), map.size()), static_cast<ssize_t>(map.size()));
  for (const std::string& arg : {fifo, "@" + fifo})
    EXPECT_EQ(in_child(20, [&] { return has(error_of([&] { PolicyMap::parse(arg); }), "fifo.json: is a FIFO"); }),
              "ok")
        << arg;
  ::close(writer);

  const std::string zero = t.file("zero.json");
  fs::create_symlink("/dev/zero", zero);
  EXPECT_EQ(in_child(20, [&] { return has(error_of([&] { PolicyMap::parse(zero); }), "is a character device"); }),
            "ok");
  fs::create_directories(t.file("dir.json"));
  EXPECT_HAS(error_of([&] { PolicyMap::parse("@" + t.file("dir.json")); }), "dir.json: is a directory");
  EXPECT_HAS(error_of([&] { PolicyMap::parse(t.file("missing.json")); }), "missing.json: cannot open: no such file");
}

TEST(PolicyMapHostile, JsonFileIsCheckedLikeEveryJsonInput) {
  Tmp t;
  const std::string path = t.file("map.json");
  // Two defaults: one would silently win.
  write(path, R"({"default": "dense", "default": "topk=4"})");
  EXPECT_HAS(error_of([&] { PolicyMap::parse(path); }), "map.json: duplicate key 'default' at the top level");
  write(path, R"({"rules": [{"layers": "0", "policy": "dense", "policy": "topk=4"}]})");
  EXPECT_HAS(error_of([&] { PolicyMap::parse(path); }), "duplicate key 'policy'");
  write(path, R"({"default": "dense",)");
  EXPECT_HAS(error_of([&] { PolicyMap::parse(path); }), "map.json: invalid JSON");
  // A valid file still reads as before.
  write(path, R"({"default": "window=32", "rules": [{"layers": [1, 2], "heads": "1-2", "policy": "topk=4"}]})");
  const PolicyMap m = PolicyMap::parse(path);
  EXPECT_EQ(m.at(2, 1).kind, Kind::TopK);
  EXPECT_EQ(m.at(0, 1).kind, Kind::Window);
}

// Text from the file (field names, selectors, policy specs) reaches the message escaped:
// one line, no terminal escape sequences.
TEST(PolicyMapHostile, FileContentInMessagesIsEscaped) {
  Tmp t;
  const std::string path = t.file("map.json");
  const struct {
    const char* json;
    const char* needle;
  } cases[] = {
      {R"({"rules": [{"layers": "0", "policy": "window=\u001b[2J"}]})", "window=\\x1b[2J"},
      {R"({"rules": [{"layers": "0\n1", "policy": "dense"}]})", "0\\n1"},
      {R"({"bad\u001b]0;x\u0007": 1})", "unknown field 'bad\\x1b]0;x\\x07'"},
      {R"({"rules": [{"layerz\r": "0", "policy": "dense"}]})", "unknown rule field 'layerz\\r'"},
      {R"({"default": "topk=1\u009b31m"})", "\\xc2\\x9b31m"},
  };
  for (const auto& c : cases) {
    write(path, c.json);
    const std::string m = error_of([&] { PolicyMap::parse(path); });
    EXPECT_HAS(m, c.needle);
    for (unsigned char ch : m) EXPECT_TRUE(ch >= 0x20 && ch != 0x7f) << "raw control byte in: " << m;
    EXPECT_EQ(m.find("\xc2\x9b"), std::string::npos) << m;
  }
}

// A range step far below the resolution of its values produced nothing but duplicates
// for ~10^15 rounds (found by fuzz_policy_spec).
TEST(PolicySweepHostile, TinyStepsAreRefusedAtOnce) {
  const char* specs[] = {
      "window=1..2*1.000000000000001",
      "topk=1..1000000000000000+0.000000000000001",
      "topp=0.5..0.9+0.000000000000001",
  };
  for (const std::string spec : specs) {
    EXPECT_EQ(in_child(20,
                       [&] {
                         return has(error_of([&] { expand_sweep(spec); }),
                                    "takes more than 4096 steps (the step is too small for its values)") &&
                                has(error_of([&] { expand_sweep(spec); }), "policy '" + spec + "'");
                       }),
              "ok")
        << spec;
  }
  // Ranges that drop many rounded duplicates but stay within the steps still expand.
  EXPECT_EQ(expand_sweep("window=1..30*1.05").back().text, "window=29");  // 1.05^69 = 29.03
  EXPECT_EQ(expand_sweep("topk=1..64+0.25").size(), 64u);
}

}  // namespace
}  // namespace attnsparse::policies
