// Quantised weight products on arbitrary blocks: Q4_0 / Q4_K / Q5_K / Q6_K / Q8_0 / IQ4_NL /
// MXFP4 weights
// of random shapes (the blocks' bytes, scales included, straight from the input, so NaN,
// Inf, huge and subnormal f16 scales occur) times activations of any magnitude, NaN and
// Inf included. Against ops::matmul_reference (the scalar Format::dot of each type):
//   - the packed copy (pack_weights, with AVX512-VNNI: every type but Q8_0) decodes to the stored rows and its
//     GEMM gives the reference's bits for every output (NaN for NaN);
//   - the portable kernels give the reference's bits;
//   - the stored-layout kernels of the active SIMD level agree within rounding where no
//     intermediate can overflow (MXFP4's scale product included: scale_products_finite);
//     for Q4_K / Q5_K the rounding is measured against the scale and min parts apart
//     (min_parts), as their difference can cancel to zero;
//   - a NaN or Inf in an activation row makes that output NaN in every path (the
//     activation quantisers give such a block the scale NaN);
//   - a non-finite weight (a NaN scale, or an infinite one: its element with q = 0 decodes
//     as Inf * 0 = NaN) makes that output non-finite in every path, never a number. It
//     need not be NaN: the reference sums the block's integers before the scale, so an
//     infinite scale times a nonzero sum is +-Inf, while a kernel that scales partial sums
//     may meet Inf * 0 or Inf - Inf first. The model refuses both at its finite checks.
//     MXFP4 is exempt: its E8M0 scale is always finite (up to 2^127), and a decoded Inf
//     there is a finite weight (6 x 2^128) past f32's range, whose products the kernels
//     still form exactly (the activation scale is applied first);
//   - nothing crashes (UBSan checks every float -> int conversion).
// Without AVX512-VNNI the packed path is not taken and the other checks still run.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/cpu.h"
#include "core/dtype.h"
#include "ops/matmul.h"
#include "ops/quant.h"
#include "ops/quant/blocks.h"
#include "ops/quant/packed.h"
#include "ops/quant_test_util.h"  // tests/: decoded_acts

namespace {

using namespace attnsparse;
using namespace attnsparse::ops;

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, 4) == 0; }

[[noreturn]] void broken(const char* what, DType t, int64_t n_out, int64_t n_in, int64_t m, int64_t idx, float got,
                         float want) {
  std::fprintf(stderr, "%s: %s n_out %lld n_in %lld m %lld, output %lld: %.9g vs reference %.9g\n", what,
               dtype_name(t), static_cast<long long>(n_out), static_cast<long long>(n_in),
               static_cast<long long>(m), static_cast<long long>(idx), got, want);
  std::abort();
}

// MXFP4's E8M0 scale reaches 2^127, so the product of the two block scales, which every
// path forms before the block's integer sum (as ggml does), can overflow where no element's
// product does: weights near 2^127 facing zero activations give Inf * 0 = NaN. The f16
// scales of the other types cannot (|d_w d_a| <= 65504^2). Rows where it can are outside
// the within-rounding comparison (with a margin for the integer sum, |s| <= 32 * 12 * 127).
bool scale_products_finite(DType t, const uint8_t* wrow, const float* x, int64_t n_in) {
  if (t != DType::MXFP4) return true;
  std::vector<quant::BlockQ8_0> a(n_in / 32);
  quant::quantize_act_q8_0(x, a.data(), n_in);
  const auto* w = reinterpret_cast<const quant::BlockMXFP4*>(wrow);
  for (int64_t b = 0; b < n_in / 32; ++b) {
    const double prod = double(fp16_to_fp32(a[b].d)) * quant::e8m0_to_fp32_half(w[b].e) * (32 * 12 * 127);
    if (!(prod < 1e30)) return false;
  }
  return true;
}

// Q4_K and Q5_K weights are d*sc*q - dmin*m, and every path sums the two parts apart
// (the integer sums of q and of the activations, then the two block scales), so its
// rounding scales with the parts, not with their difference, which can cancel to zero
// (d*sc*q == dmin*m gives zero weights whose product is the rounding of two equal terms).
// Returns each element's -dmin*m (the row decoded with every d set to zero); zeros for the
// types without mins.
std::vector<float> min_parts(DType t, const uint8_t* row, int64_t n_in) {
  std::vector<float> mn(n_in, 0.f);
  if (t != DType::Q4_K && t != DType::Q5_K) return mn;
  const auto& tr = dtype_traits(t);
  std::vector<uint8_t> r(row, row + dtype_row_bytes(t, n_in));
  for (int64_t b = 0; b < n_in / tr.block_size; ++b) r[b * tr.block_bytes] = r[b * tr.block_bytes + 1] = 0;  // d = +0
  dequantize_row(t, r.data(), mn.data(), n_in);
  return mn;
}

