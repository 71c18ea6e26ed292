// Hostile GGUF files, generated here byte by byte: every malformed input must give
// attnsparse::FormatError naming the file, never a crash, hang or huge allocation.
#include <gtest/gtest.h>

#include <algorithm>
#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <functional>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io_test_util.h"
#include "support/run_process.h"

namespace attnsparse {
namespace {

using testing::TempDir;

// Little-endian byte builder for GGUF pieces.
struct Bytes {
  std::vector<uint8_t> b;
  Bytes& u8(uint8_t v) { b.push_back(v); return *this; }
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& f32(float v) { return raw(&v, 4); }
  Bytes& raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  Bytes& str(const std::string& s) { u64(s.size()); return raw(s.data(), s.size()); }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    raw("GGUF", 4);
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  Bytes& kv_u32(const std::string& key, uint32_t v) { str(key); u32(4); return u32(v); }
  Bytes& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name);
    u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    u32(type);
    return u64(offset);
  }
  Bytes& pad(size_t alignment = 32) {
    while (b.size() % alignment) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) { b.insert(b.end(), n, 0); return *this; }
};

// Writes the bytes to a file and expects FormatError naming it; returns the message.
std::string expect_format_error(const TempDir& dir, const std::string& name, const Bytes& bytes) {
  const std::string path = dir.file(name);
  testing::write_bytes(path, bytes.b.data(), bytes.b.size());
  try {
    GgufFile f(path);
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << name << ": message lacks the path: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << name << ": multi-line message";
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << name << ": expected FormatError, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << name << ": expected FormatError, the file was accepted";
  return {};
}

// A small valid file: two kv, two tensors; the last tensor's data ends exactly at the end
// of the file (no trailing padding), so every proper prefix is invalid.
Bytes valid_file() {
  Bytes b;
  b.header(2, 2);
  b.kv_u32("general.alignment", 32);
  b.str("general.name").u32(8).str("tiny");
  b.tensor("a", {4, 2}, 0, 0);   // 8 f32 = 32 bytes
  b.tensor("b", {8}, 1, 32);     // 8 f16 = 16 bytes ...
  b.pad();
  for (int i = 0; i < 8; ++i) b.f32(static_cast<float>(i));
  for (int i = 0; i < 8; ++i) b.u8(0).u8(0x3c);  // f16 1.0
  return b;
}

TEST(GgufHostile, TheValidBaseFileLoads) {
  TempDir dir;
  Bytes b = valid_file();
  const std::string path = dir.file("valid.gguf");
  testing::write_bytes(path, b.b.data(), b.b.size());
  GgufFile f(path);
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.require("a").shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(reinterpret_cast<const float*>(f.require("a").data)[7], 7.f);
  EXPECT_EQ(fp16_to_fp32(reinterpret_cast<const uint16_t*>(f.require("b").data)[7]), 1.f);
  EXPECT_EQ(f.require("b").data + 16, f.require("a").data + 32 + 16);  // ends at EOF
}

TEST(GgufHostile, EveryTruncationIsAFormatError) {
  TempDir dir;
  const Bytes full = valid_file();
  for (size_t n = 0; n < full.b.size(); ++n) {
    Bytes cut;
    cut.b.assign(full.b.begin(), full.b.begin() + static_cast<std::ptrdiff_t>(n));
    expect_format_error(dir, "cut.gguf", cut);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "at prefix length " << n << " of " << full.b.size();
      break;
    }
  }
}

TEST(GgufHostile, MagicAndVersion) {
  TempDir dir;
  Bytes b = valid_file();
  b.b[0] = 'X';
  EXPECT_NE(expect_format_error(dir, "magic.gguf", b).find("magic"), std::string::npos);
  Bytes v;
  v.header(0, 0, 7);
  EXPECT_NE(expect_format_error(dir, "version.gguf", v).find("version"), std::string::npos);
  Bytes text;
  text.raw("hello world, not a model\n", 25);
  expect_format_error(dir, "text.gguf", text);
}

TEST(GgufHostile, TensorDataPastTheEndOfTheFile) {
  TempDir dir;
  Bytes b;
  b.header(1, 0).tensor("w", {64, 64}, 0, 0).pad().zeros(64 * 64 * 4 - 4);
  EXPECT_NE(expect_format_error(dir, "past.gguf", b).find("'w'"), std::string::npos);
  Bytes far;
  far.header(1, 0).tensor("w", {8}, 0, uint64_t{1} << 62).pad().zeros(32);
  expect_format_error(dir, "far.gguf", far);
  Bytes wrap;  // offset + size wraps around 2^64
  wrap.header(1, 0).tensor("w", {8}, 0, ~uint64_t{0} - 31).pad().zeros(32);
  expect_format_error(dir, "wrap.gguf", wrap);
}

