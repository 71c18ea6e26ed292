// Q8_0 / Q4_0 kernels with AVX512-VNNI (vpdpbusd on 256-bit vectors) for the int8 dots.
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
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")

#include "ops/matmul_x86_impl.h"
#include "ops/matmul_avx512_arch.h"

#pragma GCC pop_options
#pragma GCC diagnostic pop

namespace attnsparse::ops::kern {

const QuantRowsFn avx512_vnni_q8_0_rows = rows_bytes<BlockQ8_0, q8_0_rows<Avx512<true>, false>>;
const QuantRowsFn avx512_vnni_q4_0_rows = rows_bytes<BlockQ8_0, q8_0_rows<Avx512<true>, true>>;

}  // namespace attnsparse::ops::kern
