// Packed block structs that mirror the GGUF / ggml wire layout of the quantized types
// sbgq reads and writes (spec: shared/spec/ggml-quant-blocks.md, "blocks doc" below).
//
// Each struct is exactly the bytes of one block on disk, fields in file order, all
// multi-byte fields little-endian (sbgq only targets little-endian hosts, as ggml does).
// The structs are declared with 1-byte packing: their layout and sizeof are those of
// ggml (every field there is naturally aligned already), but alignof is 1, so a block
// may sit at any byte offset of a tensor buffer or a memory-mapped GGUF file without
// undefined behaviour. The fp16 scales are raw `f16` bits; convert with to_f32().
//
// Why the layouts look the way they do (ggml's choices, kept for compatibility):
//   - A "super-block" of 256 weights (QK_K) amortises one fp16 super-scale over 256
//     weights; the per-sub-block scales are small integers relative to it.
//   - Quants of different sub-blocks are interleaved in a byte (Q4_K: weight l and l+32
//     share a byte; Q2_K: l, l+32, l+64, l+96) so that SIMD dot products can unpack 32
//     consecutive weights with one shift-and-mask over a 32-byte register.
//   - Q6_K stores d last and Q2_K/Q3_K store the scales first: historical, nothing more.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/base.hpp"
#include "../core/dtype.hpp"

SBGQ_BEGIN_NAMESPACE

/// Weights per K-quant / IQ4_XS super-block (ggml QK_K).
inline constexpr std::size_t qk_k = 256;

#pragma pack(push, 1)

/// Q8_0: 32 weights in 34 bytes = 8.5 bits per weight (blocks doc section 2).
///   offset 0  d      fp16 scale
///   offset 2  qs[32] int8, weight j = qs[j] * d
/// The simplest format: one symmetric scale per 32 weights, no sub-structure.
struct block_q8_0 {
  static constexpr std::size_t values = 32;
  f16 d;
  std::int8_t qs[32];
};
static_assert(sizeof(block_q8_0) == 34 && alignof(block_q8_0) == 1);

/// Q2_K: 256 weights in 84 bytes = 2.625 bits per weight (blocks doc section 6).
///   offset 0   scales[16] per 16-weight sub-block j: bits 0-3 scale s_j, bits 4-7 min m_j
///   offset 16  qs[64]     2-bit quants; byte 32h+l holds weights 128h+l, +32, +64, +96
///                         in bit pairs 0-1, 2-3, 4-5, 6-7
///   offset 80  d          fp16 super-scale of the scales
///   offset 82  dmin       fp16 super-scale of the mins
/// weight = (d * s_j) * q - (dmin * m_j), q in 0..3. Asymmetric because with only four
/// levels a free offset is worth more than the 4 bits it costs per 16 weights.
struct block_q2_k {
  static constexpr std::size_t values = qk_k;
  std::uint8_t scales[16];
  std::uint8_t qs[64];
  f16 d;
  f16 dmin;
};
static_assert(sizeof(block_q2_k) == 84 && alignof(block_q2_k) == 1);

/// Q3_K: 256 weights in 110 bytes = 3.4375 bits per weight (blocks doc section 7).
///   offset 0   hmask[32]  high (third) bit: weight i uses bit i/32 of hmask[i%32]
///   offset 32  qs[64]     low 2 bits, packed as Q2_K
///   offset 96  scales[12] 16 six-bit scales S_j biased by +32; low nibbles in bytes 0-7
///                         (j<8 low half, j>=8 high half of byte j%8), high bit pairs in
///                         bytes 8-11 (byte 8 + j%4, bits 2*(j/4))
///   offset 108 d          fp16 super-scale
/// weight = (d * (S_j - 32)) * (q2 - (hbit ? 0 : 4)), quants in -4..3. Symmetric: the
/// sign of the 6-bit scale replaces the min of Q2_K.
struct block_q3_k {
  static constexpr std::size_t values = qk_k;
  std::uint8_t hmask[32];
  std::uint8_t qs[64];
  std::uint8_t scales[12];
  f16 d;
};
static_assert(sizeof(block_q3_k) == 110 && alignof(block_q3_k) == 1);

/// Q4_K: 256 weights in 144 bytes = 4.5 bits per weight (blocks doc section 3).
///   offset 0   d          fp16 super-scale of the 6-bit sub-block scales
///   offset 2   dmin       fp16 super-scale of the 6-bit sub-block mins
///   offset 4   scales[12] 8 x (6-bit scale, 6-bit min), packed as described at
///                         get_scale_min_k4 in k_quant_common.hpp (blocks doc 3.1)
///   offset 16  qs[128]    4-bit quants; byte 32c+l: low nibble weight 64c+l, high
///                         nibble weight 64c+32+l
/// weight = (d * sc_j) * q - (dmin * m_j) for 32-weight sub-block j, q in 0..15.
struct block_q4_k {
  static constexpr std::size_t values = qk_k;
  f16 d;
  f16 dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[128];
};
static_assert(sizeof(block_q4_k) == 144 && alignof(block_q4_k) == 1);