TEST(GgufHostile, DimensionProductsThatOverflow) {
  TempDir dir;
  Bytes b;
  b.header(1, 0).tensor("w", {uint64_t{1} << 32, uint64_t{1} << 32, 16}, 0, 0).pad().zeros(64);
  expect_format_error(dir, "overflow.gguf", b);
  Bytes huge;
  huge.header(1, 0).tensor("w", {~uint64_t{0}}, 0, 0).pad().zeros(64);
  expect_format_error(dir, "huge.gguf", huge);
  Bytes neg;  // 2^63 reads as negative in int64
  neg.header(1, 0).tensor("w", {uint64_t{1} << 63, 2}, 0, 0).pad().zeros(64);
  expect_format_error(dir, "neg.gguf", neg);
}

TEST(GgufHostile, DimensionCounts) {
  TempDir dir;
  Bytes five;
  five.header(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).pad().zeros(32);
  EXPECT_NE(expect_format_error(dir, "five.gguf", five).find("dimensions"), std::string::npos);
  Bytes none;
  none.header(1, 0).tensor("w", {}, 0, 0).pad().zeros(32);
  expect_format_error(dir, "nodims.gguf", none);
  Bytes zero;
  zero.header(1, 0).tensor("w", {4, 0}, 0, 0).pad().zeros(32);
  expect_format_error(dir, "zerodim.gguf", zero);
  Bytes many;  // n_dims = 2^32-1 must not allocate or loop forever
  many.header(1, 0).str("w").u32(0xFFFFFFFFu).pad().zeros(32);
  expect_format_error(dir, "manydims.gguf", many);
}

TEST(GgufHostile, StringAndArrayLengthsBeyondTheFile) {
  TempDir dir;
  Bytes key;
  key.header(0, 1).u64(1000).raw("abc", 3);
  expect_format_error(dir, "keylen.gguf", key);
  Bytes val;
  val.header(0, 1).str("k").u32(8).u64(uint64_t{1} << 60).raw("abc", 3);
  expect_format_error(dir, "strlen.gguf", val);
  Bytes name;
  name.header(1, 0).u64(~uint64_t{0}).zeros(64);
  expect_format_error(dir, "namelen.gguf", name);
  Bytes arr;
  arr.header(0, 1).str("k").u32(9).u32(4).u64(uint64_t{1} << 61).u32(1);
  EXPECT_NE(expect_format_error(dir, "arrcount.gguf", arr).find("'k'"), std::string::npos);
  Bytes strarr;  // strings need >= 8 bytes each
  strarr.header(0, 1).str("k").u32(9).u32(8).u64(100).zeros(400);
  expect_format_error(dir, "strarr.gguf", strarr);
  Bytes kvcount;
  kvcount.header(0, uint64_t{1} << 40);
  expect_format_error(dir, "kvcount.gguf", kvcount);
  Bytes tcount;
  tcount.header(uint64_t{1} << 40, 0).zeros(64);
  expect_format_error(dir, "tcount.gguf", tcount);
}

TEST(GgufHostile, UnknownTypes) {
  TempDir dir;
  Bytes dt;
  dt.header(1, 0).tensor("w", {32}, 77, 0).pad().zeros(256);
  EXPECT_NE(expect_format_error(dir, "dtype.gguf", dt).find("'w'"), std::string::npos);
  Bytes iq2;  // a real GGML type we do not read (iq2_xxs)
  iq2.header(1, 0).tensor("w", {256}, 16, 0).pad().zeros(256);
  EXPECT_NE(expect_format_error(dir, "iq2.gguf", iq2).find("iq2_xxs"), std::string::npos);
  Bytes mt;
  mt.header(0, 1).str("k").u32(13).u32(0);
  EXPECT_NE(expect_format_error(dir, "metatype.gguf", mt).find("'k'"), std::string::npos);
  Bytes at;
  at.header(0, 1).str("k").u32(9).u32(200).u64(0);
  expect_format_error(dir, "arraytype.gguf", at);
  Bytes deep;  // arrays nested 100 deep
  deep.header(0, 1).str("k").u32(9);
  for (int i = 0; i < 100; ++i) deep.u32(9).u64(1);
  deep.u32(4).u64(0);
  expect_format_error(dir, "deep.gguf", deep);
  Bytes boolv;
  boolv.header(0, 1).str("k").u32(7).u8(2);
  expect_format_error(dir, "bool.gguf", boolv);
  Bytes dup;
  dup.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  EXPECT_NE(expect_format_error(dir, "dupkey.gguf", dup).find("duplicate"), std::string::npos);
  Bytes duptensor;
  duptensor.header(2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad().zeros(64);
  expect_format_error(dir, "duptensor.gguf", duptensor);
  Bytes block;  // q8_0 row not a multiple of 32
  block.header(1, 0).tensor("w", {20}, 8, 0).pad().zeros(64);
  expect_format_error(dir, "block.gguf", block);
}

// The reader's own messages quote keys and tensor names escaped, so every user of the
// library (the Python module raises them as they are) gets one printable line; a NUL in a
// name no longer cuts the message short (found by fuzz_gguf's one-line check).
TEST(GgufHostile, KeysAndTensorNamesAreEscapedInTheReadersMessages) {
  TempDir dir;
  const std::string key = std::string("bad\x1b[2J\0key\n", 12);
  Bytes mt;
  mt.header(0, 1).str(key).u32(13).u32(0);
  std::string m = expect_format_error(dir, "keytype.gguf", mt);
  EXPECT_NE(m.find("metadata 'bad\\x1b[2J\\x00key\\n': unknown value type 13"), std::string::npos) << m;
  Bytes trunc;
  trunc.header(0, 1).str(key).u32(4).u8(1);  // u32 value cut short
  m = expect_format_error(dir, "keytrunc.gguf", trunc);
  EXPECT_NE(m.find("bad\\x1b[2J\\x00key\\n"), std::string::npos) << m;
  Bytes tn;
  tn.header(1, 0).tensor(std::string("w\x1b]0;t\x07\0", 8), {32}, 77, 0).pad().zeros(256);
  m = expect_format_error(dir, "tname.gguf", tn);
  EXPECT_NE(m.find("tensor 'w\\x1b]0;t\\x07\\x00': unsupported tensor type 77"), std::string::npos) << m;
  for (const std::string& msg : {m, expect_format_error(dir, "keytype.gguf", mt)})
    for (unsigned char c : msg) EXPECT_TRUE(c >= 0x20 && c != 0x7f) << msg;
}

TEST(GgufHostile, UnalignedOffsetAndBadAlignment) {
  TempDir dir;
  Bytes un;
  un.header(2, 0).tensor("a", {4}, 0, 0).tensor("b", {4}, 0, 16).pad().zeros(64);
  EXPECT_NE(expect_format_error(dir, "unaligned.gguf", un).find("aligned"), std::string::npos);
  for (uint32_t al : {0u, 3u, 48u}) {
    Bytes b;
    b.header(1, 1).kv_u32("general.alignment", al).tensor("a", {4}, 0, 0).pad().zeros(64);
    EXPECT_NE(expect_format_error(dir, "align.gguf", b).find("alignment"), std::string::npos) << al;
  }
  Bytes s;
  s.header(0, 1).str("general.alignment").u32(8).str("32");
  expect_format_error(dir, "alignstr.gguf", s);
}

TEST(GgufHostile, MissingAndSpecialFiles) {
  TempDir dir;
  const std::string missing = dir.file("missing.gguf");
  try {
    GgufFile f(missing);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos);
  }
  EXPECT_THROW(GgufFile f(dir.path().string()), FormatError);  // a directory
}

