// Shared body of the AVX2 and AVX-512 IQ4_NL / IQ4_XS quantizers (no include guard: it is
// included once inside each target namespace, after that target's codec_vec.hpp, as
// Highway's -inl.h files are; it includes nothing itself).
//
// Lane mapping ("vectorize across blocks"): lane i searches the 32-weight block i of a
// group of cv::lanes consecutive blocks. For IQ4_NL a block is a whole block_iq4_nl; for
// IQ4_XS it is the 32-weight sub-block, so one AVX2 register holds the 8 sub-blocks of one
// super-block and one AVX-512 register two super-blocks (a cv vector is two registers). Each lane runs
// detail::codec::iq4_search_superblock's per-block loop (algorithms doc 11.2) with the same
// float operations in the same order: the candidate loop, the sums over j = 0..31, the
// strict comparisons. Per-lane branches become masks; a lane whose block is all zero
// computes garbage that the final select discards, as the reference's `continue` does.
//
// The parts that couple blocks (IQ4_XS's sigma2 over 256 weights, the largest-|scale|
// pick and the 6-bit scale codes) run in scalar code on the per-lane results, calling the
// reference's own helpers.

namespace iq4_kernel {

/// detail::codec::best_index_iq4nl per lane. The reference finds the first k in 1..15
/// with v < V[k] (k = 15 when none, which covers v >= V[15] and NaN), then picks k-1
/// when v - V[k-1] < V[k] - v. Here k = 1 + #{m in 1..14 : !(v < V[m])} (the table is
/// sorted, so the count equals the position of that first k), and the early returns
/// for v <= V[0] / v >= V[15] fall out of the same comparison: v <= V[0] gives k = 1
/// and v - V[0] <= 0 < V[1] - v, index 0; v >= V[15] gives k = 15 and
/// v - V[14] > 0 >= V[15] - v, index 15. Returns the index and V[index].
struct nl_pick {
  cv::vi index;
  cv::vf value;
};
SBGQ_CV_INLINE nl_pick best_index_iq4nl(cv::vf v, const cv::table16& tab, const float* V) {
  cv::vi k(1);
  for (int m = 1; m < 15; ++m) k = cv::inc_if(k, cv::nlt(v, cv::vf(V[m])));
  const cv::vi km1 = k - cv::vi(1);
  const cv::vf lo = tab[km1], hi = tab[k];
  const cv::vm take_lo = (v - lo) < (hi - v);
  return {cv::select(take_lo, km1, k), cv::select(take_lo, lo, hi)};
}

/// kvalues_iq4nl as floats (the reference converts each level with static_cast<float>).
struct codebook {
  float V[16];
};
inline constexpr codebook levels = [] {
  codebook c{};
  for (std::size_t i = 0; i < 16; ++i) c.V[i] = static_cast<float>(kvalues_iq4nl[i]);
  return c;
}();

/// One "fit" of the reference: sumqx = sum_j w_j q_j x_j, sumq2 = sum_j w_j q_j^2 with
/// q_j = V[best_index(id * x_j)], j in order.
SBGQ_CV_INLINE void fit(const cv::vf* xt, const cv::vf* wt, cv::vf id, const cv::table16& tab, const float* V,
                cv::vf& sumqx, cv::vf& sumq2) {
  sumqx = cv::vf(0.0f);
  sumq2 = cv::vf(0.0f);
  for (int j = 0; j < 32; ++j) {
    const cv::vf q = best_index_iq4nl(id * xt[j], tab, V).value;
    const cv::vf w = wt[j];
    sumqx = sumqx + w * q * xt[j];
    sumq2 = sumq2 + w * q * q;
  }
}

/// The per-block search of iq4_search_superblock (ntry = 7) on cv::lanes blocks of 32
/// floats at x (block i at x + 32 i); qw likewise or null; sigma2 per lane. Writes each
/// block's scale (0 for a block with max |x| < group_max_eps).
inline void search(const float* x, const float* qw, cv::vf sigma2, float* scales) {
  constexpr int ntry = 7;
  const codebook& cb = levels;
  const cv::table16 tab(cb.V);
  const float v0 = cb.V[0];
  cv::vf xt[32], wt[32];
  for (int j = 0; j < 32; ++j) xt[j] = cv::gather(x + j, 32);
  if (qw != nullptr) {
    for (int j = 0; j < 32; ++j) wt[j] = cv::gather(qw + j, 32) * cv::sqrt(sigma2 + xt[j] * xt[j]);
  } else {
    for (int j = 0; j < 32; ++j) wt[j] = xt[j] * xt[j];
  }
  cv::vf amax(0.0f), max(0.0f);
  for (int j = 0; j < 32; ++j) {
    const cv::vf ax = cv::abs(xt[j]);
    const cv::vm gt = ax > amax;
    amax = cv::select(gt, ax, amax);
    max = cv::select(gt, xt[j], max);
  }
  const cv::vm zero_block = amax < cv::vf(detail::codec::group_max_eps);
  cv::vf d = -max / cv::vf(v0);
  cv::vf sumqx, sumq2;
  fit(xt, wt, cv::vf(1.0f) / d, tab, cb.V, sumqx, sumq2);
  d = cv::select(sumq2 > cv::vf(0.0f), sumqx / sumq2, cv::vf(0.0f));
  cv::vf best = d * sumqx;
  for (int itry = -ntry; itry <= ntry; ++itry) {
    const cv::vf id = cv::vf(static_cast<float>(itry + kvalues_iq4nl[0])) / max;
    fit(xt, wt, id, tab, cb.V, sumqx, sumq2);
    const cv::vm better = (sumq2 > cv::vf(0.0f)) & (sumqx * sumqx > best * sumq2);
    d = cv::select(better, sumqx / sumq2, d);
    best = cv::select(better, d * sumqx, best);
  }
  cv::store(scales, cv::select(zero_block, cv::vf(0.0f), d));
}

/// Final indices: for each lane's block, L_j = best_index(id * x_j) with the lane's id,
/// packed as qs[16 i + j] = L_j | L_{j+16} << 4 for block i.
inline void final_indices(const float* x, const float* ids, std::uint8_t* qs) {
  const codebook& cb = levels;
  const cv::table16 tab(cb.V);
  const cv::vf id = cv::load(ids);
  alignas(64) std::int32_t packed[16][cv::lanes];
  for (int j = 0; j < 16; ++j) {
    const cv::vi lo = best_index_iq4nl(id * cv::gather(x + j, 32), tab, cb.V).index;
    const cv::vi hi = best_index_iq4nl(id * cv::gather(x + j + 16, 32), tab, cb.V).index;
    cv::store(packed[j], lo | (hi << 4));
  }
  for (int i = 0; i < cv::lanes; ++i)
    for (int j = 0; j < 16; ++j) qs[16 * i + j] = static_cast<std::uint8_t>(packed[j][i]);
}

/// sum_j x_j^2 per lane, j in order (the reference's sum_squares of one block).
inline cv::vf block_sum_squares(const float* x) {
  cv::vf s(0.0f);
  for (int j = 0; j < 32; ++j) {
    const cv::vf v = cv::gather(x + j, 32);
    s = s + v * v;
  }
  return s;
}

}  // namespace iq4_kernel

