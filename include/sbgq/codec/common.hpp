// Pieces shared by every codec header: ggml's rounding helper and the argument checks of
// the public codec API (sizes, finiteness) with their error messages.
//
// Numeric ground rules of the reference codecs (algorithms doc section 1, "algorithms
// doc" = shared/spec/ggml-quant-algorithms.md): everything is float32, evaluated left to
// right exactly as written, sums are sequential, no FMA (the sbgq target puts
// -ffp-contract=off on its users; the codecs must not be built with -ffast-math).
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "../core/base.hpp"
#include "../core/error.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::codec {

/// ggml's nearest_int (algorithms doc 1.4): round to nearest, ties to even, by adding
/// 1.5 * 2^23 so that the integer lands in the low mantissa bits. For |v| < 2^22 this is
/// lrintf(v). Outside that range the result is the same garbage ggml computes (NaN gives
/// 0, +inf gives -4194304); the degenerate blocks that reach it must match bit for bit,
/// so do not "fix" it with a clamp.
inline int nearest_int(float v) noexcept {
  const float shifted = v + 12582912.0f;
  const std::int32_t bits = std::bit_cast<std::int32_t>(shifted);
  return (bits & 0x007fffff) - 0x00400000;
}

/// "q4_k: ..." style prefix + error with component "codec".
inline error codec_error(error_code code, std::string_view format, std::string text) {
  std::string ctx(format);
  ctx += ": ";
  ctx += text;
  return error(code, "codec", std::move(ctx));
}

/// Checks that a row of n floats can be cut into blocks of block_values, and that the
/// destination holds exactly n / block_values blocks.
inline result<void> check_row_sizes(std::string_view format, std::size_t n_floats,
                                    std::size_t block_values, std::size_t n_blocks,
                                    std::string_view what_floats) {
  if (n_floats % block_values != 0)
    return codec_error(error_code::size_mismatch, format,
                       std::string(what_floats) + " has " + std::to_string(n_floats) +
                           " floats, not a multiple of the block size " +
                           std::to_string(block_values));
  if (n_floats / block_values != n_blocks)
    return codec_error(error_code::size_mismatch, format,
                       std::to_string(n_floats) + " floats need " +
                           std::to_string(n_floats / block_values) + " blocks of " +
                           std::to_string(block_values) + ", the block buffer has " +
                           std::to_string(n_blocks));
  return {};
}

/// Finds the first non-finite value of x; returns an error naming `what`, the row and
/// the column ("q4_k: row 3 column 17 of the input is nan").
inline result<void> check_finite(std::string_view format, std::span<const float> x,
                                 std::size_t row, std::string_view what) {
  // Fast scan first: a finite float has an exponent field below 0xff.
  std::uint32_t bad = 0;
  for (float v : x) bad |= ((std::bit_cast<std::uint32_t>(v) & 0x7f800000u) == 0x7f800000u);
  if (SBGQ_LIKELY(bad == 0)) return {};
  for (std::size_t j = 0; j < x.size(); ++j) {
    if (!std::isfinite(x[j]))
      return codec_error(error_code::not_finite, format,
                         "row " + std::to_string(row) + " column " + std::to_string(j) + " of " +
                             std::string(what) + " is " + (std::isnan(x[j]) ? "nan" : "inf"));
  }
  return {};
}

/// Checks the weights argument of a quantizer: empty (no importance weights) or one
/// finite value per column of the row.
inline result<void> check_weights(std::string_view format, std::span<const float> weights,
                                  std::size_t n_per_row) {
  if (weights.empty()) return {};
  if (weights.size() != n_per_row)
    return codec_error(error_code::size_mismatch, format,
                       "the importance weights have " + std::to_string(weights.size()) +
                           " floats, expected one per column (" + std::to_string(n_per_row) + ")");
  return check_finite(format, weights, 0, "the importance weights");
}

/// All checks of a one-row quantize call: sizes, weights, finite input.
inline result<void> check_quantize_row(std::string_view format, std::span<const float> src,
                                       std::size_t block_values, std::size_t n_blocks,
                                       std::span<const float> weights) {
  SBGQ_TRY_VOID(check_row_sizes(format, src.size(), block_values, n_blocks, "the input"));
  SBGQ_TRY_VOID(check_weights(format, weights, src.size()));
  return check_finite(format, src, 0, "the input");
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE
