// Packed quantised weights (ops/quant/packed.h): the layouts decode back to the stored
// rows on any CPU; on a CPU with AVX512-VNNI the packed GEMM gives, for every (row,
// token), the bits of the scalar Format::dot of the type (the portable reference the
// kernel is written against), for every token count, so one batch and token-by-token
// decoding agree.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
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

const DType kPackedTypes[] = {DType::Q4_0, DType::IQ4_NL, DType::MXFP4, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> randn(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Random rows: random block bytes with sane scales (variant 0), scales near the top of
// f16 (variant 1), or real quantised Gaussian rows (variant 2; Q4_0, K-quants quantise).
std::vector<uint8_t> weights(DType t, int64_t n_out, int64_t n_in, uint32_t seed, int variant) {
  if (variant == 2 && format(t).quantize != nullptr) {
    const auto w = randn(n_out * n_in, seed, 0.05f);
    const int64_t rb = dtype_row_bytes(t, n_in);
    std::vector<uint8_t> out(n_out * rb);
    for (int64_t o = 0; o < n_out; ++o) quantize_row(t, w.data() + o * n_in, out.data() + o * rb, n_in);
    return out;
  }
  return variant == 1 ? attnsparse::testing::random_blocks(t, n_out * n_in, seed, 1000.f, 65504.f)
                      : attnsparse::testing::random_blocks(t, n_out * n_in, seed);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

}  // namespace

TEST(PackedWeights, LayoutsDecodeToTheStoredRows) {
  for (DType t : kPackedTypes) {
    const int64_t bs = dtype_traits(t).block_size;
    for (int64_t n_out : {1, 16, 29, 61}) {
      for (int64_t n_in : {bs, 3 * bs, 8 * bs}) {
        for (int variant = 0; variant < 3; ++variant) {
          const auto data = weights(t, n_out, n_in, static_cast<uint32_t>(n_out * 131 + n_in), variant);
          const WeightView w{t, data.data(), n_out, n_in};
          const auto p = pack(w);
          ASSERT_NE(p, nullptr) << dtype_name(t);
          EXPECT_EQ(p->groups, (n_out + 15) / 16);
          std::vector<float> want(n_in), got(n_in);
          for (int64_t o = 0; o < n_out; ++o) {
            dequantize_row(t, data.data() + o * w.row_bytes(), want.data(), n_in);
            std::fill(got.begin(), got.end(), std::nanf(""));
            unpack_row(*p, o, got.data());
            for (int64_t i = 0; i < n_in; ++i)
              ASSERT_TRUE(same_bits(got[i], want[i]))
                  << dtype_name(t) << " n_out " << n_out << " n_in " << n_in << " variant " << variant << " row " << o
                  << " element " << i << ": " << got[i] << " vs " << want[i];
          }
        }
      }
    }
  }
}

TEST(PackedWeights, OnlyTheTypesWithALayoutArePacked) {
  for (DType t : attnsparse::testing::quantised_dtypes()) {
    const bool want = t == DType::Q4_0 || t == DType::IQ4_NL || t == DType::MXFP4 || t == DType::Q4_K ||
                      t == DType::Q5_K || t == DType::Q6_K;
    EXPECT_EQ(has_packed_layout(t), want) << dtype_name(t);
  }
  EXPECT_FALSE(has_packed_layout(DType::F16));
  EXPECT_FALSE(has_packed_layout(DType::Q8_0));
}

// Every (row, token) output of the packed GEMM equals the scalar dot product bit for bit,
// for token counts across the kernels' tile sizes (1..8 and more), and a whole batch
// equals the same tokens one at a time.
TEST(PackedWeights, GemmEqualsTheScalarDotForEveryTokenCount) {
  {
    const auto probe = weights(DType::Q4_0, 16, 32, 1, 0);
    if (pack_weights(WeightView{DType::Q4_0, probe.data(), 16, 32}) == nullptr)
      GTEST_SKIP() << "this CPU has no AVX512-VNNI (simd " << simd_level_name() << "): packed kernels unused";
  }
  int64_t checked = 0;
  for (DType t : kPackedTypes) {
    const Format& f = format(t);
    const ActFormat& af = act_format(f.act);
    const int64_t bs = dtype_traits(t).block_size;
    for (int64_t n_out : {16, 29, 61}) {
      for (int64_t n_in : {bs, 5 * bs}) {
        for (int variant = 0; variant < 3; ++variant) {
          const auto data = weights(t, n_out, n_in, static_cast<uint32_t>(7 * n_out + n_in + variant), variant);
          WeightView w{t, data.data(), n_out, n_in};
          const auto p = pack_weights(w);
          ASSERT_NE(p, nullptr) << dtype_name(t);
          w.packed = p.get();
          for (int64_t m : {1, 2, 3, 4, 5, 7, 8, 9, 17}) {
            const auto x = randn(m * n_in, static_cast<uint32_t>(m * 1000 + n_in), variant == 1 ? 1e-3f : 1.f);
            std::vector<float> y(m * n_out, std::nanf(""));
            matmul(w, x.data(), m, y.data());
            std::vector<uint8_t> a(af.row_bytes(n_in));
            std::vector<float> one(n_out);
            for (int64_t tk = 0; tk < m; ++tk) {
              af.quantize(x.data() + tk * n_in, a.data(), n_in);
              matmul(w, x.data() + tk * n_in, 1, one.data());
              for (int64_t o = 0; o < n_out; ++o) {
                const float want = static_cast<float>(f.dot(data.data() + o * w.row_bytes(), a.data(), n_in));
                ASSERT_TRUE(same_bits(y[tk * n_out + o], want))
                    << dtype_name(t) << " n_out " << n_out << " n_in " << n_in << " variant " << variant << " m " << m
                    << " token " << tk << " row " << o << ": " << y[tk * n_out + o] << " vs " << want;
                ASSERT_TRUE(same_bits(one[o], want)) << dtype_name(t) << " token by token, row " << o;
                ++checked;
              }
            }
          }
        }
      }
    }
  }
  std::printf("[ measured ] %lld outputs bit-identical to the scalar dot\n", static_cast<long long>(checked));
}

// With a lower SIMD level forced, the packed copy is ignored and the stored rows are read.
TEST(PackedWeights, ForcedLowerLevelsReadTheStoredRows) {
  const auto data = weights(DType::Q4_K, 29, 512, 3, 2);
  WeightView w{DType::Q4_K, data.data(), 29, 512};
  const auto p = pack_weights(w);
  if (p == nullptr) GTEST_SKIP() << "no AVX512-VNNI";
  w.packed = p.get();
  const auto x = randn(3 * 512, 5);
  std::vector<float> ref(3 * 29), y(3 * 29);
  matmul_reference(w, x.data(), 3, ref.data());
  {
    cpu::ScopedLevel portable(cpu::Level::Portable);
    matmul(w, x.data(), 3, y.data());
  }
  for (size_t i = 0; i < y.size(); ++i) EXPECT_TRUE(same_bits(y[i], ref[i])) << i;
}

// Q8_0 is not packed: its VNNI GEMM reads the stored rows and keeps llama.cpp's
// arithmetic (8 lanes of 4-element integer sums per block, each lane an f32 FMA chain over
// the blocks, lanes added as ((0+4)+(2+6))+((1+5)+(3+7))), written out here in scalar code.
TEST(PackedWeights, Q8_0GemmKeepsTheEightLaneSums) {
  if (!cpu::active_at_least(cpu::Level::Avx512Vnni))
    GTEST_SKIP() << "this CPU has no AVX512-VNNI";
  for (int64_t n_out : {1, 3, 29, 64, 67}) {
    for (int64_t n_in : {32, 96, 544}) {
      const auto wf = randn(n_out * n_in, static_cast<uint32_t>(n_out + 17 * n_in), 0.1f);
      const int64_t rb = dtype_row_bytes(DType::Q8_0, n_in);
      std::vector<uint8_t> data(n_out * rb);
      for (int64_t o = 0; o < n_out; ++o) quantize_row(DType::Q8_0, wf.data() + o * n_in, data.data() + o * rb, n_in);
      const WeightView w{DType::Q8_0, data.data(), n_out, n_in};
      for (int64_t m : {1, 2, 5, 6, 7, 13}) {
        const auto x = randn(m * n_in, static_cast<uint32_t>(m + n_in));
        std::vector<float> y(m * n_out, std::nanf(""));
        matmul(w, x.data(), m, y.data());
        std::vector<BlockQ8_0> a(n_in / 32);
        for (int64_t t = 0; t < m; ++t) {
          quantize_act_q8_0(x.data() + t * n_in, a.data(), n_in);
          for (int64_t o = 0; o < n_out; ++o) {
            const auto* wb = reinterpret_cast<const BlockQ8_0*>(data.data() + o * rb);
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t b = 0; b < n_in / 32; ++b) {
              const float d = fp16_to_fp32(wb[b].d) * fp16_to_fp32(a[b].d);
              for (int j = 0; j < 8; ++j) {
                int32_t s = 0;
                for (int k = 0; k < 4; ++k) s += int32_t(wb[b].qs[4 * j + k]) * a[b].qs[4 * j + k];
                lane[j] = std::fma(d, float(s), lane[j]);
              }
            }
            const float want = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
            ASSERT_TRUE(same_bits(y[t * n_out + o], want))
                << "n_out " << n_out << " n_in " << n_in << " m " << m << " token " << t << " row " << o << ": "
                << y[t * n_out + o] << " vs " << want;
          }
        }
      }
    }
  }
}
