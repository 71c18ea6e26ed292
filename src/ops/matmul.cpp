// Dispatch, row conversions, the scalar reference and the portable kernels of
// ops::matmul. The SIMD kernels live in matmul_avx2.cpp / matmul_avx512.cpp
// (matmul_x86_impl.h) and are picked at run time.
#include "ops/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "ops/matmul_kernels.h"
#include "ops/quant.h"

namespace attnsparse::ops {

using namespace quant;

void dequantize_row(DType type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    case DType::Q8_0: {
      const auto* blk = reinterpret_cast<const BlockQ8_0*>(src);
      for (int64_t b = 0; b < n / kQK8_0; ++b) {
        const float d = load_f16(blk[b].d);
        for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * blk[b].qs[j];
      }
      return;
    }
    case DType::Q4_0: {
      const auto* blk = reinterpret_cast<const BlockQ4_0*>(src);
      for (int64_t b = 0; b < n / kQK8_0; ++b) {
        const float d = load_f16(blk[b].d);
        for (int j = 0; j < 16; ++j) {
          dst[b * 32 + j] = d * (static_cast<int>(blk[b].qs[j] & 0x0F) - 8);
          dst[b * 32 + j + 16] = d * (static_cast<int>(blk[b].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    case DType::Q4_K: {
      const auto* blk = reinterpret_cast<const BlockQ4_K*>(src);
      for (int64_t b = 0; b < n / kQK_K; ++b) {
        const float d = load_f16(blk[b].d), dmin = load_f16(blk[b].dmin);
        const uint8_t* q = blk[b].qs;
        float* y = dst + b * kQK_K;
        for (int j = 0; j < 4; ++j, q += 32) {
          uint8_t sc, mn;
          get_scale_min_k4(2 * j, blk[b].scales, &sc, &mn);
          const float d1 = d * sc, m1 = dmin * mn;
          get_scale_min_k4(2 * j + 1, blk[b].scales, &sc, &mn);
          const float d2 = d * sc, m2 = dmin * mn;
          for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        }
      }
      return;
    }
    case DType::Q6_K: {
      const auto* blk = reinterpret_cast<const BlockQ6_K*>(src);
      for (int64_t b = 0; b < n / kQK_K; ++b) {
        const float d = load_f16(blk[b].d);
        const uint8_t* ql = blk[b].ql;
        const uint8_t* qh = blk[b].qh;
        const int8_t* sc = blk[b].scales;
        float* y = dst + b * kQK_K;
        for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
          }
        }
      }
      return;
    }
  }
  fail("dequantize_row: unsupported dtype {}", static_cast<uint32_t>(type));
}

void quantize_row(DType type, const float* src, uint8_t* dst, int64_t n) {
  switch (type) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      return;
    }
    case DType::Q8_0:
      if (n % kQK8_0 != 0) fail("quantize_row: q8_0 row of {} elements is not a multiple of 32", n);
      quantize_row_q8_0_ref(src, reinterpret_cast<BlockQ8_0*>(dst), n);
      return;
    default: fail("quantize_row: cannot write {} tensors", dtype_name(type));
  }
}

// ---------------------------------------------------------------------------------------
// Reference and portable kernels.

namespace {

void round_acts_scalar(DType type, const float* x, float* xr, int64_t n) {
  if (type == DType::F16) {
    for (int64_t i = 0; i < n; ++i) xr[i] = round_to_fp16(x[i]);
  } else if (type == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) xr[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
  } else {
    std::memcpy(xr, x, n * sizeof(float));
  }
}

float dot_f32_scalar(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

void float_rows_portable(const WeightView& w, const float* xr, int64_t m, float* y, int64_t o0,
                         int64_t o1) {
  thread_local std::vector<float> row;
  row.resize(w.n_in);
  for (int64_t o = o0; o < o1; ++o) {
    dequantize_row(w.dtype, w.data + o * w.row_bytes(), row.data(), w.n_in);
    for (int64_t t = 0; t < m; ++t) y[t * w.n_out + o] = dot_f32_scalar(row.data(), xr + t * w.n_in, w.n_in);
  }
}

template <typename WBlock, typename ABlock, double (*Dot)(const WBlock*, const ABlock*, int64_t),
          int kBlock>
void quant_rows_portable(const WeightView& w, const ABlock* a, int64_t m, float* y, int64_t o0,
                         int64_t o1) {
  const int64_t nb = w.n_in / kBlock;
  for (int64_t o = o0; o < o1; ++o) {
    const auto* wr = reinterpret_cast<const WBlock*>(w.data + o * w.row_bytes());
    for (int64_t t = 0; t < m; ++t) y[t * w.n_out + o] = static_cast<float>(Dot(wr, a + t * nb, w.n_in));
  }
}

}  // namespace

namespace kern {

void pack_xT_scalar(const float* xr, int64_t m, int64_t k, float* xT, int64_t b0, int64_t b1,
                    int64_t tokens, int64_t kc) {
  const int64_t n_tb = (m + tokens - 1) / tokens;
  const int64_t n_kc = (k + kc - 1) / kc;
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t c = 0; c < n_kc; ++c) {
      float* dst = xT + (c * n_tb + b) * kc * tokens;
      const int64_t k0 = c * kc, kl = std::min(kc, k - k0);
      for (int64_t j = 0; j < tokens; ++j) {
        const int64_t t = b * tokens + j;
        if (t < m) {
          const float* src = xr + t * k + k0;
          for (int64_t i = 0; i < kl; ++i) dst[i * tokens + j] = src[i];
        } else {
          for (int64_t i = 0; i < kl; ++i) dst[i * tokens + j] = 0.f;
        }
      }
    }
  }
}

const Kernels& portable_kernels() {
  static const Kernels k{
      "portable",
      round_acts_scalar,
      float_rows_portable,
      0,
      0,
      0,
      nullptr,
      nullptr,
      quant_rows_portable<BlockQ8_0, BlockQ8_0, dot_q8_0_q8_0, kQK8_0>,
      quant_rows_portable<BlockQ4_0, BlockQ8_0, dot_q4_0_q8_0, kQK8_0>,
      quant_rows_portable<BlockQ4_K, BlockQ8_K, dot_q4_K_q8_K, kQK_K>,
      quant_rows_portable<BlockQ6_K, BlockQ8_K, dot_q6_K_q8_K, kQK_K>,
  };
  return k;
}

}  // namespace kern

