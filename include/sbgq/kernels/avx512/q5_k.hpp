// AVX-512 kernels for Q5_K (codec/q5_k.hpp): quantize (Q4_K's lane-parallel search of
// kernels/avx512/q4_k.hpp with nmax 31; body in kernels/shared/q5_k-inl.hpp) and
// dequantize, y = (d * sc) * (nibble + 16 * bit) - (dmin * m) as the reference.
//
// Internal: included by codec/q5_k.hpp only. Bit-identical to sbgq::ref.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../../core/base.hpp"
#include "../../codec/blocks.hpp"
#include "../../codec/k_quant_common.hpp"
#include "../../core/dtype.hpp"
#include "q4_k.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
// GCC 12 false positive: _mm512_undefined_ps() et al. initialise a variable with itself,
// and after inlining -W(maybe-)uninitialized reports it (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {

#include "../shared/q5_k-inl.hpp"

/// Bit-identical to ref::dequantize_q5_k. The fifth bit of weight l in half h of chunk c
/// is bit 2c+h of qh[l]; moved to bit 4 of each byte it is OR-ed onto the nibble, the
/// same integer as the reference's nibble + (bit << 4).
inline void dequantize_q5_k(std::span<const block_q5_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i one = _mm256_set1_epi8(1);
  float* out = y.data();
  for (const block_q5_k& blk : x) {
    const float D = kq_dequant::f16_to_f32(blk.d), M = kq_dequant::f16_to_f32(blk.dmin);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh));
    for (int c = 0; c < 4; ++c) {
      std::uint8_t sc = 0, m = 0;
      detail::codec::get_scale_min_k4(2 * c, blk.scales, sc, m);
      const float d1 = D * static_cast<float>(sc), m1 = M * static_cast<float>(m);
      detail::codec::get_scale_min_k4(2 * c + 1, blk.scales, sc, m);
      const float d2 = D * static_cast<float>(sc), m2 = M * static_cast<float>(m);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * c));
      const __m128i s1 = _mm_cvtsi32_si128(2 * c), s2 = _mm_cvtsi32_si128(2 * c + 1);
      const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, s1), one), 4);
      const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, s2), one), 4);
      kq_dequant::store_affine32(out, _mm256_or_si256(_mm256_and_si256(q, m4), h1), d1, m1);
      kq_dequant::store_affine32(out + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h2), d2, m2);
      out += 64;
    }
  }
}

}  // namespace avx512
SBGQ_TARGET_END
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