/// Q5_K: 256 weights in 176 bytes = 5.5 bits per weight (blocks doc section 4).
///   offset 0   d, offset 2 dmin, offset 4 scales[12]: as Q4_K
///   offset 16  qh[32]     fifth bit: weight i = 64c + r uses bit 2c + (r >= 32) of
///                         qh[r % 32]
///   offset 48  qs[128]    low 4 bits, nibble layout of Q4_K
/// weight = (d * sc_j) * q - (dmin * m_j), q in 0..31.
struct block_q5_k {
  static constexpr std::size_t values = qk_k;
  f16 d;
  f16 dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];
  std::uint8_t qs[128];
};
static_assert(sizeof(block_q5_k) == 176 && alignof(block_q5_k) == 1);

/// Q6_K: 256 weights in 210 bytes = 6.5625 bits per weight (blocks doc section 5).
///   offset 0   ql[128]    low 4 bits; half h: ql[64h+l] holds weights 128h+l (low
///                         nibble) and 128h+64+l (high nibble), ql[64h+32+l] holds
///                         128h+32+l and 128h+96+l
///   offset 128 qh[64]     high 2 bits; qh[32h+l] bit pairs 0,2,4,6 hold weights
///                         128h+l, +32, +64, +96
///   offset 192 scales[16] signed int8 scale per 16 weights
///   offset 208 d          fp16 super-scale (stored last)
/// weight = (d * scales[i/16]) * (q - 32), q in 0..63. Signed 8-bit sub-scales leave
/// no room for a min: 6 bits of quant already give a near-uniform symmetric grid.
struct block_q6_k {
  static constexpr std::size_t values = qk_k;
  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  f16 d;
};
static_assert(sizeof(block_q6_k) == 210 && alignof(block_q6_k) == 1);

/// Q8_K: 256 weights in 292 bytes = 9.125 bits per weight (blocks doc section 12).
///   offset 0   d          **float32** scale
///   offset 4   qs[256]    int8
///   offset 260 bsums[16]  int16, bsums[j] = sum of qs[16j .. 16j+15]
/// The activation format of ggml's CPU dot products; never stored in a GGUF file. The
/// float scale and the precomputed sums let a K-quant dot product apply the mins with
/// 16 multiplies instead of 256.
struct block_q8_k {
  static constexpr std::size_t values = qk_k;
  float d;
  std::int8_t qs[256];
  std::int16_t bsums[16];
};
static_assert(sizeof(block_q8_k) == 292 && alignof(block_q8_k) == 1);

/// IQ4_NL: 32 weights in 18 bytes = 4.5 bits per weight (blocks doc section 8).
///   offset 0  d      fp16 scale
///   offset 2  qs[16] 4-bit indices into kvalues_iq4nl; low nibble of qs[j] is weight j,
///                    high nibble weight j+16
/// weight = d * kvalues_iq4nl[idx]. The non-uniform codebook is denser near zero, where
/// most weights of a roughly Gaussian block are, so it beats Q4_0 at the same size.
struct block_iq4_nl {
  static constexpr std::size_t values = 32;
  f16 d;
  std::uint8_t qs[16];
};
static_assert(sizeof(block_iq4_nl) == 18 && alignof(block_iq4_nl) == 1);

/// IQ4_XS: 256 weights in 136 bytes = 4.25 bits per weight (blocks doc section 9).
///   offset 0  d          fp16 super-scale
///   offset 2  scales_h   uint16, bits 2ib..2ib+1: high 2 bits of block ib's 6-bit scale
///   offset 4  scales_l[4] low 4 bits; block ib uses nibble ib%2 of scales_l[ib/2]
///   offset 8  qs[128]    per 32-block ib: qs[16ib+j] low nibble weight 32ib+j, high
///                        nibble weight 32ib+16+j (not the Q4_K interleave)
/// weight = (d * (ls - 32)) * kvalues_iq4nl[idx]. IQ4_NL's codebook with a 6-bit scale
/// per 32 weights instead of an fp16 one: 0.25 bits per weight cheaper.
struct block_iq4_xs {
  static constexpr std::size_t values = qk_k;
  f16 d;
  std::uint16_t scales_h;
  std::uint8_t scales_l[4];
  std::uint8_t qs[128];
};
static_assert(sizeof(block_iq4_xs) == 136 && alignof(block_iq4_xs) == 1);

#pragma pack(pop)

static_assert(offsetof(block_q2_k, d) == 80 && offsetof(block_q3_k, d) == 108);
static_assert(offsetof(block_q5_k, qs) == 48 && offsetof(block_q6_k, d) == 208);
static_assert(offsetof(block_q8_k, bsums) == 260 && offsetof(block_iq4_xs, qs) == 8);

SBGQ_END_NAMESPACE
