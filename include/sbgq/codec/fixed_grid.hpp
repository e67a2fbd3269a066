// The frozen grid of one quantization block (fixed_grid), the type-erased table of a
// format's grid operations (grid_ops), and the grid arithmetic that whole families of
// formats share. The per-format pieces (how the codec's search fills the grid, how the
// codes are packed) sit in each format's traits struct (<format>_format in the format
// header); grid.hpp is the runtime API over them, registry.hpp the table.
//
// Codes L are "levels" as the packers take them:
//   Q4_K 0..15, Q5_K 0..31, Q2_K 0..3  value = dj * L - mj          (affine_grid)
//   Q6_K 0..63 (q = L - 32), Q3_K 0..7 (q = L - 4)   value = dj * q  (signed_grid)
//   Q8_0 1..255 (q = L - 128, |q| <= 127)            value = q * D
//   IQ4_NL / IQ4_XS 0..15                            value = dj * kvalues_iq4nl[L]
// with dj = D * sc_j and mj = M * m_j for sub-block j (IQ4_NL/Q8_0: sc = 1, one
// sub-block). See grid.hpp for the design goals (exact control bytes, exact decoded
// values, linear refit basis).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "../io/ggml_types.hpp"
#include "../simd/dispatch.hpp"
#include "common.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::codec {

struct fixed_grid;

/// The grid operations of one format, filled by registry.hpp from the format's
/// grid_* functions (see grid.hpp for what each one does).
struct grid_ops {
  int n_super;  ///< fp16 super-scales a refit adjusts: 2 (d and dmin) or 1 (d)
  void (*init)(simd_level level, const float* x, const float* qw, fixed_grid& g) noexcept;
  int (*round)(const fixed_grid& g, int i, float x) noexcept;
  float (*value)(const fixed_grid& g, int i, int L) noexcept;
  void (*basis)(const fixed_grid& g, int i, int L, double& a, double& b) noexcept;
  void (*store)(const fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept;
};

/// One block's frozen grid (codes and values as in the file comment).
struct fixed_grid {
  const grid_ops* ops = nullptr;  ///< the format's operations (set by make_grid)
  ggml_type type = ggml_type::q8_0;
  int values = 32;   ///< columns in the block
  int sub = 32;      ///< columns per sub-block
  f16 d, dmin;       ///< stored super-scales
  int sc[16] = {};   ///< integer sub-block scales (signed where the format is)
  int mn[16] = {};   ///< integer sub-block mins (asymmetric K-quants)
  float dj[16] = {}; ///< decoded D * sc
  float mj[16] = {}; ///< decoded M * mn
  float inv[16] = {};            ///< Q8_0 / IQ4: the unrounded reciprocal the codec rounds with
  std::uint8_t L0[256] = {};     ///< the codec's own codes (kept where the codec keeps them)
  alignas(8) std::byte raw[256]; ///< the codec's block bytes (K-quants: scale bytes reused)
};

/// dj = D * sc_j, mj = M * mn_j for the first n_sub sub-blocks (ggml's decode order).
inline void grid_set_decoded(fixed_grid& g, int n_sub) noexcept {
  const float D = to_f32(g.d), M = to_f32(g.dmin);
  for (int j = 0; j < n_sub; ++j) {
    g.dj[j] = D * static_cast<float>(g.sc[j]);
    g.mj[j] = M * static_cast<float>(g.mn[j]);
  }
}

/// Runs Format's own quantizer (at `level`, bit-identical at every level) on the block
/// at x, keeps its bytes in g.raw and returns the block (the K-quants read their scales
/// and the search's codes back from it).
template <class Format>
inline typename Format::block grid_run_codec(simd_level level, const float* x, const float* qw,
                                             fixed_grid& g) noexcept {
  using block = typename Format::block;
  static_assert(sizeof(block) <= sizeof(g.raw));
  block b;
  Format::quantize.at(level)(std::span<const float>(x, block::values), std::span<block>(&b, 1),
                             qw ? std::span<const float>(qw, block::values) : std::span<const float>());
  std::memcpy(g.raw, &b, sizeof b);
  return b;
}

/// Block b with the stored super-scale(s) replaced by the grid's (refit), ready for the
/// format's packer; the scale bytes come from the codec's own block in g.raw.
template <class Block>
inline Block grid_block_from_raw(const fixed_grid& g) noexcept {
  Block b;
  std::memcpy(&b, g.raw, sizeof b);
  b.d = g.d;
  if constexpr (requires { b.dmin; }) b.dmin = g.dmin;
  return b;
}

/// Grid arithmetic of the asymmetric K-quants (Q2_K, Q4_K, Q5_K): value = dj * L - mj
/// with L in 0..NMax. Rounding mirrors the codecs' final re-quantization: a true division
/// by the decoded fp16 sub-scale, and the search's code where that scale is 0.
template <int NMax>
struct affine_grid {
  static constexpr int grid_n_super = 2;
  static int grid_round(const fixed_grid& g, int i, float x) noexcept {
    const int j = i / g.sub;
    if (g.dj[j] == 0.0f) return g.L0[i];
    return std::max(0, std::min(NMax, nearest_int((x + g.mj[j]) / g.dj[j])));
  }
  static float grid_value(const fixed_grid& g, int i, int L) noexcept {
    const int j = i / g.sub;
    return g.dj[j] * static_cast<float>(L) - g.mj[j];
  }
  static void grid_basis(const fixed_grid& g, int i, int L, double& a, double& b) noexcept {
    const int j = i / g.sub;
    a = static_cast<double>(g.sc[j]) * L;
    b = g.mn[j];
  }
};

/// Grid arithmetic of the symmetric K-quants (Q3_K Off = 4, Q6_K Off = 32): value =
/// dj * (L - Off) with L - Off in -Off..Off-1; rounding as affine_grid.
template <int Off>
struct signed_grid {
  static constexpr int grid_n_super = 1;
  static int grid_round(const fixed_grid& g, int i, float x) noexcept {
    const int j = i / g.sub;
    if (g.dj[j] == 0.0f) return g.L0[i];
    return std::max(-Off, std::min(Off - 1, nearest_int(x / g.dj[j]))) + Off;
  }
  static float grid_value(const fixed_grid& g, int i, int L) noexcept {
    return g.dj[i / g.sub] * static_cast<float>(L - Off);
  }
  static void grid_basis(const fixed_grid& g, int i, int L, double& a, double& b) noexcept {
    a = static_cast<double>(g.sc[i / g.sub]) * (L - Off);
    b = 0.0;
  }
};

}  // namespace detail::codec
SBGQ_END_NAMESPACE