// The CLI turns the error into exactly one line on stderr and exit status 1.
TEST(GgufHostile, CliPrintsOneErrorLine) {
  TempDir dir;
  Bytes b = valid_file();
  b.b.resize(b.b.size() - 1);
  const std::string path = dir.file("bad.gguf");
  testing::write_bytes(path, b.b.data(), b.b.size());
  const testing::ProcessResult r = testing::run_cli({"gguf-dump", path}, testing::Output::merged);
  ASSERT_NE(r.status, -1);  // exited (not killed by a signal)
  EXPECT_EQ(r.status, 1);
  const std::string& text = r.out;
  EXPECT_EQ(text.rfind("attnsparse gguf-dump: error:", 0), 0u) << text;
  EXPECT_NE(text.find(path), std::string::npos) << text;
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
}


// Keys and strings with newlines and terminal escape sequences: errors and gguf-dump show
// them escaped, never raw (a raw ESC would drive the user's terminal).
TEST(GgufHostile, ControlCharactersInKeysAreEscapedInErrorsAndDump) {
  TempDir dir;
  const std::string evil = "general.x\n\x1b]0;pwned\x07\x1b[2J";
  Bytes dup;
  dup.header(0, 2);
  dup.kv_u32(evil, 1).kv_u32(evil, 2);
  const std::string path = dir.file("evil.gguf");
  testing::write_bytes(path, dup.b.data(), dup.b.size());
  testing::ProcessResult r = testing::run_cli({"gguf-dump", path}, testing::Output::merged);
  ASSERT_NE(r.status, -1);  // exited (not killed by a signal)
  EXPECT_EQ(r.status, 1);
  std::string text = r.out;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_NE(text.find("duplicate metadata key 'general.x\\n\\x1b]0;pwned\\x07\\x1b[2J'"), std::string::npos) << text;

  Bytes ok;
  ok.header(0, 2);
  ok.kv_u32(evil, 1);
  ok.str("general.name").u32(8).str("a\x1b[31mred\nname");
  testing::write_bytes(path, ok.b.data(), ok.b.size());
  r = testing::run_cli({"gguf-dump", path}, testing::Output::merged);
  ASSERT_NE(r.status, -1);
  EXPECT_EQ(r.status, 0);
  text = r.out;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_NE(text.find("general.x\\n\\x1b]0;pwned\\x07\\x1b[2J"), std::string::npos) << text;
  EXPECT_NE(text.find("\"a\\x1b[31mred\\nname\""), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;  // header + 2 keys
}

// A FIFO or a device given as the model: refused at once instead of blocking in open() or
// mapping an endless file.
TEST(GgufHostile, FifoAndDeviceAreRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.file("model.gguf");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  try {
    GgufFile f(fifo);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("model.gguf: is a FIFO (named pipe), expected a regular file"),
              std::string::npos) << e.what();
  }
  try {
    GgufFile f("/dev/zero");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/zero: is a character device"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attnsparse
