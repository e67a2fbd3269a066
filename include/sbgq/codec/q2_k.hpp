// Q2_K: 2-bit asymmetric K-quant, 16 sub-blocks of 16 with 4-bit scales and mins.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_row_q2_K_ref (no
// importance weights, algorithms doc 12.1), quantize_row_q2_K_impl (with them, 12.2) and
// dequantize_row_q2_K (blocks doc 6); and the public API.
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

SBGQ_BEGIN_NAMESPACE

namespace detail::codec {

/// The 4-bit sub-block scale and min codes and the fp16 d/dmin of one super-block from
/// the 16 H3 results (algorithms doc 12.1 without weights, 12.2 with: H4 weighted by
/// the sub-block weight sums sw).
inline void q2_k_codes(bool imatrix, const float* scales, const float* mins, const float* sw,
                       block_q2_k& out) noexcept {
  if (!imatrix) {
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 16; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    // 4-bit codes from the unrounded inverse (<= 15 by construction, not clamped).
    if (max_scale > 0.0f) {
      const float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; ++j) out.scales[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
      out.d = to_f16(max_scale / 15.0f);
    } else {
      for (int j = 0; j < 16; ++j) out.scales[j] = 0;
      out.d = to_f16(0.0f);
    }
    if (max_min > 0.0f) {
      const float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; ++j)
        out.scales[j] = static_cast<std::uint8_t>(out.scales[j] | (nearest_int(iscale * mins[j]) << 4));
      out.dmin = to_f16(max_min / 15.0f);
    } else {
      out.dmin = to_f16(0.0f);
    }
  } else {
    std::uint8_t Ls[16], Lm[16];
    const float dm = make_qp_quants(16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(16, 15, mins, Lm, sw);
    out.d = to_f16(dm);
    out.dmin = to_f16(mm);
    for (int j = 0; j < 16; ++j) out.scales[j] = static_cast<std::uint8_t>(Ls[j] | (Lm[j] << 4));
  }
}

/// Decoded scale dj = d * s_j and min m = dmin * m_j of sub-block j.
inline void q2_k_decoded_scale_min(const block_q2_k& out, int j, float& dj, float& m) noexcept {
  dj = to_f32(out.d) * static_cast<float>(out.scales[j] & 0xF);
  m = to_f32(out.dmin) * static_cast<float>(out.scales[j] >> 4);
}

/// Pack (blocks doc 6): byte 32h + l holds weights 128h + l + 32g in bits 2g..2g+1.
inline void pack_q2_k_quants(const std::uint8_t* L, std::uint8_t* qs) noexcept {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const std::uint8_t* Lh = L + 128 * h;
      qs[32 * h + l] = static_cast<std::uint8_t>(Lh[l] | (Lh[l + 32] << 2) | (Lh[l + 64] << 4) | (Lh[l + 96] << 6));
    }
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE

#include "../kernels/avx2/q2_k.hpp"
#include "../kernels/avx512/q2_k.hpp"

SBGQ_BEGIN_NAMESPACE

namespace ref {

/// Quantizes one row (x.size() = 256 * y.size()); `weights` empty or one per column.
inline void quantize_q2_k(std::span<const float> x, std::span<block_q2_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  std::uint8_t L[256];
  std::uint8_t Laux[16];
  float w16[16];
  float scales[16];
  float mins[16];
  float sw[16];
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + b * qk_k;
    block_q2_k& out = y[b];
    if (weights.empty()) {
      // 12.1: weights |x|, H3 with (16, 3, -0.5, 0.1, 15) and the *absolute* error.
      for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) w16[l] = std::fabs(xb[16 * j + l]);
        scales[j] = detail::codec::make_qkx_quants(16, 3, xb + 16 * j, w16, L + 16 * j, &mins[j], Laux, -0.5f,
                                                   0.1f, 15, true);
      }
    } else {
      // 12.2: sigma2 = sum(x^2)/256 (no factor 2 here, unlike Q3_K..Q5_K); weights
      // qw * sqrtf(sigma2 + x^2); H3 with (-0.9, 0.05, 36) and squared error.
      const float* qw = weights.data() + b * qk_k;
      const float sigma2 = detail::codec::sum_squares(xb, 256) / 256.0f;
      for (int j = 0; j < 16; ++j) {
        float sumw = 0.0f;
        for (int l = 0; l < 16; ++l) {
          const float xv = xb[16 * j + l];
          w16[l] = qw[16 * j + l] * std::sqrt(sigma2 + xv * xv);
          sumw += w16[l];
        }
        sw[j] = sumw;
        scales[j] = detail::codec::make_qkx_quants(16, 3, xb + 16 * j, w16, L + 16 * j, &mins[j], Laux, -0.9f,
                                                   0.05f, 36, false);
      }
    }
    detail::codec::q2_k_codes(!weights.empty(), scales, mins, sw, out);
    // Re-quantize against the decoded fp16 scales with a true division; a sub-block
    // whose decoded scale is 0 keeps H3's L.
    for (int j = 0; j < 16; ++j) {
      float dj = 0.0f, m = 0.0f;
      detail::codec::q2_k_decoded_scale_min(out, j, dj, m);
      if (dj == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = detail::codec::nearest_int((xb[16 * j + ii] + m) / dj);
        L[16 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    detail::codec::pack_q2_k_quants(L, out.qs);
  }
}

/// Decodes one row: y = (d * s_j) * q - (dmin * m_j) (blocks doc 6).
inline void dequantize_q2_k(std::span<const block_q2_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  float* out = y.data();
  for (const block_q2_k& blk : x) {
    const float D = to_f32(blk.d), M = to_f32(blk.dmin);
    for (int j = 0; j < 16; ++j) {  // 16-weight sub-block j = i / 16
      const float dl = D * static_cast<float>(blk.scales[j] & 0xF);
      const float ml = M * static_cast<float>(blk.scales[j] >> 4);
      // weight i sits in bit pair (i % 128) / 32 of byte qs[32 * (i / 128) + i % 32]
      const std::uint8_t* q = blk.qs + 32 * (j / 8) + 16 * (j % 2);
      const int shift = 2 * ((j % 8) / 2);
      for (int ii = 0; ii < 16; ++ii) out[16 * j + ii] = dl * static_cast<float>((q[ii] >> shift) & 3) - ml;
    }
    out += 256;
  }
}

}  // namespace ref

/// Q2_K in one place (format.hpp, fixed_grid.hpp). Grid: 16 sub-blocks of 16,
/// value = D sc_j L - M m_j with 4-bit sc_j, m_j.
struct q2_k_format : detail::codec::affine_grid<3> {
  using block = block_q2_k;
  static constexpr ggml_type type = ggml_type::q2_k;
  static constexpr bool uses_weights = true;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_q2_k);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_q2_k);

  static void grid_init(simd_level level, const float* x, const float* qw, detail::codec::fixed_grid& g) noexcept {
    const block b = detail::codec::grid_run_codec<q2_k_format>(level, x, qw, g);
    for (int i = 0; i < 256; ++i)
      g.L0[i] = static_cast<std::uint8_t>((b.qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3);
    g.sub = 16;
    g.d = b.d;
    g.dmin = b.dmin;
    for (int j = 0; j < 16; ++j) {
      g.sc[j] = b.scales[j] & 0xF;
      g.mn[j] = b.scales[j] >> 4;
    }
    detail::codec::grid_set_decoded(g, 16);
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b = detail::codec::grid_block_from_raw<block>(g);
    detail::codec::pack_q2_k_quants(L, b.qs);
    std::memcpy(dst, &b, sizeof b);
  }
};

/// Quantizes one row of `src` (a multiple of 256 floats) into src.size()/256 blocks.
/// `weights`: empty (llama.cpp without imatrix) or one importance value per column.
/// Errors: size_mismatch; not_finite naming the column. Thread-safe.
inline result<void> quantize_q2_k(std::span<const float> src, std::span<block_q2_k> dst,
                                  std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<q2_k_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (256 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q2_k(std::span<const block_q2_k> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<q2_k_format>(src, dst);
}

SBGQ_END_NAMESPACE
