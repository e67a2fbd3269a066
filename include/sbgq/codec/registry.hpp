// ggml_type -> codec traits: block geometry, type-erased row functions and grid
// operations for every tensor type sbgq can write (the quantized codecs plus
// F32/F16/BF16 as plain types), generated from the list of format traits structs
// (format.hpp; one struct per format, in the format's header).
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
#include "fixed_grid.hpp"
#include "format.hpp"
#include "iq4.hpp"
#include "k_quants.hpp"
#include "plain.hpp"
#include "q8_0.hpp"

SBGQ_BEGIN_NAMESPACE

/// Quantizes n floats (a multiple of block_values) into n / block_values blocks at dst
/// (any alignment). weights: null, or n importance values (ignored when the format
/// does not use them).
using quantize_row_fn = void (*)(simd_level level, const float* src, std::byte* dst, std::size_t n,
                                 const float* weights);
/// Decodes n / block_values blocks at src (any alignment) into n floats.
using dequantize_row_fn = void (*)(simd_level level, const std::byte* src, float* dst, std::size_t n);
/// The index of the first of n_blocks blocks at src that ggml_validate_row_data refuses
/// (format.hpp block_finite), or n_blocks when all are valid.
using first_invalid_fn = std::size_t (*)(const std::byte* src, std::size_t n_blocks);

/// What sbgq knows about writing and reading one ggml_type.
struct codec_traits {
  ggml_type type = ggml_type::f32;
  std::string_view name;          ///< ggml's name ("q4_K")
  std::size_t block_values = 1;   ///< elements per block (1 for plain types)
  std::size_t block_bytes = 4;    ///< bytes per block
  bool uses_weights = false;      ///< quantization consumes importance weights
  quantize_row_fn quantize_row = nullptr;
  dequantize_row_fn dequantize_row = nullptr;
  first_invalid_fn first_invalid = nullptr;
  /// Fixed-grid operations (grid.hpp), or null for the formats without a grid.
  const detail::codec::grid_ops* grid = nullptr;

  /// Bytes of a row of n elements (n a multiple of block_values).
  constexpr std::size_t row_bytes(std::size_t n) const noexcept { return n / block_values * block_bytes; }
};

namespace detail::codec {

template <class Format>
void erased_quantize(simd_level level, const float* src, std::byte* dst, std::size_t n, const float* w) {
  using block = typename Format::block;
  SBGQ_DASSERT(n % block::values == 0);
  Format::quantize.at(level)(std::span<const float>(src, n),
                             std::span<block>(reinterpret_cast<block*>(dst), n / block::values),
                             w ? std::span<const float>(w, n) : std::span<const float>());
}
template <class Format>
void erased_dequantize(simd_level level, const std::byte* src, float* dst, std::size_t n) {
  using block = typename Format::block;
  SBGQ_DASSERT(n % block::values == 0);
  Format::dequantize.at(level)(std::span<const block>(reinterpret_cast<const block*>(src), n / block::values),
                               std::span<float>(dst, n));
}

template <class Format>
std::size_t erased_first_invalid(const std::byte* src, std::size_t n_blocks) {
  using block = typename Format::block;
  const auto* b = reinterpret_cast<const block*>(src);  // alignment 1 (blocks.hpp)
  for (std::size_t i = 0; i < n_blocks; ++i)
    if (!block_finite<Format>(b[i])) return i;
  return n_blocks;
}

template <class Format>
inline constexpr grid_ops grid_ops_for{Format::grid_n_super, &Format::grid_init,  &Format::grid_round,
                                       &Format::grid_value,  &Format::grid_basis, &Format::grid_store};

/// The grid operations of Format, or null when it has none (plain types, Q8_K).
template <class Format>
constexpr const grid_ops* grid_ops_of() noexcept {
  if constexpr (requires { &Format::grid_init; }) {
    return &grid_ops_for<Format>;
  } else {
    return nullptr;
  }
}

/// The type-erased record of one format's traits (format.hpp).
template <class Format>
constexpr codec_traits make_codec() noexcept {
  using block = typename Format::block;
  static_assert(block::values == block_size(Format::type) && sizeof(block) == type_size(Format::type),
                "the block struct disagrees with ggml's type size");
  return codec_traits{Format::type,
                      type_name(Format::type),
                      block::values,
                      sizeof(block),
                      Format::uses_weights,
                      &erased_quantize<Format>,
                      &erased_dequantize<Format>,
                      &erased_first_invalid<Format>,
                      grid_ops_of<Format>()};
}

template <class... Formats>
struct format_list {
  static constexpr codec_traits table[] = {make_codec<Formats>()...};
};

/// Every format sbgq can write (and Q8_K), plain types first: the one list the registry,
/// the row functions and the fixed-grid API are built from.
using all_formats = format_list<f32_format, f16_format, bf16_format, q8_0_format, q2_k_format, q3_k_format,
                                q4_k_format, q5_k_format, q6_k_format, q8_k_format, iq4_nl_format, iq4_xs_format>;
inline constexpr std::span<const codec_traits> codec_table = all_formats::table;

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

SBGQ_END_NAMESPACE
