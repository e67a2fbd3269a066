// AVX-512 kernels for IQ4_NL and IQ4_XS (codec/iq4.hpp): quantize (16 blocks of 32 per register,
// one per lane; the body is kernels/shared/iq4-inl.hpp, shared with AVX2) and
// dequantize.
//
// Internal: included by codec/iq4.hpp only. Bit-identical to sbgq::ref (the tests in
// tests/codec/test_codec_kernels.cpp force each level and compare with the reference
// and with llama.cpp).
//
// Dequantize: y = d * float(kvalues[idx]) per value, the reference's single product.
// pshufb looks the 16 int8 levels up for 16 nibbles at once; int8 -> int32 -> float is
// exact. The fp16 scale goes through F16C's vcvtph2ps, which is exact and quiets NaNs
// the same way dtype.hpp's to_f32 does.
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
#include "../../codec/tables.hpp"
#include "../../core/dtype.hpp"
#include "codec_vec.hpp"

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

#include "../shared/iq4-inl.hpp"

namespace iq4_kernel {
inline float f16_to_f32(f16 h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.bits))); }

/// out[0..15] = d * float(int8 lanes of v).
inline void store_scaled16(float* out, __m128i v, __m512 d) {
  _mm512_storeu_ps(out, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v))));
}

/// 16 packed bytes -> the levels of the low nibbles (weights 0..15) and of the high
/// nibbles (weights 16..31), times d.
inline void decode32(const std::uint8_t* qs, __m512 d, float* out) {
  const __m128i tbl = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl.data()));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  store_scaled16(out, _mm_shuffle_epi8(tbl, _mm_and_si128(q, m4)), d);
  store_scaled16(out + 16, _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(q, 4), m4)), d);
}
}  // namespace iq4_kernel

/// Bit-identical to ref::dequantize_iq4_nl.
inline void dequantize_iq4_nl(std::span<const block_iq4_nl> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * block_iq4_nl::values);
  for (std::size_t b = 0; b < x.size(); ++b)
    iq4_kernel::decode32(x[b].qs, _mm512_set1_ps(iq4_kernel::f16_to_f32(x[b].d)), y.data() + 32 * b);
}

/// Bit-identical to ref::dequantize_iq4_xs: dl = D * float(ls - 32) per 32-block.
inline void dequantize_iq4_xs(std::span<const block_iq4_xs> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const block_iq4_xs& blk = x[b];
    const float D = iq4_kernel::f16_to_f32(blk.d);
    float* out = y.data() + qk_k * b;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((blk.scales_h >> (2 * ib)) & 3) << 4);
      iq4_kernel::decode32(blk.qs + 16 * ib, _mm512_set1_ps(D * static_cast<float>(ls - 32)), out + 32 * ib);
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
