// GgufWriter: round trips through the GGUF reader, byte layout checked by hand, and a
// re-write of a llama.cpp-produced file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/gguf_encode.h"
#include "io_test_util.h"

namespace attnsparse {
namespace {

using testing::TempDir;

std::vector<float> ramp(int64_t n, float scale = 0.01f) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>((i * 37) % 101 - 50);
  return v;
}

TEST(GgufWriter, MetadataOfAllThirteenTypesRoundTrip) {
  TempDir dir;
  GgufWriter w;
  w.set("k.u8", {GgufType::UINT8, uint64_t{200}});
  w.set("k.i8", {GgufType::INT8, int64_t{-100}});
  w.set("k.u16", {GgufType::UINT16, uint64_t{60000}});
  w.set("k.i16", {GgufType::INT16, int64_t{-30000}});
  w.set("k.u32", GgufValue::make_u32(4000000000u));
  w.set("k.i32", GgufValue::make_i32(-2000000000));
  w.set("k.f32", GgufValue::make_f32(0.1f));
  w.set("k.bool", GgufValue::make_bool(true));
  w.set("k.string", GgufValue::make_string("h\xC3\xA9llo\nworld"));
  w.set("k.u64", GgufValue::make_u64(18000000000000000000ull));
  w.set("k.i64", {GgufType::INT64, int64_t{-9000000000000000000ll}});
  w.set("k.f64", {GgufType::FLOAT64, 0.1});
  w.set("k.arr_i32", GgufValue::make_array(GgufType::INT32, {GgufValue::make_i32(1),
                                                             GgufValue::make_i32(-2)}));
  w.set("k.arr_str", GgufValue::make_array(GgufType::STRING, {GgufValue::make_string(""),
                                                              GgufValue::make_string("b")}));
  // Array of arrays: [[1.5], [], ["x"]] with inner arrays of different element types.
  w.set("k.arr_arr",
        GgufValue::make_array(
            GgufType::ARRAY,
            {GgufValue::make_array(GgufType::FLOAT32, {GgufValue::make_f32(1.5f)}),
             GgufValue::make_array(GgufType::UINT8, {}),
             GgufValue::make_array(GgufType::STRING, {GgufValue::make_string("x")})}));
  w.set("k.u32", GgufValue::make_u32(7));  // replaces, keeps position
  const std::string path = dir.file("meta.gguf");
  w.write(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.metadata().size(), 16u);  // general.alignment + 15
  EXPECT_EQ(f.metadata()[0].first, "general.alignment");
  EXPECT_EQ(f.metadata()[5].first, "k.u32");
  struct Expect {
    const char* key;
    GgufType type;
  };
  for (auto [key, type] : {Expect{"k.u8", GgufType::UINT8}, {"k.i8", GgufType::INT8},
                           {"k.u16", GgufType::UINT16}, {"k.i16", GgufType::INT16},
                           {"k.u32", GgufType::UINT32}, {"k.i32", GgufType::INT32},
                           {"k.f32", GgufType::FLOAT32}, {"k.bool", GgufType::BOOL},
                           {"k.string", GgufType::STRING}, {"k.u64", GgufType::UINT64},
                           {"k.i64", GgufType::INT64}, {"k.f64", GgufType::FLOAT64},
                           {"k.arr_i32", GgufType::ARRAY}}) {
    ASSERT_NE(f.find_meta(key), nullptr) << key;
    EXPECT_EQ(f.find_meta(key)->type, type) << key;
  }
  EXPECT_EQ(*f.get_int("k.u8"), 200);
  EXPECT_EQ(*f.get_int("k.i8"), -100);
  EXPECT_EQ(*f.get_int("k.u16"), 60000);
  EXPECT_EQ(*f.get_int("k.i16"), -30000);
  EXPECT_EQ(*f.get_int("k.u32"), 7);
  EXPECT_EQ(*f.get_int("k.i32"), -2000000000);
  EXPECT_EQ(*f.get_float("k.f32"), static_cast<double>(0.1f));
  EXPECT_EQ(*f.get_bool("k.bool"), true);
  EXPECT_EQ(*f.get_string("k.string"), "h\xC3\xA9llo\nworld");
  EXPECT_EQ(std::get<uint64_t>(f.find_meta("k.u64")->value), 18000000000000000000ull);
  EXPECT_EQ(*f.get_int("k.i64"), -9000000000000000000ll);
  EXPECT_EQ(*f.get_float("k.f64"), 0.1);
  const GgufArray* ai = f.get_array("k.arr_i32");
  ASSERT_NE(ai, nullptr);
  EXPECT_EQ(ai->element_type, GgufType::INT32);
  ASSERT_EQ(ai->values.size(), 2u);
  EXPECT_EQ(ai->values[1].as_int(), -2);
  const GgufArray* as = f.get_array("k.arr_str");
  ASSERT_EQ(as->values.size(), 2u);
  EXPECT_EQ(as->values[0].as_string(), "");
  EXPECT_EQ(as->values[1].as_string(), "b");
  const GgufArray* aa = f.get_array("k.arr_arr");
  ASSERT_NE(aa, nullptr);
  EXPECT_EQ(aa->element_type, GgufType::ARRAY);
  ASSERT_EQ(aa->values.size(), 3u);
  EXPECT_EQ(aa->values[0].as_array().element_type, GgufType::FLOAT32);
  EXPECT_EQ(aa->values[0].as_array().values[0].as_float(), 1.5);
  EXPECT_EQ(aa->values[1].as_array().element_type, GgufType::UINT8);
  EXPECT_TRUE(aa->values[1].as_array().values.empty());
  EXPECT_EQ(aa->values[2].as_array().values[0].as_string(), "x");
}

// The byte layout, checked by hand against the GGUF spec (independent of the reader):
// magic, version 3, counts, kv, tensor info with ne innermost first, data at 32-aligned.
TEST(GgufWriter, ByteLayoutFollowsTheSpec) {
  TempDir dir;
  GgufWriter w;
  std::vector<float> data = ramp(2 * 3);
  add_f32_tensor(w, "t", DType::F32, {2, 3}, data.data());
  const std::string path = dir.file("layout.gguf");
  w.write(path);
  std::vector<uint8_t> b = testing::read_bytes(path);
  auto u32 = [&](size_t at) { uint32_t v; std::memcpy(&v, &b[at], 4); return v; };
  auto u64 = [&](size_t at) { uint64_t v; std::memcpy(&v, &b[at], 8); return v; };
  ASSERT_GE(b.size(), 64u);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "GGUF");
  EXPECT_EQ(u32(4), 3u);
  EXPECT_EQ(u64(8), 1u);   // tensors
  EXPECT_EQ(u64(16), 1u);  // kv: general.alignment
  size_t at = 24;
  EXPECT_EQ(u64(at), 17u);
  EXPECT_EQ(std::string(b.begin() + at + 8, b.begin() + at + 25), "general.alignment");
  at += 25;
  EXPECT_EQ(u32(at), 4u);       // u32
  EXPECT_EQ(u32(at + 4), 32u);  // value
  at += 8;
  EXPECT_EQ(u64(at), 1u);  // name length
  EXPECT_EQ(b[at + 8], 't');
  at += 9;
  EXPECT_EQ(u32(at), 2u);      // n_dims
  EXPECT_EQ(u64(at + 4), 3u);  // ne[0] = innermost = row length
  EXPECT_EQ(u64(at + 12), 2u);
  EXPECT_EQ(u32(at + 20), 0u);  // f32
  EXPECT_EQ(u64(at + 24), 0u);  // offset
  at += 32;
  const size_t data_start = (at + 31) / 32 * 32;
  ASSERT_EQ(b.size(), data_start + 32);  // 24 bytes of data padded to 32
  for (size_t i = at; i < data_start; ++i) EXPECT_EQ(b[i], 0) << i;
  EXPECT_EQ(std::memcmp(&b[data_start], data.data(), 24), 0);
}

