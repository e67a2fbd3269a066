// Q4_K: 4-bit asymmetric K-quant, 8 sub-blocks of 32 with 6-bit scales and mins.
//
// Scalar reference (sbgq::ref), bit-exact with llama.cpp:
//   - no importance weights: quantize_row_q4_K_ref (= quantize_q4_K with imatrix NULL),
//     algorithms doc 8.1;
//   - with importance weights: quantize_row_q4_K_impl (= quantize_q4_K / ggml_quantize_chunk
//     with an imatrix), algorithms doc 8.2;
//   - dequantize_row_q4_K, blocks doc 3.
// and the public API (sbgq::quantize_q4_k / sbgq::dequantize_q4_k) that checks its
// arguments and dispatches on active_simd_level().
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

/// Q4_K and Q5_K share everything but the quant width: the per-sub-block search (H3),
/// the 6-bit scale/min coding and the final re-quantization against the decoded fp16
/// super-scales. The three steps are separate functions so that the kernels can run the
/// searches and the re-quantization of many sub-blocks at once and share the scalar
/// middle step.
///
/// Step 1, one sub-block j (0..7) of the super-block x: H3 search (algorithms doc 8.1
/// without weights, 8.2 with). Fills L[32] (values 0..nmax) and returns the scale, the
/// min and (imatrix path) the sub-block's total weight sw. sigma2 (imatrix path only) is
/// 2*sum(x^2)/256 over the super-block.
/// ref_rmin/ref_nstep: H3 parameters of the no-imatrix path (Q4_K -1.0/20, Q5_K -0.5/15).
inline void k_scale_min_search_subblock(const float* xs, const float* qs, float sigma2, int nmax, float ref_rmin,
                                        int ref_nstep, std::uint8_t* L, float& scale, float& min,
                                        float& sw) noexcept {
  float weights[32];
  std::uint8_t Laux[32];
  if (qs == nullptr) {
    // Algorithms doc 8.1: weights av_x + |x| with av_x the RMS of the sub-block (sqrtf
    // of s2/32: divide, then sqrt), H3 with the ref parameters.
    const float av_x = std::sqrt(sum_squares(xs, 32) / 32.0f);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scale = make_qkx_quants(32, nmax, xs, weights, L, &min, Laux, ref_rmin, 0.1f, ref_nstep, false);
    sw = 0.0f;
  } else {
    // Algorithms doc 8.2: weights qw * sqrtf(sigma2 + x^2); H3 with (-0.9, 0.05, 36).
    float sumw = 0.0f;
    for (int l = 0; l < 32; ++l) {
      weights[l] = qs[l] * std::sqrt(sigma2 + xs[l] * xs[l]);
      sumw += weights[l];
    }
    sw = sumw;
    scale = make_qkx_quants(32, nmax, xs, weights, L, &min, Laux, -0.9f, 0.05f, 36, false);
  }
}

/// Step 2: the 6-bit codes of the 8 sub-block scales and mins, the fp16 super-scales, and
/// the packed 12 scale bytes.
inline void k_scale_min_codes(bool imatrix, const float* scales, const float* mins, const float* sw,
                              std::uint8_t* scales_out, f16& d_out, f16& dmin_out) noexcept {
  std::uint8_t ls[8];
  std::uint8_t lm[8];
  if (!imatrix) {
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    // 6-bit codes from the *unrounded* inverse super-scales. The uint8 cast comes before
    // the clamp (a negative code would wrap to >= 193 and then clamp to 63).
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
      ls[j] = static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j]));
      lm[j] = static_cast<std::uint8_t>(nearest_int(inv_min * mins[j]));
      if (ls[j] > 63) ls[j] = 63;
      if (lm[j] > 63) lm[j] = 63;
    }
    d_out = to_f16(max_scale / 63.0f);
    dmin_out = to_f16(max_min / 63.0f);
  } else {
    // Algorithms doc 8.2: the sub-block scales and mins themselves are fitted by H4,
    // weighted by each sub-block's total weight.
    const float d_block = make_qp_quants(8, 63, scales, ls, sw);
    const float m_block = make_qp_quants(8, 63, mins, lm, sw);
    for (int j = 0; j < 8; ++j) {  // no-op clamps (ggml's Q5_K has them, Q4_K not)
      if (ls[j] > 63) ls[j] = 63;
      if (lm[j] > 63) lm[j] = 63;
    }
    d_out = to_f16(d_block);
    dmin_out = to_f16(m_block);
  }
  pack_scale_min_k4(ls, lm, scales_out);
}