/// Bit-identical to ref::quantize_iq4_nl.
inline void quantize_iq4_nl(std::span<const float> x, std::span<block_iq4_nl> y,
                            std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * block_iq4_nl::values);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  constexpr int n = cv::lanes;
  alignas(64) float xpad[32 * n], wpad[32 * n], scales[n], ids[n];
  std::uint8_t qs[16 * n];
  for (std::size_t b0 = 0; b0 < y.size(); b0 += n) {
    const std::size_t cnt = std::min<std::size_t>(n, y.size() - b0);
    const float* xb = x.data() + 32 * b0;
    const float* qw = weights.empty() ? nullptr : weights.data() + 32 * b0;
    if (cnt < static_cast<std::size_t>(n)) {  // tail: zero blocks in the unused lanes
      std::fill(xpad, xpad + 32 * n, 0.0f);
      std::copy(xb, xb + 32 * cnt, xpad);
      xb = xpad;
      if (qw != nullptr) {
        std::fill(wpad, wpad + 32 * n, 0.0f);
        std::copy(qw, qw + 32 * cnt, wpad);
        qw = wpad;
      }
    }
    // sigma2 = sum_squares(x, 32) * (2 / 32), as the reference with n_blocks = 1.
    const cv::vf sigma2 = iq4_kernel::block_sum_squares(xb) * cv::vf(2.0f / 32.0f);
    iq4_kernel::search(xb, qw, sigma2, scales);
    for (std::size_t i = 0; i < cnt; ++i) {
      y[b0 + i].d = to_f16(scales[i]);
      ids[i] = scales[i] != 0.0f ? 1.0f / scales[i] : 0.0f;
    }
    for (std::size_t i = cnt; i < static_cast<std::size_t>(n); ++i) ids[i] = 0.0f;
    iq4_kernel::final_indices(xb, ids, qs);
    for (std::size_t i = 0; i < cnt; ++i) std::copy(qs + 16 * i, qs + 16 * i + 16, y[b0 + i].qs);
  }
}

/// Bit-identical to ref::quantize_iq4_xs.
inline void quantize_iq4_xs(std::span<const float> x, std::span<block_iq4_xs> y,
                            std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  constexpr int n = cv::lanes;  // sub-blocks per vector
  constexpr int g = n / 8;      // super-blocks per vector
  alignas(64) float xpad[32 * n], wpad[32 * n], scales[n], ids[n], s2[n];
  std::uint8_t qs[16 * n];
  for (std::size_t b0 = 0; b0 < y.size(); b0 += g) {
    const std::size_t cnt = std::min<std::size_t>(g, y.size() - b0);
    const float* xb = x.data() + qk_k * b0;
    const float* qw = weights.empty() ? nullptr : weights.data() + qk_k * b0;
    if (cnt < static_cast<std::size_t>(g)) {
      std::fill(xpad, xpad + 32 * n, 0.0f);
      std::copy(xb, xb + qk_k * cnt, xpad);
      xb = xpad;
      if (qw != nullptr) {
        std::fill(wpad, wpad + 32 * n, 0.0f);
        std::copy(qw, qw + qk_k * cnt, wpad);
        qw = wpad;
      }
    }
    for (int s = 0; s < g; ++s) {
      float sigma2 = detail::codec::sum_squares(xb + qk_k * static_cast<std::size_t>(s), static_cast<int>(qk_k));
      sigma2 *= 2.0f / static_cast<float>(qk_k);
      for (int i = 0; i < 8; ++i) s2[8 * s + i] = sigma2;
    }
    iq4_kernel::search(xb, qw, cv::load(s2), scales);
    int l_codes[n];
    for (std::size_t s = 0; s < static_cast<std::size_t>(g); ++s) {
      const float* sc = scales + 8 * s;
      float max_scale = 0.0f, amax_scale = 0.0f;
      for (int ib = 0; ib < 8; ++ib) {
        const float abs_d = std::fabs(sc[ib]);
        if (abs_d > amax_scale) {
          amax_scale = abs_d;
          max_scale = sc[ib];
        }
      }
      const float D = -max_scale / 32.0f;
      if (s < cnt) y[b0 + s].d = to_f16(D);
      const float id = D != 0.0f ? 1.0f / D : 0.0f;
      for (int ib = 0; ib < 8; ++ib) {
        int l = detail::codec::nearest_int(id * sc[ib]);
        l = std::max(-32, std::min(31, l));
        const float dl = D * static_cast<float>(l);
        ids[8 * s + static_cast<std::size_t>(ib)] = dl != 0.0f ? 1.0f / dl : 0.0f;
        l_codes[8 * s + static_cast<std::size_t>(ib)] = l + 32;
      }
    }
    iq4_kernel::final_indices(xb, ids, qs);
    for (std::size_t s = 0; s < cnt; ++s) {
      block_iq4_xs& out = y[b0 + s];
      std::uint16_t scales_h = 0;
      for (int ib = 0; ib < 8; ++ib) {
        const int l = l_codes[8 * s + static_cast<std::size_t>(ib)];
        const auto lo = static_cast<std::uint8_t>(l & 0xF);
        if (ib % 2 == 0)
          out.scales_l[ib / 2] = lo;
        else
          out.scales_l[ib / 2] = static_cast<std::uint8_t>(out.scales_l[ib / 2] | (lo << 4));
        scales_h = static_cast<std::uint16_t>(scales_h | ((l >> 4) << (2 * ib)));
      }
      out.scales_h = scales_h;
      std::copy(qs + 128 * s, qs + 128 * s + 128, out.qs);
    }
  }
}
