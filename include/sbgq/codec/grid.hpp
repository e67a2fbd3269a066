// Fixed-grid view of one quantization block: the codec chooses a block's scales (and
// mins / super-scales) with its own importance-weighted search, then the caller rounds
// each value on that frozen grid, one column at a time, and finally packs the codes back
// into a block that llama.cpp decodes. This is what error-compensating (GPTQ-style)
// rounding (gptq.hpp) needs from a codec; the plain codecs fuse the three steps.
//
// Design goals:
//   - Control: with unchanged inputs, make_grid + grid_round + grid_store give exactly the
//     codec's bytes. So grid_round mirrors each codec's final re-quantization formula,
//     including its quirks (algorithms doc 16): K-quants divide by the decoded fp16
//     sub-scale and keep the search's code where that scale is 0; Q8_0 multiplies by the
//     *unrounded* 1/d; IQ4_NL / IQ4_XS use the unrounded scale (for these three the
//     unrounded scale is not in the bytes, so make_grid recomputes it with the codec's
//     own search and formulas).
//   - Exact values: grid_value evaluates the float expression of ggml's
//     dequantize_row_* (blocks doc), so the caller's error bookkeeping sees exactly the
//     values llama.cpp will decode.
//   - Refit: every format's value is D*a - M*b with small integers a, b and the fp16
//     super-scales D (and M), so a least-squares refit of D (and M) for fixed codes is a
//     1-D or 2-D linear problem (grid_basis, grid_set_super).
// Non-goals: speed (scalar code; the searches run at the codecs' speed), IQ3_S/IQ2_S.
//
// Structure: the per-format pieces are the grid_* functions of each format's traits
// struct (q4_k_format ... in the format headers; the arithmetic shared by families of
// formats is in fixed_grid.hpp); registry.hpp gathers them into one grid_ops table per
// format, and the functions below reach it through find_codec / fixed_grid::ops.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "../io/ggml_types.hpp"
#include "../simd/dispatch.hpp"
#include "fixed_grid.hpp"
#include "registry.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::codec {

/// The grid operations of type t, or null (plain types, Q8_K, types without a codec).
constexpr const grid_ops* find_grid(ggml_type t) noexcept {
  const codec_traits* c = find_codec(t);
  return c ? c->grid : nullptr;
}

/// True for the formats fixed_grid handles (Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS).
constexpr bool grid_supported(ggml_type t) noexcept { return find_grid(t) != nullptr; }

/// Number of fp16 super-scales a refit adjusts: 2 (d and dmin) for the asymmetric
/// K-quants, 1 (d) for the others. Precondition: grid_supported(t).
constexpr int grid_n_super(ggml_type t) noexcept { return find_grid(t)->n_super; }

/// Runs the codec's search on the `g.values`-column block x (weights qw: importance per
/// column or null, as quantize_rows passes them) and freezes its grid in g.
/// Precondition: grid_supported(type); x holds block_size(type) finite floats.
inline void make_grid(ggml_type type, simd_level level, const float* x, const float* qw, fixed_grid& g) noexcept {
  SBGQ_DASSERT(grid_supported(type));
  g.ops = find_grid(type);
  g.type = type;
  g.values = static_cast<int>(block_size(type));
  g.ops->init(level, x, qw, g);
}

/// The code of value x in column i of the block, by the codec's own final rounding rule
/// (see the file comment). Values off the grid's range clamp to its ends.
inline int grid_round(const fixed_grid& g, int i, float x) noexcept { return g.ops->round(g, i, x); }

/// The float llama.cpp's dequantize_row_* produces for code L in column i (same
/// expression, same operation order).
inline float grid_value(const fixed_grid& g, int i, int L) noexcept { return g.ops->value(g, i, L); }

/// value = D * a - M * b for code L in column i, up to float rounding (a and b are
/// exact small integers): the basis of the least-squares refit of D (and M).
inline void grid_basis(const fixed_grid& g, int i, int L, double& a, double& b) noexcept {
  g.ops->basis(g, i, L, a, b);
}

/// Replaces the stored super-scale(s) (refit) and updates the decoded sub-scales.
inline void grid_set_super(fixed_grid& g, f16 d, f16 dmin) noexcept {
  g.d = d;
  if (g.ops->n_super == 2) g.dmin = dmin;
  grid_set_decoded(g, g.values / g.sub);
}

/// Writes the block (block_bytes(type) bytes at dst, any alignment) with codes L.
inline void grid_store(const fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
  g.ops->store(g, L, dst);
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE
