// The block formats of src/ops/quant/: every type's decoding against blocks packed by
// hand from the format's description (closed forms), the IQ3_S grid against values of the
// published table, llama.cpp's Q8_1 activation rounding, dot products at edge values
// against dequantise-then-multiply, and hostile GGUF files with the newer types.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "ops/matmul.h"
#include "ops/quant.h"
#include "ops/quant_test_util.h"

using namespace attnsparse;
using namespace attnsparse::ops;
using namespace attnsparse::ops::quant;

namespace {

std::vector<float> decode(DType t, const void* blk, int64_t n) {
  std::vector<float> y(n);
  dequantize_row(t, static_cast<const uint8_t*>(blk), y.data(), n);
  return y;
}

void put_f16(uint8_t* p, float v) {
  const uint16_t h = fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

// The 32-element nibble layout: element j < 16 in the low nibble of byte j, j >= 16 in
// the high nibble of byte j - 16.
void put_nibble(uint8_t* qs, int j, int v) {
  if (j < 16) qs[j] = static_cast<uint8_t>((qs[j] & 0xF0) | v);
  else qs[j - 16] = static_cast<uint8_t>((qs[j - 16] & 0x0F) | (v << 4));
}

}  // namespace

TEST(QuantFormats, TableCoversEveryDType) {
  for (DType t : all_dtypes()) {
    const Format& f = format(t);
    EXPECT_EQ(f.type, t);
    EXPECT_NE(f.dequantize, nullptr) << dtype_name(t);
    const bool is_float = dtype_traits(t).block_size == 1;
    EXPECT_EQ(is_float, is_float_act(f.act)) << dtype_name(t);
    EXPECT_EQ(is_float, f.dot == nullptr) << dtype_name(t);
    if (!is_float) {
      EXPECT_EQ(dtype_traits(t).block_size % act_format(f.act).block_size, 0) << dtype_name(t);
    }
  }
  // GGML ids (ggml.h) and block sizes (ggml-common.h).
  EXPECT_EQ(*dtype_from_ggml(3), DType::Q4_1);
  EXPECT_EQ(*dtype_from_ggml(13), DType::Q5_K);
  EXPECT_EQ(*dtype_from_ggml(20), DType::IQ4_NL);
  EXPECT_EQ(*dtype_from_ggml(21), DType::IQ3_S);
  EXPECT_EQ(*dtype_from_ggml(23), DType::IQ4_XS);
  EXPECT_EQ(*dtype_from_ggml(35), DType::TQ2_0);
  EXPECT_EQ(*dtype_from_ggml(39), DType::MXFP4);
  EXPECT_EQ(dtype_row_bytes(DType::Q2_K, 256), 84);
  EXPECT_EQ(dtype_row_bytes(DType::Q3_K, 256), 110);
  EXPECT_EQ(dtype_row_bytes(DType::Q5_K, 256), 176);
  EXPECT_EQ(dtype_row_bytes(DType::IQ3_S, 256), 110);
  EXPECT_EQ(dtype_row_bytes(DType::IQ4_XS, 256), 136);
  EXPECT_EQ(dtype_row_bytes(DType::TQ2_0, 256), 66);
  EXPECT_EQ(dtype_row_bytes(DType::MXFP4, 32), 17);
  EXPECT_EQ(dtype_row_bytes(DType::Q5_1, 32), 24);
  EXPECT_EQ(*dtype_from_name("Q4_K"), DType::Q4_K);
  EXPECT_EQ(*dtype_from_name("iq4_xs"), DType::IQ4_XS);
  EXPECT_EQ(ggml_type_name(16), "iq2_xxs");
  EXPECT_EQ(ggml_type_name(34), "tq1_0");
}

TEST(QuantFormats, DecodeQ4_1Q5_0Q5_1) {
  uint8_t q41[20] = {};
  put_f16(q41, 0.5f);
  put_f16(q41 + 2, -2.f);
  for (int j = 0; j < 32; ++j) put_nibble(q41 + 4, j, (j * 7) % 16);
  auto y = decode(DType::Q4_1, q41, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * ((j * 7) % 16) - 2.f) << j;

  uint8_t q50[22] = {};
  put_f16(q50, 0.25f);
  uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) {
    const int q = (j * 11) % 32;
    put_nibble(q50 + 6, j, q & 15);
    qh |= uint32_t(q >> 4) << j;
  }
  std::memcpy(q50 + 2, &qh, 4);
  y = decode(DType::Q5_0, q50, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.25f * ((j * 11) % 32 - 16)) << j;

