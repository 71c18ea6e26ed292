// Packing quantised weights into the interleaved layouts of ops/quant/packed.h, and
// decoding a row back from them (portable code: the layouts are checked on any CPU).
#include "ops/quant/packed.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"
#include "ops/matmul.h"
#include "ops/quant.h"

namespace attnsparse::ops::quant {

namespace {

constexpr int R = kPackRows;

// Byte offsets inside one (group, block) record of each layout.
namespace q4_0 {
constexpr int64_t kD = 0, kV = 32, kBytes = 32 + 4 * 64;
}
namespace mxfp4 {
constexpr int64_t kD = 0, kV = 64, kBytes = 64 + 4 * 64;  // f32 scales (E8M0 does not fit f16)
}
namespace q4_k {
constexpr int64_t kD = 0, kDmin = 32, kSc = 64, kMn = 64 + 128, kV = 64 + 128 + 256;
constexpr int64_t kBytes = kV + 32 * 64;
}
namespace q5_k {
constexpr int64_t kMask = q4_k::kBytes, kBytes = kMask + 32 * 16;
}
namespace q6_k {
constexpr int64_t kV = 0, kMask = 32 * 64, kSc = kMask + 32 * 32, kD = kSc + 256, kBytes = kD + 32 + 32;
}

// The 4 bytes of row r at `src` into byte 4r.. of vector `v`.
inline void put_word(uint8_t* v, int r, const uint8_t* src) { std::memcpy(v + 4 * r, src, 4); }

inline void set_bit(uint8_t* mask64, int bit) { mask64[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8)); }
inline bool get_bit(const uint8_t* mask64, int bit) { return (mask64[bit / 8] >> (bit % 8)) & 1; }

inline void put_f16(uint8_t* p, int r, uint16_t h) { std::memcpy(p + 2 * r, &h, 2); }
inline uint16_t get_f16(const uint8_t* p, int r) {
  uint16_t h;
  std::memcpy(&h, p + 2 * r, 2);
  return h;
}

void pack_q4_0_block(const uint8_t* const* rows, int64_t b, uint8_t* out) {
  for (int r = 0; r < R; ++r) {
    if (rows[r] == nullptr) continue;
    const auto& blk = reinterpret_cast<const BlockQ4_0*>(rows[r])[b];
    put_f16(out + q4_0::kD, r, blk.d);
    for (int c = 0; c < 4; ++c) put_word(out + q4_0::kV + 64 * c, r, blk.qs + 4 * c);
  }
}

// IQ4_NL blocks are laid out as Q4_0's (f16 scale, 16 bytes of nibbles).
static_assert(sizeof(BlockIQ4_NL) == sizeof(BlockQ4_0));

void pack_mxfp4_block(const uint8_t* const* rows, int64_t b, uint8_t* out) {
  for (int r = 0; r < R; ++r) {
    if (rows[r] == nullptr) continue;
    const auto& blk = reinterpret_cast<const BlockMXFP4*>(rows[r])[b];
    const float d = e8m0_to_fp32_half(blk.e);
    std::memcpy(out + mxfp4::kD + 4 * r, &d, 4);
    for (int c = 0; c < 4; ++c) put_word(out + mxfp4::kV + 64 * c, r, blk.qs + 4 * c);
  }
}

// Q4_K and Q5_K share the scale/min/nibble part.
template <class Block>
void pack_k4_common(const Block& blk, int r, uint8_t* out) {
  put_f16(out + q4_k::kD, r, blk.d);
  put_f16(out + q4_k::kDmin, r, blk.dmin);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    get_scale_min_k4(j, blk.scales, &sc, &mn);
    out[q4_k::kSc + 16 * j + r] = sc;
    const int16_t m16 = mn;
    std::memcpy(out + q4_k::kMn + 64 * (j / 2) + 4 * r + 2 * (j % 2), &m16, 2);
  }
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 8; ++c) put_word(out + q4_k::kV + 64 * (8 * i + c), r, blk.qs + 32 * i + 4 * c);
}

void pack_q4_K_block(const uint8_t* const* rows, int64_t b, uint8_t* out) {
  for (int r = 0; r < R; ++r)
    if (rows[r] != nullptr) pack_k4_common(reinterpret_cast<const BlockQ4_K*>(rows[r])[b], r, out);
}

