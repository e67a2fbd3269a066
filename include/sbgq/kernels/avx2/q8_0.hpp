// AVX2 quantizer for Q8_0 (codec/q8_0.hpp); the dequantizer is in
// kernels/shared/dequantize-inl.hpp (through dequantize.hpp).
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
SBGQ_TARGET_AVX2_BEGIN
namespace avx2 {

namespace q8_0_kernel {
inline constexpr float tiny_amax = 1e-36f;

/// roundf(v) lane by lane (half away from zero), as an int32.
inline __m256i round_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
  const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
  const __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), _mm256_set1_ps(1.0f));
  return _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_or_ps(up, sign)));
}
}  // namespace q8_0_kernel

/// Bit-identical to ref::quantize_q8_0.
inline void quantize_q8_0(std::span<const float> x, std::span<block_q8_0> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * block_q8_0::values);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + 32 * b;
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(xb + 8 * k);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask)),
                             _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    if (amax < q8_0_kernel::tiny_amax && amax != 0.0f) {
      ref::quantize_q8_0(x.subspan(32 * b, 32), y.subspan(b, 1), weights);
      continue;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f16{static_cast<std::uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(d), _MM_FROUND_TO_NEAREST_INT), 0))};
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = q8_0_kernel::round_away(_mm256_mul_ps(v[k], idv));
    // packs works per 128-bit half; the permute restores element order.
    const __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), _mm256_permutevar8x32_epi32(p8, order));
  }
}

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
