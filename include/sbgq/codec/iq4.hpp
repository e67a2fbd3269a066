// IQ4_NL and IQ4_XS: 4-bit indices into the non-linear codebook kvalues_iq4nl, with an
// fp16 scale per 32 weights (IQ4_NL) or a 6-bit scale per 32 under an fp16 super-scale
// per 256 (IQ4_XS).
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_iq4_nl /
// quantize_iq4_xs / ggml_quantize_chunk (with or without imatrix; both go through
// quantize_row_iq4_nl_impl with ntry = 7, algorithms doc 11) and dequantize_row_iq4_nl /
// dequantize_row_iq4_xs (blocks doc 8, 9); and the public API.
//
// Note: llama.cpp's quantize_row_iq4_nl_ref runs a search-free variant (ntry = -1) that
// ggml_quantize_chunk never uses; sbgq does not implement it (algorithms doc 2, 11).
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
#include "k_quant_common.hpp"
#include "tables.hpp"
#include "../kernels/avx2/iq4.hpp"
#include "../kernels/avx512/iq4.hpp"

SBGQ_BEGIN_NAMESPACE

namespace detail::codec {

/// Index of the codebook value nearest to v (algorithms doc 11.1). At an exact midpoint
/// the upper index wins; v <= V[0] gives 0 and v >= V[15] gives 15. Written as "find the
/// bracketing pair V[k-1] <= v < V[k], then compare distances", which is what ggml's
/// bisection computes; a NaN falls through every comparison to 15, as in ggml.
inline int best_index_iq4nl(float v) noexcept {
  const auto& V = kvalues_iq4nl;
  if (v <= static_cast<float>(V[0])) return 0;
  if (v >= static_cast<float>(V[15])) return 15;
  int k = 1;
  while (k < 15 && !(v < static_cast<float>(V[static_cast<std::size_t>(k)]))) ++k;
  const float lo = static_cast<float>(V[static_cast<std::size_t>(k - 1)]);
  const float hi = static_cast<float>(V[static_cast<std::size_t>(k)]);
  return v - lo < hi - v ? k - 1 : k;
}

/// The shared IQ4 search of algorithms doc 11.2 for one super-block of n_blocks x 32
/// weights (IQ4_NL: 1, IQ4_XS: 8), ntry = 7. Writes L[32 * n_blocks] (codebook indices,
/// final) and returns the per-32 scales in `scales` and the signed largest-|scale| in
/// `max_scale`. Error weights: qw * sqrtf(sigma2 + x^2) with an imatrix, else x^2;
/// sigma2 = 2 * sum(x^2) / (32 * n_blocks), i.e. over the super-block.
inline void iq4_search_superblock(const float* x, const float* qw, int n_blocks, std::uint8_t* L,
                                  float* scales, float& max_scale) noexcept {
  constexpr int ntry = 7;
  const auto& V = kvalues_iq4nl;
  const float v0 = static_cast<float>(V[0]);
  const int sb = 32 * n_blocks;
  float sigma2 = sum_squares(x, sb);
  sigma2 *= 2.0f / static_cast<float>(sb);
  float weight[32];
  max_scale = 0.0f;
  float amax_scale = 0.0f;
  for (int ib = 0; ib < n_blocks; ++ib) {
    const float* xb = x + 32 * ib;
    std::uint8_t* Lb = L + 32 * ib;
    for (int j = 0; j < 32; ++j)
      weight[j] = qw ? qw[32 * ib + j] * std::sqrt(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < group_max_eps) {  // L is recomputed by the caller
      scales[ib] = 0.0f;
      continue;
    }
    // Accumulate the weighted normal equations of "x ~ d * V[best_index(id * x)]".
    auto fit = [&](float id, float& sumqx, float& sumq2, bool store) {
      sumqx = 0.0f;
      sumq2 = 0.0f;
      for (int j = 0; j < 32; ++j) {
        const int l = best_index_iq4nl(id * xb[j]);
        if (store) Lb[j] = static_cast<std::uint8_t>(l);
        const float q = static_cast<float>(V[static_cast<std::size_t>(l)]);
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
    };
    // Initial candidate maps max to +127 (nearest level 113) ...
    float d = -max / v0;
    float sumqx = 0.0f, sumq2 = 0.0f;
    fit(1.0f / d, sumqx, sumq2, true);
    d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    // ... the 15 others map max to -127 + itry, the long end of the codebook.
    for (int itry = -ntry; itry <= ntry; ++itry) {
      const float id = static_cast<float>(itry + V[0]) / max;
      fit(id, sumqx, sumq2, false);
      if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
}

/// Packs 32 indices per block: qs[16ib + j] = L[32ib + j] | L[32ib + 16 + j] << 4.
inline void pack_iq4_nibbles(const std::uint8_t* L, int n_blocks, std::uint8_t* qs) noexcept {
  for (int ib = 0; ib < n_blocks; ++ib)
    for (int j = 0; j < 16; ++j)
      qs[16 * ib + j] = static_cast<std::uint8_t>(L[32 * ib + j] | (L[32 * ib + 16 + j] << 4));
}

}  // namespace detail::codec

namespace ref {

/// Quantizes one row (x.size() = 32 * y.size()); `weights` empty or one per column.
/// Equals quantize_iq4_nl(x, y, 1, n, imatrix-or-NULL) (not quantize_row_iq4_nl_ref).
inline void quantize_iq4_nl(std::span<const float> x, std::span<block_iq4_nl> y,
                            std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * block_iq4_nl::values);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  std::uint8_t L[32];
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + 32 * b;
    const float* qw = weights.empty() ? nullptr : weights.data() + 32 * b;
    float scale = 0.0f, max_scale = 0.0f;
    detail::codec::iq4_search_superblock(xb, qw, 1, L, &scale, max_scale);
    // Algorithms doc 11.2 step 4: store fp16(scale), recompute all 32 indices with the
    // *unrounded* scale (an all-zero block gets index 8, the level +1, and d = 0).
    y[b].d = to_f16(scale);
    const float id = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int j = 0; j < 32; ++j) L[j] = static_cast<std::uint8_t>(detail::codec::best_index_iq4nl(id * xb[j]));
    detail::codec::pack_iq4_nibbles(L, 1, y[b].qs);
  }
}

/// Quantizes one row (x.size() = 256 * y.size()); `weights` empty or one per column.
/// Equals quantize_iq4_xs(x, y, 1, n, imatrix-or-NULL) and quantize_row_iq4_xs_ref.
inline void quantize_iq4_xs(std::span<const float> x, std::span<block_iq4_xs> y,
                            std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  std::uint8_t L[256];
  float scales[8];
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + qk_k * b;
    const float* qw = weights.empty() ? nullptr : weights.data() + qk_k * b;
    block_iq4_xs& out = y[b];
    float max_scale = 0.0f;
    detail::codec::iq4_search_superblock(xb, qw, 8, L, scales, max_scale);
    // Algorithms doc 11.2 step 3: the dominant block gets l = -32; D = -max_scale/32 is
    // stored as fp16 but the 6-bit codes and the final indices use the unrounded D.
    // (All-zero super-block: D = -0.0 -> d = 0x8000, every l = 0 -> scales_h 0xAAAA.)
    const float D = -max_scale / 32.0f;
    out.d = to_f16(D);
    const float id = D != 0.0f ? 1.0f / D : 0.0f;
    std::uint16_t scales_h = 0;
    for (int ib = 0; ib < 8; ++ib) {
      int l = detail::codec::nearest_int(id * scales[ib]);
      l = std::max(-32, std::min(31, l));
      const float dl = D * static_cast<float>(l);
      const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
      for (int j = 0; j < 32; ++j)
        L[32 * ib + j] = static_cast<std::uint8_t>(detail::codec::best_index_iq4nl(idl * xb[32 * ib + j]));
      l += 32;
      const auto lo = static_cast<std::uint8_t>(l & 0xF);
      if (ib % 2 == 0)
        out.scales_l[ib / 2] = lo;
      else
        out.scales_l[ib / 2] = static_cast<std::uint8_t>(out.scales_l[ib / 2] | (lo << 4));
      scales_h = static_cast<std::uint16_t>(scales_h | ((l >> 4) << (2 * ib)));
    }
    out.scales_h = scales_h;
    detail::codec::pack_iq4_nibbles(L, 8, out.qs);
  }
}

/// Decodes one row: y = d * kvalues_iq4nl[idx] (blocks doc 8).
inline void dequantize_iq4_nl(std::span<const block_iq4_nl> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * block_iq4_nl::values);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const float d = to_f32(x[b].d);
    float* out = y.data() + 32 * b;
    for (int j = 0; j < 16; ++j) {
      out[j] = d * static_cast<float>(kvalues_iq4nl[x[b].qs[j] & 0xF]);
      out[j + 16] = d * static_cast<float>(kvalues_iq4nl[x[b].qs[j] >> 4]);
    }
  }
}

/// Decodes one row: y = (d * (ls - 32)) * kvalues_iq4nl[idx] (blocks doc 9).
inline void dequantize_iq4_xs(std::span<const block_iq4_xs> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const block_iq4_xs& blk = x[b];
    const float D = to_f32(blk.d);
    float* out = y.data() + qk_k * b;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((blk.scales_h >> (2 * ib)) & 3) << 4);
      const float dl = D * static_cast<float>(ls - 32);
      const std::uint8_t* qs = blk.qs + 16 * ib;
      for (int j = 0; j < 16; ++j) {
        out[32 * ib + j] = dl * static_cast<float>(kvalues_iq4nl[qs[j] & 0xF]);
        out[32 * ib + 16 + j] = dl * static_cast<float>(kvalues_iq4nl[qs[j] >> 4]);
      }
    }
  }
}

}  // namespace ref