void pack_q5_K_block(const uint8_t* const* rows, int64_t b, uint8_t* out) {
  for (int r = 0; r < R; ++r) {
    if (rows[r] == nullptr) continue;
    const auto& blk = reinterpret_cast<const BlockQ5_K*>(rows[r])[b];
    pack_k4_common(blk, r, out);
    // Element e's fifth bit is bit e/32 of qh[e%32]; V[i][c] byte 4r+k holds elements
    // 64i + 4c + k (low) and 64i + 32 + 4c + k (high).
    for (int i = 0; i < 4; ++i)
      for (int c = 0; c < 8; ++c) {
        uint8_t* m = out + q5_k::kMask + 16 * (8 * i + c);
        for (int k = 0; k < 4; ++k) {
          const int l = 4 * c + k;
          if ((blk.qh[l] >> (2 * i)) & 1) set_bit(m, 4 * r + k);
          if ((blk.qh[l] >> (2 * i + 1)) & 1) set_bit(m + 8, 4 * r + k);
        }
      }
  }
}

void pack_q6_K_block(const uint8_t* const* rows, int64_t b, uint8_t* out) {
  for (int r = 0; r < R; ++r) {
    if (rows[r] == nullptr) continue;
    const auto& blk = reinterpret_cast<const BlockQ6_K*>(rows[r])[b];
    for (int h = 0; h < 4; ++h) {
      const int half = h / 2, s = h % 2;
      for (int c = 0; c < 8; ++c) {
        const int v = 8 * h + c;
        put_word(out + q6_k::kV + 64 * v, r, blk.ql + 64 * half + 32 * s + 4 * c);
        uint8_t* m = out + q6_k::kMask + 32 * v;
        for (int k = 0; k < 4; ++k) {
          const uint8_t qh = blk.qh[32 * half + 4 * c + k];
          const int lo = (qh >> (2 * s)) & 3, hi = (qh >> (4 + 2 * s)) & 3;
          if (lo & 1) set_bit(m, 4 * r + k);
          if (lo & 2) set_bit(m + 8, 4 * r + k);
          if (hi & 1) set_bit(m + 16, 4 * r + k);
          if (hi & 2) set_bit(m + 24, 4 * r + k);
        }
      }
    }
    for (int j = 0; j < 16; ++j) out[q6_k::kSc + 16 * j + r] = static_cast<uint8_t>(blk.scales[j]);
    put_f16(out + q6_k::kD, r, blk.d);
  }
}

struct Layout {
  int64_t block_elems, bytes;
  void (*pack_block)(const uint8_t* const* rows, int64_t b, uint8_t* out);
};

const Layout* layout(DType t) {
  static const Layout l_q4_0{32, q4_0::kBytes, pack_q4_0_block};
  static const Layout l_mxfp4{32, mxfp4::kBytes, pack_mxfp4_block};
  static const Layout l_q4_k{256, q4_k::kBytes, pack_q4_K_block};
  static const Layout l_q5_k{256, q5_k::kBytes, pack_q5_K_block};
  static const Layout l_q6_k{256, q6_k::kBytes, pack_q6_K_block};
  switch (t) {
    case DType::Q4_0:
    case DType::IQ4_NL: return &l_q4_0;
    case DType::MXFP4: return &l_mxfp4;
    case DType::Q4_K: return &l_q4_k;
    case DType::Q5_K: return &l_q5_k;
    case DType::Q6_K: return &l_q6_k;
    default: return nullptr;
  }
}

void free_aligned(void* p) { std::free(p); }

}  // namespace

bool has_packed_layout(DType type) { return layout(type) != nullptr; }

std::unique_ptr<PackedWeights> pack(const WeightView& w) {
  const Layout* lay = layout(w.dtype);
  if (lay == nullptr || w.n_out <= 0 || w.n_in <= 0) return nullptr;
  if (w.n_in % lay->block_elems != 0)
    fail("pack: {} rows of {} elements are not whole blocks", dtype_name(w.dtype), w.n_in);
  auto p = std::make_unique<PackedWeights>();
  p->dtype = w.dtype;
  p->n_out = w.n_out;
  p->n_in = w.n_in;
  p->groups = (w.n_out + R - 1) / R;
  p->blocks = w.n_in / lay->block_elems;
  p->block_bytes = lay->bytes;
  const size_t total = static_cast<size_t>(p->bytes());
  void* mem = std::aligned_alloc(64, (total + 63) / 64 * 64);
  if (mem == nullptr) throw std::bad_alloc();
  std::memset(mem, 0, total);
  p->data = std::unique_ptr<uint8_t, void (*)(void*)>(static_cast<uint8_t*>(mem), free_aligned);
  const int64_t row_bytes = w.row_bytes();
  uint8_t* base = p->data.get();
  const int64_t groups = p->groups, blocks = p->blocks, bb = p->block_bytes;
#pragma omp parallel for schedule(static) if (groups > 4)
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* rows[R];
    for (int r = 0; r < R; ++r) {
      const int64_t o = g * R + r;
      rows[r] = o < w.n_out ? w.data + o * row_bytes : nullptr;
    }
    for (int64_t b = 0; b < blocks; ++b) lay->pack_block(rows, b, base + (g * blocks + b) * bb);
  }
  return p;
}

