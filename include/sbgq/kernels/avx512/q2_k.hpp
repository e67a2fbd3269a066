// AVX-512 kernels for Q2_K (codec/q2_k.hpp): quantize with one 16-weight sub-block per lane
// (body in kernels/shared/q2_k-inl.hpp, shared with AVX2) and dequantize.
//
// Internal: included by codec/q2_k.hpp only. Bit-identical to sbgq::ref.
//
// Dequantize: y = (d * s_j) * q - (dmin * m_j), the per-sub-block products in scalar
// code as the reference forms them, then one multiply and one subtract per value.
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
// GCC 12 false positive: _mm512_undefined_ps() et al. initialise a variable with itself,
// and after inlining -W(maybe-)uninitialized reports it (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {

#include "../shared/q2_k-inl.hpp"

namespace q2_dequant {
/// out[k] = d * float(v[k]) - m for the 16 unsigned bytes of v.
inline void store_affine16(float* out, __m128i v, float d, float m) {
  _mm512_storeu_ps(out, _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v))),
                                      _mm512_set1_ps(m)));
}
}  // namespace q2_dequant

/// Bit-identical to ref::dequantize_q2_k: weight i sits in bit pair (i % 128) / 32 of
/// byte qs[32 * (i / 128) + i % 32].
inline void dequantize_q2_k(std::span<const block_q2_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m128i m3 = _mm_set1_epi8(3);
  float* out = y.data();
  for (const block_q2_k& blk : x) {
    const float D = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk.d.bits)));
    const float M = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk.dmin.bits)));
    for (int j = 0; j < 16; ++j) {
      const float dl = D * static_cast<float>(blk.scales[j] & 0xF);
      const float ml = M * static_cast<float>(blk.scales[j] >> 4);
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs + 32 * (j / 8) + 16 * (j % 2)));
      const __m128i v = _mm_and_si128(_mm_srl_epi16(q, _mm_cvtsi32_si128(2 * ((j % 8) / 2))), m3);
      q2_dequant::store_affine16(out + 16 * j, v, dl, ml);
    }
    out += 256;
  }
}

}  // namespace avx512
SBGQ_TARGET_END
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
