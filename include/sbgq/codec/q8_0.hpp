// Q8_0: symmetric 8-bit quantization with one fp16 scale per 32 weights.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_row_q8_0_ref /
// quantize_q8_0 (which ignores the importance matrix) and dequantize_row_q8_0, and the
// public API (sbgq::quantize_q8_0 / sbgq::dequantize_q8_0) that checks its arguments and
// dispatches on active_simd_level().
//
// Format: blocks doc section 2; algorithm: algorithms doc section 7.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../simd/dispatch.hpp"
#include "blocks.hpp"
#include "common.hpp"

SBGQ_BEGIN_NAMESPACE

namespace ref {

/// Quantizes one row of x.size() = 32 * y.size() floats (algorithms doc 7). `weights`
/// is accepted for symmetry with the other codecs and ignored, as in llama.cpp.
inline void quantize_q8_0(std::span<const float> x, std::span<block_q8_0> y,
                          std::span<const float> weights = {}) noexcept {
  (void)weights;
  SBGQ_DASSERT(x.size() == y.size() * block_q8_0::values);
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + b * 32;
    // 1. amax = max |x_j| (the order does not matter for a max of absolute values).
    //    (A plain compare, not std::fmax: inputs are finite, and fmaxf is a libm call
    //    on baseline x86-64.)
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float ax = std::fabs(xb[j]);
      amax = ax > amax ? ax : amax;
    }
    // 2. d = amax / 127 and its reciprocal; the quants use the unrounded reciprocal,
    //    only the stored scale is rounded to fp16.
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = to_f16(d);
    // 3. q = roundf(x * id): the one codec that rounds ties away from zero.
    for (int j = 0; j < 32; ++j) y[b].qs[j] = static_cast<std::int8_t>(std::roundf(xb[j] * id));
  }
}

/// Decodes one row: y[32b + j] = qs[j] * d (blocks doc 2).
inline void dequantize_q8_0(std::span<const block_q8_0> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * block_q8_0::values);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const float d = to_f32(x[b].d);
    for (int j = 0; j < 32; ++j) y[b * 32 + static_cast<std::size_t>(j)] = static_cast<float>(x[b].qs[j]) * d;
  }
}

}  // namespace ref
SBGQ_END_NAMESPACE

// After ref: the kernels hand degenerate blocks to ref::quantize_q8_0.
#include "../kernels/avx2/q8_0.hpp"
#include "../kernels/avx512/q8_0.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::codec {
// Level dispatch, once per row, to the kernels of kernels/<target>/q8_0.hpp (namespaces
// sbgq::avx2 / sbgq::avx512, same names and signatures as ref, bit-identical results).
inline void quantize_q8_0_at(simd_level level, std::span<const float> x, std::span<block_q8_0> y,
                             std::span<const float> w) noexcept {
  switch (level) {
#if SBGQ_X86_KERNELS
    case simd_level::avx512: avx512::quantize_q8_0(x, y, w); break;
    case simd_level::avx2: avx2::quantize_q8_0(x, y, w); break;
#endif
    default: ref::quantize_q8_0(x, y, w); break;
  }
}
inline void dequantize_q8_0_at(simd_level level, std::span<const block_q8_0> x, std::span<float> y) noexcept {
  switch (level) {
#if SBGQ_X86_KERNELS
    case simd_level::avx512: avx512::dequantize_q8_0(x, y); break;
    case simd_level::avx2: avx2::dequantize_q8_0(x, y); break;
#endif
    default: ref::dequantize_q8_0(x, y); break;
  }
}
}  // namespace detail::codec

/// Quantizes one row of `src` (a multiple of 32 floats) into src.size()/32 blocks.
/// `weights` (empty, or one per column) is checked but ignored: Q8_0 has no weighted
/// search in llama.cpp. Errors: size_mismatch; not_finite naming the column.
/// Thread-safe (no shared state).
inline result<void> quantize_q8_0(std::span<const float> src, std::span<block_q8_0> dst,
                                  std::span<const float> weights = {}) {
  SBGQ_TRY_VOID(detail::codec::check_quantize_row("q8_0", src, block_q8_0::values, dst.size(), weights));
  detail::codec::quantize_q8_0_at(active_simd_level(), src, dst, weights);
  return {};
}

/// Decodes src.size() blocks into dst (32 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q8_0(std::span<const block_q8_0> src, std::span<float> dst) {
  SBGQ_TRY_VOID(detail::codec::check_row_sizes("q8_0", dst.size(), block_q8_0::values, src.size(), "the output"));
  detail::codec::dequantize_q8_0_at(active_simd_level(), src, dst);
  return {};
}

SBGQ_END_NAMESPACE