/// Step 3: the decoded sub-block scale dj = D * sc_j and min dm = M * m_j of sub-block j
/// (the re-quantization below uses them; dj == 0 means "keep the search's L").
inline void k_decoded_scale_min(int j, const std::uint8_t* scales, f16 d, f16 dmin, float& dj, float& dm) noexcept {
  std::uint8_t sc = 0, m = 0;
  get_scale_min_k4(j, scales, sc, m);
  dj = to_f32(d) * static_cast<float>(sc);
  dm = to_f32(dmin) * static_cast<float>(m);
}

/// The three steps for one super-block: fills L[256], the scales bytes, d and dmin.
inline void quantize_k_scale_min_superblock(const float* x, const float* qw, int nmax, float ref_rmin,
                                            int ref_nstep, std::uint8_t* L, std::uint8_t* scales_out,
                                            f16& d_out, f16& dmin_out) noexcept {
  float scales[8];
  float mins[8];
  float sw[8];
  const float sigma2 = qw == nullptr ? 0.0f : 2.0f * sum_squares(x, 256) / 256.0f;
  for (int j = 0; j < 8; ++j)
    k_scale_min_search_subblock(x + 32 * j, qw == nullptr ? nullptr : qw + 32 * j, sigma2, nmax, ref_rmin,
                                ref_nstep, L + 32 * j, scales[j], mins[j], sw[j]);
  k_scale_min_codes(qw != nullptr, scales, mins, sw, scales_out, d_out, dmin_out);
  // Re-quantize every sub-block against the *decoded* fp16 scales with a true division.
  // A sub-block whose decoded scale is 0 keeps the L of its H3 search.
  for (int j = 0; j < 8; ++j) {
    float dj = 0.0f, dm = 0.0f;
    k_decoded_scale_min(j, scales_out, d_out, dmin_out, dj, dm);
    if (dj == 0.0f) continue;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / dj);
      L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

/// Blocks doc 3.2: chunk c of 64 weights -> qs[32c + l] = L[64c + l] | L[64c + 32 + l] << 4.
inline void pack_q4_k_quants(const std::uint8_t* L, std::uint8_t* qs) noexcept {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) qs[32 * c + l] = static_cast<std::uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

/// The grid of a Q4_K / Q5_K block (fixed_grid.hpp): 8 sub-blocks of 32 with the 6-bit
/// scales and mins of the 12 packed bytes, under the stored d and dmin.
inline void k4_grid_scales(fixed_grid& g, f16 d, f16 dmin, const std::uint8_t* scales) noexcept {
  g.sub = 32;
  g.d = d;
  g.dmin = dmin;
  for (int j = 0; j < 8; ++j) {
    std::uint8_t s = 0, m = 0;
    get_scale_min_k4(j, scales, s, m);
    g.sc[j] = s;
    g.mn[j] = m;
  }
  grid_set_decoded(g, 8);
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE

#include "../kernels/avx2/q4_k.hpp"
#include "../kernels/avx512/q4_k.hpp"

SBGQ_BEGIN_NAMESPACE

namespace ref {

/// Quantizes one row (x.size() = 256 * y.size()). `weights`: empty for llama.cpp's
/// no-imatrix path, or one importance value per column (the imatrix path).
inline void quantize_q4_k(std::span<const float> x, std::span<block_q4_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  std::uint8_t L[256];
  for (std::size_t b = 0; b < y.size(); ++b) {
    const float* xb = x.data() + b * qk_k;
    const float* qw = weights.empty() ? nullptr : weights.data() + b * qk_k;
    block_q4_k& out = y[b];
    f16 d, dmin;  // locals: a reference to a member of a packed block may be misaligned
    detail::codec::quantize_k_scale_min_superblock(xb, qw, 15, -1.0f, 20, L, out.scales, d, dmin);
    out.d = d;
    out.dmin = dmin;
    detail::codec::pack_q4_k_quants(L, out.qs);
  }
}

/// Decodes one row: y = (d * sc_j) * q - (dmin * m_j) (blocks doc 3.3).
inline void dequantize_q4_k(std::span<const block_q4_k> x, std::span<float> y) noexcept {
  SBGQ_DASSERT(y.size() == x.size() * qk_k);
  float* out = y.data();
  for (const block_q4_k& blk : x) {
    const float D = to_f32(blk.d), M = to_f32(blk.dmin);
    for (int c = 0; c < 4; ++c) {
      std::uint8_t sc = 0, m = 0;
      detail::codec::get_scale_min_k4(2 * c, blk.scales, sc, m);
      const float d1 = D * static_cast<float>(sc), m1 = M * static_cast<float>(m);
      detail::codec::get_scale_min_k4(2 * c + 1, blk.scales, sc, m);
      const float d2 = D * static_cast<float>(sc), m2 = M * static_cast<float>(m);
      const std::uint8_t* q = blk.qs + 32 * c;
      for (int l = 0; l < 32; ++l) *out++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *out++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

}  // namespace ref

/// Q4_K in one place: block, ggml type, kernels per level, fixed-grid operations
/// (format.hpp, fixed_grid.hpp). Grid: 8 sub-blocks of 32, value = D sc_j L - M m_j.
struct q4_k_format : detail::codec::affine_grid<15> {
  using block = block_q4_k;
  static constexpr ggml_type type = ggml_type::q4_k;
  static constexpr bool uses_weights = true;
  static constexpr detail::codec::per_target<detail::codec::quantize_kernel<block>> quantize =
      SBGQ_CODEC_KERNELS(quantize_q4_k);
  static constexpr detail::codec::per_target<detail::codec::dequantize_kernel<block>> dequantize =
      SBGQ_CODEC_KERNELS(dequantize_q4_k);

  /// The codec's search, then its scales and codes read back from the block.
  static void grid_init(simd_level level, const float* x, const float* qw, detail::codec::fixed_grid& g) noexcept {
    const block b = detail::codec::grid_run_codec<q4_k_format>(level, x, qw, g);
    unpack_codes(b.qs, g.L0);
    detail::codec::k4_grid_scales(g, b.d, b.dmin, b.scales);
  }
  static void grid_store(const detail::codec::fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
    block b = detail::codec::grid_block_from_raw<block>(g);
    detail::codec::pack_q4_k_quants(L, b.qs);
    std::memcpy(dst, &b, sizeof b);
  }
  /// The inverse of pack_q4_k_quants.
  static void unpack_codes(const std::uint8_t* qs, std::uint8_t* L) noexcept {
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        L[64 * c + l] = qs[32 * c + l] & 0xF;
        L[64 * c + 32 + l] = qs[32 * c + l] >> 4;
      }
  }
};

/// Quantizes one row of `src` (a multiple of 256 floats) into src.size()/256 blocks.
/// `weights`: empty (llama.cpp without imatrix) or one importance value per column.
/// Errors: size_mismatch; not_finite naming the column. Thread-safe.
inline result<void> quantize_q4_k(std::span<const float> src, std::span<block_q4_k> dst,
                                  std::span<const float> weights = {}) {
  return detail::codec::checked_quantize<q4_k_format>(src, dst, weights);
}

/// Decodes src.size() blocks into dst (256 floats per block). Errors: size_mismatch.
inline result<void> dequantize_q4_k(std::span<const block_q4_k> src, std::span<float> dst) {
  return detail::codec::checked_dequantize<q4_k_format>(src, dst);
}

SBGQ_END_NAMESPACE
