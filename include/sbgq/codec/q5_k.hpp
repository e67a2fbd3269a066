// Q5_K: 5-bit asymmetric K-quant; Q4_K plus one high bit per weight.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_row_q5_K_ref (no
// importance weights), quantize_row_q5_K_impl (with them) and dequantize_row_q5_K, and
// the public API. Algorithms doc section 9 lists the only differences from Q4_K: nmax 31,
// the ref-path H3 parameters (-0.5, 0.1, 15) and the packing of the fifth bit (blocks
// doc 4). The super-block search is shared with Q4_K (q4_k.hpp).
#pragma once

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
#include "q4_k.hpp"

SBGQ_BEGIN_NAMESPACE

namespace detail::codec {
/// Blocks doc 4: the low nibbles as Q4_K; for chunk c the fifth bit of the low-half
/// weight goes to bit 2c of qh[l], that of the high-half weight to bit 2c+1.
inline void pack_q5_k_quants(const std::uint8_t* L, std::uint8_t* qh, std::uint8_t* qs) noexcept {
  for (int l = 0; l < 32; ++l) qh[l] = 0;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
      if (lo > 15) {
        lo -= 16;
        qh[l] = static_cast<std::uint8_t>(qh[l] | (1u << (2 * c)));
      }
      if (hi > 15) {
        hi -= 16;
        qh[l] = static_cast<std::uint8_t>(qh[l] | (2u << (2 * c)));
      }
      qs[32 * c + l] = static_cast<std::uint8_t>(lo | (hi << 4));
    }
  }
}
}  // namespace detail::codec
SBGQ_END_NAMESPACE

#include "../kernels/avx2/q5_k.hpp"
#include "../kernels/avx512/q5_k.hpp"

SBGQ_BEGIN_NAMESPACE

namespace ref {

/// Quantizes one row (x.size() = 256 * y.size()); `weights` empty or one per column.
inline void quantize_q5_k(std::span<const float> x, std::span<block_q5_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  std::uint8_t L[256];
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + b * qk_k;
    const float* qw = weights.empty() ? nullptr : weights.data() + b * qk_k;
    block_q5_k& out = y[b];
    f16 d, dmin;  // locals: a reference to a member of a packed block may be misaligned
    detail::codec::quantize_k_scale_min_superblock(xb, qw, 31, -0.5f, 15, L, out.scales, d, dmin);
    out.d = d;
    out.dmin = dmin;
    detail::codec::pack_q5_k_quants(L, out.qh, out.qs);
  }
}

/// Decodes one row: y = (d * sc_j) * (nibble + 16 * bit) - (dmin * m_j) (blocks doc 4).
inline void dequantize_q5_k(std::span<const block_q5_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  float* out = y.data();
  for (const block_q5_k& blk : x) {
    const float D = to_f32(blk.d), M = to_f32(blk.dmin);
    for (int c = 0; c < 4; ++c) {
      std::uint8_t sc = 0, m = 0;
      detail::codec::get_scale_min_k4(2 * c, blk.scales, sc, m);
      const float d1 = D * static_cast<float>(sc), m1 = M * static_cast<float>(m);
      detail::codec::get_scale_min_k4(2 * c + 1, blk.scales, sc, m);
      const float d2 = D * static_cast<float>(sc), m2 = M * static_cast<float>(m);
      const std::uint8_t* q = blk.qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        const int v = (q[l] & 0xF) + (((blk.qh[l] >> (2 * c)) & 1) << 4);
        *out++ = d1 * static_cast<float>(v) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int v = (q[l] >> 4) + (((blk.qh[l] >> (2 * c + 1)) & 1) << 4);
        *out++ = d2 * static_cast<float>(v) - m2;
      }
    }
  }
}

}  // namespace ref

/// Q5_K in one place (see q4_k_format): Q4_K's grid with 5-bit codes.
struct q5_k_format : detail::codec::affine_grid<31> {
  using block = block_q5_k;
  static constexpr ggml_type type = ggml_type::q5_k;
  static constexpr bool uses_weights = true;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_q5_k);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_q5_k);

  static void grid_init(simd_level level, const float* x, const float* qw, detail::codec::fixed_grid& g) noexcept {
    const block b = detail::codec::grid_run_codec<q5_k_format>(level, x, qw, g);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        g.L0[64 * c + l] = static_cast<std::uint8_t>((b.qs[32 * c + l] & 0xF) | (((b.qh[l] >> (2 * c)) & 1) << 4));
        g.L0[64 * c + 32 + l] =
            static_cast<std::uint8_t>((b.qs[32 * c + l] >> 4) | (((b.qh[l] >> (2 * c + 1)) & 1) << 4));
      }
    detail::codec::k4_grid_scales(g, b.d, b.dmin, b.scales);
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b = detail::codec::grid_block_from_raw<block>(g);
    detail::codec::pack_q5_k_quants(L, b.qh, b.qs);
    std::memcpy(dst, &b, sizeof b);
  }
};

/// Quantizes one row of `src` (a multiple of 256 floats) into src.size()/256 blocks.
/// `weights`: empty (llama.cpp without imatrix) or one importance value per column.
/// Errors: size_mismatch; not_finite naming the column. Thread-safe.
inline result<void> quantize_q5_k(std::span<const float> src, std::span<block_q5_k> dst,
                                  std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<q5_k_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (256 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q5_k(std::span<const block_q5_k> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<q5_k_format>(src, dst);
}

SBGQ_END_NAMESPACE
