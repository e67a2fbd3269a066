// ggml_type -> codec traits: block geometry and type-erased row functions for every
// tensor type sbgq can write (the quantized codecs plus F32/F16/BF16 as plain types).
//
// The row functions take the kernel level explicitly, so a caller that processes many
// rows (codec/rows.hpp) reads active_simd_level() once and passes it down, and a
// benchmark or test can run one level without touching the process-wide override.
// They trust their arguments (sizes checked by SBGQ_DASSERT only); the checked entry
// points are the per-format functions (quantize_q4_k, ...) and quantize_rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "../io/ggml_types.hpp"
#include "../simd/dispatch.hpp"
#include "blocks.hpp"
#include "iq4.hpp"
#include "k_quants.hpp"
#include "q8_0.hpp"

SBGQ_BEGIN_NAMESPACE

/// Quantizes n floats (a multiple of block_values) into n / block_values blocks at dst
/// (any alignment). weights: null, or n importance values (ignored when the format
/// does not use them).
using quantize_row_fn = void (*)(simd_level level, const float* src, std::byte* dst, std::size_t n,
                                 const float* weights);
/// Decodes n / block_values blocks at src (any alignment) into n floats.
using dequantize_row_fn = void (*)(simd_level level, const std::byte* src, float* dst, std::size_t n);

/// What sbgq knows about writing and reading one ggml_type.
struct codec_traits {
  ggml_type type = ggml_type::f32;
  std::string_view name;          ///< ggml's name ("q4_K")
  std::size_t block_values = 1;   ///< elements per block (1 for plain types)
  std::size_t block_bytes = 4;    ///< bytes per block
  bool uses_weights = false;      ///< quantization consumes importance weights
  quantize_row_fn quantize_row = nullptr;
  dequantize_row_fn dequantize_row = nullptr;

  /// Bytes of a row of n elements (n a multiple of block_values).
  constexpr std::size_t row_bytes(std::size_t n) const noexcept { return n / block_values * block_bytes; }
};

namespace detail::codec {

template <class Block, void (*Quant)(simd_level, std::span<const float>, std::span<Block>, std::span<const float>)>
void erased_quantize(simd_level level, const float* src, std::byte* dst, std::size_t n, const float* w) {
  SBGQ_DASSERT(n % Block::values == 0);
  Quant(level, std::span<const float>(src, n),
        std::span<Block>(reinterpret_cast<Block*>(dst), n / Block::values),
        w ? std::span<const float>(w, n) : std::span<const float>());
}
template <class Block, void (*Dequant)(simd_level, std::span<const Block>, std::span<float>)>
void erased_dequantize(simd_level level, const std::byte* src, float* dst, std::size_t n) {
  SBGQ_DASSERT(n % Block::values == 0);
  Dequant(level, std::span<const Block>(reinterpret_cast<const Block*>(src), n / Block::values),
          std::span<float>(dst, n));
}

// Plain types: a straight copy or ggml's exact f16/bf16 rounding (dtype.hpp). Stored
// through memcpy so that the destination may have any alignment.
inline void quantize_row_f32(simd_level, const float* src, std::byte* dst, std::size_t n, const float*) {
  if (n) std::memcpy(dst, src, n * sizeof(float));
}
inline void dequantize_row_f32(simd_level, const std::byte* src, float* dst, std::size_t n) {
  if (n) std::memcpy(dst, src, n * sizeof(float));
}
inline void quantize_row_f16(simd_level, const float* src, std::byte* dst, std::size_t n, const float*) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = f32_to_f16_bits(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}
inline void dequantize_row_f16(simd_level, const std::byte* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h = 0;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = f16_bits_to_f32(h);
  }
}
inline void quantize_row_bf16(simd_level, const float* src, std::byte* dst, std::size_t n, const float*) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = f32_to_bf16_bits(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}
inline void dequantize_row_bf16(simd_level, const std::byte* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h = 0;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_bits_to_f32(h);
  }
}

template <class Block, void (*Quant)(simd_level, std::span<const float>, std::span<Block>, std::span<const float>),
          void (*Dequant)(simd_level, std::span<const Block>, std::span<float>)>
constexpr codec_traits make_codec(ggml_type t, bool uses_weights) {
  return codec_traits{t,
                      type_name(t),
                      Block::values,
                      sizeof(Block),
                      uses_weights,
                      &erased_quantize<Block, Quant>,
                      &erased_dequantize<Block, Dequant>};
}

inline constexpr codec_traits codec_table[] = {
    {ggml_type::f32, "f32", 1, 4, false, &quantize_row_f32, &dequantize_row_f32},
    {ggml_type::f16, "f16", 1, 2, false, &quantize_row_f16, &dequantize_row_f16},
    {ggml_type::bf16, "bf16", 1, 2, false, &quantize_row_bf16, &dequantize_row_bf16},
    make_codec<block_q8_0, quantize_q8_0_at, dequantize_q8_0_at>(ggml_type::q8_0, false),
    make_codec<block_q2_k, quantize_q2_k_at, dequantize_q2_k_at>(ggml_type::q2_k, true),
    make_codec<block_q3_k, quantize_q3_k_at, dequantize_q3_k_at>(ggml_type::q3_k, true),
    make_codec<block_q4_k, quantize_q4_k_at, dequantize_q4_k_at>(ggml_type::q4_k, true),
    make_codec<block_q5_k, quantize_q5_k_at, dequantize_q5_k_at>(ggml_type::q5_k, true),
    make_codec<block_q6_k, quantize_q6_k_at, dequantize_q6_k_at>(ggml_type::q6_k, true),
    make_codec<block_q8_k, quantize_q8_k_at, dequantize_q8_k_at>(ggml_type::q8_k, false),
    make_codec<block_iq4_nl, quantize_iq4_nl_at, dequantize_iq4_nl_at>(ggml_type::iq4_nl, true),
    make_codec<block_iq4_xs, quantize_iq4_xs_at, dequantize_iq4_xs_at>(ggml_type::iq4_xs, true),
};

}  // namespace detail::codec

/// The codec of a ggml_type, or null if sbgq cannot write it. Q8_K is included (it is a
/// valid codec) although it never appears in GGUF files.
constexpr const codec_traits* find_codec(ggml_type t) noexcept {
  for (const codec_traits& c : detail::codec::codec_table)
    if (c.type == t) return &c;
  return nullptr;
}

/// Every supported codec, plain types first.
constexpr std::span<const codec_traits> all_codecs() noexcept { return detail::codec::codec_table; }

// The table agrees with ggml's type sizes (ggml_types.hpp, itself checked against the
// oracle).
static_assert([] {
  for (const codec_traits& c : detail::codec::codec_table)
    if (c.block_values != block_size(c.type) || c.block_bytes != type_size(c.type)) return false;
  return true;
}());

SBGQ_END_NAMESPACE
