// Non-finite and extreme activations in the quantised products (found by
// fuzz_packed_matmul): llama.cpp's activation quantisers convert x * (127/amax) to
// integers whatever it is, so a NaN or Inf element became an arbitrary quant (undefined
// behaviour in C++, -128 or 0 in practice) next to a finite scale, and the product was a
// finite number: the NaN vanished. A block holding NaN or Inf now gets the scale NaN and
// zero quants, so every product with it is NaN, on every kernel; a block of subnormals
// (127/amax overflows) gets zero quants, as llama.cpp's f16 scale of 0 makes it anyway.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/cpu.h"
#include "ops/matmul.h"
#include "ops/quant.h"
#include "ops/quant/packed.h"
#include "ops/quant_test_util.h"

using namespace attnsparse;
using namespace attnsparse::ops;
using namespace attnsparse::ops::quant;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> ramp(int64_t n) {
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>((i * 37) % 23) - 11.f;
  return x;
}

TEST(QuantHostile, NonFiniteActivationBlocksGetANaNScale) {
  for (float bad : {kNaN, kInf, -kInf}) {
    std::vector<float> x = ramp(256);
    x[40] = bad;  // Q8_0 / Q8_1 block 1; the only Q8_K block
    std::vector<BlockQ8_0> a0(8);
    quantize_act_q8_0(x.data(), a0.data(), 256);
    EXPECT_TRUE(std::isnan(fp16_to_fp32(a0[1].d))) << bad;
    for (int j = 0; j < 32; ++j) EXPECT_EQ(a0[1].qs[j], 0) << bad;
    EXPECT_TRUE(std::isfinite(fp16_to_fp32(a0[0].d)));  // the other blocks as before
    EXPECT_TRUE(std::isfinite(fp16_to_fp32(a0[2].d)));
    std::vector<BlockQ8_1> a1(8);
    quantize_act_q8_1(x.data(), a1.data(), 256);
    EXPECT_TRUE(std::isnan(fp16_to_fp32(a1[1].d)));
    EXPECT_TRUE(std::isnan(fp16_to_fp32(a1[1].s)));
    for (int j = 0; j < 32; ++j) EXPECT_EQ(a1[1].qs[j], 0);
    BlockQ8_K ak;
    quantize_act_q8_K(x.data(), &ak, 256);
    EXPECT_TRUE(std::isnan(ak.d)) << bad;
    for (int j = 0; j < 256; ++j) EXPECT_EQ(ak.qs[j], 0);
    for (int g = 0; g < 16; ++g) EXPECT_EQ(ak.bsums[g], 0);
  }
}

TEST(QuantHostile, SubnormalActivationBlocksQuantiseToZero) {
  // amax = 1e-40: 127 / amax overflows f32.
  std::vector<float> x(256, 0.f);
  for (int i = 0; i < 256; i += 3) x[i] = (i % 2 ? -1.f : 1.f) * 1e-40f;
  std::vector<BlockQ8_0> a0(8);
  quantize_act_q8_0(x.data(), a0.data(), 256);
  for (const auto& b : a0) {
    EXPECT_EQ(fp16_to_fp32(b.d), 0.f);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], 0);
  }
  BlockQ8_K ak;
  quantize_act_q8_K(x.data(), &ak, 256);
  EXPECT_EQ(ak.d, 0.f);  // 1 / (-127 / max) = -0 for the positive max 1e-40
  EXPECT_TRUE(std::signbit(ak.d));
  for (int j = 0; j < 256; ++j) EXPECT_EQ(ak.qs[j], 0);
  // Just above the limit the block quantises as before: x * (127/amax) in [-127, 127].
  std::vector<float> y(32, 0.f);
  y[0] = 4e-37f;
  y[1] = -2e-37f;
  BlockQ8_0 b;
  quantize_act_q8_0(y.data(), &b, 32);
  EXPECT_EQ(b.qs[0], 127);
  EXPECT_EQ(b.qs[1], -64);  // -63.5 rounds half to even
}

// A NaN activation (or weight) gives NaN outputs for every quantised type on every SIMD
// level this CPU runs, with or without the packed copy; an Inf activation never gives a
// finite output either.
TEST(QuantHostile, NaNActivationsPropagateThroughEveryKernel) {
  const int64_t n_out = 19, n_in = 512, m = 3;
  for (DType t : attnsparse::testing::quantised_dtypes()) {
    const auto data = attnsparse::testing::random_blocks(t, n_out * n_in, 5);
    WeightView w{t, data.data(), n_out, n_in};
    const auto packed = pack_weights(w);
    for (float bad : {kNaN, kInf}) {
      std::vector<float> x = ramp(m * n_in);
      x[n_in + 300] = bad;  // token 1 only
      for (int level = 0; level <= static_cast<int>(cpu::supported()); ++level) {
        cpu::ScopedLevel scoped(static_cast<cpu::Level>(level));
        for (const PackedWeights* p : {static_cast<const PackedWeights*>(nullptr),
                                        static_cast<const PackedWeights*>(packed.get())}) {
          w.packed = p;
          std::vector<float> y(m * n_out, 0.f);
          matmul(w, x.data(), m, y.data());
          for (int64_t o = 0; o < n_out; ++o) {
            EXPECT_TRUE(std::isfinite(y[o])) << dtype_name(t) << " level " << level << " row " << o;
            EXPECT_FALSE(std::isfinite(y[n_out + o]))
                << dtype_name(t) << " level " << cpu::kLevelNames[level] << (p ? " packed" : "") << " x = " << bad
                << ": row " << o << " gave " << y[n_out + o];
            EXPECT_TRUE(std::isfinite(y[2 * n_out + o]));
          }
        }
      }
    }
  }
}

// Rows at any address decode as at an aligned one (a GGUF file may set general.alignment
// 1; `quantize` dequantises its input rows in place): the decoders read f16 scales through
// typed fields, undefined behaviour at an odd address (UBSan), so such rows are decoded
// from an aligned copy.
TEST(QuantHostile, RowsAtOddAddressesDecodeAsAligned) {
  std::vector<DType> types = attnsparse::testing::quantised_dtypes();
  types.push_back(DType::F16);
  types.push_back(DType::BF16);
  types.push_back(DType::F32);
  for (DType t : types) {
    const int64_t n = 512;
    const auto data = attnsparse::testing::random_blocks(t, n, 9);
    std::vector<float> want(n), got(n);
    dequantize_row(t, data.data(), want.data(), n);
    for (size_t shift = 1; shift < 4; ++shift) {
      std::vector<uint8_t> odd(data.size() + 8);
      std::memcpy(odd.data() + shift, data.data(), data.size());
      std::fill(got.begin(), got.end(), -1.f);
      dequantize_row(t, odd.data() + shift, got.data(), n);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), n * 4), 0) << dtype_name(t) << " shift " << shift;
    }
  }
}

}  // namespace
