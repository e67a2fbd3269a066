// AVX2 kernels for Q4_K (codec/q4_k.hpp) and the Q4_K/Q5_K machinery that Q5_K's kernel
// reuses: quantize with one 32-weight sub-block per lane (body in
// kernels/shared/q4_k-inl.hpp, shared with AVX-512), and dequantize.
//
// Internal: included by codec/q4_k.hpp only. Bit-identical to sbgq::ref (tests force
// each level and compare with the reference and with llama.cpp).
//
// Dequantize: y = (d * sc) * q - (dmin * m), the reference's per-sub-block products
// computed in scalar code exactly as it does, then one multiply and one subtract per
// value; bytes -> int32 -> float is exact.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../../core/base.hpp"
#include "../../codec/blocks.hpp"
#include "../../codec/common.hpp"
#include "../../codec/k_quant_common.hpp"
#include "../../core/dtype.hpp"
#include "codec_vec.hpp"
#include "k_quant_common.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX2_BEGIN
namespace avx2 {

#include "../shared/q4_k-inl.hpp"

namespace kq_dequant {
inline float f16_to_f32(f16 h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.bits))); }

/// out[k] = d * float(v[k]) - m for the 32 unsigned bytes of v.
inline void store_affine32(float* out, __m256i v, float d, float m) {
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int k = 0; k < 4; ++k)
    _mm256_storeu_ps(out + 8 * k,
                     _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]))), mv));
}
}  // namespace kq_dequant

/// Bit-identical to ref::dequantize_q4_k.
inline void dequantize_q4_k(std::span<const block_q4_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  float* out = y.data();
  for (const block_q4_k& blk : x) {
    const float D = kq_dequant::f16_to_f32(blk.d), M = kq_dequant::f16_to_f32(blk.dmin);
    for (int c = 0; c < 4; ++c) {
      std::uint8_t sc = 0, m = 0;
      detail::codec::get_scale_min_k4(2 * c, blk.scales, sc, m);
      const float d1 = D * static_cast<float>(sc), m1 = M * static_cast<float>(m);
      detail::codec::get_scale_min_k4(2 * c + 1, blk.scales, sc, m);
      const float d2 = D * static_cast<float>(sc), m2 = M * static_cast<float>(m);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * c));
      kq_dequant::store_affine32(out, _mm256_and_si256(q, m4), d1, m1);
      kq_dequant::store_affine32(out + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), d2, m2);
      out += 64;
    }
  }
}

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