TEST(GgufWriter, TensorsOfEveryWritableTypeRoundTrip) {
  TempDir dir;
  GgufWriter w;
  const std::vector<float> a = ramp(3 * 64);
  const std::vector<float> v = ramp(5, 0.5f);
  const std::vector<float> c = ramp(2 * 3 * 4 * 64, 0.003f);
  add_f32_tensor(w, "a.f32", DType::F32, {3, 64}, a.data());
  add_f32_tensor(w, "a.f16", DType::F16, {3, 64}, a.data());
  add_f32_tensor(w, "a.bf16", DType::BF16, {3, 64}, a.data());
  add_f32_tensor(w, "a.q8_0", DType::Q8_0, {3, 64}, a.data());
  add_f32_tensor(w, "v", DType::F32, {5}, v.data());
  add_f32_tensor(w, "c", DType::F16, {2, 3, 4, 64}, c.data());
  std::vector<uint8_t> raw(37 * 2);
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<uint8_t>(i * 7);
  w.add_tensor_raw("raw", DType::F16, {37}, raw.data(), static_cast<int64_t>(raw.size()));
  add_generated_tensor(w, "gen", DType::F32, {70000, 300}, [](int64_t r0, int64_t nr, float* dst) {
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t j = 0; j < 300; ++j) dst[r * 300 + j] = static_cast<float>((r0 + r) % 1000) + j * 1e-3f;
  });
  const std::string path = dir.file("tensors.gguf");
  w.write(path);

  GgufFile f(path);
  ASSERT_EQ(f.tensors().size(), 8u);
  EXPECT_EQ(f.tensors()[0].name, "a.f32");  // order kept
  for (const auto& t : f.tensors())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << t.name;

  const TensorInfo& tf = f.require("a.f32");
  EXPECT_EQ(tf.shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(tf.dtype, DType::F32);
  EXPECT_EQ(std::memcmp(tf.data, a.data(), a.size() * 4), 0);

  const TensorInfo& th = f.require("a.f16");
  EXPECT_EQ(th.dtype, DType::F16);
  EXPECT_EQ(th.nbytes, 3 * 64 * 2);
  const TensorInfo& tb = f.require("a.bf16");
  EXPECT_EQ(tb.dtype, DType::BF16);
  for (size_t i = 0; i < a.size(); ++i) {
    uint16_t h, bf;
    std::memcpy(&h, th.data + 2 * i, 2);
    std::memcpy(&bf, tb.data + 2 * i, 2);
    // Half has 11 significant bits, bfloat16 8: relative rounding error 2^-11 / 2^-8.
    EXPECT_NEAR(fp16_to_fp32(h), a[i], std::fabs(a[i]) * (1.0 / 2048) + 1e-7) << i;
    EXPECT_NEAR(bf16_to_fp32(bf), a[i], std::fabs(a[i]) * (1.0 / 256) + 1e-7) << i;
  }
  const TensorInfo& tq = f.require("a.q8_0");
  EXPECT_EQ(tq.dtype, DType::Q8_0);
  EXPECT_EQ(tq.nbytes, 3 * 2 * 34);
  for (int64_t blk = 0; blk < 6; ++blk) {
    const uint8_t* p = tq.data + blk * 34;
    uint16_t dh;
    std::memcpy(&dh, p, 2);
    const float d = fp16_to_fp32(dh);
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(a[blk * 32 + j]));
    EXPECT_NEAR(d, amax / 127, amax / 127 / 1000);
    for (int j = 0; j < 32; ++j)
      EXPECT_NEAR(d * static_cast<int8_t>(p[2 + j]), a[blk * 32 + j], d * 0.51f + 1e-6);
  }
  EXPECT_EQ(f.require("v").shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(f.require("c").shape, (std::vector<int64_t>{2, 3, 4, 64}));
  {
    const TensorInfo& t = f.require("c");
    for (size_t i = 0; i < c.size(); i += 97) {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      EXPECT_NEAR(fp16_to_fp32(h), c[i], std::fabs(c[i]) / 2048 + 1e-7);
    }
  }
  EXPECT_EQ(std::memcmp(f.require("raw").data, raw.data(), raw.size()), 0);
  const TensorInfo& g = f.require("gen");
  EXPECT_EQ(g.shape, (std::vector<int64_t>{70000, 300}));
  const float* gv = reinterpret_cast<const float*>(g.data);
  for (int64_t r : {0, 1, 55923, 55924, 69999})
    for (int64_t j : {0, 299}) EXPECT_EQ(gv[r * 300 + j], static_cast<float>(r % 1000) + j * 1e-3f);
}

