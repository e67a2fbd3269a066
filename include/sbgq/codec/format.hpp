// The shape of a codec format's traits, and the one dispatch template every format uses.
//
// Each format header (q8_0.hpp, q2_k.hpp .. q8_k.hpp, iq4.hpp, plain.hpp) ends with one
// struct, <format>_format, that holds everything sbgq knows about the format in one
// place, in the spirit of gemma.cpp's CompressTraits:
//
//   using block                 the packed block struct (blocks.hpp); block::values
//                               elements per block, sizeof(block) bytes
//   type                        the ggml_type (its name, block size and type size come
//                               from ggml_types.hpp; registry.hpp checks they agree)
//   uses_weights                whether quantization consumes importance weights
//   quantize, dequantize        per_target tables of the row kernels: the scalar
//                               reference sbgq::ref::<verb>_<format> and its AVX2 /
//                               AVX-512 twins in sbgq::avx2 / sbgq::avx512
//   (validation)                block_finite<Format> below derives ggml's row-data check
//                               from the block's own fields (d, dmin) or decoded value
//   grid_*                      (quantized formats except Q8_K) the fixed-grid operations
//                               of fixed_grid.hpp: grid_init, grid_round, grid_value,
//                               grid_basis, grid_store, grid_n_super
//
// registry.hpp builds the type-erased ggml_type -> codec_traits table from the list of
// these structs; checked_quantize / checked_dequantize below are the checked public entry
// points of every format (the named quantize_q4_k ... are one-line aliases).
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <span>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../io/ggml_types.hpp"
#include "../simd/dispatch.hpp"
#include "common.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::codec {

/// A row quantizer: x.size() = Block::values * y.size(); weights empty or x.size().
template <class Block>
using quantize_kernel = void (*)(std::span<const float>, std::span<Block>, std::span<const float>) noexcept;
/// A row decoder: y.size() = Block::values * x.size().
template <class Block>
using dequantize_kernel = void (*)(std::span<const Block>, std::span<float>) noexcept;

/// One operation's kernel at each level. Every entry computes the same bits; at()
/// picks the one for a level (read once per call or per row, never per block).
template <class Fn>
struct per_target {
  Fn scalar;
  Fn avx2;
  Fn avx512;
  constexpr Fn at(simd_level level) const noexcept {
    switch (level) {
      case simd_level::avx512: return avx512;
      case simd_level::avx2: return avx2;
      default: return scalar;
    }
  }
};

/// A format with only the scalar reference (Q8_K, the plain types).
template <class Fn>
constexpr per_target<Fn> scalar_only(Fn f) noexcept {
  return {f, f, f};
}

/// ggml_validate_row_data's test of one encoded block: its fp16 scales (d, and dmin where
/// the format has one) are finite; a plain type's one value is finite. A file with an
/// invalid block is one llama.cpp refuses to write (and its kernels would spread the NaN).
template <class Format>
bool block_finite(const typename Format::block& b) noexcept {
  using block = typename Format::block;
  if constexpr (block::values == 1) {
    float v = 0;
    Format::dequantize.scalar(std::span<const block>(&b, 1), std::span<float>(&v, 1));
    return std::isfinite(v);
  } else {
    auto finite = [](const auto& s) {
      if constexpr (std::is_same_v<std::decay_t<decltype(s)>, f16>) {
        return (s.bits & 0x7c00u) != 0x7c00u;
      } else {
        return std::isfinite(s);
      }
    };
    bool ok = true;
    if constexpr (requires { b.d; }) ok = finite(b.d);
    if constexpr (requires { b.dmin; }) ok = ok && finite(b.dmin);
    return ok;
  }
}

/// Checks sizes, weights and finiteness, then runs Format's quantizer at the active level.
template <class Format>
inline result<void> checked_quantize(std::span<const float> src, std::span<typename Format::block> dst,
                                     std::span<const float> weights) {
  SBGQ_TRY_VOID(check_quantize_row(type_name(Format::type), src, Format::block::values, dst.size(), weights));
  Format::quantize.at(active_simd_level())(src, dst, weights);
  return {};
}

/// Checks sizes, then runs Format's decoder at the active level.
template <class Format>
inline result<void> checked_dequantize(std::span<const typename Format::block> src, std::span<float> dst) {
  SBGQ_TRY_VOID(
      check_row_sizes(type_name(Format::type), dst.size(), Format::block::values, src.size(), "the output"));
  Format::dequantize.at(active_simd_level())(src, dst);
  return {};
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE

/// The per_target table of kernel `name` (same name in sbgq::ref, sbgq::avx2 and
/// sbgq::avx512); without x86 kernels, the reference at every level.
#if SBGQ_X86_KERNELS
#define SBGQ_CODEC_KERNELS(name) {&ref::name, &avx2::name, &avx512::name}
#else
#define SBGQ_CODEC_KERNELS(name) {&ref::name, &ref::name, &ref::name}
#endif