struct Reader {
  const uint8_t* p;
  size_t n, at = 0;
  uint8_t byte() { return at < n ? p[at++] : 0; }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("OMP_NUM_THREADS", "1", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DType kTypes[] = {DType::Q4_0, DType::Q4_K,   DType::Q5_K, DType::Q6_K,
                                 DType::Q8_0, DType::IQ4_NL, DType::MXFP4};
  constexpr int kNumTypes = sizeof(kTypes) / sizeof(kTypes[0]);
  Reader in{data, size};
  const DType t = kTypes[in.byte() % kNumTypes];
  const auto& tr = dtype_traits(t);
  const int64_t n_out = 1 + in.byte() % 34;  // 1..34 rows: groups of 16 and a tail
  const int64_t n_in = tr.block_size * (1 + in.byte() % (tr.block_size == 256 ? 2 : 8));
  const int64_t m = 1 + in.byte() % 9;  // 1..9 tokens: the kernels' tiles and tails
  const uint8_t flags = in.byte();
  // Activations: (int8 from the input) x 2^e, e in -150..102 (subnormal to overflowing
  // products); with bit 0 set, bytes 0x7f / 0x80 / 0x81 are NaN / +Inf / -Inf.
  const int e = -150 + 4 * (flags >> 2);
  const bool specials = flags & 1;

  const int64_t row_bytes = dtype_row_bytes(t, n_in);
  std::vector<uint8_t> w_bytes(n_out * row_bytes);
  for (auto& b : w_bytes) b = in.byte();
  std::vector<float> x(m * n_in);
  for (auto& v : x) {
    const uint8_t b = in.byte();
    if (specials && b == 0x7f) v = std::nanf("");
    else if (specials && b == 0x80) v = INFINITY;
    else if (specials && b == 0x81) v = -INFINITY;
    else v = std::ldexp(static_cast<float>(static_cast<int8_t>(b)), e);
  }

  WeightView w{t, w_bytes.data(), n_out, n_in};
  std::vector<float> ref(m * n_out), y(m * n_out);
  matmul_reference(w, x.data(), m, ref.data());

  // Portable kernels: the reference's arithmetic.
  {
    cpu::ScopedLevel portable(cpu::Level::Portable);
    matmul(w, x.data(), m, y.data());
    for (int64_t i = 0; i < m * n_out; ++i)
      if (!same(y[i], ref[i])) broken("portable kernel", t, n_out, n_in, m, i, y[i], ref[i]);
  }

  // Packed copy (Q4_0 / IQ4_NL / MXFP4 / K-quants with AVX512-VNNI): layout and GEMM bit
  // for bit.
  const auto packed = pack_weights(w);
  if (packed != nullptr) {
    std::vector<float> want(n_in), got(n_in);
    for (int64_t o = 0; o < n_out; ++o) {
      dequantize_row(t, w_bytes.data() + o * row_bytes, want.data(), n_in);
      quant::unpack_row(*packed, o, got.data());
      for (int64_t i = 0; i < n_in; ++i)
        if (!same(got[i], want[i])) broken("packed layout", t, n_out, n_in, m, o * n_in + i, got[i], want[i]);
    }
    WeightView wp = w;
    wp.packed = packed.get();
    std::fill(y.begin(), y.end(), 12345.f);
    matmul(wp, x.data(), m, y.data());
    for (int64_t i = 0; i < m * n_out; ++i)
      if (!same(y[i], ref[i])) broken("packed GEMM", t, n_out, n_in, m, i, y[i], ref[i]);
  }

  // Stored-layout kernels of the active level.
  std::fill(y.begin(), y.end(), 12345.f);
  matmul(w, x.data(), m, y.data());
  std::vector<float> wf(n_out * n_in);
  for (int64_t o = 0; o < n_out; ++o) dequantize_row(t, w_bytes.data() + o * row_bytes, wf.data() + o * n_in, n_in);
  for (int64_t tk = 0; tk < m; ++tk) {
    const std::vector<float> a = testing::decoded_acts(t, x.data() + tk * n_in, n_in);
    for (int64_t o = 0; o < n_out; ++o) {
      const float* wrow = wf.data() + o * n_in;
      const std::vector<float> mn = min_parts(t, w_bytes.data() + o * row_bytes, n_in);
      double bound = 0;  // sum of |terms| (each part apart): the scale of any rounding difference
      bool finite_weights = true, finite_acts = true;
      for (int64_t i = 0; i < n_in; ++i) {
        const double part_q = static_cast<double>(wrow[i]) - mn[i];  // d*sc*q
        bound += (std::fabs(part_q) + std::fabs(static_cast<double>(mn[i]))) * std::fabs(static_cast<double>(a[i]));
        finite_weights = finite_weights && std::isfinite(wrow[i]);
        finite_acts = finite_acts && std::isfinite(x[tk * n_in + i]);
      }
      const int64_t idx = tk * n_out + o;
      const float got = y[idx], want = ref[idx];
      if (!finite_acts && !std::isnan(want))
        broken("a non-finite activation did not give NaN (reference)", t, n_out, n_in, m, idx, got, want);
      if (!finite_acts && !std::isnan(got))
        broken("a non-finite activation did not give NaN (SIMD kernel)", t, n_out, n_in, m, idx, got, want);
      const bool nonfinite_weight = !finite_weights && t != DType::MXFP4;
      if (nonfinite_weight && std::isfinite(want))
        broken("a non-finite weight gave a number (reference)", t, n_out, n_in, m, idx, got, want);
      if (nonfinite_weight && std::isfinite(got))
        broken("a non-finite weight gave a number (SIMD kernel)", t, n_out, n_in, m, idx, got, want);
      if (finite_weights && finite_acts && bound < 1e30 &&
          scale_products_finite(t, w_bytes.data() + o * row_bytes, x.data() + tk * n_in, n_in)) {
        if (!std::isfinite(want) || !std::isfinite(got) || std::fabs(double(got) - want) > 1e-4 * bound + 1e-30)
          broken("SIMD kernel differs from the reference", t, n_out, n_in, m, idx, got, want);
      }
    }
  }
  return 0;
}
