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
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../core/base.hpp"
#include "../core/dtype.hpp"
#include "../io/ggml_types.hpp"
#include "../simd/dispatch.hpp"
#include "blocks.hpp"
#include "common.hpp"
#include "iq4.hpp"
#include "k_quant_common.hpp"
#include "registry.hpp"
#include "tables.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::codec {

/// True for the formats fixed_grid handles (Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS).
constexpr bool grid_supported(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::q8_0: case ggml_type::q2_k: case ggml_type::q3_k: case ggml_type::q4_k:
    case ggml_type::q5_k: case ggml_type::q6_k: case ggml_type::iq4_nl: case ggml_type::iq4_xs: return true;
    default: return false;
  }
}

/// Number of fp16 super-scales a refit adjusts: 2 (d and dmin) for the asymmetric
/// K-quants, 1 (d) for the others.
constexpr int grid_n_super(ggml_type t) noexcept {
  return (t == ggml_type::q2_k || t == ggml_type::q4_k || t == ggml_type::q5_k) ? 2 : 1;
}

/// One block's frozen grid. Codes L are "levels" as the packers take them:
///   Q4_K 0..15, Q5_K 0..31, Q2_K 0..3  value = dj * L - mj
///   Q6_K 0..63 (q = L - 32), Q3_K 0..7 (q = L - 4)   value = dj * q
///   Q8_0 1..255 (q = L - 128, |q| <= 127)            value = q * D
///   IQ4_NL / IQ4_XS 0..15                            value = dj * kvalues_iq4nl[L]
/// with dj = D * sc_j and mj = M * m_j for sub-block j (IQ4_NL/Q8_0: sc = 1, one
/// sub-block).
struct fixed_grid {
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

namespace grid_detail {

inline void unpack_codes(const fixed_grid& g, std::uint8_t* L) noexcept {
  switch (g.type) {
    case ggml_type::q4_k: {
      block_q4_k b;
      std::memcpy(&b, g.raw, sizeof b);
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          L[64 * c + l] = b.qs[32 * c + l] & 0xF;
          L[64 * c + 32 + l] = b.qs[32 * c + l] >> 4;
        }
      break;
    }
    case ggml_type::q5_k: {
      block_q5_k b;
      std::memcpy(&b, g.raw, sizeof b);
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          L[64 * c + l] = static_cast<std::uint8_t>((b.qs[32 * c + l] & 0xF) | (((b.qh[l] >> (2 * c)) & 1) << 4));
          L[64 * c + 32 + l] = static_cast<std::uint8_t>((b.qs[32 * c + l] >> 4) | (((b.qh[l] >> (2 * c + 1)) & 1) << 4));
        }
      break;
    }
    case ggml_type::q6_k: {
      block_q6_k b;
      std::memcpy(&b, g.raw, sizeof b);
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
          const std::uint8_t* ql = b.ql + 64 * h;
          const std::uint8_t qh = b.qh[32 * h + l];
          std::uint8_t* Lh = L + 128 * h;
          Lh[l] = static_cast<std::uint8_t>((ql[l] & 0xF) | ((qh & 3) << 4));
          Lh[l + 32] = static_cast<std::uint8_t>((ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4));
          Lh[l + 64] = static_cast<std::uint8_t>((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
          Lh[l + 96] = static_cast<std::uint8_t>((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4));
        }
      break;
    }
    case ggml_type::q3_k: {
      block_q3_k b;
      std::memcpy(&b, g.raw, sizeof b);
      for (int i = 0; i < 256; ++i) {
        const int low = (b.qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        const int hb = (b.hmask[i % 32] >> (i / 32)) & 1;
        L[i] = static_cast<std::uint8_t>(low + 4 * hb);
      }
      break;
    }
    case ggml_type::q2_k: {
      block_q2_k b;
      std::memcpy(&b, g.raw, sizeof b);
      for (int i = 0; i < 256; ++i)
        L[i] = static_cast<std::uint8_t>((b.qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3);
      break;
    }
    default: break;
  }
}

inline void set_decoded(fixed_grid& g, int n_sub) noexcept {
  const float D = to_f32(g.d), M = to_f32(g.dmin);
  for (int j = 0; j < n_sub; ++j) {
    g.dj[j] = D * static_cast<float>(g.sc[j]);
    g.mj[j] = M * static_cast<float>(g.mn[j]);
  }
}

}  // namespace grid_detail

/// Runs the codec's search on the `g.values`-column block x (weights qw: importance per
/// column or null, as quantize_rows passes them) and freezes its grid in g.
/// Precondition: grid_supported(type); x holds block_size(type) finite floats.
inline void make_grid(ggml_type type, simd_level level, const float* x, const float* qw, fixed_grid& g) noexcept {
  SBGQ_DASSERT(grid_supported(type));
  g.type = type;
  g.values = static_cast<int>(block_size(type));
  switch (type) {
    case ggml_type::q8_0: {
      // Algorithms doc 7: d = amax/127, rounding with the unrounded 1/d.
      g.sub = 32;
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) {
        const float ax = std::fabs(x[j]);
        amax = ax > amax ? ax : amax;
      }
      const float d = amax / 127.0f;
      g.inv[0] = d != 0.0f ? 1.0f / d : 0.0f;
      g.d = to_f16(d);
      g.dmin = f16{};
      g.sc[0] = 1;
      grid_detail::set_decoded(g, 1);
      return;
    }
    case ggml_type::iq4_nl: {
      // Algorithms doc 11.2 step 4, with the codec's own search.
      g.sub = 32;
      float scale = 0.0f, max_scale = 0.0f;
      iq4_search_superblock(x, qw, 1, g.L0, &scale, max_scale);
      g.d = to_f16(scale);
      g.dmin = f16{};
      g.inv[0] = scale != 0.0f ? 1.0f / scale : 0.0f;
      g.sc[0] = 1;
      grid_detail::set_decoded(g, 1);
      return;
    }
    case ggml_type::iq4_xs: {
      // Algorithms doc 11.2 step 3: 6-bit block scales l against the unrounded
      // D = -max_scale/32; indices from the unrounded dl = D * l.
      g.sub = 32;
      float scales[8];
      float max_scale = 0.0f;
      iq4_search_superblock(x, qw, 8, g.L0, scales, max_scale);
      const float D = -max_scale / 32.0f;
      g.d = to_f16(D);
      g.dmin = f16{};
      const float id = D != 0.0f ? 1.0f / D : 0.0f;
      for (int ib = 0; ib < 8; ++ib) {
        const int l = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
        const float dl = D * static_cast<float>(l);
        g.inv[ib] = dl != 0.0f ? 1.0f / dl : 0.0f;
        g.sc[ib] = l;
      }
      grid_detail::set_decoded(g, 8);
      return;
    }
    default: break;
  }
  // K-quants: the codec's kernel fills the block; read its scales back.
  const codec_traits* c = find_codec(type);
  c->quantize_row(level, x, g.raw, 256, qw);
  grid_detail::unpack_codes(g, g.L0);
  switch (type) {
    case ggml_type::q4_k:
    case ggml_type::q5_k: {
      g.sub = 32;
      // d, dmin and scales[12] sit at offsets 0, 2, 4 in both Q4_K and Q5_K.
      std::uint8_t head[16];
      std::memcpy(head, g.raw, 16);
      std::memcpy(&g.d.bits, head, 2);
      std::memcpy(&g.dmin.bits, head + 2, 2);
      for (int j = 0; j < 8; ++j) {
        std::uint8_t s = 0, m = 0;
        get_scale_min_k4(j, head + 4, s, m);
        g.sc[j] = s;
        g.mn[j] = m;
      }
      grid_detail::set_decoded(g, 8);
      break;
    }
    case ggml_type::q6_k: {
      g.sub = 16;
      block_q6_k b;
      std::memcpy(&b, g.raw, sizeof b);
      g.d = b.d;
      g.dmin = f16{};
      for (int j = 0; j < 16; ++j) g.sc[j] = b.scales[j];
      grid_detail::set_decoded(g, 16);
      break;
    }
    case ggml_type::q3_k: {
      g.sub = 16;
      block_q3_k b;
      std::memcpy(&b, g.raw, sizeof b);
      g.d = b.d;
      g.dmin = f16{};
      for (int j = 0; j < 16; ++j) g.sc[j] = get_scale_q3_k(j, b.scales) - 32;
      grid_detail::set_decoded(g, 16);
      break;
    }
    case ggml_type::q2_k: {
      g.sub = 16;
      block_q2_k b;
      std::memcpy(&b, g.raw, sizeof b);
      g.d = b.d;
      g.dmin = b.dmin;
      for (int j = 0; j < 16; ++j) {
        g.sc[j] = b.scales[j] & 0xF;
        g.mn[j] = b.scales[j] >> 4;
      }
      grid_detail::set_decoded(g, 16);
      break;
    }
    default: break;
  }
}

/// The code of value x in column i of the block, by the codec's own final rounding rule
/// (see the file comment). Values off the grid's range clamp to its ends.
inline int grid_round(const fixed_grid& g, int i, float x) noexcept {
  const int j = i / g.sub;
  switch (g.type) {
    case ggml_type::q8_0: {
      const float q = std::roundf(x * g.inv[0]);
      return static_cast<int>(std::max(-127.0f, std::min(127.0f, q))) + 128;
    }
    case ggml_type::iq4_nl:
    case ggml_type::iq4_xs: return best_index_iq4nl(g.inv[g.type == ggml_type::iq4_nl ? 0 : j] * x);
    case ggml_type::q4_k:
    case ggml_type::q5_k:
    case ggml_type::q2_k: {
      if (g.dj[j] == 0.0f) return g.L0[i];
      const int nmax = g.type == ggml_type::q4_k ? 15 : g.type == ggml_type::q5_k ? 31 : 3;
      return std::max(0, std::min(nmax, nearest_int((x + g.mj[j]) / g.dj[j])));
    }
    case ggml_type::q6_k:
      if (g.dj[j] == 0.0f) return g.L0[i];
      return std::max(-32, std::min(31, nearest_int(x / g.dj[j]))) + 32;
    case ggml_type::q3_k:
      if (g.dj[j] == 0.0f) return g.L0[i];
      return std::max(-4, std::min(3, nearest_int(x / g.dj[j]))) + 4;
    default: return 0;
  }
}

/// The float llama.cpp's dequantize_row_* produces for code L in column i (same
/// expression, same operation order).
inline float grid_value(const fixed_grid& g, int i, int L) noexcept {
  const int j = i / g.sub;
  switch (g.type) {
    case ggml_type::q8_0: return static_cast<float>(L - 128) * to_f32(g.d);
    case ggml_type::iq4_nl:
    case ggml_type::iq4_xs: return g.dj[j] * static_cast<float>(kvalues_iq4nl[static_cast<std::size_t>(L)]);
    case ggml_type::q4_k:
    case ggml_type::q5_k:
    case ggml_type::q2_k: return g.dj[j] * static_cast<float>(L) - g.mj[j];
    case ggml_type::q6_k: return g.dj[j] * static_cast<float>(L - 32);
    case ggml_type::q3_k: return g.dj[j] * static_cast<float>(L - 4);
    default: return 0.0f;
  }
}

/// value = D * a - M * b for code L in column i, up to float rounding (a and b are
/// exact small integers): the basis of the least-squares refit of D (and M).
inline void grid_basis(const fixed_grid& g, int i, int L, double& a, double& b) noexcept {
  const int j = i / g.sub;
  b = 0.0;
  switch (g.type) {
    case ggml_type::q8_0: a = L - 128; break;
    case ggml_type::iq4_nl: a = kvalues_iq4nl[static_cast<std::size_t>(L)]; break;
    case ggml_type::iq4_xs: a = static_cast<double>(g.sc[j]) * kvalues_iq4nl[static_cast<std::size_t>(L)]; break;
    case ggml_type::q4_k:
    case ggml_type::q5_k:
    case ggml_type::q2_k:
      a = static_cast<double>(g.sc[j]) * L;
      b = g.mn[j];
      break;
    case ggml_type::q6_k: a = static_cast<double>(g.sc[j]) * (L - 32); break;
    case ggml_type::q3_k: a = static_cast<double>(g.sc[j]) * (L - 4); break;
    default: a = 0.0; break;
  }
}

/// Replaces the stored super-scale(s) (refit) and updates the decoded sub-scales.
inline void grid_set_super(fixed_grid& g, f16 d, f16 dmin) noexcept {
  g.d = d;
  if (grid_n_super(g.type) == 2) g.dmin = dmin;
  grid_detail::set_decoded(g, g.values / g.sub);
}

/// Writes the block (block_bytes(type) bytes at dst, any alignment) with codes L.
inline void grid_store(const fixed_grid& g, const std::uint8_t* L, std::byte* dst) noexcept {
  switch (g.type) {
    case ggml_type::q8_0: {
      block_q8_0 b;
      b.d = g.d;
      for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::int8_t>(L[j] - 128);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    case ggml_type::iq4_nl: {
      block_iq4_nl b;
      b.d = g.d;
      pack_iq4_nibbles(L, 1, b.qs);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    case ggml_type::iq4_xs: {
      block_iq4_xs b;
      b.d = g.d;
      std::uint16_t scales_h = 0;
      for (int ib = 0; ib < 4; ++ib) b.scales_l[ib] = 0;
      for (int ib = 0; ib < 8; ++ib) {
        const int l = g.sc[ib] + 32;
        b.scales_l[ib / 2] = static_cast<std::uint8_t>(b.scales_l[ib / 2] | ((l & 0xF) << (4 * (ib % 2))));
        scales_h = static_cast<std::uint16_t>(scales_h | ((l >> 4) << (2 * ib)));
      }
      b.scales_h = scales_h;
      pack_iq4_nibbles(L, 8, b.qs);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    case ggml_type::q4_k: {
      block_q4_k b;
      std::memcpy(&b, g.raw, sizeof b);
      b.d = g.d;
      b.dmin = g.dmin;
      pack_q4_k_quants(L, b.qs);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    case ggml_type::q5_k: {
      block_q5_k b;
      std::memcpy(&b, g.raw, sizeof b);
      b.d = g.d;
      b.dmin = g.dmin;
      pack_q5_k_quants(L, b.qh, b.qs);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    case ggml_type::q6_k: {
      block_q6_k b;
      std::memcpy(&b, g.raw, sizeof b);
      b.d = g.d;
      pack_q6_k_quants(L, b.ql, b.qh);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    case ggml_type::q3_k: {
      block_q3_k b;
      std::memcpy(&b, g.raw, sizeof b);
      b.d = g.d;
      pack_q3_k_quants(L, b.hmask, b.qs);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    case ggml_type::q2_k: {
      block_q2_k b;
      std::memcpy(&b, g.raw, sizeof b);
      b.d = g.d;
      b.dmin = g.dmin;
      pack_q2_k_quants(L, b.qs);
      std::memcpy(dst, &b, sizeof b);
      break;
    }
    default: break;
  }
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE
