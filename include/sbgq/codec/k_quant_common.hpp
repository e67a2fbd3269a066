// Scale searches shared by the K-quant reference codecs (Q2_K..Q6_K), and the 6-bit
// scale/min packing of Q4_K/Q5_K.
//
// These are the four helpers of the algorithms doc (shared/spec/ggml-quant-algorithms.md):
//   H1 make_qx_quants   (section 3)  symmetric signed fit, used by Q6_K and Q3_K+imatrix
//   H2 make_q3_quants   (section 4)  Q3_K without imatrix
//   H3 make_qkx_quants  (section 5)  asymmetric scale+min fit, Q2_K/Q4_K/Q5_K
//   H4 make_qp_quants   (section 6)  non-negative fit of the sub-block scales (imatrix)
// Every one of them is a tiny least-squares search whose result depends on float
// rounding, so each sum below runs in index order with the grouping the spec gives
// ((w*x)*l, (w*l)*l, ...), comparisons are strict, and integer -> float conversions are
// exact. Changing any of that changes bytes (algorithms doc section 16).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../core/base.hpp"
#include "common.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::codec {

/// Groups whose largest |x| is below this count as all-zero (algorithms doc 1.8).
inline constexpr float group_max_eps = 1e-15f;

/// H1 (algorithms doc 3): symmetric fit of n values to integers l in [-nmax, nmax-1],
/// stored offset as L = l + nmax. Error weights qw[i], or x[i]^2 when qw is null. Returns
/// the scale; note its sign is opposite to the block's largest-|x| element because the
/// first guess maps that element to -nmax. An all-zero group gives L = 0 (not offset!)
/// and scale 0.
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L, const float* qw) noexcept {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  // One pass of "quantize with this inverse scale and accumulate the normal equations".
  auto fit = [&](float iscale, float& sumlx, float& suml2, bool store) {
    sumlx = 0.0f;
    suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      if (store) L[i] = static_cast<std::int8_t>(l + nmax);
      const float w = qw ? qw[i] : x[i] * x[i];
      const float fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
  };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  fit(iscale, sumlx, suml2, true);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  // 18 candidates around nmax, is = -9..-1, 1..9: -(nmax + 0.1f*is) / max.
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    fit(iscale, sumlx, suml2, false);
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      fit(iscale, sumlx, suml2, true);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/// H2 (algorithms doc 4): Q3_K's fit of 16 values to l in [-nmax, nmax-1] with weights
/// x^2, refined by coordinate descent (up to 5 passes). L is offset by +nmax at the end;
/// an all-zero group gives L = 0 (not offset) and scale 0.
inline float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L) noexcept {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<std::int8_t>(l);
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  // Coordinate descent: move one L_i to its least-squares optimum given the others,
  // accept if the fit criterion sumlx^2/suml2 grows. With the negative iscale sumlx is
  // usually <= 0, so the slx > 0 gate rarely opens; it is replicated anyway.
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0.0f) {
        float sl2 = suml2 - w * li * li;
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = std::max(-nmax, std::min(nmax - 1, new_l));
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<std::int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/// H3 (algorithms doc 5; ggml make_qkx2_quants = make_qkx3_quants with weights): fit
/// x ~ scale * L - the_min with L in [0, nmax], the_min >= 0, minimising sum w*err
/// (err = |diff| if use_mad else diff^2). Tries nstep+1 inverse scales
/// (rmin + rdelta*is + nmax) / (max - min). Returns scale; Laux is scratch of n bytes.
inline float make_qkx_quants(int n, int nmax, const float* x, const float* w, std::uint8_t* L,
                             float* the_min, std::uint8_t* Laux, float rmin, float rdelta,
                             int nstep, bool use_mad) noexcept {
  float min = x[0], max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0.0f) min = 0.0f;  // the offset never goes positive
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += w[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    // `min` is the current best min, which an accepted candidate updates (spec: the
    // search window moves with it); `max` never changes.
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<std::uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += w[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

/// H4 (algorithms doc 6): weighted fit of non-negative x (sub-block scales or mins) to
/// L in [0, nmax]: 9 candidate inverse scales, then coordinate descent (up to 5 passes).
/// Returns the least-squares super-scale sumlx/suml2 (not max/nmax).
inline float make_qp_quants(int n, int nmax, const float* x, std::uint8_t* L, const float* w) noexcept {
  float max = 0.0f;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<std::uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1.0f / iscale;
  float best_mse = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += w[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / max;
    const float scale_is = 1.0f / iscale_is;
    float mse = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += w[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<std::uint8_t>(l);
    const float fl = static_cast<float>(l);
    sumlx += w[i] * x[i] * fl;
    suml2 += w[i] * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w[i] * x[i] * li;
      float sl2 = suml2 - w[i] * li * li;
      if (slx > 0.0f && sl2 > 0.0f) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w[i] * x[i] * fl;
          sl2 += w[i] * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<std::uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- Q4_K / Q5_K 12-byte scale/min packing (blocks doc 3.1) ----------------------------
//
//   byte  0..3 : bits 0-5 sc_0..sc_3,   bits 6-7 high bits of sc_4..sc_7
//   byte  4..7 : bits 0-5 m_0..m_3,     bits 6-7 high bits of m_4..m_7
//   byte  8..11: bits 0-3 low of sc_4..sc_7, bits 4-7 low of m_4..m_7
// Eight 6-bit pairs = 96 bits = 12 bytes exactly; the first four pairs are readable with
// a single mask, which is what the dot-product kernels exploit.

/// Unpacks the 6-bit scale and min of 32-weight sub-block j (0..7).
constexpr void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m) noexcept {
  if (j < 4) {
    sc = static_cast<std::uint8_t>(q[j] & 63);
    m = static_cast<std::uint8_t>(q[j + 4] & 63);
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// Packs eight 6-bit scales and mins (each <= 63) into 12 bytes (the inverse of
/// get_scale_min_k4). Bytes are assigned for j < 4 before the high bits of j >= 4 are
/// OR-ed in, so no stale bits survive.
constexpr void pack_scale_min_k4(const std::uint8_t* ls, const std::uint8_t* lm, std::uint8_t* q) noexcept {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = ls[j];
      q[j + 4] = lm[j];
    } else {
      q[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      q[j - 4] = static_cast<std::uint8_t>(q[j - 4] | ((ls[j] >> 4) << 6));
      q[j] = static_cast<std::uint8_t>(q[j] | ((lm[j] >> 4) << 6));
    }
  }
}

/// Unpacks the biased 6-bit scale S_j (0..63) of Q3_K's 16-weight sub-block j (blocks
/// doc 7): low nibble in byte j%8 (j >= 8: high half), high 2 bits in byte 8 + j%4.
constexpr int get_scale_q3_k(int j, const std::uint8_t* q) noexcept {
  const int lo = j < 8 ? (q[j] & 0xF) : (q[j - 8] >> 4);
  const int hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
  return lo | (hi << 4);
}

/// ORs the biased 6-bit scale S (0..63) of sub-block j into 12 zeroed bytes.
constexpr void put_scale_q3_k(int j, int S, std::uint8_t* q) noexcept {
  if (j < 8)
    q[j] = static_cast<std::uint8_t>(S & 0xF);
  else
    q[j - 8] = static_cast<std::uint8_t>(q[j - 8] | ((S & 0xF) << 4));
  q[8 + j % 4] = static_cast<std::uint8_t>(q[8 + j % 4] | ((S >> 4) << (2 * (j / 4))));
}

/// sum_{i<n} x[i]^2, sequential (the sigma2 sums of the imatrix paths).
inline float sum_squares(const float* x, int n) noexcept {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

}  // namespace detail::codec
SBGQ_END_NAMESPACE
