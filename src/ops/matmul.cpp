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

#include "core/cpu.h"
#include "core/error.h"
#include "ops/matmul_kernels.h"
#include "ops/quant.h"

namespace attnsparse::ops {

using namespace quant;

void dequantize_row(DType type, const uint8_t* src, float* dst, int64_t n) {
  // The decoders read blocks through typed fields (f16 scales): a row at an address its
  // type cannot be loaded from (tensor data of a file with GGUF alignment 1 read by
  // `quantize`, say) is decoded from an aligned copy.
  const int64_t bb = dtype_traits(type).block_bytes;
  const uintptr_t need = bb % 4 == 0 ? 4 : bb % 2 == 0 ? 2 : 1;
  if (reinterpret_cast<uintptr_t>(src) % need != 0) {
    thread_local std::vector<uint64_t> copy;
    const size_t bytes = static_cast<size_t>(dtype_row_bytes(type, n));
    copy.resize((bytes + 7) / 8);
    std::memcpy(copy.data(), src, bytes);
    src = reinterpret_cast<const uint8_t*>(copy.data());
  }
  format(type).dequantize(src, dst, n);
}

void quantize_row(DType type, const float* src, uint8_t* dst, int64_t n) {
  const Format& f = format(type);
  if (f.quantize == nullptr) fail("quantize_row: cannot write {} tensors", dtype_name(type));
  const int64_t bs = dtype_traits(type).block_size;
  if (n % bs != 0)
    fail("quantize_row: {} row of {} elements is not a multiple of {}", dtype_name(type), n, bs);
  f.quantize(src, dst, n);
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

// Any quantised type: the format's scalar dot per (row, token).
void quant_rows_portable(const WeightView& w, const uint8_t* a, int64_t m, float* y, int64_t o0,
                         int64_t o1) {
  const Format& f = format(w.dtype);
  const int64_t ab = act_format(f.act).row_bytes(w.n_in);
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* wr = w.data + o * w.row_bytes();
    for (int64_t t = 0; t < m; ++t) y[t * w.n_out + o] = static_cast<float>(f.dot(wr, a + t * ab, w.n_in));
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
  static const Kernels k{"portable", round_acts_scalar, float_rows_portable, 0, 0, 0, nullptr, nullptr};
  return k;
}

}  // namespace kern

namespace {

// The matmul kernels of the active level (core/cpu.h): AVX-512 (with VNNI integer dots
// from avx512vnni up; BF16 weights by vdpbf16ps at avx512bf16), AVX2, or portable.
const kern::Kernels& active_kernels() {
#if defined(__x86_64__) || defined(__i386__)
  const cpu::Level level = cpu::active();
  if (level >= cpu::Level::Avx512) return kern::avx512_kernels(level >= cpu::Level::Avx512Vnni);
  if (level == cpu::Level::Avx2) return kern::avx2_kernels();
#endif
  return kern::portable_kernels();
}

// BF16 weights on AVX512-BF16: activations to bf16, then vdpbf16ps GEMV or GEMM.
void matmul_bf16_dot(const WeightView& w, const float* x, int64_t m, float* y, int64_t work);
// Packed weights (ops/quant/packed.h) with AVX512-VNNI kernels.
bool packed_kernels_active();
void run_packed(const WeightView& w, kern::PackedFn fn, const uint8_t* a, int64_t m, float* y, int64_t work);

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

namespace {
thread_local bool t_batch_invariant = false;
}  // namespace

ScopedBatchInvariant::ScopedBatchInvariant(bool enable) : prev_(t_batch_invariant) {
  t_batch_invariant = enable;
}
ScopedBatchInvariant::~ScopedBatchInvariant() { t_batch_invariant = prev_; }

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
    default: {
      const Format& f = format(w.dtype);
      const ActFormat& af = act_format(f.act);
      const int64_t ab = af.row_bytes(n);
      std::vector<uint8_t> a(m * ab);
      for (int64_t t = 0; t < m; ++t) af.quantize(x + t * n, a.data() + t * ab, n);
      for (int64_t o = 0; o < w.n_out; ++o) {
        const uint8_t* wr = w.data + o * w.row_bytes();
        for (int64_t t = 0; t < m; ++t) y[t * w.n_out + o] = static_cast<float>(f.dot(wr, a.data() + t * ab, n));
      }
      return;
    }
  }
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
  if (w.dtype == DType::BF16 && cpu::active_at_least(cpu::Level::Avx512Bf16)) {
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
      if (k.float_gemm != nullptr && (m >= k.gemm_min_m || t_batch_invariant)) {
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
    default: {
      // Quantised weights: activations into the type's act format (Q8_0 / Q8_1 / Q8_K),
      // then the ISA's kernel for the type, or the portable one.
      const Format& f = format(w.dtype);
      const ActFormat& af = act_format(f.act);
      const int64_t ab = af.row_bytes(n);
      // (uint64_t storage: 8-byte aligned, as the blocks' float fields need.)
      thread_local std::vector<uint64_t> a_buf;
      a_buf.resize((m * ab + 7) / 8);
      uint8_t* a = reinterpret_cast<uint8_t*>(a_buf.data());
      const auto quantize = af.quantize;
#pragma omp parallel for schedule(static) if (m > 1 && work >= kMinParallelWork)
      for (int64_t t = 0; t < m; ++t) quantize(x + t * n, a + t * ab, n);
      if (w.packed != nullptr && packed_kernels_active()) {
        if (const kern::PackedFn pf = kern::avx512_vnni_packed_kernel(w.dtype)) {
          run_packed(w, pf, a, m, y, work);
          return;
        }
      }
      kern::QuantRowsFn fn = k.quant(w.dtype);
      if (fn == nullptr) fn = quant_rows_portable;
      parallel_rows(w.n_out, 16, work, [&](int64_t o0, int64_t o1) { fn(w, a, m, y, o0, o1); });
      return;
    }
  }
}

namespace {

bool packed_kernels_active() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu::active_at_least(cpu::Level::Avx512Vnni);
#else
  return false;
#endif
}

// The per-block extras the packed kernels take with the quantised activations `a`.
void run_packed(const WeightView& w, kern::PackedFn fn, const uint8_t* a, int64_t m, float* y, int64_t work) {
  const PackedWeights& p = *w.packed;
  thread_local std::vector<float> ad_buf;
  thread_local std::vector<int32_t> aux_buf;
  kern::PackedActs x;
  x.a = a;
  const int64_t nb = p.blocks;
  if (format(w.dtype).act == ActType::Q8_0) {  // Q4_0, IQ4_NL, MXFP4
    ad_buf.resize(m * nb);
    aux_buf.resize(m * nb);
    const auto* q = reinterpret_cast<const BlockQ8_0*>(a);
    const int32_t off = w.dtype == DType::Q4_0 ? 8 : 128;  // the kernels' unsigned offset
    for (int64_t i = 0; i < m * nb; ++i) {
      ad_buf[i] = fp16_to_fp32(q[i].d);
      int32_t s = 0;
      for (int j = 0; j < kQK8_0; ++j) s += q[i].qs[j];
      aux_buf[i] = -off * s;
    }
    x.ad = ad_buf.data();
  } else {
    const auto* q = reinterpret_cast<const BlockQ8_K*>(a);
    const bool q6 = w.dtype == DType::Q6_K;
    const int per = q6 ? 16 : 4;
    aux_buf.resize(m * nb * per);
    for (int64_t i = 0; i < m * nb; ++i) {
      int32_t* o = aux_buf.data() + i * per;
      if (q6) {
        for (int j = 0; j < 16; ++j) o[j] = -32 * q[i].bsums[j];
      } else {
        for (int j = 0; j < 4; ++j) {
          const int32_t lo = q[i].bsums[4 * j] + q[i].bsums[4 * j + 1];
          const int32_t hi = q[i].bsums[4 * j + 2] + q[i].bsums[4 * j + 3];
          o[j] = static_cast<int32_t>((static_cast<uint32_t>(hi) << 16) | (static_cast<uint32_t>(lo) & 0xFFFFu));
        }
      }
    }
  }
  x.aux = aux_buf.data();
  const int64_t r = quant::kPackRows;
  parallel_rows(w.n_out, r, work, [&](int64_t o0, int64_t o1) { fn(p, x, m, y, o0 / r, (o1 + r - 1) / r); });
}

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
  if ((m >= k.gemm_min_m || t_batch_invariant) && n % 2 == 0) {
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

std::unique_ptr<PackedWeights> pack_weights(const WeightView& w) {
  if (const char* env = std::getenv("ATTNSPARSE_PACKED"); env != nullptr && std::string_view(env) == "off")
    return nullptr;
  if (!quant::has_packed_layout(w.dtype) || !packed_kernels_active() ||
      kern::avx512_vnni_packed_kernel(w.dtype) == nullptr)
    return nullptr;
  return quant::pack(w);
}

const char* simd_level_name() { return cpu::name(cpu::active()); }

}  // namespace attnsparse::ops
