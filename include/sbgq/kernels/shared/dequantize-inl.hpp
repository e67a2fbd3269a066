// Shared body of the AVX2 and AVX-512 dequantizers of every codec (no include guard:
// included once inside each target namespace by kernels/<target>/dequantize.hpp, after
// that target's codec_vec.hpp; it includes nothing itself).
//
// The bit manipulation (nibbles, 2-bit fields, high bits, the IQ4 codebook lookup with
// pshufb) runs on 16 bytes at a time in 128-bit registers, which both targets have; the
// only per-target step is widening 16 bytes to 16 floats and storing them
// (cv::store_scaled_i8 / cv::store_affine_u8: two 8-lane stores on AVX2, one 16-lane
// store on AVX-512). So both targets run the same code by construction.
//
// Why the results are the reference's bits: every value is the reference's single
// expression, d * float(q) or d * float(q) - m, with d and m the per-sub-block products
// formed in scalar code exactly as the reference forms them (D * sc, M * m);
// byte -> int32 -> float is exact, and IEEE multiplication is commutative, so
// float(q) * d (Q8_0's order) is the same bits as d * float(q). The fp16 super-scales go
// through F16C's vcvtph2ps, which is exact and quiets NaNs as dtype.hpp's to_f32 does.

namespace dequant_kernel {

inline float f16_to_f32(f16 h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.bits))); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
/// The bytes of q shifted right by s bits, masked (the shift runs on 16-bit lanes; the
/// mask drops the bits that crossed in from the neighbouring byte).
inline __m128i bits(__m128i q, int s, __m128i mask) { return _mm_and_si128(_mm_srl_epi16(q, _mm_cvtsi32_si128(s)), mask); }

/// 16 packed IQ4 bytes -> the levels of the low nibbles (weights 0..15) and of the high
/// nibbles (weights 16..31), times d.
inline void iq4_decode32(const std::uint8_t* qs, float d, float* out) {
  const __m128i tbl = load16(kvalues_iq4nl.data());
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i q = load16(qs);
  cv::store_scaled_i8(out, _mm_shuffle_epi8(tbl, _mm_and_si128(q, m4)), d);
  cv::store_scaled_i8(out + 16, _mm_shuffle_epi8(tbl, bits(q, 4, m4)), d);
}

}  // namespace dequant_kernel

/// Bit-identical to ref::dequantize_q8_0: y = float(q) * d.
inline void dequantize_q8_0(std::span<const block_q8_0> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * block_q8_0::values);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const float d = dequant_kernel::f16_to_f32(x[b].d);
    float* out = y.data() + 32 * b;
    cv::store_scaled_i8(out, dequant_kernel::load16(x[b].qs), d);
    cv::store_scaled_i8(out + 16, dequant_kernel::load16(x[b].qs + 16), d);
  }
}

/// Bit-identical to ref::dequantize_iq4_nl.
inline void dequantize_iq4_nl(std::span<const block_iq4_nl> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * block_iq4_nl::values);
  for (std::size_t b = 0; b < x.size(); ++b)
    dequant_kernel::iq4_decode32(x[b].qs, dequant_kernel::f16_to_f32(x[b].d), y.data() + 32 * b);
}

/// Bit-identical to ref::dequantize_iq4_xs: dl = D * float(ls - 32) per 32-block.
inline void dequantize_iq4_xs(std::span<const block_iq4_xs> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const block_iq4_xs& blk = x[b];
    const float D = dequant_kernel::f16_to_f32(blk.d);
    float* out = y.data() + qk_k * b;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((blk.scales_h >> (2 * ib)) & 3) << 4);
      dequant_kernel::iq4_decode32(blk.qs + 16 * ib, D * static_cast<float>(ls - 32), out + 32 * ib);
    }
  }
}

/// Bit-identical to ref::dequantize_q2_k: weight i sits in bit pair (i % 128) / 32 of
/// byte qs[32 * (i / 128) + i % 32]; y = (d * s_j) * q - (dmin * m_j).
inline void dequantize_q2_k(std::span<const block_q2_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m128i m3 = _mm_set1_epi8(3);
  float* out = y.data();
  for (const block_q2_k& blk : x) {
    const float D = dequant_kernel::f16_to_f32(blk.d), M = dequant_kernel::f16_to_f32(blk.dmin);
    for (int j = 0; j < 16; ++j) {
      const float dl = D * static_cast<float>(blk.scales[j] & 0xF);
      const float ml = M * static_cast<float>(blk.scales[j] >> 4);
      const __m128i q = dequant_kernel::load16(blk.qs + 32 * (j / 8) + 16 * (j % 2));
      cv::store_affine_u8(out + 16 * j, dequant_kernel::bits(q, 2 * ((j % 8) / 2), m3), dl, ml);
    }
    out += 256;
  }
}

/// Bit-identical to ref::dequantize_q3_k: low bits in bit pair (i % 128) / 32 of
/// qs[32 * (i / 128) + i % 32], high bit in bit i / 32 of hmask[i % 32].
inline void dequantize_q3_k(std::span<const block_q3_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m128i m3 = _mm_set1_epi8(3), one = _mm_set1_epi8(1), four = _mm_set1_epi8(4);
  float* out = y.data();
  for (const block_q3_k& blk : x) {
    const float D = dequant_kernel::f16_to_f32(blk.d);
    for (int j = 0; j < 16; ++j) {
      const float dl = D * static_cast<float>(detail::codec::get_scale_q3_k(j, blk.scales) - 32);
      const __m128i q = dequant_kernel::load16(blk.qs + 32 * (j / 8) + 16 * (j % 2));
      const __m128i hm = dequant_kernel::load16(blk.hmask + 16 * (j % 2));
      const __m128i q2 = dequant_kernel::bits(q, 2 * ((j % 8) / 2), m3);
      const __m128i h = dequant_kernel::bits(hm, j / 2, one);
      cv::store_scaled_i8(out + 16 * j, _mm_sub_epi8(_mm_add_epi8(q2, _mm_slli_epi16(h, 2)), four), dl);
    }
    out += 256;
  }
}

/// Bit-identical to ref::dequantize_q4_k and ref::dequantize_q5_k (Q5 when Q5 is true):
/// y = (d * sc) * q - (dmin * m) per 32-weight sub-block. Chunk c of 64 weights: low
/// nibbles of qs[32c ..] are sub-block 2c, high nibbles sub-block 2c + 1; Q5_K's fifth
/// bit of weight l in sub-block 2c + h is bit 2c + h of qh[l], moved to bit 4 and OR-ed
/// onto the nibble (the reference's nibble + (bit << 4)).
template <bool Q5, class Block>
inline void dequantize_k4(std::span<const Block> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m128i m4 = _mm_set1_epi8(0x0f), one = _mm_set1_epi8(1);
  float* out = y.data();
  for (const Block& blk : x) {
    const float D = dequant_kernel::f16_to_f32(blk.d), M = dequant_kernel::f16_to_f32(blk.dmin);
    for (int c = 0; c < 4; ++c) {
      std::uint8_t sc = 0, m = 0;
      detail::codec::get_scale_min_k4(2 * c, blk.scales, sc, m);
      const float d1 = D * static_cast<float>(sc), m1 = M * static_cast<float>(m);
      detail::codec::get_scale_min_k4(2 * c + 1, blk.scales, sc, m);
      const float d2 = D * static_cast<float>(sc), m2 = M * static_cast<float>(m);
      for (int half = 0; half < 2; ++half) {
        const __m128i q = dequant_kernel::load16(blk.qs + 32 * c + 16 * half);
        __m128i lo = _mm_and_si128(q, m4), hi = dequant_kernel::bits(q, 4, m4);
        if constexpr (Q5) {
          const __m128i qh = dequant_kernel::load16(blk.qh + 16 * half);
          lo = _mm_or_si128(lo, _mm_slli_epi16(dequant_kernel::bits(qh, 2 * c, one), 4));
          hi = _mm_or_si128(hi, _mm_slli_epi16(dequant_kernel::bits(qh, 2 * c + 1, one), 4));
        }
        cv::store_affine_u8(out + 16 * half, lo, d1, m1);
        cv::store_affine_u8(out + 32 + 16 * half, hi, d2, m2);
      }
      out += 64;
    }
  }
}
inline void dequantize_q4_k(std::span<const block_q4_k> x, std::span<float> y) noexcept {
  dequantize_k4<false>(x, y);
}
inline void dequantize_q5_k(std::span<const block_q5_k> x, std::span<float> y) noexcept {
  dequantize_k4<true>(x, y);
}

/// Bit-identical to ref::dequantize_q6_k: y = (d * sc) * (q - 32), q = 4 low bits from
/// ql and 2 high bits from qh; half h of the block is 128 weights in 4 groups of 32.
inline void dequantize_q6_k(std::span<const block_q6_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m128i m4 = _mm_set1_epi8(0x0f), m3 = _mm_set1_epi8(3), bias = _mm_set1_epi8(32);
  float* out = y.data();
  for (const block_q6_k& blk : x) {
    const float D = dequant_kernel::f16_to_f32(blk.d);
    for (int h = 0; h < 2; ++h) {
      const std::int8_t* sc = blk.scales + 8 * h;
      for (int half = 0; half < 2; ++half) {
        const __m128i ql0 = dequant_kernel::load16(blk.ql + 64 * h + 16 * half);
        const __m128i ql1 = dequant_kernel::load16(blk.ql + 64 * h + 32 + 16 * half);
        const __m128i qh = dequant_kernel::load16(blk.qh + 32 * h + 16 * half);
        const __m128i lows[4] = {_mm_and_si128(ql0, m4), _mm_and_si128(ql1, m4), dequant_kernel::bits(ql0, 4, m4),
                                 dequant_kernel::bits(ql1, 4, m4)};
        for (int g = 0; g < 4; ++g) {
          const __m128i high = _mm_slli_epi16(dequant_kernel::bits(qh, 2 * g, m3), 4);
          const __m128i q = _mm_sub_epi8(_mm_or_si128(lows[g], high), bias);
          cv::store_scaled_i8(out + 32 * g + 16 * half, q, D * static_cast<float>(sc[2 * g + half]));
        }
      }
      out += 128;
    }
  }
}
