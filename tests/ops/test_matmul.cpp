// ops::matmul kernels: every weight dtype x every SIMD level this CPU has, against the
// scalar matmul_reference; the reference itself against dequantise-then-multiply;
// Q4_K / Q6_K decoding against hand-packed blocks; llama.cpp's activation rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "ops/matmul.h"
#include "ops/quant.h"
#include "ops/quant_test_util.h"

using namespace attnsparse;
using namespace attnsparse::ops;
using namespace attnsparse::ops::quant;

namespace {

// Selects an instruction-set level for the lifetime of the object.
struct SimdOverride {
  explicit SimdOverride(const char* level) : scoped(*cpu::parse_level(level)) {}
  cpu::ScopedLevel scoped;
};

// The levels this CPU can run.
std::vector<std::string> available_levels() {
  std::vector<std::string> out;
  for (int l = 0; l <= static_cast<int>(cpu::supported()); ++l) out.push_back(cpu::kLevelNames[l]);
  return out;
}

std::vector<float> randn(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// A random weight matrix of the given dtype. Float types and Q8_0 go through
// quantize_row; the other quantised types are random bytes (every byte pattern is a valid
// block) with their scale fields set to small positive values.
std::vector<uint8_t> random_weights(DType type, int64_t n_out, int64_t n_in, uint32_t seed) {
  const int64_t rb = dtype_row_bytes(type, n_in);
  std::vector<uint8_t> data(n_out * rb);
  if (type == DType::F32 || type == DType::F16 || type == DType::BF16 || type == DType::Q8_0) {
    const auto w = randn(n_out * n_in, seed, 0.1f);
    for (int64_t o = 0; o < n_out; ++o) quantize_row(type, w.data() + o * n_in, data.data() + o * rb, n_in);
    return data;
  }
  return attnsparse::testing::random_blocks(type, n_out * n_in, seed);
}

// sum_i |w_i x_i| for output (t, o): the scale of the rounding error of a dot product.
std::vector<double> abs_dot(const WeightView& w, const float* x, int64_t m) {
  std::vector<double> out(m * w.n_out);
  std::vector<float> row(w.n_in);
  for (int64_t o = 0; o < w.n_out; ++o) {
    dequantize_row(w.dtype, w.data + o * w.row_bytes(), row.data(), w.n_in);
    for (int64_t t = 0; t < m; ++t) {
      double s = 0;
      for (int64_t i = 0; i < w.n_in; ++i) s += std::fabs(double(row[i]) * x[t * w.n_in + i]);
      out[t * w.n_out + o] = s;
    }
  }
  return out;
}

struct Case {
  DType type;
  int64_t n_in;
};

}  // namespace

// Each SIMD level against the scalar reference. The arithmetic differs only in the
// order of f32 additions (products of rounded activations and weights, and integer block
// sums, are exact), so |y - ref| <= tol * sum|w x|. Measured worst cases on these shapes:
// ~4e-7 (float types, f32 accumulation over <= 700 terms), ~3e-7 (integer types).
// Tolerance 4e-6: 10x margin, still ~1000x below an indexing or rounding-rule mistake.
TEST(Matmul, EveryLevelMatchesReference) {
  const auto levels = available_levels();
  ASSERT_FALSE(levels.empty());
  ASSERT_EQ(levels[0], "portable");
  const Case cases[] = {
      {DType::F32, 37},  {DType::F32, 300},  {DType::F16, 45},  {DType::F16, 700},
      {DType::BF16, 19}, {DType::BF16, 520}, {DType::BF16, 262}, {DType::Q8_0, 64}, {DType::Q8_0, 544},
      {DType::Q4_0, 96}, {DType::Q4_0, 512}, {DType::Q4_K, 256}, {DType::Q4_K, 768},
      {DType::Q6_K, 256}, {DType::Q6_K, 512},
      {DType::Q4_1, 64},  {DType::Q5_0, 96},   {DType::Q5_1, 64},  {DType::IQ4_NL, 96},
      {DType::MXFP4, 64}, {DType::Q2_K, 256},  {DType::Q3_K, 512}, {DType::Q5_K, 256},
      {DType::IQ4_XS, 256}, {DType::IQ3_S, 512}, {DType::TQ2_0, 256},
  };
  const int64_t ms[] = {1, 3, 17, 40};
  const int64_t n_outs[] = {1, 29, 61};
  double worst = 0;
  for (const auto& c : cases) {
    for (int64_t n_out : n_outs) {
      const auto wdata = random_weights(c.type, n_out, c.n_in, 1000 + static_cast<uint32_t>(n_out));
      const WeightView w{c.type, wdata.data(), n_out, c.n_in};
      for (int64_t m : ms) {
        const auto x = randn(m * c.n_in, 7 + static_cast<uint32_t>(m));
        std::vector<float> ref(m * n_out), y(m * n_out);
        matmul_reference(w, x.data(), m, ref.data());
        const auto scale = abs_dot(w, x.data(), m);
        for (const auto& lv : levels) {
          SimdOverride o(lv.c_str());
          std::fill(y.begin(), y.end(), std::nanf(""));
          matmul(w, x.data(), m, y.data());
          for (int64_t i = 0; i < m * n_out; ++i) {
            const double err = std::fabs(double(y[i]) - ref[i]);
            const double rel = err / (scale[i] + 1e-30);
            worst = std::max(worst, rel);
            ASSERT_LE(err, 4e-6 * scale[i] + 1e-30)
                << dtype_name(c.type) << " level " << lv << " n_in " << c.n_in << " n_out " << n_out
                << " m " << m << " index " << i << " y " << y[i] << " ref " << ref[i];
          }
        }
      }
    }
  }
  std::printf("worst |y-ref|/sum|wx| over all levels: %.3g (levels:", worst);
  for (const auto& lv : levels) std::printf(" %s", lv.c_str());
  std::printf(")\n");
}

// The reference against an independent route: dequantise the weights (checked against
// hand-packed blocks below) and the quantised activations, multiply in double.
TEST(Matmul, ReferenceEqualsDequantizedProduct) {
  const int64_t n_out = 5, m = 3;
  std::vector<Case> cases = {{DType::F16, 70}, {DType::BF16, 70}};
  for (DType t : attnsparse::testing::quantised_dtypes()) cases.push_back({t, 512});
  for (const Case c : cases) {
    const int64_t n = c.n_in;
    const auto wdata = random_weights(c.type, n_out, n, 42);
    const WeightView w{c.type, wdata.data(), n_out, n};
    const auto x = randn(m * n, 9);
    // Activations as llama.cpp rounds them, decoded back to floats.
    std::vector<float> xa(m * n);
    for (int64_t t = 0; t < m; ++t) {
      const auto d = attnsparse::testing::decoded_acts(c.type, x.data() + t * n, n);
      std::copy(d.begin(), d.end(), xa.begin() + t * n);
    }
    // Q4_1 / Q5_1: the min term uses the activation block's stored f16 sum s, not
    // d * sum(q): allow |m| |s| 2^-11 per block on top.
    const bool with_sum = format(c.type).act == ActType::Q8_1;
    std::vector<float> ref(m * n_out), row(n);
    matmul_reference(w, x.data(), m, ref.data());
    for (int64_t o = 0; o < n_out; ++o) {
      dequantize_row(c.type, wdata.data() + o * w.row_bytes(), row.data(), n);
      for (int64_t t = 0; t < m; ++t) {
        double s = 0, sa = 0;
        for (int64_t i = 0; i < n; ++i) {
          s += double(row[i]) * xa[t * n + i];
          sa += std::fabs(double(row[i]) * xa[t * n + i]);
        }
        double extra = 0;
        if (with_sum) {
          std::vector<float> sums;
          attnsparse::testing::decoded_acts(c.type, x.data() + t * n, n, &sums);
          for (int64_t b = 0; b < n / 32; ++b) {
            uint16_t mh;
            std::memcpy(&mh, wdata.data() + o * w.row_bytes() + b * dtype_traits(c.type).block_bytes + 2, 2);
            extra += std::fabs(fp16_to_fp32(mh) * sums[b]) * std::ldexp(1.0, -11);
          }
        }
        // Only the f32 scale products differ between the two routes (relative ~1e-7).
        EXPECT_NEAR(ref[t * n_out + o], s, 2e-6 * sa + extra) << dtype_name(c.type) << " o " << o << " t " << t;
      }
    }
  }
}

// Q4_K: a block packed by hand (llama.cpp's packing of 6-bit scales/mins, written out
// independently of the decoder) and decoded by the closed form y = d*sc*q - dmin*mn.
TEST(Matmul, DequantizeQ4KHandPackedBlock) {
  const float d = 0.5f, dmin = 0.25f;  // exact in f16
  const int sc[8] = {1, 63, 17, 5, 32, 48, 7, 60};
  const int mn[8] = {0, 2, 63, 16, 33, 9, 62, 31};
  BlockQ4_K blk{};
  blk.d = fp32_to_fp16(d);
  blk.dmin = fp32_to_fp16(dmin);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      blk.scales[j] = static_cast<uint8_t>(sc[j]);
      blk.scales[j + 4] = static_cast<uint8_t>(mn[j]);
    } else {
      blk.scales[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
      blk.scales[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      blk.scales[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
    }
  }
  auto q_of = [](int e) { return (e * 7 + 3) % 16; };
  for (int e = 0; e < 256; ++e) {
    const int chunk = e / 64, within = e % 64;
    const int byte = 32 * chunk + within % 32;
    if (within < 32) blk.qs[byte] |= static_cast<uint8_t>(q_of(e));
    else blk.qs[byte] |= static_cast<uint8_t>(q_of(e) << 4);
  }
  std::vector<float> y(256);
  dequantize_row(DType::Q4_K, reinterpret_cast<const uint8_t*>(&blk), y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const int sub = e / 32;
    const float expect = d * sc[sub] * q_of(e) - dmin * mn[sub];
    ASSERT_EQ(y[e], expect) << "element " << e;
  }
}

// Q6_K: 6-bit quants split into ql (low 4 bits) / qh (high 2 bits), signed 8-bit scales
// per 16 elements; y = d * scale * (q - 32).
TEST(Matmul, DequantizeQ6KHandPackedBlock) {
  const float d = 0.125f;
  int8_t scales[16];
  for (int i = 0; i < 16; ++i) scales[i] = static_cast<int8_t>((i % 2 ? -1 : 1) * (3 * i + 1));
  auto q_of = [](int e) { return (e * 11 + 5) % 64; };
  BlockQ6_K blk{};
  blk.d = fp32_to_fp16(d);
  std::memcpy(blk.scales, scales, 16);
  for (int e = 0; e < 256; ++e) {
    const int half = e / 128, r = e % 128, g = r / 32, l = r % 32;
    const int q = q_of(e);
    uint8_t& low = blk.ql[64 * half + l + (g % 2) * 32];
    low |= static_cast<uint8_t>(g < 2 ? (q & 0xF) : ((q & 0xF) << 4));
    blk.qh[32 * half + l] |= static_cast<uint8_t>((q >> 4) << (2 * g));
  }
  std::vector<float> y(256);
  dequantize_row(DType::Q6_K, reinterpret_cast<const uint8_t*>(&blk), y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const int half = e / 128, r = e % 128, g = r / 32, l = r % 32;
    const int s = scales[8 * half + 2 * g + l / 16];
    ASSERT_EQ(y[e], d * s * (q_of(e) - 32)) << "element " << e;
  }
}

// Activation quantisation rounds half to even (llama.cpp's AVX path), the Q8_0 writer
// rounds half away from zero (quantize_row_q8_0_ref).
TEST(Matmul, Q8_0RoundingRules) {
  std::vector<float> x(32, 0.f);
  x[0] = 127.f;  // amax 127 -> d = 1, scale factor exactly 1
  const float halves[] = {0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 3.5f, -3.5f};
  const int even[] = {0, 2, 2, 0, -2, 4, -4};
  const int away[] = {1, 2, 3, -1, -3, 4, -4};
  for (int i = 0; i < 7; ++i) x[1 + i] = halves[i];
  BlockQ8_0 act, file;
  quantize_act_q8_0(x.data(), &act, 32);
  quantize_row(DType::Q8_0, x.data(), reinterpret_cast<uint8_t*>(&file), 32);
  EXPECT_EQ(fp16_to_fp32(act.d), 1.f);
  EXPECT_EQ(fp16_to_fp32(file.d), 1.f);
  EXPECT_EQ(act.qs[0], 127);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(act.qs[1 + i], even[i]) << halves[i];
    EXPECT_EQ(file.qs[1 + i], away[i]) << halves[i];
  }
  // All-zero block: d = 0 and q = 0 (no division by zero).
  std::vector<float> z(32, 0.f);
  quantize_act_q8_0(z.data(), &act, 32);
  EXPECT_EQ(act.d, 0);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(act.qs[i], 0);
}

// Q8_K: scale from the signed element of largest magnitude (iscale = -127/max), round
// half to even, bsums per 16.
TEST(Matmul, Q8KQuantisation) {
  std::vector<float> x(256, 0.f);
  x[0] = -127.f;  // max = -127 -> iscale = 1, d = 1
  x[1] = 0.5f;
  x[2] = 2.5f;
  x[3] = -1.5f;
  x[17] = 100.f;
  BlockQ8_K a;
  quantize_act_q8_K(x.data(), &a, 256);
  EXPECT_EQ(a.d, 1.f);
  EXPECT_EQ(a.qs[0], -127);
  EXPECT_EQ(a.qs[1], 0);
  EXPECT_EQ(a.qs[2], 2);
  EXPECT_EQ(a.qs[3], -2);
  EXPECT_EQ(a.qs[17], 100);
  EXPECT_EQ(a.bsums[0], -127 + 0 + 2 - 2);
  EXPECT_EQ(a.bsums[1], 100);
  x[0] = 127.f;  // positive max -> negative scale, values flip sign
  quantize_act_q8_K(x.data(), &a, 256);
  EXPECT_EQ(a.d, -1.f);
  EXPECT_EQ(a.qs[0], -127);
  EXPECT_EQ(a.qs[17], -100);
}

TEST(Matmul, BadInputThrows) {
  std::vector<uint8_t> wdata(34 * 4, 0);
  std::vector<float> x(48, 1.f), y(4, 0.f);
  const WeightView bad{DType::Q8_0, wdata.data(), 2, 48};  // 48 is not a multiple of 32
  EXPECT_THROW(matmul(bad, x.data(), 1, y.data()), Error);
  EXPECT_THROW(matmul_reference(bad, x.data(), 1, y.data()), Error);
  std::vector<float> row(32);
  EXPECT_THROW(quantize_row(DType::IQ3_S, row.data(), wdata.data(), 32), Error);  // no quantiser
  EXPECT_THROW(quantize_row(DType::Q4_K, row.data(), wdata.data(), 32), Error);   // not a multiple of 256
}

// Zero activations give exact zeros on every path (no NaN from 0/0 scales).
TEST(Matmul, ZeroActivationsGiveZero) {
  std::vector<DType> types = attnsparse::testing::quantised_dtypes();
  types.push_back(DType::F16);
  for (DType t : types) {
    const auto wdata = random_weights(t, 7, 256, 3);
    const WeightView w{t, wdata.data(), 7, 256};
    std::vector<float> x(2 * 256, 0.f), y(2 * 7, 1.f);
    matmul(w, x.data(), 2, y.data());
    for (float v : y) EXPECT_EQ(v, 0.f) << dtype_name(t);
  }
}
