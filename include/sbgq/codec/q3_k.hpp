// Q3_K: 3-bit symmetric K-quant, 16 sub-blocks of 16 with signed 6-bit scales.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp's quantize_row_q3_K_ref (no
// importance weights, algorithms doc 13.1), quantize_row_q3_K_impl (with them, 13.2) and
// dequantize_row_q3_K (blocks doc 7); and the public API.
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

/// The 6-bit sub-block scale codes and fp16 d of one super-block from the 16 search
/// scales (algorithms doc 13.1 step 2 without weights; 13.2, H1 over the scales
/// weighted by the sub-block weight sums sw, with them). Zeroes and fills out.scales.
inline void q3_k_codes(bool imatrix, const float* scales, const float* sw, block_q3_k& out) noexcept {
  for (int k = 0; k < 12; ++k) out.scales[k] = 0;
  if (!imatrix) {
    // Keep the signed scale of largest magnitude (strict >, first wins).
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; ++j) {
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    // 6-bit codes from the unrounded iscale = -32/max_scale. The code is narrowed to
    // int8 *before* the clamp (a C quirk kept for bit-exactness), then biased by +32.
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const auto l8 = static_cast<std::int8_t>(nearest_int(iscale * scales[j]));
        const int S = std::max(-32, std::min(31, static_cast<int>(l8))) + 32;
        put_scale_q3_k(j, S, out.scales);
      }
      out.d = to_f16(1.0f / iscale);
    } else {
      out.d = to_f16(0.0f);
    }
  } else {
    // H1 (nmax 32) over the 16 scales; its L is already biased by +32.
    std::int8_t Ls[16];
    const float d_block = make_qx_quants(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) put_scale_q3_k(j, Ls[j], out.scales);
    out.d = to_f16(d_block);
  }
}

/// Decoded scale of sub-block j: d * (S_j - 32).
inline float q3_k_decoded_scale(const block_q3_k& out, int j) noexcept {
  return to_f32(out.d) * static_cast<float>(get_scale_q3_k(j, out.scales) - 32);
}

/// Steps 4-5: the third bit of weight i goes to bit i/32 of hmask[i%32]; the low 2 bits
/// are packed as Q2_K. L: levels 0..7.
template <class T>
inline void pack_q3_k_quants(const T* L, std::uint8_t* hmask, std::uint8_t* qs) noexcept {
  std::uint8_t low[256];
  for (int k = 0; k < 32; ++k) hmask[k] = 0;
  for (int i = 0; i < 256; ++i) {
    int l = L[i];
    if (l > 3) {
      hmask[i % 32] = static_cast<std::uint8_t>(hmask[i % 32] | (1u << (i / 32)));
      l -= 4;
    }
    low[i] = static_cast<std::uint8_t>(l);
  }
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const std::uint8_t* Lh = low + 128 * h;
      qs[32 * h + l] = static_cast<std::uint8_t>(Lh[l] | (Lh[l + 32] << 2) | (Lh[l + 64] << 4) | (Lh[l + 96] << 6));
    }
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE

#include "../kernels/avx2/q3_k.hpp"
#include "../kernels/avx512/q3_k.hpp"

SBGQ_BEGIN_NAMESPACE

