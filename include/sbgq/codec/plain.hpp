// The plain tensor types F32, F16 and BF16 as codecs with a one-element "block", so the
// registry treats every type it can write the same way: a straight copy, or ggml's exact
// f16 / bf16 rounding (dtype.hpp). Scalar code only (the conversions are not hot).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "format.hpp"

SBGQ_BEGIN_NAMESPACE

/// One element of a plain type, as bytes (alignment 1, so a row may start anywhere).
template <std::size_t Bytes>
struct block_plain {
  static constexpr std::size_t values = 1;
  std::byte bytes[Bytes];
};
using block_f32 = block_plain<4>;
using block_f16 = block_plain<2>;
using block_bf16 = block_plain<2>;

namespace detail::codec {
/// Row conversion of a plain type: y[i] = Encode(x[i]) and back.
template <std::uint16_t (*Encode)(float) noexcept>
inline void quantize_half(std::span<const float> x, std::span<block_f16> y, std::span<const float>) noexcept {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::uint16_t h = Encode(x[i]);
    std::memcpy(y[i].bytes, &h, 2);
  }
}
template <float (*Decode)(std::uint16_t) noexcept>
inline void dequantize_half(std::span<const block_f16> x, std::span<float> y) noexcept {
  for (std::size_t i = 0; i < y.size(); ++i) {
    std::uint16_t h = 0;
    std::memcpy(&h, x[i].bytes, 2);
    y[i] = Decode(h);
  }
}
}  // namespace detail::codec

namespace ref {
inline void quantize_f32(std::span<const float> x, std::span<block_f32> y, std::span<const float> = {}) noexcept {
  if (!x.empty()) std::memcpy(y.data(), x.data(), x.size() * sizeof(float));
}
inline void dequantize_f32(std::span<const block_f32> x, std::span<float> y) noexcept {
  if (!y.empty()) std::memcpy(y.data(), x.data(), y.size() * sizeof(float));
}
}  // namespace ref

/// F32 (format.hpp): a copy.
struct f32_format {
  using block = block_f32;
  static constexpr ggml_type type = ggml_type::f32;
  static constexpr bool uses_weights = false;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      detail::codec::scalar_only<detail::codec::quantize_kernel<block>>(&ref::quantize_f32);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      detail::codec::scalar_only<detail::codec::dequantize_kernel<block>>(&ref::dequantize_f32);
};

/// F16 (format.hpp): IEEE half, round to nearest even (dtype.hpp).
struct f16_format {
  using block = block_f16;
  static constexpr ggml_type type = ggml_type::f16;
  static constexpr bool uses_weights = false;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      detail::codec::scalar_only<detail::codec::quantize_kernel<block>>(
          &detail::codec::quantize_half<&f32_to_f16_bits>);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      detail::codec::scalar_only<detail::codec::dequantize_kernel<block>>(
          &detail::codec::dequantize_half<&f16_bits_to_f32>);
};

/// BF16 (format.hpp): the high half of the float, rounded as ggml does (dtype.hpp).
struct bf16_format {
  using block = block_bf16;
  static constexpr ggml_type type = ggml_type::bf16;
  static constexpr bool uses_weights = false;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      detail::codec::scalar_only<detail::codec::quantize_kernel<block>>(
          &detail::codec::quantize_half<&f32_to_bf16_bits>);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      detail::codec::scalar_only<detail::codec::dequantize_kernel<block>>(
          &detail::codec::dequantize_half<&bf16_bits_to_f32>);
};

SBGQ_END_NAMESPACE
