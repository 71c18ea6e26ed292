// Quantised weights re-laid out once, at load, for the integer GEMM kernels of CPUs with
// 512-bit VNNI dot products (vpdpbusd): 16 weight rows are interleaved four bytes at a
// time, so one 64-byte vector holds the same four elements of 16 rows and one vpdpbusd
// with a broadcast activation word adds them into 16 per-row integer sums. The per-row
// integer sum of a block (Q4_0) or super-block (K-quants) is then scaled and added to
// the row's f32 accumulator with one FMA per block, in block order: exactly the
// arithmetic of Format::dot for these types (and of llama.cpp's repacked x86 kernels for
// Q4_0 and Q4_K), for any number of tokens, so prefill and decode give the same bits.
//
// Layouts (per group of 16 rows, the group's blocks one after another; a trailing
// partial group is padded with zero rows). A "vector" V is 64 bytes: byte 4r + k is byte
// k of a 4-byte run of row r.
//   Q4_0  per block (288 B): d[16] f16; V[c], c < 4: qs[4c .. 4c+3] (low nibbles:
//         elements 4c + k, high nibbles: 16 + 4c + k).
//   IQ4_NL as Q4_0 (the nibbles index the codebook).
//   MXFP4 per block (320 B): d[16] f32 (the E8M0 scale halved, as ggml); V[c] as Q4_0.
//   Q4_K  per super-block (2496 B): d[16], dmin[16] f16; sc[8][16] u8 (sub-block scales);
//         mn[4][16][2] i16 (the mins of sub-blocks 2q and 2q + 1 as a pair, for vpdpwssd
//         with pairs of the activation's 32-element sums); V[i][c], i < 4, c < 8:
//         qs[32i + 4c ..] (low nibbles: sub-block 2i, high nibbles: 2i + 1).
//   Q5_K  as Q4_K (3008 B), then per V[i][c] two 64-bit masks: bit 4r + k of the first
//         is the fifth bit of the low-nibble element, of the second the high one's.
//   Q6_K  per super-block (3392 B): V[h][c], h = 2 half + s < 4, c < 8: ql[64 half + 32 s
//         + 4c ..] (low nibbles: elements 128 half + 32 s + 4c + k, high nibbles: 64 more);
//         per V four 64-bit masks: bits 4 and 5 of the low-nibble element, bits 4 and 5 of
//         the high one; sc[16][16] i8; d[16] f16; 32 bytes of padding.
#pragma once
#include <cstdint>
#include <memory>

#include "core/dtype.h"

namespace attnsparse::ops {

struct WeightView;

struct PackedWeights {
  DType dtype = DType::F32;
  int64_t n_out = 0, n_in = 0;
  int64_t groups = 0;       // ceil(n_out / 16)
  int64_t block_bytes = 0;  // bytes per (group, block) of the layout above
  int64_t blocks = 0;       // blocks (or super-blocks) per row
  std::unique_ptr<uint8_t, void (*)(void*)> data{nullptr, nullptr};  // 64-byte aligned
  const uint8_t* group(int64_t g) const { return data.get() + g * blocks * block_bytes; }
  int64_t bytes() const { return groups * blocks * block_bytes; }
};

namespace quant {

inline constexpr int kPackRows = 16;

// Whether `type` has a packed layout (Q4_0, IQ4_NL, MXFP4, Q4_K, Q5_K, Q6_K).
bool has_packed_layout(DType type);

// The packed copy of a weight whose type has a layout (else nullptr). Portable code; the
// kernels that read it need AVX512-VNNI (ops::matmul decides).
std::unique_ptr<PackedWeights> pack(const WeightView& w);

// Row `o` decoded from the packed layout (n_in floats): equals dequantize_row of the
// original row (tests check the layouts with it on any CPU).
void unpack_row(const PackedWeights& p, int64_t o, float* out);

}  // namespace quant
}  // namespace attnsparse::ops
