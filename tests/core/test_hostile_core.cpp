// Checked integers, message quoting and the safe file helpers of src/core: the shared
// defences against hostile files and options (see docs/security.md).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/checked.h"
#include "core/error.h"
#include "core/files.h"
#include "core/finite.h"
#include "core/mapped_file.h"
#include "core/text.h"

namespace attnsparse {
namespace {

namespace fs = std::filesystem;

class Tmp {
 public:
  Tmp() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("attnsparse-core-" + std::to_string(rd()) + std::to_string(rd()));
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

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "'" << (needle) << "' not in: " << (haystack)

TEST(Checked, ArithmeticOverflowIsDetected) {
  EXPECT_EQ(mul_checked(1 << 20, 1 << 20), int64_t{1} << 40);
  EXPECT_FALSE(mul_checked(INT64_MAX / 2 + 1, 2));
  EXPECT_FALSE(mul_checked(int64_t{1} << 62, 4611686018427387904LL));  // the 4.6e18 head count
  EXPECT_EQ(mul_checked(-3, 5), -15);
  EXPECT_FALSE(add_checked(INT64_MAX, 1));
  EXPECT_EQ(add_checked(INT64_MAX - 1, 1), INT64_MAX);
  EXPECT_EQ(mul_or_fail({4, 8, 16}, "size"), 512);
  EXPECT_HAS(error_of([] { mul_or_fail({int64_t{1} << 40, int64_t{1} << 40}, "kv cache"); }),
             "kv cache: 1099511627776 x 1099511627776 overflows");
}

TEST(Checked, IntegerParsingIsExactAndBounded) {
  EXPECT_EQ(parse_int64("0"), 0);
  EXPECT_EQ(parse_int64("-17"), -17);
  EXPECT_EQ(parse_int64("+5"), 5);
  EXPECT_EQ(parse_int64("9223372036854775807"), INT64_MAX);
  // Read as a negative number by the old stoll/strtoll paths: must be refused.
  for (const char* bad : {"9999999999999999999", "9223372036854775808", "", " 5", "5 ", "1e3", "0x10", "12x",
                          "++1", "+-1", "-"})
    EXPECT_FALSE(parse_int64(bad)) << bad;
  EXPECT_EQ(parse_int_in_range("1024", 0, 1024, "--threads"), 1024);
  EXPECT_HAS(error_of([] { parse_int_in_range("1025", 0, 1024, "--threads"); }),
             "--threads: '1025' is not an integer in [0, 1024]");
  EXPECT_HAS(error_of([] { require_in_range(int64_t{1} << 31, 1, 4096, "m.gguf", "the layer count"); }),
             "m.gguf: the layer count is 2147483648, outside [1, 4096]");
}

TEST(Printable, ControlCharactersAndBadUtf8AreEscaped) {
  EXPECT_EQ(printable("plain key.name"), "plain key.name");
  EXPECT_EQ(printable("a\nb\tc\rd"), "a\\nb\\tc\\rd");
  EXPECT_EQ(printable("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
  EXPECT_EQ(printable(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(printable("\x7f"), "\\x7f");
  EXPECT_EQ(printable("caf\xC3\xA9 \xE2\x96\x81"), "caf\xC3\xA9 \xE2\x96\x81");  // valid UTF-8 kept
  EXPECT_EQ(printable("\xC2\x9B" "2J"), "\\xc2\\x9b2J");                          // C1 CSI
  EXPECT_EQ(printable("\xFF\xC3"), "\\xff\\xc3");                                 // invalid / truncated
  EXPECT_EQ(printable("abcdef", 3), "abc...");
}

TEST(Finite, FindsTheFirstNaNOrInf) {
  std::vector<float> x(10000, 1.f);
  EXPECT_EQ(first_non_finite(x.data(), int64_t(x.size())), -1);
  x[7777] = std::nanf("");
  x[9000] = INFINITY;
  EXPECT_EQ(first_non_finite(x.data(), int64_t(x.size())), 7777);
  x[7777] = 3e38f;  // large but finite
  EXPECT_EQ(first_non_finite(x.data(), int64_t(x.size())), 9000);
  x[9000] = -INFINITY;
  EXPECT_FALSE(all_finite(x.data(), int64_t(x.size())));
  EXPECT_TRUE(all_finite(x.data(), 9000));
}

// `report ep.json -o ep.json`, `logits M --tokens ids.txt --out ids.txt` and `analyze
// --dump-rows` naming a data file replaced the input with the output.
TEST(OutputFiles, AnOutputThatIsAnInputIsRefused) {
  Tmp t;
  write(t.file("in.json"), "{}");
  write(t.file("other.json"), "{}");
  fs::create_symlink(t.file("in.json"), t.file("link.json"));
  fs::create_hard_link(t.file("in.json"), t.file("hard.json"));
  for (const char* out : {"in.json", "link.json", "hard.json"})
    EXPECT_HAS(error_of([&] { refuse_output_over_inputs(t.file(out), {t.file("x"), t.file("in.json")}, "--out"); }),
               "is the input file");
  EXPECT_HAS(error_of([&] { refuse_output_over_inputs(t.file("in.json"), {t.file("in.json")}, "-o"); }),
             "-o " + t.file("in.json") + " is the input file " + t.file("in.json") + "; choose another output");
  // Another file, a new file, and inputs that do not exist are fine.
  EXPECT_NO_THROW(refuse_output_over_inputs(t.file("other.json"), {t.file("in.json")}, "--out"));
  EXPECT_NO_THROW(refuse_output_over_inputs(t.file("new.json"), {t.file("in.json")}, "--out"));
  EXPECT_NO_THROW(refuse_output_over_inputs(t.file("in.json"), {t.file("none"), ""}, "--out"));
}

TEST(InputFiles, OnlyRegularFilesAreRead) {
  Tmp t;
  write(t.file("ok.txt"), "hello");
  EXPECT_EQ(read_input_file(t.file("ok.txt")), "hello");
  // A FIFO would block open() forever; /dev/zero would be read forever.
  ASSERT_EQ(::mkfifo(t.file("fifo").c_str(), 0600), 0);
  EXPECT_HAS(error_of([&] { read_input_file(t.file("fifo")); }), "fifo: is a FIFO (named pipe), expected a regular file");
  EXPECT_HAS(error_of([&] { MappedFile m(t.file("fifo")); }), "is a FIFO");
  fs::create_symlink("/dev/zero", t.file("zero.tok"));
  EXPECT_HAS(error_of([&] { read_input_file(t.file("zero.tok")); }), "zero.tok: is a character device");
  EXPECT_HAS(error_of([&] { MappedFile m("/dev/zero"); }), "is a character device");
  fs::create_symlink(t.file("loop_b"), t.file("loop_a"));
  fs::create_symlink(t.file("loop_a"), t.file("loop_b"));
  EXPECT_HAS(error_of([&] { read_input_file(t.file("loop_a")); }), "symlink loop");
  EXPECT_HAS(error_of([&] { read_input_file(t.file("none")); }), "none: cannot open: no such file or directory");
  fs::create_directory(t.file("dir"));
  EXPECT_HAS(error_of([&] { read_input_file(t.file("dir")); }), "dir: is a directory");
  EXPECT_HAS(error_of([&] { read_input_file(t.file("ok.txt"), 4); }),
             "ok.txt: is 5 bytes, more than the 4 bytes this reader accepts");
  EXPECT_NO_THROW(require_input_file(t.file("ok.txt")));
}

TEST(OutputFiles, NeverReplaceANonRegularFile) {
  Tmp t;
  struct stat before {};
  ASSERT_EQ(::stat("/dev/null", &before), 0);
  EXPECT_HAS(error_of([] { write_output_file("/dev/null", "x", 1); }),
             "/dev/null: is a character device; outputs are written only to regular files");
  struct stat after {};
  ASSERT_EQ(::stat("/dev/null", &after), 0);
  EXPECT_TRUE(S_ISCHR(after.st_mode));
  EXPECT_EQ(before.st_rdev, after.st_rdev);
  ASSERT_EQ(::mkfifo(t.file("fifo").c_str(), 0600), 0);
  EXPECT_HAS(error_of([&] { write_output_file(t.file("fifo"), "x", 1); }), "is a FIFO");
  fs::create_directory(t.file("d"));
  EXPECT_HAS(error_of([&] { write_output_file(t.file("d"), "x", 1); }), "is a directory");
  EXPECT_HAS(error_of([&] { write_output_file(t.file("missing/out.bin"), "x", 1); }), "does not exist");
  // A symlink to a device: the device is refused, the link stays.
  fs::create_symlink("/dev/null", t.file("to_null"));
  EXPECT_HAS(error_of([&] { write_output_file(t.file("to_null"), "x", 1); }), "character device");
  EXPECT_TRUE(fs::is_symlink(t.file("to_null")));
  fs::create_symlink(t.file("loop_b"), t.file("loop_a"));
  fs::create_symlink(t.file("loop_a"), t.file("loop_b"));
  EXPECT_HAS(error_of([&] { write_output_file(t.file("loop_a"), "x", 1); }), "symlink loop");
  // A symlink to a regular (or not yet existing) file: the target is written, the link kept.
  fs::create_symlink("target.bin", t.file("link.bin"));
  write_output_file(t.file("link.bin"), "abc", 3);
  EXPECT_TRUE(fs::is_symlink(t.file("link.bin")));
  EXPECT_EQ(read_input_file(t.file("target.bin")), "abc");
  write_output_file(t.file("link.bin"), "defg", 4);
  EXPECT_EQ(read_input_file(t.file("target.bin")), "defg");
  // A FIFO planted at the temporary name is refused, not written through.
  ASSERT_EQ(::mkfifo(t.file("o.bin.tmp").c_str(), 0600), 0);
  EXPECT_HAS(error_of([&] { write_output_file(t.file("o.bin"), "x", 1); }), "not a regular file");
  EXPECT_FALSE(fs::exists(t.file("o.bin")));
}

TEST(OutputFiles, AFailedWriteLeavesNothingBehind) {
  Tmp t;
  write(t.file("old.bin"), "old contents");
  // A file size limit makes write() fail with EFBIG, as a full disk fails with ENOSPC.
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 1000;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string big(100000, 'x');
  const std::string e = error_of([&] { write_output_file(t.file("old.bin"), big.data(), big.size()); });
  const std::string e2 = error_of([&] { write_output_file(t.file("new.bin"), big.data(), big.size()); });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_HAS(e, "old.bin: write failed: File too large");
  EXPECT_HAS(e2, "new.bin: write failed");
  EXPECT_EQ(read_input_file(t.file("old.bin")), "old contents");  // untouched
  EXPECT_FALSE(fs::exists(t.file("old.bin.tmp")));
  EXPECT_FALSE(fs::exists(t.file("new.bin")));
  EXPECT_FALSE(fs::exists(t.file("new.bin.tmp")));
}

}  // namespace
}  // namespace attnsparse
