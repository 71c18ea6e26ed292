// AVX-512 (F, BW, VL, DQ) kernels (compiled for that target only; called after a CPUID
// check). The integer kernels here use AVX2 maddubs; matmul_avx512_vnni.cpp has VNNI ones.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "ops/matmul_kernels.h"
#include "ops/quant.h"

#pragma GCC push_options
// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (_mm512_undefined_*).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")

#include "ops/matmul_x86_impl.h"
#include "ops/matmul_avx512_arch.h"

#pragma GCC pop_options
#pragma GCC diagnostic pop

namespace attnsparse::ops::kern {

const Kernels& avx512_kernels(bool vnni) {
  using A = Avx512<false>;
  static const Kernels plain = [] {
    Kernels k{"avx512", A::round_acts, float_rows<A>, 16, 2 * A::W, kKC, pack_xT<A>, float_gemm<A>};
    k.set(DType::Q8_0, rows_bytes<BlockQ8_0, q8_0_rows<A, false>>);
    k.set(DType::Q4_0, rows_bytes<BlockQ8_0, q8_0_rows<A, true>>);
    k.set(DType::Q4_K, rows_bytes<BlockQ8_K, q4_K_rows<A>>);
    k.set(DType::Q6_K, rows_bytes<BlockQ8_K, q6_K_rows<A>>);
    k.set(DType::Q5_0, rows_bytes<BlockQ8_0, q8_0_rows_k<A, Q80Kind::Q5_0>>);
    k.set(DType::IQ4_NL, rows_bytes<BlockQ8_0, q8_0_rows_k<A, Q80Kind::IQ4_NL>>);
    k.set(DType::Q4_1, rows_bytes<BlockQ8_1, q8_1_rows<A, false>>);
    k.set(DType::Q5_1, rows_bytes<BlockQ8_1, q8_1_rows<A, true>>);
    k.set(DType::Q5_K, rows_bytes<BlockQ8_K, q5_K_rows<A>>);
    k.set(DType::Q2_K, rows_bytes<BlockQ8_K, q2_K_rows<A>>);
    k.set(DType::Q3_K, rows_bytes<BlockQ8_K, q3_K_rows<A>>);
    k.set(DType::IQ4_XS, rows_bytes<BlockQ8_K, iq4_xs_rows<A>>);
    k.set(DType::MXFP4, rows_bytes<BlockQ8_0, q8_0_rows_k<A, Q80Kind::MXFP4>>);
    k.set(DType::TQ2_0, rows_bytes<BlockQ8_K, tq2_0_rows<A>>);
    k.set(DType::IQ3_S, rows_bytes<BlockQ8_K, iq3_s_rows<A>>);
    return k;
  }();
  static const Kernels with_vnni = [] {
    Kernels k = plain;
    k.name = "avx512-vnni";
    k.set(DType::Q8_0, avx512_vnni_q8_0_gemm);
    k.set(DType::Q4_0, avx512_vnni_q4_0_rows);
    return k;
  }();
  return vnni ? with_vnni : plain;
}

}  // namespace attnsparse::ops::kern
