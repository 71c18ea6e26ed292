// Safetensors reader/writer: files built by hand here (header JSON written as text,
// data as raw bytes), sharded directories, and hostile inputs.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "io_test_util.h"

namespace attnsparse {
namespace {

using testing::TempDir;

// A safetensors file from a header JSON text and data bytes (no validation at all).
std::vector<uint8_t> st_bytes(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b(8);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
void put(const std::string& path, const std::vector<uint8_t>& bytes) {
  testing::write_bytes(path, bytes.data(), bytes.size());
}
template <typename T>
void append(std::vector<uint8_t>& b, T v) {
  uint8_t tmp[sizeof(T)];
  std::memcpy(tmp, &v, sizeof(T));
  b.insert(b.end(), tmp, tmp + sizeof(T));
}

// Element i of a tensor's data, read with memcpy: a hand-built header is not padded, so
// the data may sit at any address (a float* load there is undefined behaviour).
template <typename T>
T at(const uint8_t* p, size_t i) {
  T v;
  std::memcpy(&v, p + i * sizeof(T), sizeof(T));
  return v;
}

std::string expect_format_error(const std::string& path) {
  try {
    SafetensorsSource s(path);
  } catch (const FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << path << ": expected FormatError, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << path << ": expected FormatError, the input was accepted";
  return {};
}

TEST(Safetensors, ReadsAHandBuiltFile) {
  TempDir dir;
  // F16 first in the header, but placed after the F32 data: order follows the offsets.
  std::vector<uint8_t> data;
  for (int i = 0; i < 6; ++i) append<float>(data, 0.5f * i - 1.f);       // w: F32 [2,3] at 0..24
  for (uint16_t h : {0x3c00, 0xc000, 0x0000, 0x7bff}) append<uint16_t>(data, h);  // h: F16 [4] 24..32
  for (uint16_t h : {0x3f80, 0x4040, 0xbf00, 0x0000}) append<uint16_t>(data, h);  // b: BF16 [2,2] 32..40
  append<float>(data, 42.f);                                              // s: F32 scalar 40..44
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},)"
      R"("__metadata__":{"format":"pt"},)"
      R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[32,40]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[40,44]}})";
  put(dir.file("model.safetensors"), st_bytes(header, data));

  SafetensorsSource s(dir.file("model.safetensors"));
  ASSERT_EQ(s.tensors().size(), 4u);
  EXPECT_EQ(s.tensors()[0].name, "w");
  EXPECT_EQ(s.tensors()[1].name, "h");
  EXPECT_EQ(s.metadata().at("format"), "pt");
  const TensorInfo& w = s.require("w");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w.rows(), 2);
  EXPECT_EQ(w.cols(), 3);
  EXPECT_EQ(at<float>(w.data, 5), 1.5f);
  const TensorInfo& h = s.require("h");
  EXPECT_EQ(h.dtype, DType::F16);
  EXPECT_EQ(h.nbytes, 8);
  auto hv = [&](size_t i) { return at<uint16_t>(h.data, i); };
  EXPECT_EQ(fp16_to_fp32(hv(0)), 1.f);
  EXPECT_EQ(fp16_to_fp32(hv(1)), -2.f);
  EXPECT_EQ(fp16_to_fp32(hv(3)), 65504.f);
  const TensorInfo& b = s.require("b");
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(bf16_to_fp32(at<uint16_t>(b.data, 1)), 3.f);
  EXPECT_EQ(bf16_to_fp32(at<uint16_t>(b.data, 2)), -0.5f);
  EXPECT_TRUE(s.require("s").shape.empty());
  EXPECT_EQ(at<float>(s.require("s").data, 0), 42.f);
  EXPECT_EQ(s.find("nope"), nullptr);
  EXPECT_THROW(s.require("nope"), FormatError);

  // The directory form finds model.safetensors.
  auto src = open_safetensors_dir(dir.path().string());
  EXPECT_EQ(src->tensors().size(), 4u);
  EXPECT_EQ(src->path(), dir.path().string());
}

// safetensors.torch.save_model drops a tensor that shares storage with another and
// records "<dropped>": "<kept>" in __metadata__; find() follows such an alias, tensors()
// lists only what is stored, and metadata that names no tensor stays plain metadata.
TEST(Safetensors, MetadataAliasesOfDroppedDuplicates) {
  TempDir dir;
  std::vector<uint8_t> data;
  for (int i = 0; i < 4; ++i) append<float>(data, 1.f + i);  // lm_head.weight [2,2]
  for (int i = 0; i < 2; ++i) append<float>(data, 9.f);      // model.norm.weight [2]
  const std::string header =
      R"({"__metadata__":{"format":"pt","model.embed_tokens.weight":"lm_head.weight",)"
      R"("model.norm.weight":"lm_head.weight","dangling":"no.such.tensor"},)"
      R"("lm_head.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("model.norm.weight":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})";
  put(dir.file("model.safetensors"), st_bytes(header, data));
  SafetensorsSource s(dir.path().string());
  ASSERT_EQ(s.tensors().size(), 2u);  // __metadata__ and the aliases are no tensors
  for (const TensorInfo& t : s.tensors()) EXPECT_NE(t.name, "__metadata__");
  const TensorInfo* e = s.find("model.embed_tokens.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e, s.find("lm_head.weight"));
  EXPECT_EQ(e->name, "lm_head.weight");
  EXPECT_EQ(at<float>(e->data, 3), 4.f);
  // A stored tensor wins over a metadata key of the same name.
  EXPECT_EQ(at<float>(s.require("model.norm.weight").data, 0), 9.f);
  EXPECT_EQ(s.find("dangling"), nullptr);
  EXPECT_EQ(s.find("format"), nullptr);
  EXPECT_EQ(s.metadata().at("model.embed_tokens.weight"), "lm_head.weight");
}

TEST(Safetensors, WriterProducesTheSpecLayoutAndRoundTrips) {
  TempDir dir;
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> h = {fp32_to_fp16(0.25f), fp32_to_fp16(-8.f)};
  std::vector<uint16_t> bf = {fp32_to_bf16(3.f)};
  TensorInfo ta{"layer.a", DType::F32, {3, 2}, reinterpret_cast<const uint8_t*>(a.data()), 24};
  TensorInfo th{"layer.h", DType::F16, {2}, reinterpret_cast<const uint8_t*>(h.data()), 4};
  TensorInfo tb{"z.bf", DType::BF16, {1, 1}, reinterpret_cast<const uint8_t*>(bf.data()), 2};
  const std::string path = dir.file("w.safetensors");
  write_safetensors(path, {th, ta, tb}, {{"format", "pt"}});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  std::vector<uint8_t> raw = testing::read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | raw[i];
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(raw.size(), 8 + n + 4 + 24 + 2);
  // Data in the order given: h, a, bf.
  EXPECT_EQ(std::memcmp(&raw[8 + n], h.data(), 4), 0);
  EXPECT_EQ(std::memcmp(&raw[8 + n + 4], a.data(), 24), 0);
  const std::string header(raw.begin() + 8, raw.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  EXPECT_NE(header.find(R"("layer.a":{"dtype":"F32","shape":[3,2],"data_offsets":[4,28]})"),
            std::string::npos)
      << header;

  SafetensorsSource s(path);
  EXPECT_EQ(s.metadata().at("format"), "pt");
  EXPECT_EQ(s.require("layer.a").shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(std::memcmp(s.require("layer.a").data, a.data(), 24), 0);
  EXPECT_EQ(fp16_to_fp32(at<uint16_t>(s.require("layer.h").data, 1)), -8.f);
  EXPECT_EQ(bf16_to_fp32(at<uint16_t>(s.require("z.bf").data, 0)), 3.f);

  // Writer errors: unsupported dtype, wrong byte count, duplicate names; no file left.
  TensorInfo q{"q", DType::Q8_0, {32}, reinterpret_cast<const uint8_t*>(a.data()), 34};
  EXPECT_THROW(write_safetensors(dir.file("q.safetensors"), {q}), Error);
  TensorInfo bad{"bad", DType::F32, {7}, reinterpret_cast<const uint8_t*>(a.data()), 24};
  EXPECT_THROW(write_safetensors(dir.file("bad.safetensors"), {bad}), Error);
  EXPECT_THROW(write_safetensors(dir.file("dup.safetensors"), {ta, ta}), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("q.safetensors")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.safetensors")));
  EXPECT_THROW(write_safetensors(dir.file("no/dir/x.safetensors"), {ta}), FormatError);
}

// Two shards and an index, as Hugging Face writes them.
void write_sharded(const TempDir& dir, const std::vector<float>& a, const std::vector<float>& b,
                   const std::string& index_json) {
  TensorInfo ta{"model.a", DType::F32, {2, 2}, reinterpret_cast<const uint8_t*>(a.data()), 16};
  TensorInfo tb{"model.b", DType::F32, {4}, reinterpret_cast<const uint8_t*>(b.data()), 16};
  TensorInfo tc{"lm_head.weight", DType::F32, {1, 4}, reinterpret_cast<const uint8_t*>(b.data()), 16};
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), {ta, tb});
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), {tc});
  testing::write_text(dir.file("model.safetensors.index.json"), index_json);
}

const char* kIndex = R"({"metadata": {"total_size": 48}, "weight_map": {
  "model.a": "model-00001-of-00002.safetensors",
  "model.b": "model-00001-of-00002.safetensors",
  "lm_head.weight": "model-00002-of-00002.safetensors"}})";

TEST(Safetensors, ShardedDirectoryWithIndex) {
  TempDir dir;
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  write_sharded(dir, a, b, kIndex);
  auto src = open_safetensors_dir(dir.path().string());
  auto* s = dynamic_cast<SafetensorsSource*>(src.get());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->n_files(), 2u);
  ASSERT_EQ(src->tensors().size(), 3u);
  EXPECT_EQ(at<float>(src->require("model.a").data, 3), 4.f);
  EXPECT_EQ(at<float>(src->require("lm_head.weight").data, 0), 5.f);
  EXPECT_EQ(src->require("lm_head.weight").shape, (std::vector<int64_t>{1, 4}));
}

TEST(Safetensors, ShardedHostileCases) {
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  {
    TempDir dir;  // missing shard
    write_sharded(dir, a, b, kIndex);
    std::filesystem::remove(dir.file("model-00002-of-00002.safetensors"));
    std::string m = expect_format_error(dir.path().string());
    EXPECT_NE(m.find("model-00002-of-00002.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("missing"), std::string::npos) << m;
  }
  {
    TempDir dir;  // index names a tensor its shard lacks
    write_sharded(dir, a, b, R"({"weight_map": {"model.a": "model-00001-of-00002.safetensors",
      "ghost": "model-00002-of-00002.safetensors"}})");
    std::string m = expect_format_error(dir.path().string());
    EXPECT_NE(m.find("ghost"), std::string::npos) << m;
  }
  {
    TempDir dir;  // the same tensor in two shards
    write_sharded(dir, a, b, kIndex);
    TensorInfo dup{"model.a", DType::F32, {4}, reinterpret_cast<const uint8_t*>(b.data()), 16};
    TensorInfo head{"lm_head.weight", DType::F32, {1, 4}, reinterpret_cast<const uint8_t*>(b.data()), 16};
    write_safetensors(dir.file("model-00002-of-00002.safetensors"), {dup, head});
    std::string m = expect_format_error(dir.path().string());
    EXPECT_NE(m.find("model.a"), std::string::npos) << m;
  }
  {
    TempDir dir;  // bad index JSON, no weight_map, escaping shard names
    write_sharded(dir, a, b, "{\"weight_map\": {");
    EXPECT_NE(expect_format_error(dir.path().string()).find("model.safetensors.index.json"),
              std::string::npos);
    testing::write_text(dir.file("model.safetensors.index.json"), R"({"metadata": {}})");
    EXPECT_NE(expect_format_error(dir.path().string()).find("weight_map"), std::string::npos);
    testing::write_text(dir.file("model.safetensors.index.json"),
                        R"({"weight_map": {"x": "../../etc/passwd"}})");
    expect_format_error(dir.path().string());
    testing::write_text(dir.file("model.safetensors.index.json"), R"({"weight_map": {"x": 3}})");
    expect_format_error(dir.path().string());
  }
  {
    TempDir dir;  // empty directory
    std::string m = expect_format_error(dir.path().string());
    EXPECT_NE(m.find(dir.path().string()), std::string::npos) << m;
  }
}

TEST(Safetensors, HostileSingleFiles) {
  TempDir dir;
  const std::vector<uint8_t> d16(16, 0);
  auto check = [&](const std::string& name, const std::vector<uint8_t>& bytes,
                   const std::string& must_contain) {
    const std::string path = dir.file(name);
    put(path, bytes);
    std::string m = expect_format_error(path);
    EXPECT_NE(m.find(path), std::string::npos) << name << ": " << m;
    EXPECT_NE(m.find(must_contain), std::string::npos) << name << ": " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << name << ": " << m;
  };
  check("short.st", {1, 2, 3}, "header length");
  {
    std::vector<uint8_t> b = st_bytes("{}", {});
    b[0] = 200;  // header length 200 > file
    check("hdrlen.st", b, "past the end");
    std::vector<uint8_t> h(16, 0xFF);  // 2^64-1
    check("hdrhuge.st", h, "past the end");
  }
  check("badjson.st", st_bytes(R"({"w":{"dtype":"F32",)", d16), "invalid JSON");
  check("array.st", st_bytes(R"([1,2])", d16), "expected an object");
  check("i64.st", st_bytes(R"({"idx":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", d16),
        "'idx': dtype I64");
  check("past.st", st_bytes(R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", d16),
        "past the end");
  check("size.st", st_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", d16),
        "needs 12");
  check("overlap.st",
        st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("b":{"dtype":"F16","shape":[4],"data_offsets":[4,12]}})", d16),
        "overlap");
  check("backwards.st", st_bytes(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d16),
        "backwards");
  check("negshape.st", st_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", d16),
        "shape");
  check("bigshape.st",
        st_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", d16),
        "too large");
  check("noshape.st", st_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,16]}})", d16), "shape");
  check("nooff.st", st_bytes(R"({"w":{"dtype":"F32","shape":[4]}})", d16), "data_offsets");
  check("meta.st", st_bytes(R"({"__metadata__":{"n":1}})", d16), "__metadata__");
  check("notobj.st", st_bytes(R"({"w":7})", d16), "'w'");

  // Every proper prefix of a valid file is rejected.
  std::vector<uint8_t> full =
      st_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d16);
  put(dir.file("valid.st"), full);
  EXPECT_NO_THROW(SafetensorsSource s(dir.file("valid.st")));
  for (size_t n = 0; n < full.size(); ++n) {
    put(dir.file("cut.st"), std::vector<uint8_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n)));
    expect_format_error(dir.file("cut.st"));
    if (HasFailure()) {
      ADD_FAILURE() << "prefix " << n;
      break;
    }
  }
}


