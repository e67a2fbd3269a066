// Q6_K: 6-bit symmetric K-quant, 16 sub-blocks of 16 with signed int8 scales.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_row_q6_K_ref (no
// importance weights), quantize_row_q6_K_impl (with them), both algorithms doc 10, and
// dequantize_row_q6_K (blocks doc 5); and the public API.
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
/// Blocks doc 5: per half h of 128 weights, weights 128h + 32g + l for g = 0..3 share
/// ql[64h + l] / ql[64h + 32 + l] (low nibbles) and qh[32h + l]. L: levels 0..63.
template <class T>
inline void pack_q6_k_quants(const T* L, std::uint8_t* ql, std::uint8_t* qh) noexcept {
  for (int h = 0; h < 2; ++h) {
    const T* Lh = L + 128 * h;
    for (int l = 0; l < 32; ++l) {
      const int q0 = Lh[l], q1 = Lh[l + 32], q2 = Lh[l + 64], q3 = Lh[l + 96];
      ql[64 * h + l] = static_cast<std::uint8_t>((q0 & 0xF) | ((q2 & 0xF) << 4));
      ql[64 * h + 32 + l] = static_cast<std::uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      qh[32 * h + l] = static_cast<std::uint8_t>((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
    }
  }
}
}  // namespace detail::codec
SBGQ_END_NAMESPACE

#include "../kernels/avx2/q6_k.hpp"
#include "../kernels/avx512/q6_k.hpp"

SBGQ_BEGIN_NAMESPACE

namespace ref {

/// Quantizes one row (x.size() = 256 * y.size()); `weights` empty or one per column.
/// The two llama.cpp paths differ only in H1's error weights: x^2 without an imatrix,
/// the raw imatrix values with one (no sqrt(sigma2 + x^2) factor for Q6_K).
inline void quantize_q6_k(std::span<const float> x, std::span<block_q6_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  std::int8_t L[256];
  float scales[16];
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + b * qk_k;
    const float* qw = weights.empty() ? nullptr : weights.data() + b * qk_k;
    block_q6_k& out = y[b];
    // 1. H1 per 16-weight sub-block (nmax 32, L offset +32); remember the signed scale
    //    with the largest magnitude (strict >, first wins).
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ++ib) {
      scales[ib] = detail::codec::make_qx_quants(16, 32, xb + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
      const float abs_scale = std::fabs(scales[ib]);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scales[ib];
      }
    }
    // 2. An all-zero super-block is 210 zero bytes.
    if (max_abs_scale < detail::codec::group_max_eps) {
      out = block_q6_k{};
      continue;
    }
    // 3. int8 sub-scales from the unrounded iscale: the dominant sub-block gets -128
    //    exactly, the others scale with it (their sign is kept, clamped at +127).
    const float iscale = -128.0f / max_scale;
    out.d = to_f16(1.0f / iscale);
    for (int ib = 0; ib < 16; ++ib)
      out.scales[ib] = static_cast<std::int8_t>(std::min(127, detail::codec::nearest_int(iscale * scales[ib])));
    // 4. Re-quantize against the decoded fp16 d (true division); a sub-block with a zero
    //    decoded scale keeps H1's L.
    const float D = to_f32(out.d);
    for (int j = 0; j < 16; ++j) {
      const float dd = D * static_cast<float>(out.scales[j]);
      if (dd == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = detail::codec::nearest_int(xb[16 * j + ii] / dd);
        L[16 * j + ii] = static_cast<std::int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    detail::codec::pack_q6_k_quants(L, out.ql, out.qh);
  }
}

/// Decodes one row: y = (d * scales[i/16]) * (q - 32) (blocks doc 5).
inline void dequantize_q6_k(std::span<const block_q6_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  float* out = y.data();
  for (const block_q6_k& blk : x) {
    const float D = to_f32(blk.d);
    for (int h = 0; h < 2; ++h) {
      const std::uint8_t* ql = blk.ql + 64 * h;
      const std::uint8_t* qh = blk.qh + 32 * h;
      const std::int8_t* sc = blk.scales + 8 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q0 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q1 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l] = D * static_cast<float>(sc[is + 0]) * static_cast<float>(q0);
        out[l + 32] = D * static_cast<float>(sc[is + 2]) * static_cast<float>(q1);
        out[l + 64] = D * static_cast<float>(sc[is + 4]) * static_cast<float>(q2);
        out[l + 96] = D * static_cast<float>(sc[is + 6]) * static_cast<float>(q3);
      }
      out += 128;
    }
  }
}

}  // namespace ref

/// Q6_K in one place (format.hpp, fixed_grid.hpp). Grid: 16 sub-blocks of 16,
/// value = D sc_j (L - 32).
struct q6_k_format : detail::codec::signed_grid<32> {
  using block = block_q6_k;
  static constexpr ggml_type type = ggml_type::q6_k;
  static constexpr bool uses_weights = true;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_q6_k);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_q6_k);

  static void grid_init(simd_level level, const float* x, const float* qw, detail::codec::fixed_grid& g) noexcept {
    const block b = detail::codec::grid_run_codec<q6_k_format>(level, x, qw, g);
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const std::uint8_t* ql = b.ql + 64 * h;
        const std::uint8_t qh = b.qh[32 * h + l];
        std::uint8_t* Lh = g.L0 + 128 * h;
        Lh[l] = static_cast<std::uint8_t>((ql[l] & 0xF) | ((qh & 3) << 4));
        Lh[l + 32] = static_cast<std::uint8_t>((ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4));
        Lh[l + 64] = static_cast<std::uint8_t>((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
        Lh[l + 96] = static_cast<std::uint8_t>((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4));
      }
    g.sub = 16;
    g.d = b.d;
    g.dmin = f16{};
    for (int j = 0; j < 16; ++j) g.sc[j] = b.scales[j];
    detail::codec::grid_set_decoded(g, 16);
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b = detail::codec::grid_block_from_raw<block>(g);
    detail::codec::pack_q6_k_quants(L, b.ql, b.qh);
    std::memcpy(dst, &b, sizeof b);
  }
};

/// Quantizes one row of `src` (a multiple of 256 floats) into src.size()/256 blocks.
/// `weights`: empty (llama.cpp without imatrix) or one importance value per column.
/// Errors: size_mismatch; not_finite naming the column. Thread-safe.
inline result<void> quantize_q6_k(std::span<const float> src, std::span<block_q6_k> dst,
                                  std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<q6_k_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (256 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q6_k(std::span<const block_q6_k> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<q6_k_format>(src, dst);
}

SBGQ_END_NAMESPACE
