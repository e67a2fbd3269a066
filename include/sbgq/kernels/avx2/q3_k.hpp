// AVX2 kernels for Q3_K (codec/q3_k.hpp): quantize with one 16-weight sub-block per lane
// (body in kernels/shared/q3_k-inl.hpp, shared with AVX-512) and dequantize.
//
// Internal: included by codec/q3_k.hpp only. Bit-identical to sbgq::ref.
//
// Dequantize: y = (d * (S_j - 32)) * (q2 - (hbit ? 0 : 4)), the per-sub-block product
// in scalar code as the reference forms it, one multiply per value; the level
// q2 + 4 * hbit - 4 (the same integer) is built with byte ops as int8.
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

#include "../shared/q3_k-inl.hpp"

namespace q3_dequant {
/// out[k] = d * float(int8 v[k]) for 16 bytes.
inline void store_scaled16(float* out, __m128i v, float d) {
  const __m256 dv = _mm256_set1_ps(d);
  _mm256_storeu_ps(out, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))));
}
}  // namespace q3_dequant

/// Bit-identical to ref::dequantize_q3_k: low bits in bit pair (i % 128) / 32 of
/// qs[32 * (i / 128) + i % 32], high bit in bit i / 32 of hmask[i % 32].
inline void dequantize_q3_k(std::span<const block_q3_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m128i m3 = _mm_set1_epi8(3), one = _mm_set1_epi8(1), four = _mm_set1_epi8(4);
  float* out = y.data();
  for (const block_q3_k& blk : x) {
    const float D = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk.d.bits)));
    for (int j = 0; j < 16; ++j) {
      const float dl = D * static_cast<float>(detail::codec::get_scale_q3_k(j, blk.scales) - 32);
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs + 32 * (j / 8) + 16 * (j % 2)));
      const __m128i hm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.hmask + 16 * (j % 2)));
      const __m128i q2 = _mm_and_si128(_mm_srl_epi16(q, _mm_cvtsi32_si128(2 * ((j % 8) / 2))), m3);
      const __m128i h = _mm_and_si128(_mm_srl_epi16(hm, _mm_cvtsi32_si128(j / 2)), one);
      const __m128i v = _mm_sub_epi8(_mm_add_epi8(q2, _mm_slli_epi16(h, 2)), four);
      q3_dequant::store_scaled16(out + 16 * j, v, dl);
    }
    out += 256;
  }
}

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