namespace {

struct CpuCaps {
  bool avx2 = false, avx512 = false, vnni = false, bf16 = false;
};

const CpuCaps& cpu_caps() {
  static const CpuCaps caps = [] {
    CpuCaps c;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
#if defined(__clang__) && __clang_major__ < 15  // clang 14 (fuzz builds) lacks "f16c"; AVX2 CPUs have it
    c.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    c.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
#endif
    c.avx512 = c.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    c.vnni = c.avx512 && __builtin_cpu_supports("avx512vnni");
    c.bf16 = c.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
    return c;
  }();
  return caps;
}

// The best level the CPU supports (0 portable, 1 AVX2, 2 AVX-512, 3 AVX-512 with
// AVX512-BF16 dot products for BF16 weights), lowered by ATTNSPARSE_SIMD (read on every
// call so tests can switch levels).
int active_level() {
  const CpuCaps& caps = cpu_caps();
  int level = caps.bf16 ? 3 : caps.avx512 ? 2 : caps.avx2 ? 1 : 0;
  if (const char* env = std::getenv("ATTNSPARSE_SIMD"); env != nullptr && *env != '\0') {
    const std::string_view v(env);
    int want;
    if (v == "portable") want = 0;
    else if (v == "avx2") want = 1;
    else if (v == "avx512") want = 2;
    else if (v == "avx512bf16") want = 3;
    else fail("ATTNSPARSE_SIMD={}: expected portable, avx2, avx512 or avx512bf16", v);
    level = std::min(level, want);
  }
  return level;
}

const kern::Kernels& active_kernels() {
  const int level = active_level();
#if defined(__x86_64__) || defined(__i386__)
  if (level >= 2) return kern::avx512_kernels(cpu_caps().vnni);
  if (level == 1) return kern::avx2_kernels();
#endif
  return kern::portable_kernels();
}

// BF16 weights on AVX512-BF16: activations to bf16, then vdpbf16ps GEMV or GEMM.
void matmul_bf16_dot(const WeightView& w, const float* x, int64_t m, float* y, int64_t work);

void check_weight(const WeightView& w, int64_t m, const float* x, const float* y) {
  if (m < 0 || w.n_out < 0 || w.n_in < 0) fail("matmul: negative shape");
  const auto& tr = dtype_traits(w.dtype);
  if (w.n_in % tr.block_size != 0)
    fail("matmul: {} weight rows of {} elements are not a multiple of the block size {}",
         tr.name, w.n_in, tr.block_size);
  if (m > 0 && w.n_out > 0 && w.n_in > 0 && (w.data == nullptr || x == nullptr || y == nullptr))
    fail("matmul: null data pointer");
}

// Splits [0, n) into `parts` ranges whose starts are multiples of `align`.
std::pair<int64_t, int64_t> split_range(int64_t n, int parts, int part, int64_t align) {
  const int64_t units = (n + align - 1) / align;
  const int64_t per = units / parts, extra = units % parts;
  const int64_t u0 = part * per + std::min<int64_t>(part, extra);
  const int64_t u1 = u0 + per + (part < extra ? 1 : 0);
  return {std::min(n, u0 * align), std::min(n, u1 * align)};
}

// Below this many multiply-adds a matmul runs on the calling thread: waking the team and
// the closing barrier cost more than they save (tiny models, single-token decode of
// small matrices).
constexpr int64_t kMinParallelWork = int64_t{1} << 17;

template <typename Fn>
void parallel_rows(int64_t n_out, int64_t align, int64_t work, Fn&& fn) {
#pragma omp parallel if (work >= kMinParallelWork)
  {
    const int nt = omp_get_num_threads(), it = omp_get_thread_num();
    const auto [o0, o1] = split_range(n_out, nt, it, align);
    if (o1 > o0) fn(o0, o1);
  }
}

}  // namespace