namespace detail::codec {
/// Grid arithmetic of IQ4_NL and IQ4_XS: value = dj * kvalues_iq4nl[L], rounding to the
/// nearest codebook index with the codec's *unrounded* reciprocal scale inv[j]
/// (algorithms doc 11.2; IQ4_NL has one sub-block with sc = 1).
struct iq4_grid {
  static constexpr int grid_n_super = 1;
  static int grid_round(const fixed_grid& g, int i, float x) noexcept {
    return best_index_iq4nl(g.inv[i / g.sub] * x);
  }
  static float grid_value(const fixed_grid& g, int i, int L) noexcept {
    return g.dj[i / g.sub] * static_cast<float>(kvalues_iq4nl[static_cast<std::size_t>(L)]);
  }
  static void grid_basis(const fixed_grid& g, int i, int L, double& a, double& b) noexcept {
    a = static_cast<double>(g.sc[i / g.sub]) * kvalues_iq4nl[static_cast<std::size_t>(L)];
    b = 0.0;
  }
};
}  // namespace detail::codec

/// IQ4_NL in one place (format.hpp, fixed_grid.hpp). Grid: one sub-block of 32.
struct iq4_nl_format : detail::codec::iq4_grid {
  using block = block_iq4_nl;
  static constexpr ggml_type type = ggml_type::iq4_nl;
  static constexpr bool uses_weights = true;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_iq4_nl);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_iq4_nl);

  /// Algorithms doc 11.2 step 4, with the codec's own search.
  static void grid_init(simd_level, const float* x, const float* qw, detail::codec::fixed_grid& g) noexcept {
    g.sub = 32;
    float scale = 0.0f, max_scale = 0.0f;
    detail::codec::iq4_search_superblock(x, qw, 1, g.L0, &scale, max_scale);
    g.d = to_f16(scale);
    g.dmin = f16{};
    g.inv[0] = scale != 0.0f ? 1.0f / scale : 0.0f;
    g.sc[0] = 1;
    detail::codec::grid_set_decoded(g, 1);
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b;
    b.d = g.d;
    detail::codec::pack_iq4_nibbles(L, 1, b.qs);
    std::memcpy(dst, &b, sizeof b);
  }
};

/// IQ4_XS in one place (format.hpp, fixed_grid.hpp). Grid: 8 sub-blocks of 32 with the
/// signed 6-bit scales l, value = (D l) kvalues_iq4nl[L].
struct iq4_xs_format : detail::codec::iq4_grid {
  using block = block_iq4_xs;
  static constexpr ggml_type type = ggml_type::iq4_xs;
  static constexpr bool uses_weights = true;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_iq4_xs);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_iq4_xs);

  /// Algorithms doc 11.2 step 3: 6-bit block scales l against the unrounded
  /// D = -max_scale/32; indices from the unrounded dl = D * l.
  static void grid_init(simd_level, const float* x, const float* qw, detail::codec::fixed_grid& g) noexcept {
    g.sub = 32;
    float scales[8];
    float max_scale = 0.0f;
    detail::codec::iq4_search_superblock(x, qw, 8, g.L0, scales, max_scale);
    const float D = -max_scale / 32.0f;
    g.d = to_f16(D);
    g.dmin = f16{};
    const float id = D != 0.0f ? 1.0f / D : 0.0f;
    for (int ib = 0; ib < 8; ++ib) {
      const int l = std::max(-32, std::min(31, detail::codec::nearest_int(id * scales[ib])));
      const float dl = D * static_cast<float>(l);
      g.inv[ib] = dl != 0.0f ? 1.0f / dl : 0.0f;
      g.sc[ib] = l;
    }
    detail::codec::grid_set_decoded(g, 8);
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b;
    b.d = g.d;
    std::uint16_t scales_h = 0;
    for (int ib = 0; ib < 4; ++ib) b.scales_l[ib] = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int l = g.sc[ib] + 32;
      b.scales_l[ib / 2] = static_cast<std::uint8_t>(b.scales_l[ib / 2] | ((l & 0xF) << (4 * (ib % 2))));
      scales_h = static_cast<std::uint16_t>(scales_h | ((l >> 4) << (2 * ib)));
    }
    b.scales_h = scales_h;
    detail::codec::pack_iq4_nibbles(L, 8, b.qs);
    std::memcpy(dst, &b, sizeof b);
  }
};

/// Quantizes one row of `src` (a multiple of 32 floats) into src.size()/32 blocks.
/// `weights`: empty (llama.cpp's x^2 weighting) or one importance value per column.
/// Errors: size_mismatch; not_finite naming the column. Thread-safe.
inline result<void> quantize_iq4_nl(std::span<const float> src, std::span<block_iq4_nl> dst,
                                    std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<iq4_nl_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (32 floats per block). Errors: size_mismatch.
inline result<void> dequantize_iq4_nl(std::span<const block_iq4_nl> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<iq4_nl_format>(src, dst);
}

/// Quantizes one row of `src` (a multiple of 256 floats) into src.size()/256 blocks.
/// `weights`: empty (llama.cpp's x^2 weighting) or one importance value per column.
/// Errors: size_mismatch; not_finite naming the column. Thread-safe.
inline result<void> quantize_iq4_xs(std::span<const float> src, std::span<block_iq4_xs> dst,
                                    std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<iq4_xs_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (256 floats per block). Errors: size_mismatch.
inline result<void> dequantize_iq4_xs(std::span<const block_iq4_xs> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<iq4_xs_format>(src, dst);
}

SBGQ_END_NAMESPACE
