// AVX-512 quantizer for Q8_0 (codec/q8_0.hpp): the AVX2 kernel's steps on 16-float halves
// of a block. The dequantizer is in kernels/shared/dequantize-inl.hpp (through
// dequantize.hpp).
//
// Internal: included by codec/q8_0.hpp (after sbgq::ref, which the quantizer falls back
// to for degenerate blocks). Bit-identical to sbgq::ref.
//
// Q8_0 needs no cross-block lane mapping: its only reduction is max |x|, which is exact
// in any order, and the rest is per value. Per block:
//   amax  vector max of |x| (exact);
//   d     amax / 127 and id = 1 / d in scalar code, as the reference;
//   fp16  F16C vcvtps2ph with round-to-nearest-even, the same IEEE rounding as dtype.hpp's
//         to_f16 for every finite input (d is finite and >= 0);
//   q     roundf(x * id): the product as in the reference, then round half away from
//         zero as t = trunc(v); t + copysign(1, v) when |v - t| >= 0.5 (v - t is exact),
//         converted exactly to int32 and narrowed (|q| <= 127, see below).
// |x * id| <= amax * id <= 127 * (1 + 3 * 2^-24) < 127.5, so q fits int8 whenever id is
// finite. A block with 0 < amax < 1e-36 can have a subnormal d and an infinite id, where
// the reference's float -> int8 conversion of inf/NaN is whatever the compiler emits;
// such blocks are handed to ref::quantize_q8_0 itself.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../../core/base.hpp"
#include "../../codec/blocks.hpp"
#include "../../core/dtype.hpp"
#include "dequantize.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {

namespace q8_0_kernel {
inline constexpr float tiny_amax = 1e-36f;

/// roundf(v) lane by lane (half away from zero), as an int32.
inline __m512i round_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN));
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.0f)), sign));
  const __m512 adj = _mm512_mask_blend_ps(up, _mm512_castsi512_ps(sign), one);
  return _mm512_cvtps_epi32(_mm512_add_ps(t, adj));
}
}  // namespace q8_0_kernel

/// Bit-identical to ref::quantize_q8_0.
inline void quantize_q8_0(std::span<const float> x, std::span<block_q8_0> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * block_q8_0::values);
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + 32 * b;
    const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    if (amax < q8_0_kernel::tiny_amax && amax != 0.0f) {
      ref::quantize_q8_0(x.subspan(32 * b, 32), y.subspan(b, 1), weights);
      continue;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f16{static_cast<std::uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(d), _MM_FROUND_TO_NEAREST_INT), 0))};
    const __m512 idv = _mm512_set1_ps(id);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs),
                     _mm512_cvtepi32_epi8(q8_0_kernel::round_away(_mm512_mul_ps(v0, idv))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16),
                     _mm512_cvtepi32_epi8(q8_0_kernel::round_away(_mm512_mul_ps(v1, idv))));
  }
}

}  // namespace avx512
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