  uint8_t q51[24] = {};
  put_f16(q51, 1.f);
  put_f16(q51 + 2, 0.5f);
  qh = 0;
  for (int j = 0; j < 32; ++j) {
    const int q = 31 - j;
    put_nibble(q51 + 8, j, q & 15);
    qh |= uint32_t(q >> 4) << j;
  }
  std::memcpy(q51 + 4, &qh, 4);
  y = decode(DType::Q5_1, q51, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], float(31 - j) + 0.5f) << j;
}

TEST(QuantFormats, DecodeIQ4_NLAndMXFP4) {
  // IQ4_NL's codebook (ggml-common.h kvalues_iq4nl).
  const float kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  uint8_t nl[18] = {};
  put_f16(nl, 0.5f);
  for (int j = 0; j < 32; ++j) put_nibble(nl + 2, j, (j + 5) % 16);
  auto y = decode(DType::IQ4_NL, nl, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * kv[(j + 5) % 16]) << j;

  // MXFP4 (OCP MX v1.0): E2M1 nibbles (sign, 2-bit exponent, 1-bit mantissa) times 2^(e-127).
  const float e2m1[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
  for (int e : {127, 130, 100, 1, 0}) {
    uint8_t mx[17] = {};
    mx[0] = static_cast<uint8_t>(e);
    for (int j = 0; j < 32; ++j) put_nibble(mx + 1, j, j % 16);
    y = decode(DType::MXFP4, mx, 32);
    for (int j = 0; j < 32; ++j) {
      const int nib = j % 16;
      const float v = (nib & 8 ? -1.f : 1.f) * e2m1[nib & 7] * std::ldexp(1.f, e - 127);
      EXPECT_EQ(y[j], v) << "e " << e << " j " << j;
    }
  }
}

TEST(QuantFormats, DecodeQ2_KQ3_KTQ2_0) {
  // 2-bit layout of Q2_K / Q3_K / TQ2_0: element e in byte (e/128)*32 + e%32 at bit
  // offset 2*((e%128)/32).
  auto put2 = [](uint8_t* qs, int e, int v) { qs[(e / 128) * 32 + e % 32] |= static_cast<uint8_t>(v << (2 * ((e % 128) / 32))); };
  {
    std::vector<uint8_t> b(84, 0);
    for (int g = 0; g < 16; ++g) b[g] = static_cast<uint8_t>((g % 16) | ((15 - g) << 4));
    for (int e = 0; e < 256; ++e) put2(b.data() + 16, e, (e * 3 + e / 64) % 4);
    put_f16(b.data() + 80, 0.5f);
    put_f16(b.data() + 82, 0.25f);
    const auto y = decode(DType::Q2_K, b.data(), 256);
    for (int e = 0; e < 256; ++e) {
      const int g = e / 16;
      EXPECT_EQ(y[e], 0.5f * g * ((e * 3 + e / 64) % 4) - 0.25f * (15 - g)) << e;
    }
  }
  {
    // Q3_K: 16 6-bit scales l (stored l + 32), packed as llama.cpp's quantiser writes
    // them: low nibbles in bytes 0..7 (scales 8..15 in the high nibbles), the top 2 bits
    // of scale j at bit 2*(j/4) of byte 8 + j%4. hmask bit set: no -4.
    std::vector<uint8_t> b(110, 0);
    int sc[16];
    for (int j = 0; j < 16; ++j) {
      sc[j] = (j * 9) % 64 - 32;
      const int l = sc[j] + 32;
      if (j < 8) b[96 + j] = static_cast<uint8_t>(l & 0xF);
      else b[96 + j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
      b[96 + 8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
    }
    for (int e = 0; e < 256; ++e) {
      const int q = (e * 5) % 8 - 4;  // -4..3
      put2(b.data() + 32, e, (q + 4) & 3);
      if (q >= 0) b[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
    }
    put_f16(b.data() + 108, 0.125f);
    const auto y = decode(DType::Q3_K, b.data(), 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.125f * sc[e / 16] * ((e * 5) % 8 - 4)) << e;
  }
  {
    std::vector<uint8_t> b(66, 0);
    for (int e = 0; e < 256; ++e) put2(b.data(), e, e % 3);
    put_f16(b.data() + 64, 2.f);
    const auto y = decode(DType::TQ2_0, b.data(), 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 2.f * (e % 3 - 1)) << e;
  }
}

TEST(QuantFormats, DecodeQ5_KAndIQ4_XS) {
  {
    // Q5_K: Q4_K's 6-bit scale/min packing (as llama.cpp's quantiser writes it), low 4 bits
    // of element e in nibble (e/32)%2 of qs[(e/64)*32 + e%32], fifth bit at bit e/32 of qh[e%32].
    std::vector<uint8_t> b(176, 0);
    int sc[8], mn[8];
    uint8_t* s = b.data() + 4;
    for (int j = 0; j < 8; ++j) {
      sc[j] = (j * 13 + 3) % 64;
      mn[j] = (j * 29 + 1) % 64;
      if (j < 4) {
        s[j] = static_cast<uint8_t>(sc[j]);
        s[j + 4] = static_cast<uint8_t>(mn[j]);
      } else {
        s[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
        s[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
        s[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
      }
    }
    for (int e = 0; e < 256; ++e) {
      const int q = (e * 7 + e / 32) % 32;
      b[48 + (e / 64) * 32 + e % 32] |= static_cast<uint8_t>((q & 15) << (4 * ((e / 32) % 2)));
      b[16 + e % 32] |= static_cast<uint8_t>((q >> 4) << (e / 32));
    }
    put_f16(b.data(), 0.5f);
    put_f16(b.data() + 2, 0.25f);
    const auto y = decode(DType::Q5_K, b.data(), 256);
    for (int e = 0; e < 256; ++e)
      EXPECT_EQ(y[e], 0.5f * sc[e / 32] * ((e * 7 + e / 32) % 32) - 0.25f * mn[e / 32]) << e;
  }
  {
    const float kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    std::vector<uint8_t> b(136, 0);
    int ls[8];
    uint16_t sh = 0;
    for (int ib = 0; ib < 8; ++ib) {
      ls[ib] = (ib * 23 + 5) % 64;
      b[4 + ib / 2] |= static_cast<uint8_t>((ls[ib] & 0xF) << (4 * (ib % 2)));
      sh |= static_cast<uint16_t>((ls[ib] >> 4) << (2 * ib));
    }
    std::memcpy(b.data() + 2, &sh, 2);
    for (int e = 0; e < 256; ++e) put_nibble(b.data() + 8 + 16 * (e / 32), e % 32, (e * 3) % 16);
    put_f16(b.data(), 0.25f);
    const auto y = decode(DType::IQ4_XS, b.data(), 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.25f * (ls[e / 32] - 32) * kv[(e * 3) % 16]) << e;
  }
}

// The IQ3_S grid against entries of ggml-common.h's iq3s_grid, and its shape: 512
// distinct points of four odd magnitudes 1..15.
TEST(QuantFormats, IQ3SGrid) {
  const uint32_t* g = iq3s_grid();
  EXPECT_EQ(g[0], 0x01010101u);
  EXPECT_EQ(g[1], 0x01010103u);
  EXPECT_EQ(g[100], 0x010f0101u);
  EXPECT_EQ(g[256], 0x05090507u);
  EXPECT_EQ(g[511], 0x0f0f0101u);
  std::set<uint32_t> seen(g, g + 512);
  EXPECT_EQ(seen.size(), 512u);
  for (int i = 0; i < 512; ++i)
    for (int j = 0; j < 4; ++j) {
      const int v = (g[i] >> (8 * j)) & 0xFF;
      EXPECT_TRUE(v % 2 == 1 && v <= 15) << i;
    }
}

// IQ3_S: sub-block ib has multiplier 1 + 2 s (4-bit s, low nibble of scales[ib/2] for even
// ib), group k of 4 uses grid index qs[8 ib + k] | bit k of qh[ib] << 8, element j of that
// group is negative when bit 4 (k%2) + j of signs[4 ib + k/2] is set.
TEST(QuantFormats, DecodeIQ3_S) {
  std::vector<uint8_t> b(110, 0);
  put_f16(b.data(), 0.5f);
  uint8_t* qs = b.data() + 2;
  uint8_t* qh = b.data() + 66;
  uint8_t* signs = b.data() + 74;
  uint8_t* scales = b.data() + 106;
  int index[8][8], s[8];
  for (int ib = 0; ib < 8; ++ib) {
    s[ib] = (ib * 5 + 2) % 16;
    scales[ib / 2] |= static_cast<uint8_t>(s[ib] << (4 * (ib % 2)));
    for (int k = 0; k < 8; ++k) {
      index[ib][k] = (ib * 67 + k * 41 + 3) % 512;
      qs[8 * ib + k] = static_cast<uint8_t>(index[ib][k] & 0xFF);
      qh[ib] |= static_cast<uint8_t>((index[ib][k] >> 8) << k);
    }
  }
  for (int e = 0; e < 256; ++e)
    if ((e * 37) % 3 == 0) signs[e / 8] |= static_cast<uint8_t>(1 << (e % 8));
  const auto y = decode(DType::IQ3_S, b.data(), 256);
  const uint32_t* g = iq3s_grid();
  for (int e = 0; e < 256; ++e) {
    const int ib = e / 32, k = (e % 32) / 4, j = e % 4;
    const float mag = float((g[index[ib][k]] >> (8 * j)) & 0xFF);
    const float sign = (e * 37) % 3 == 0 ? -1.f : 1.f;
    EXPECT_EQ(y[e], 0.5f * (1 + 2 * s[ib]) * mag * sign) << e;
  }
}

// llama.cpp's quantize_row_q8_1 (AVX path): as Q8_0 (d = amax/127 as f16, q =
// round-half-even(x 127/amax)), and s = f16(d * sum q) with d before f16 rounding.
TEST(QuantFormats, Q8_1Rounding) {
  std::vector<float> x(64, 0.f);
  for (int j = 0; j < 32; ++j) x[j] = (j - 10) * 0.37f;
  x[40] = -3.f;                        // second block: one value, the rest 0
  std::vector<BlockQ8_1> a(2);
  quantize_act_q8_1(x.data(), a.data(), 64);
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  EXPECT_EQ(a[0].d, fp32_to_fp16(d));
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(a[0].qs[j], static_cast<int>(std::nearbyint(x[j] * (127.f / amax)))) << j;
    sum += a[0].qs[j];
  }
  EXPECT_EQ(a[0].s, fp32_to_fp16(d * static_cast<float>(sum)));
  EXPECT_EQ(a[1].qs[8], -127);
  EXPECT_EQ(fp16_to_fp32(a[1].s), fp16_to_fp32(fp32_to_fp16(-3.f)));  // d * -127 = -3
  // Halfway cases round to even: amax 127 -> scale 1, x = 2.5 -> 2, 3.5 -> 4.
  std::vector<float> h(32, 0.f);
  h[0] = 127.f;
  h[1] = 2.5f;
  h[2] = 3.5f;
  h[3] = -2.5f;
  quantize_act_q8_1(h.data(), a.data(), 32);
  EXPECT_EQ(a[0].qs[1], 2);
  EXPECT_EQ(a[0].qs[2], 4);
  EXPECT_EQ(a[0].qs[3], -2);
  EXPECT_EQ(fp16_to_fp32(a[0].s), 131.f);
}

// Dot products at edge values against the dequantised weights times the decoded
// activations in double: all-zero blocks, the largest f16 scales, one-hot activations.
TEST(QuantFormats, DotEdgeValues) {
  for (DType t : attnsparse::testing::quantised_dtypes()) {
    const int64_t n = 512;
    const Format& f = format(t);
    const ActFormat& af = act_format(f.act);
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<uint8_t> w = variant == 1 ? attnsparse::testing::random_blocks(t, n, 5, 1000.f, 65504.f)
                                            : attnsparse::testing::random_blocks(t, n, 6);
      if (variant == 0) std::fill(w.begin(), w.end(), 0);  // zero blocks (scale 0)
      std::vector<float> x = std::vector<float>(n, 0.f);
      if (variant == 2) x[300] = -1.5f;  // one-hot
      else for (int64_t i = 0; i < n; ++i) x[i] = std::sin(0.37f * i) * (variant == 1 ? 1e-3f : 1.f);
      std::vector<uint8_t> a(af.row_bytes(n));
      af.quantize(x.data(), a.data(), n);
      const double got = f.dot(w.data(), a.data(), n);
      std::vector<float> wf(n);
      dequantize_row(t, w.data(), wf.data(), n);
      std::vector<float> sums;
      const auto xa = attnsparse::testing::decoded_acts(t, x.data(), n, &sums);
      double want = 0, scale = 0;
      for (int64_t i = 0; i < n; ++i) {
        want += double(wf[i]) * xa[i];
        scale += std::fabs(double(wf[i]) * xa[i]);
      }
      ASSERT_TRUE(std::isfinite(got)) << dtype_name(t) << " variant " << variant;
      if (variant == 0) {
        EXPECT_EQ(got, 0.0) << dtype_name(t);
      }
      // Q4_1 / Q5_1 use the f16 block sums for the min term: allow 2^-11 of it.
      double extra = 0;
      if (f.act == ActType::Q8_1)
        for (int64_t b = 0; b < n / 32; ++b) {
          uint16_t mh;
          std::memcpy(&mh, w.data() + b * dtype_traits(t).block_bytes + 2, 2);
          extra += std::fabs(fp16_to_fp32(mh) * sums[b]) * std::ldexp(1.0, -11);
        }
      EXPECT_NEAR(got, want, 2e-6 * scale + extra) << dtype_name(t) << " variant " << variant;
    }
  }
}

// GGUF files holding the newer types with a bad shape or too little data, and the types
// we do not read: one FormatError naming the tensor and the type.
namespace {
struct MiniGguf {
  std::vector<uint8_t> b;
  void raw(const void* p, size_t n) { b.insert(b.end(), (const uint8_t*)p, (const uint8_t*)p + n); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  // One tensor `name` of GGML type `type` and shape ne (innermost first), `data` bytes.
  MiniGguf(const std::string& name, std::vector<uint64_t> ne, uint32_t type, size_t data) {
    raw("GGUF", 4);
    u32(3);
    u64(1);
    u64(0);
    u64(name.size());
    raw(name.data(), name.size());
    u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    u32(type);
    u64(0);
    while (b.size() % 32) b.push_back(0);
    b.insert(b.end(), data, 0);
  }
};

std::string load_error(const MiniGguf& g) {
  const auto path = std::filesystem::temp_directory_path() / ("attnsparse-quant-" + std::to_string(::getpid()) + ".gguf");
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(g.b.data()), static_cast<std::streamsize>(g.b.size()));
  }
  std::string msg;
  try {
    GgufFile f(path.string());
    ADD_FAILURE() << "accepted";
  } catch (const FormatError& e) {
    msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  std::filesystem::remove(path);
  return msg;
}
}  // namespace

TEST(QuantFormats, HostileGgufWithNewTypes) {
  // Row length not a multiple of the block size.
  for (auto [type, name, len] : {std::tuple{3u, "q4_1", 48ull}, {13u, "q5_k", 128ull}, {21u, "iq3_s", 320ull},
                                 {39u, "mxfp4", 20ull}, {35u, "tq2_0", 64ull}}) {
    const std::string msg = load_error(MiniGguf("blk.0.ffn_up.weight", {len, 2}, type, 4096));
    EXPECT_NE(msg.find("blk.0.ffn_up.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
    EXPECT_NE(msg.find("block size"), std::string::npos) << msg;
  }
  // Truncated data: a 256 x 4 Q2_K tensor needs 4 * 84 bytes.
  {
    const std::string msg = load_error(MiniGguf("output.weight", {256, 4}, 10, 4 * 84 - 1));
    EXPECT_NE(msg.find("output.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("past the end"), std::string::npos) << msg;
  }
  // Types without a decoder here: the error names the tensor and the type.
  for (auto [type, name] : {std::pair{16u, "iq2_xxs"}, {18u, "iq3_xxs"}, {19u, "iq1_s"}, {29u, "iq1_m"},
                            {34u, "tq1_0"}, {9u, "q8_1"}, {15u, "q8_k"}, {22u, "iq2_s"}}) {
    const std::string msg = load_error(MiniGguf("blk.1.attn_q.weight", {256, 2}, type, 4096));
    EXPECT_NE(msg.find("blk.1.attn_q.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
  }
}
