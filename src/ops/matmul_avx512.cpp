// AVX-512 (F, BW, VL, DQ) kernels (compiled for that target only; called after a CPUID
// check). The integer kernels here use AVX2 maddubs; matmul_avx512_vnni.cpp has VNNI ones.
#include <immintrin.h>

#include <algorithm>
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
  static const Kernels plain{
      "avx512",
      Avx512<false>::round_acts,
      float_rows<Avx512<false>>,
      16,
      2 * Avx512<false>::W,
      kKC,
      pack_xT<Avx512<false>>,
      float_gemm<Avx512<false>>,
      q8_0_rows<Avx512<false>, false>,
      q8_0_rows<Avx512<false>, true>,
      q4_K_rows<Avx512<false>>,
      q6_K_rows<Avx512<false>>,
  };
  static const Kernels with_vnni = [] {
    Kernels k = plain;
    k.name = "avx512-vnni";
    k.q8_0_rows = avx512_vnni_q8_0_rows;
    k.q4_0_rows = avx512_vnni_q4_0_rows;
    return k;
  }();
  return vnni ? with_vnni : plain;
}

}  // namespace attnsparse::ops::kern
