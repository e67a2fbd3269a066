// AVX2 kernels for Q6_K (codec/q6_k.hpp): quantize with one 16-weight sub-block per lane
// (body in kernels/shared/q6_k-inl.hpp, shared with AVX-512) and dequantize.
//
// Internal: included by codec/q6_k.hpp only. Bit-identical to sbgq::ref.
//
// Dequantize: y = (d * sc) * (q - 32) with the product d * sc formed in scalar code as
// the reference does (left to right), then one multiply per value. The 6-bit levels are
// rebuilt with byte ops (nibble | 2 high bits << 4), biased by -32 as int8, and widened
// exactly to float.
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

#include "../shared/q6_k-inl.hpp"

namespace q6_dequant {
/// out[k] = d * float(int8 v[k]) for 16 bytes.
inline void store_scaled16(float* out, __m128i v, float d) {
  const __m256 dv = _mm256_set1_ps(d);
  _mm256_storeu_ps(out, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))));
}
}  // namespace q6_dequant

/// Bit-identical to ref::dequantize_q6_k.
inline void dequantize_q6_k(std::span<const block_q6_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), bias = _mm256_set1_epi8(32);
  float* out = y.data();
  for (const block_q6_k& blk : x) {
    const float D = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk.d.bits)));
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h));
      const __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
      const std::int8_t* sc = blk.scales + 8 * h;
      for (int g = 0; g < 4; ++g) {
        const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), m3), 4);
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lows[g], high), bias);
        q6_dequant::store_scaled16(out + 32 * g, _mm256_castsi256_si128(q), D * static_cast<float>(sc[2 * g]));
        q6_dequant::store_scaled16(out + 32 * g + 16, _mm256_extracti128_si256(q, 1), D * static_cast<float>(sc[2 * g + 1]));
      }
      out += 128;
    }
  }
}

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