// Duplicate names (nlohmann keeps one silently) and a header length that is off by one
// (every tensor shifted by a byte) are refused.
TEST(Safetensors, DuplicateKeysAndAWrongHeaderLength) {
  TempDir dir;
  std::vector<uint8_t> data;
  for (int i = 0; i < 4; ++i) append<float>(data, float(i));
  const std::string one = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  put(dir.file("ok.safetensors"), st_bytes(one, data));
  EXPECT_NO_THROW(SafetensorsSource(dir.file("ok.safetensors")));
  const std::string dup =
      R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  put(dir.file("dup.safetensors"), st_bytes(dup, data));
  std::string e = expect_format_error(dir.file("dup.safetensors"));
  EXPECT_NE(e.find("dup.safetensors: duplicate key 'w' at the top level"), std::string::npos) << e;
  const std::string dup_field = R"({"w":{"dtype":"F32","dtype":"F16","shape":[4],"data_offsets":[0,16]}})";
  put(dir.file("dupf.safetensors"), st_bytes(dup_field, data));
  e = expect_format_error(dir.file("dupf.safetensors"));
  EXPECT_NE(e.find("duplicate key 'dtype' in 'w'"), std::string::npos) << e;

  // The header padded with a space, as writers do; its length one byte short still parses
  // as JSON, but then the data starts one byte early.
  std::vector<uint8_t> b = st_bytes(one + " ", data);
  b[0] -= 1;
  put(dir.file("short.safetensors"), b);
  e = expect_format_error(dir.file("short.safetensors"));
  EXPECT_NE(e.find("the tensors end at data offset 16 but the file holds 17 data bytes"), std::string::npos) << e;
  // Trailing bytes after the last tensor, and a gap before the first one.
  std::vector<uint8_t> more = data;
  more.push_back(0);
  put(dir.file("tail.safetensors"), st_bytes(one, more));
  EXPECT_NE(expect_format_error(dir.file("tail.safetensors")).find("holds 17 data bytes"), std::string::npos);
  const std::string late = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}})";
  put(dir.file("gap.safetensors"), st_bytes(late, data));
  EXPECT_NE(expect_format_error(dir.file("gap.safetensors")).find("starts at data offset 4, not 0"), std::string::npos);
}

// Names, dtypes and metadata keys from the header are quoted escaped in the reader's
// messages (found by fuzz_safetensors' one-line check).
TEST(Safetensors, HeaderTextIsEscapedInMessages) {
  TempDir dir;
  const std::vector<uint8_t> d16(16, 0);
  const struct {
    const char* header;
    const char* needle;
  } cases[] = {
      {R"({"w\u001b[2J":{"dtype":"F\u001b]0;x\u0007","shape":[4],"data_offsets":[0,16]}})",
       "tensor 'w\\x1b[2J': dtype F\\x1b]0;x\\x07 is not supported"},
      {R"({"w\n":{"dtype":"F32","shape":["\u009b"],"data_offsets":[0,16]}})",
       "tensor 'w\\n': shape entry \"\\xc2\\x9b\" is not a non-negative integer"},
      {R"({"__metadata__":{"k\u007f":1}})", "__metadata__['k\\x7f'] is a number"},
      {R"({"w\u001b[2J":{"shape":[4],"data_offsets":[0,16]}})", "tensor 'w\\x1b[2J': missing or non-string \"dtype\""},
      {R"({"w\r":{"dtype":"F32","data_offsets":[0,16]}})", "tensor 'w\\r': missing or non-array \"shape\""},
      {R"({"w\u0007":{"dtype":"F32","shape":[4]}})", "tensor 'w\\x07': \"data_offsets\" must be [begin, end]"},
  };
  for (const auto& c : cases) {
    const std::string path = dir.file("esc.safetensors");
    put(path, st_bytes(c.header, d16));
    const std::string m = expect_format_error(path);
    EXPECT_NE(m.find(c.needle), std::string::npos) << m;
    for (unsigned char ch : m) EXPECT_TRUE(ch >= 0x20 && ch != 0x7f) << m;
    EXPECT_EQ(m.find("\xc2\x9b"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace attnsparse