TEST(GgufWriter, RejectsBadTensorsAndLeavesNoFileOnFailure) {
  TempDir dir;
  GgufWriter w;
  std::vector<float> x(64, 1.f);
  EXPECT_THROW(add_f32_tensor(w, "q", DType::Q8_0, {2, 20}, x.data()), Error);  // 20 % 32
  EXPECT_THROW(add_f32_tensor(w, "z", DType::F32, {0, 2}, x.data()), Error);
  EXPECT_THROW(add_f32_tensor(w, "five", DType::F32, {1, 1, 1, 1, 2}, x.data()), Error);
  EXPECT_THROW(add_f32_tensor(w, "iq3", DType::IQ3_S, {256}, x.data()), Error);  // no quantiser
  EXPECT_THROW(w.add_tensor_raw("r", DType::F16, {4}, reinterpret_cast<uint8_t*>(x.data()), 7),
               Error);
  add_f32_tensor(w, "ok", DType::F32, {64}, x.data());
  EXPECT_THROW(add_f32_tensor(w, "ok", DType::F32, {64}, x.data()), Error);

  // Unwritable destination: an error naming the path, nothing left behind.
  const std::string bad = dir.file("no/such/dir/x.gguf");
  try {
    w.write(bad);
    FAIL() << "expected an error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  // A generator that throws mid-write removes the temporary file.
  GgufWriter w2;
  add_generated_tensor(w2, "g", DType::F32, {4, 4},
                       [](int64_t, int64_t, float*) { throw Error("generator failed"); });
  const std::string p2 = dir.file("fail.gguf");
  EXPECT_THROW(w2.write(p2), Error);
  EXPECT_FALSE(std::filesystem::exists(p2));
  EXPECT_FALSE(std::filesystem::exists(p2 + ".tmp"));
}

TEST(GgufWriter, HonoursAnotherAlignment) {
  TempDir dir;
  GgufWriter w;
  w.set_u32("general.alignment", 64);
  std::vector<float> x(3, 1.f);
  add_f32_tensor(w, "a", DType::F32, {3}, x.data());
  add_f32_tensor(w, "b", DType::F32, {3}, x.data());
  w.write(dir.file("a64.gguf"));
  GgufFile f(dir.file("a64.gguf"));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.require("b").data - f.require("a").data, 64);
}