void matmul_reference(const WeightView& w, const float* x, int64_t m, float* y) {
  check_weight(w, m, x, y);
  const int64_t n = w.n_in;
  if (m == 0 || w.n_out == 0) return;
  switch (w.dtype) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: {
      std::vector<float> xr(m * n), row(n);
      round_acts_scalar(w.dtype, x, xr.data(), m * n);
      for (int64_t o = 0; o < w.n_out; ++o) {
        dequantize_row(w.dtype, w.data + o * w.row_bytes(), row.data(), n);
        for (int64_t t = 0; t < m; ++t) {
          double acc = 0;
          for (int64_t i = 0; i < n; ++i) acc += double(row[i]) * xr[t * n + i];
          y[t * w.n_out + o] = static_cast<float>(acc);
        }
      }
      return;
    }
    case DType::Q8_0:
    case DType::Q4_0: {
      const int64_t nb = n / kQK8_0;
      std::vector<BlockQ8_0> a(m * nb);
      for (int64_t t = 0; t < m; ++t) quantize_act_q8_0(x + t * n, a.data() + t * nb, n);
      for (int64_t o = 0; o < w.n_out; ++o) {
        const uint8_t* wr = w.data + o * w.row_bytes();
        for (int64_t t = 0; t < m; ++t) {
          const double v = w.dtype == DType::Q8_0
                               ? dot_q8_0_q8_0(reinterpret_cast<const BlockQ8_0*>(wr), a.data() + t * nb, n)
                               : dot_q4_0_q8_0(reinterpret_cast<const BlockQ4_0*>(wr), a.data() + t * nb, n);
          y[t * w.n_out + o] = static_cast<float>(v);
        }
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q6_K: {
      const int64_t nb = n / kQK_K;
      std::vector<BlockQ8_K> a(m * nb);
      for (int64_t t = 0; t < m; ++t) quantize_act_q8_K(x + t * n, a.data() + t * nb, n);
      for (int64_t o = 0; o < w.n_out; ++o) {
        const uint8_t* wr = w.data + o * w.row_bytes();
        for (int64_t t = 0; t < m; ++t) {
          const double v = w.dtype == DType::Q4_K
                               ? dot_q4_K_q8_K(reinterpret_cast<const BlockQ4_K*>(wr), a.data() + t * nb, n)
                               : dot_q6_K_q8_K(reinterpret_cast<const BlockQ6_K*>(wr), a.data() + t * nb, n);
          y[t * w.n_out + o] = static_cast<float>(v);
        }
      }
      return;
    }
  }
  fail("matmul: unsupported weight dtype {}", static_cast<uint32_t>(w.dtype));
}

void matmul(const WeightView& w, const float* x, int64_t m, float* y) {
  check_weight(w, m, x, y);
  if (m == 0 || w.n_out == 0) return;
  const int64_t n = w.n_in;
  if (n == 0) {
    std::fill(y, y + m * w.n_out, 0.f);
    return;
  }
  const kern::Kernels& k = active_kernels();
  const int64_t work = m * n * w.n_out;
#if defined(__x86_64__) || defined(__i386__)
  if (w.dtype == DType::BF16 && active_level() == 3) {
    matmul_bf16_dot(w, x, m, y, work);
    return;
  }
#endif
  switch (w.dtype) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: {
      thread_local std::vector<float> xr_buf, xT_buf;
      // (thread_local: take plain pointers before entering parallel regions.)
      const float* xr = x;
      if (w.dtype != DType::F32) {
        xr_buf.resize(m * n);
        float* xrw = xr_buf.data();
        const int64_t total = m * n;
#pragma omp parallel if (total >= kMinParallelWork)
        {
          const auto [i0, i1] = split_range(total, omp_get_num_threads(), omp_get_thread_num(), 64);
          if (i1 > i0) k.round_acts(w.dtype, x + i0, xrw + i0, i1 - i0);
        }
        xr = xrw;
      }
      if (k.float_gemm != nullptr && m >= k.gemm_min_m) {
        xT_buf.resize(kern::packed_x_floats(m, n, k.gemm_tokens, k.gemm_kc));
        float* xT = xT_buf.data();
        const int64_t n_tb = (m + k.gemm_tokens - 1) / k.gemm_tokens;
#pragma omp parallel if (m * n >= kMinParallelWork)
        {
          const auto [b0, b1] = split_range(n_tb, omp_get_num_threads(), omp_get_thread_num(), 1);
          if (b1 > b0) k.pack_xT(xr, m, n, xT, b0, b1);
        }
        parallel_rows(w.n_out, 48, work, [&](int64_t o0, int64_t o1) { k.float_gemm(w, xT, m, y, o0, o1); });
      } else {
        parallel_rows(w.n_out, 16, work, [&](int64_t o0, int64_t o1) { k.float_rows(w, xr, m, y, o0, o1); });
      }
      return;
    }
    case DType::Q8_0:
    case DType::Q4_0: {
      const int64_t nb = n / kQK8_0;
      thread_local std::vector<BlockQ8_0> a_buf;
      a_buf.resize(m * nb);
      BlockQ8_0* a = a_buf.data();
#pragma omp parallel for schedule(static) if (m > 1 && work >= kMinParallelWork)
      for (int64_t t = 0; t < m; ++t) quantize_act_q8_0(x + t * n, a + t * nb, n);
      const auto fn = w.dtype == DType::Q8_0 ? k.q8_0_rows : k.q4_0_rows;
      parallel_rows(w.n_out, 16, work, [&](int64_t o0, int64_t o1) { fn(w, a, m, y, o0, o1); });
      return;
    }
    case DType::Q4_K:
    case DType::Q6_K: {
      const int64_t nb = n / kQK_K;
      thread_local std::vector<BlockQ8_K> a_buf;
      a_buf.resize(m * nb);
      BlockQ8_K* a = a_buf.data();
#pragma omp parallel for schedule(static) if (m > 1 && work >= kMinParallelWork)
      for (int64_t t = 0; t < m; ++t) quantize_act_q8_K(x + t * n, a + t * nb, n);
      const auto fn = w.dtype == DType::Q4_K ? k.q4_K_rows : k.q6_K_rows;
      parallel_rows(w.n_out, 16, work, [&](int64_t o0, int64_t o1) { fn(w, a, m, y, o0, o1); });
      return;
    }
  }
  fail("matmul: unsupported weight dtype {}", static_cast<uint32_t>(w.dtype));
}

