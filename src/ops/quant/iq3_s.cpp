// IQ3_S: super-blocks of 256 in 8 sub-blocks of 32 with a 4-bit scale s (multiplier
// 1 + 2s); each group of 4 elements is one of 512 grid points of odd magnitudes 1..15
// (a 9-bit index) with one sign bit per element; dot with Q8_K activations.
#include <array>

#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {

// The grid as a set: a point with magnitudes (2a+1, 2b+1, 2c+1, 2d+1) for elements 0..3
// has the 12-bit code a | b << 3 | c << 6 | d << 9; bit `code` of this 4096-bit mask is
// set for the 512 grid points, and a point's index is its rank among the set codes
// (the format's table lists the points in increasing code order).
constexpr uint64_t kGridCodes[64] = {
    0x92050aa5082357a7ull, 0x0422001022892317ull, 0x09000aa4112249a3ull, 0x228005104a052208ull,
    0x0100020904128801ull, 0x084000a208450014ull, 0x0200040002000a40ull, 0x0000110008450015ull,
    0x040250005205ab17ull, 0x410005020902114bull, 0x040120090411a401ull, 0x0104000211820992ull,
    0x000011440a001428ull, 0x0000020005020902ull, 0x0000005000910000ull, 0x010400022002050aull,
    0x2980052a058a55abull, 0x0000020412248905ull, 0x12008802810a0092ull, 0x004001040a140225ull,
    0x2400000224090082ull, 0x0100080180040210ull, 0x0002200000020085ull, 0x0000010801400220ull,
    0x020802942a04aa04ull, 0x44010001000a102aull, 0x0000010014010401ull, 0x0800208a018a1102ull,
    0x0011040002044208ull, 0x0800401004200502ull, 0x0000000200004000ull, 0x000000002005000aull,
    0x0100010204910411ull, 0x0000220821040a84ull, 0x010480010802210aull, 0x0000000022050a10ull,
    0x0200000180100005ull, 0x00040000000200a0ull, 0x0001000010000800ull, 0x0000020801002100ull,
    0x1040049100041104ull, 0x040000000402042aull, 0x0000080041080201ull, 0x0820021000800184ull,
    0x0000004004010012ull, 0x00000a0000400400ull, 0x0000000400000000ull, 0x0000000000040014ull,
    0x000100000a002a00ull, 0x0010000000810001ull, 0x0104200410000400ull, 0x0000000100021001ull,
    0x0004000800200000ull, 0x0001000010000009ull, 0x0000000100000020ull, 0x0000000000000a00ull,
    0x0004100140050091ull, 0x0000002800100204ull, 0x0000020001024112ull, 0x0000080024000004ull,
    0x0000010000010822ull, 0x0000000400040000ull, 0x0000000002000004ull, 0x0000000000000001ull,
};

std::array<uint32_t, 512> build_grid() {
  std::array<uint32_t, 512> g{};
  int idx = 0;
  for (int code = 0; code < 4096; ++code) {
    if (((kGridCodes[code / 64] >> (code % 64)) & 1) == 0) continue;
    uint32_t v = 0;
    for (int j = 0; j < 4; ++j) v |= uint32_t(2 * ((code >> (3 * j)) & 7) + 1) << (8 * j);
    g[idx++] = v;
  }
  return g;
}

// Magnitude and sign of element k (0..31) of sub-block ib, calling fn(k, magnitude, negative).
template <class Fn>
inline void for_sub_block(const BlockIQ3_S& blk, int ib, const uint32_t* grid, Fn&& fn) {
  for (int g = 0; g < 8; ++g) {
    const int index = blk.qs[8 * ib + g] | (((blk.qh[ib] >> g) & 1) << 8);
    const uint32_t point = grid[index];
    const uint8_t signs = blk.signs[4 * ib + g / 2];
    for (int j = 0; j < 4; ++j) {
      const int k = 4 * g + j;
      fn(k, int((point >> (8 * j)) & 0xFF), ((signs >> (4 * (g % 2) + j)) & 1) != 0);
    }
  }
}

inline int sub_scale(const BlockIQ3_S& blk, int ib) { return 1 + 2 * ((blk.scales[ib / 2] >> (4 * (ib % 2))) & 0xF); }

void dequantize(const uint8_t* src, float* dst, int64_t n) {
  const auto* blk = reinterpret_cast<const BlockIQ3_S*>(src);
  const uint32_t* grid = iq3s_grid();
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(blk[b].d);
    for (int ib = 0; ib < 8; ++ib) {
      const float db = d * sub_scale(blk[b], ib);
      float* y = dst + b * kQK_K + 32 * ib;
      for_sub_block(blk[b], ib, grid, [&](int k, int mag, bool neg) { y[k] = db * mag * (neg ? -1.f : 1.f); });
    }
  }
}

double dot(const BlockIQ3_S* w, const BlockQ8_K* a, int64_t n) {
  const uint32_t* grid = iq3s_grid();
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t bsum = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int8_t* q8 = a[b].qs + 32 * ib;
      int32_t s = 0;
      for_sub_block(w[b], ib, grid, [&](int k, int mag, bool neg) { s += (neg ? -mag : mag) * q8[k]; });
      bsum += s * sub_scale(w[b], ib);
    }
    sum += double((load_f16(w[b].d) * a[b].d) * float(bsum));
  }
  return sum;
}

}  // namespace

const uint32_t* iq3s_grid() {
  static const std::array<uint32_t, 512> grid = build_grid();
  return grid.data();
}

extern const Format kFormatIQ3_S{DType::IQ3_S, ActType::Q8_K, dequantize,
                                 dot_bytes<BlockIQ3_S, BlockQ8_K, dot>, nullptr};

}  // namespace attnsparse::ops::quant