// Re-writing llama.cpp's file with its metadata and tensors gives the same keys, types,
// values, tensor shapes, dtypes and bytes (and, as llama.cpp lays files out the same way,
// the very same bytes).
TEST(GgufWriter, RewritesLlamaCppFileExactly) {
  REQUIRE_SHARED(src_path, "models/llama-spm-f32.gguf");
  GgufFile src(src_path);
  GgufWriter w;
  for (const auto& [k, v] : src.metadata()) w.set(k, v);
  for (const auto& t : src.tensors()) w.add_tensor_raw(t.name, t.dtype, t.shape, t.data, t.nbytes);
  TempDir dir;
  const std::string out = dir.file("rewritten.gguf");
  w.write(out);
  GgufFile dst(out);
  // The writer adds general.alignment when the source has none.
  size_t extra = src.find_meta("general.alignment") ? 0 : 1;
  ASSERT_EQ(dst.metadata().size(), src.metadata().size() + extra);
  for (const auto& [k, v] : src.metadata()) {
    const GgufValue* d = dst.find_meta(k);
    ASSERT_NE(d, nullptr) << k;
    EXPECT_EQ(d->type, v.type) << k;
    EXPECT_EQ(d->to_display(SIZE_MAX), v.to_display(SIZE_MAX)) << k;
    if (v.type == GgufType::ARRAY) {
      const auto& a = v.as_array();
      const auto& b = d->as_array();
      ASSERT_EQ(a.values.size(), b.values.size()) << k;
      EXPECT_EQ(a.element_type, b.element_type) << k;
      for (size_t i = 0; i < a.values.size(); ++i) {
        ASSERT_TRUE(a.values[i].value == b.values[i].value) << k << "[" << i << "]";
      }
    } else {
      EXPECT_TRUE(d->value == v.value) << k;
    }
  }
  ASSERT_EQ(dst.tensors().size(), src.tensors().size());
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const TensorInfo& a = src.tensors()[i];
    const TensorInfo& b = dst.tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dtype, b.dtype) << a.name;
    EXPECT_EQ(a.shape, b.shape) << a.name;
    ASSERT_EQ(a.nbytes, b.nbytes) << a.name;
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name;
  }
  if (extra == 0) {
    EXPECT_EQ(testing::read_bytes(out), testing::read_bytes(src_path));
  }
}

}  // namespace
}  // namespace attnsparse
