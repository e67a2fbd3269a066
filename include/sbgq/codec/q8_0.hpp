// Q8_0: symmetric 8-bit quantization with one fp16 scale per 32 weights.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_row_q8_0_ref /
// quantize_q8_0 (which ignores the importance matrix) and dequantize_row_q8_0, and the
// public API (sbgq::quantize_q8_0 / sbgq::dequantize_q8_0) that checks its arguments and
// dispatches on active_simd_level().
//
// Format: blocks doc section 2; algorithm: algorithms doc section 7.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../simd/dispatch.hpp"
#include "blocks.hpp"
#include "common.hpp"
#include "format.hpp"
#include "fixed_grid.hpp"

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
/// Q8_0 in one place (format.hpp, fixed_grid.hpp). Grid: one sub-block of 32, value =
/// (L - 128) D; rounding with the codec's *unrounded* 1/d (algorithms doc 7).
struct q8_0_format {
  using block = block_q8_0;
  static constexpr ggml_type type = ggml_type::q8_0;
  static constexpr bool uses_weights = false;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_q8_0);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_q8_0);

  static constexpr int grid_n_super = 1;
  /// d = amax/127 as the codec computes it (the unrounded 1/d is not in the bytes).
  static void grid_init(simd_level, const float* x, const float*, detail::codec::fixed_grid& g) noexcept {
    g.sub = 32;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float ax = std::fabs(x[j]);
      amax = ax > amax ? ax : amax;
    }
    const float d = amax / 127.0f;
    g.inv[0] = d != 0.0f ? 1.0f / d : 0.0f;
    g.d = to_f16(d);
    g.dmin = f16{};
    g.sc[0] = 1;
    detail::codec::grid_set_decoded(g, 1);
  }
  static int grid_round(const detail::codec::fixed_grid& g, int, float x) noexcept {
    const float q = std::roundf(x * g.inv[0]);
    return static_cast<int>(std::max(-127.0f, std::min(127.0f, q))) + 128;
  }
  static float grid_value(const detail::codec::fixed_grid& g, int, int L) noexcept {
    return static_cast<float>(L - 128) * to_f32(g.d);
  }
  static void grid_basis(const detail::codec::fixed_grid&, int, int L, double& a, double& b) noexcept {
    a = L - 128;
    b = 0.0;
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b;
    b.d = g.d;
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::int8_t>(L[j] - 128);
    std::memcpy(dst, &b, sizeof b);
  }
};

/// Quantizes one row of `src` (a multiple of 32 floats) into src.size()/32 blocks.
/// `weights` (empty, or one per column) is checked but ignored: Q8_0 has no weighted
/// search in llama.cpp. Errors: size_mismatch; not_finite naming the column.
/// Thread-safe (no shared state).
inline result<void> quantize_q8_0(std::span<const float> src, std::span<block_q8_0> dst,
                                  std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<q8_0_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (32 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q8_0(std::span<const block_q8_0> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<q8_0_format>(src, dst);
}

SBGQ_END_NAMESPACE
