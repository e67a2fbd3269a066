// Q8_K: 8-bit activations with a float32 scale per 256 and 16-weight sums, the
// intermediate format of the K-quant dot products (blocks doc 12). It never appears in
// a GGUF file, and ggml_quantize_chunk rejects it; sbgq uses it for dot-product tests
// and kernels.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_row_q8_K_ref and
// dequantize_row_q8_K; and the public API.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../simd/dispatch.hpp"
#include "blocks.hpp"
#include "common.hpp"
#include "format.hpp"

SBGQ_BEGIN_NAMESPACE

namespace ref {

/// Quantizes one row (x.size() = 256 * y.size()). No importance weights (none in
/// llama.cpp either); `weights` is ignored. One deliberate difference: for an all-zero
/// block llama.cpp leaves bsums untouched, sbgq writes zeros (the correct sums).
inline void quantize_q8_k(std::span<const float> x, std::span<block_q8_k> y,
                          std::span<const float> weights = {}) noexcept {
  (void)weights;
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + b * qk_k;
    block_q8_k& out = y[b];
    // The signed element of largest |x| (first wins) is mapped to -127; -127, not -128,
    // keeps the AVX kernels' sign tricks simple.
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < 256; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax == 0.0f) {
      out = block_q8_k{};
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < 256; ++j)
      out.qs[j] = static_cast<std::int8_t>(std::min(127, detail::codec::nearest_int(iscale * xb[j])));
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += out.qs[16 * j + ii];
      out.bsums[j] = static_cast<std::int16_t>(sum);
    }
    out.d = 1.0f / iscale;
  }
}

/// Decodes one row: y = d * qs[i].
inline void dequantize_q8_k(std::span<const block_q8_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const float d = x[b].d;
    for (std::size_t j = 0; j < qk_k; ++j) y[b * qk_k + j] = d * static_cast<float>(x[b].qs[j]);
  }
}

}  // namespace ref

/// Q8_K in one place (format.hpp): scalar kernels only, no grid (it never appears in
/// a GGUF file).
struct q8_k_format {
  using block = block_q8_k;
  static constexpr ggml_type type = ggml_type::q8_k;
  static constexpr bool uses_weights = false;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      detail::codec::scalar_only<detail::codec::quantize_kernel<block>>(&ref::quantize_q8_k);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      detail::codec::scalar_only<detail::codec::dequantize_kernel<block>>(&ref::dequantize_q8_k);
};

/// Quantizes one row of `src` (a multiple of 256 floats) into src.size()/256 blocks.
/// `weights` is checked and ignored. Errors: size_mismatch; not_finite. Thread-safe.
inline result<void> quantize_q8_k(std::span<const float> src, std::span<block_q8_k> dst,
                                  std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<q8_k_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (256 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q8_k(std::span<const block_q8_k> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<q8_k_format>(src, dst);
}

SBGQ_END_NAMESPACE