namespace ref {

/// Quantizes one row (x.size() = 256 * y.size()); `weights` empty or one per column.
inline void quantize_q3_k(std::span<const float> x, std::span<block_q3_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  std::int8_t L[256];
  float scales[16];
  float sw[16];
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + b * qk_k;
    block_q3_k& out = y[b];
    if (weights.empty()) {
      // 13.1 step 1: H2 per sub-block.
      for (int j = 0; j < 16; ++j) scales[j] = detail::codec::make_q3_quants(16, 4, xb + 16 * j, L + 16 * j);
    } else {
      // 13.2: sigma2 = 2*sum(x^2)/256; weights qw * sqrtf(sigma2 + x^2); H1 per
      // sub-block (nmax 4).
      const float* qw = weights.data() + b * qk_k;
      const float sigma2 = 2.0f * detail::codec::sum_squares(xb, 256) / 256.0f;
      float w16[16];
      for (int j = 0; j < 16; ++j) {
        float sumw = 0.0f;
        for (int l = 0; l < 16; ++l) {
          const float xv = xb[16 * j + l];
          w16[l] = qw[16 * j + l] * std::sqrt(sigma2 + xv * xv);
          sumw += w16[l];
        }
        sw[j] = sumw;
        scales[j] = detail::codec::make_qx_quants(16, 4, xb + 16 * j, L + 16 * j, w16);
      }
    }
    detail::codec::q3_k_codes(!weights.empty(), scales, sw, out);
    // 13.1 step 3: re-quantize against the decoded fp16 d (true division); a sub-block
    // with a zero decoded scale keeps its search L (+4 offset, or raw 0 if all-zero).
    for (int j = 0; j < 16; ++j) {
      const float dj = detail::codec::q3_k_decoded_scale(out, j);
      if (dj == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = detail::codec::nearest_int(xb[16 * j + ii] / dj);
        L[16 * j + ii] = static_cast<std::int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    detail::codec::pack_q3_k_quants(L, out.hmask, out.qs);
  }
}

/// Decodes one row: y = (d * (S_j - 32)) * (q2 - (hbit ? 0 : 4)) (blocks doc 7).
inline void dequantize_q3_k(std::span<const block_q3_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  float* out = y.data();
  for (const block_q3_k& blk : x) {
    const float D = to_f32(blk.d);
    for (int j = 0; j < 16; ++j) {  // 16-weight sub-block j = i / 16
      const float dl = D * static_cast<float>(detail::codec::get_scale_q3_k(j, blk.scales) - 32);
      // low bits: bit pair (i % 128) / 32 of qs[32 * (i / 128) + i % 32];
      // high bit: bit i / 32 of hmask[i % 32]
      const std::uint8_t* q = blk.qs + 32 * (j / 8) + 16 * (j % 2);
      const std::uint8_t* hm = blk.hmask + 16 * (j % 2);
      const int shift = 2 * ((j % 8) / 2), hbit = j / 2;
      for (int ii = 0; ii < 16; ++ii) {
        const int q2 = (q[ii] >> shift) & 3;
        out[16 * j + ii] = dl * static_cast<float>(q2 - (((hm[ii] >> hbit) & 1) ? 0 : 4));
      }
    }
    out += 256;
  }
}

}  // namespace ref

/// Q3_K in one place (format.hpp, fixed_grid.hpp). Grid: 16 sub-blocks of 16,
/// value = D sc_j (L - 4) with the signed 6-bit sc_j.
struct q3_k_format : detail::codec::signed_grid<4> {
  using block = block_q3_k;
  static constexpr ggml_type type = ggml_type::q3_k;
  static constexpr bool uses_weights = true;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_q3_k);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_q3_k);

  static void grid_init(simd_level level, const float* x, const float* qw, detail::codec::fixed_grid& g) noexcept {
    const block b = detail::codec::grid_run_codec<q3_k_format>(level, x, qw, g);
    for (int i = 0; i < 256; ++i) {
      const int low = (b.qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
      const int hb = (b.hmask[i % 32] >> (i / 32)) & 1;
      g.L0[i] = static_cast<std::uint8_t>(low + 4 * hb);
    }
    g.sub = 16;
    g.d = b.d;
    g.dmin = f16{};
    for (int j = 0; j < 16; ++j) g.sc[j] = detail::codec::get_scale_q3_k(j, b.scales) - 32;
    detail::codec::grid_set_decoded(g, 16);
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b = detail::codec::grid_block_from_raw<block>(g);
    detail::codec::pack_q3_k_quants(L, b.hmask, b.qs);
    std::memcpy(dst, &b, sizeof b);
  }
};

/// Quantizes one row of `src` (a multiple of 256 floats) into src.size()/256 blocks.
/// `weights`: empty (llama.cpp without imatrix) or one importance value per column.
/// Errors: size_mismatch; not_finite naming the column. Thread-safe.
inline result<void> quantize_q3_k(std::span<const float> src, std::span<block_q3_k> dst,
                                  std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<q3_k_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (256 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q3_k(std::span<const block_q3_k> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<q3_k_format>(src, dst);
}

SBGQ_END_NAMESPACE