void unpack_row(const PackedWeights& p, int64_t o, float* out) {
  const int r = static_cast<int>(o % R);
  const uint8_t* grp = p.group(o / R);
  for (int64_t b = 0; b < p.blocks; ++b) {
    const uint8_t* blk = grp + b * p.block_bytes;
    switch (p.dtype) {
      case DType::Q4_0:
      case DType::IQ4_NL:
      case DType::MXFP4: {
        const bool mx = p.dtype == DType::MXFP4;
        float d;
        if (mx) std::memcpy(&d, blk + mxfp4::kD + 4 * r, 4);
        else d = fp16_to_fp32(get_f16(blk + q4_0::kD, r));
        const uint8_t* v0 = blk + (mx ? mxfp4::kV : q4_0::kV);
        const auto value = [&](int nib) {
          switch (p.dtype) {
            case DType::IQ4_NL: return d * kValuesIQ4NL[nib];
            case DType::MXFP4: return kValuesMXFP4[nib] * d;
            default: return d * (nib - 8);
          }
        };
        float* y = out + 32 * b;
        for (int c = 0; c < 4; ++c)
          for (int k = 0; k < 4; ++k) {
            const uint8_t v = v0[64 * c + 4 * r + k];
            y[4 * c + k] = value(v & 0xF);
            y[16 + 4 * c + k] = value(v >> 4);
          }
        break;
      }
      case DType::Q4_K:
      case DType::Q5_K: {
        const bool q5 = p.dtype == DType::Q5_K;
        const float d = fp16_to_fp32(get_f16(blk + q4_k::kD, r));
        const float dmin = fp16_to_fp32(get_f16(blk + q4_k::kDmin, r));
        float* y = out + 256 * b;
        for (int i = 0; i < 4; ++i)
          for (int c = 0; c < 8; ++c)
            for (int k = 0; k < 4; ++k) {
              const uint8_t v = blk[q4_k::kV + 64 * (8 * i + c) + 4 * r + k];
              int lo = v & 0xF, hi = v >> 4;
              if (q5) {
                const uint8_t* m = blk + q5_k::kMask + 16 * (8 * i + c);
                lo += 16 * get_bit(m, 4 * r + k);
                hi += 16 * get_bit(m + 8, 4 * r + k);
              }
              for (int half = 0; half < 2; ++half) {
                const int j = 2 * i + half;
                int16_t mn;
                std::memcpy(&mn, blk + q4_k::kMn + 64 * (j / 2) + 4 * r + 2 * (j % 2), 2);
                const float d1 = d * blk[q4_k::kSc + 16 * j + r], m1 = dmin * mn;
                y[64 * i + 32 * half + 4 * c + k] = d1 * (half ? hi : lo) - m1;
              }
            }
        break;
      }
      case DType::Q6_K: {
        const float d = fp16_to_fp32(get_f16(blk + q6_k::kD, r));
        float* y = out + 256 * b;
        for (int h = 0; h < 4; ++h) {
          const int half = h / 2, s = h % 2;
          for (int c = 0; c < 8; ++c)
            for (int k = 0; k < 4; ++k) {
              const int v = 8 * h + c;
              const uint8_t q = blk[q6_k::kV + 64 * v + 4 * r + k];
              const uint8_t* m = blk + q6_k::kMask + 32 * v;
              const int lo = (q & 0xF) + 16 * get_bit(m, 4 * r + k) + 32 * get_bit(m + 8, 4 * r + k);
              const int hi = (q >> 4) + 16 * get_bit(m + 16, 4 * r + k) + 32 * get_bit(m + 24, 4 * r + k);
              const int e_lo = 128 * half + 32 * s + 4 * c + k, e_hi = e_lo + 64;
              const auto sc = [&](int e) { return static_cast<int8_t>(blk[q6_k::kSc + 16 * (e / 16) + r]); };
              y[e_lo] = d * sc(e_lo) * (lo - 32);
              y[e_hi] = d * sc(e_hi) * (hi - 32);
            }
        }
        break;
      }
      default:
        fail("unpack_row: {} has no packed layout", dtype_name(p.dtype));
    }
  }
}

}  // namespace attnsparse::ops::quant