namespace {

void matmul_bf16_dot(const WeightView& w, const float* x, int64_t m, float* y, int64_t work) {
#if defined(__x86_64__) || defined(__i386__)
  const kern::Bf16DotKernels& k = kern::avx512_bf16_dot_kernels();
  const int64_t n = w.n_in;
  thread_local std::vector<uint16_t> xb_buf;
  thread_local std::vector<uint32_t> xp_buf;
  xb_buf.resize(m * n);
  uint16_t* xb = xb_buf.data();
  const int64_t total = m * n;
#pragma omp parallel if (total >= kMinParallelWork)
  {
    // Split at multiples of 64 so each thread's part stays aligned to the 32-wide steps.
    const auto [i0, i1] = split_range(total, omp_get_num_threads(), omp_get_thread_num(), 64);
    if (i1 > i0) k.to_bf16(x + i0, xb + i0, i1 - i0);
  }
  if (m >= k.gemm_min_m && n % 2 == 0) {
    const int64_t n_tb = (m + k.gemm_tokens - 1) / k.gemm_tokens;
    const int64_t n_kc = (n + k.gemm_kc - 1) / k.gemm_kc;
    xp_buf.resize(n_tb * n_kc * (k.gemm_kc / 2) * k.gemm_tokens);
    uint32_t* xp = xp_buf.data();
#pragma omp parallel if (total >= kMinParallelWork)
    {
      const auto [b0, b1] = split_range(n_tb, omp_get_num_threads(), omp_get_thread_num(), 1);
      if (b1 > b0) k.pack(xb, m, n, xp, b0, b1);
    }
    parallel_rows(w.n_out, 48, work, [&](int64_t o0, int64_t o1) { k.gemm(w, xp, m, y, o0, o1); });
  } else {
    parallel_rows(w.n_out, 16, work, [&](int64_t o0, int64_t o1) { k.rows(w, xb, m, y, o0, o1); });
  }
#else
  (void)w, (void)x, (void)m, (void)y, (void)work;
#endif
}

}  // namespace

const char* simd_level_name() {
  if (active_level() == 3) return cpu_caps().vnni ? "avx512bf16-vnni" : "avx512bf16";
  return active_kernels().name;
}

}  // namespace attnsparse::ops
