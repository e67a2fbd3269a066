// Shared body of the AVX2 and AVX-512 Q4_K / Q5_K quantizers (no include guard: included
// once inside each target namespace by kernels/<target>/q4_k.hpp, after
// k_quant_common.hpp; it includes nothing itself).
//
// Lane mapping: lane i is the 32-weight sub-block i of a group of cv::lanes / 8
// consecutive super-blocks (per register, AVX2: the 8 sub-blocks of one super-block; AVX-512: two
// super-blocks). Step 1 of codec/q4_k.hpp (weights + H3 search) and step 3 (the
// re-quantization against the decoded fp16 scales, one true division per weight) run
// lane-parallel with the reference's operations; step 2 (6-bit codes, H4, fp16) couples
// the sub-blocks of a super-block and calls the reference's k_scale_min_codes.

namespace k45_kernel {

/// Steps 1-3 for the cv::lanes / 8 super-blocks at x (qw: weights or null). Writes L
/// (256 per super-block, levels 0..nmax), the 12 scale bytes, d and dmin of each.
inline void superblocks(const float* x, const float* qw, int nmax, float ref_rmin, int ref_nstep, std::uint8_t* L,
                        std::uint8_t* scales_out, f16* d, f16* dmin) {
  constexpr int g = cv::lanes / 8;
  cv::vf xt[32], wt[32];
  for (int k = 0; k < 32; ++k) xt[k] = cv::gather(x + k, 32);
  cv::vf sw(0.0f);
  float rmin = ref_rmin, rdelta = 0.1f;
  int nstep = ref_nstep;
  if (qw == nullptr) {
    const cv::vf av_x = cv::sqrt(kq_kernel::sum_squares<32>(xt) / cv::vf(32.0f));
    for (int k = 0; k < 32; ++k) wt[k] = av_x + cv::abs(xt[k]);
  } else {
    alignas(64) float s2[cv::lanes];
    for (int s = 0; s < g; ++s) {
      const float sigma2 = 2.0f * detail::codec::sum_squares(x + 256 * s, 256) / 256.0f;
      for (int i = 0; i < 8; ++i) s2[8 * s + i] = sigma2;
    }
    const cv::vf sigma2 = cv::load(s2);
    for (int k = 0; k < 32; ++k) {
      wt[k] = cv::gather(qw + k, 32) * cv::sqrt(sigma2 + xt[k] * xt[k]);
      sw = sw + wt[k];
    }
    rmin = -0.9f;
    rdelta = 0.05f;
    nstep = 36;
  }
  cv::vi Lv[32];
  cv::vf the_min;
  const cv::vf scale = kq_kernel::make_qkx_quants<32, false>(nmax, xt, wt, Lv, the_min, rmin, rdelta, nstep);
  alignas(64) float scales[cv::lanes], mins[cv::lanes], sws[cv::lanes], dj[cv::lanes], dm[cv::lanes];
  cv::store(scales, scale);
  cv::store(mins, the_min);
  cv::store(sws, sw);
  for (int s = 0; s < g; ++s) {
    detail::codec::k_scale_min_codes(qw != nullptr, scales + 8 * s, mins + 8 * s, sws + 8 * s, scales_out + 12 * s,
                                     d[s], dmin[s]);
    for (int j = 0; j < 8; ++j)
      detail::codec::k_decoded_scale_min(j, scales_out + 12 * s, d[s], dmin[s], dj[8 * s + j], dm[8 * s + j]);
  }
  const cv::vf djv = cv::load(dj), dmv = cv::load(dm);
  const cv::vm keep = djv == cv::vf(0.0f);
  const cv::vi zero(0), top(nmax);
  for (int k = 0; k < 32; ++k)
    Lv[k] = cv::select(keep, Lv[k], cv::max(zero, cv::min(top, cv::nearest_int((xt[k] + dmv) / djv))));
  kq_kernel::store_levels<32>(Lv, L);
}

/// Runs `superblocks` over a row, cv::lanes / 8 super-blocks at a time (zero-padded at
/// the tail), and calls pack(L of one super-block, its block) for each.
template <class Block, class Pack>
inline void quantize_row(std::span<const float> x, std::span<Block> y, std::span<const float> weights, int nmax,
                         float ref_rmin, int ref_nstep, Pack pack) {
  constexpr int g = cv::lanes / 8;
  alignas(64) float xpad[256 * g], wpad[256 * g];
  std::uint8_t L[256 * g];
  std::uint8_t sc[12 * g];
  f16 d[g], dmin[g];
  for (std::size_t b0 = 0; b0 < y.size(); b0 += g) {
    const std::size_t cnt = std::min<std::size_t>(g, y.size() - b0);
    const float* xb = x.data() + qk_k * b0;
    const float* qw = weights.empty() ? nullptr : weights.data() + qk_k * b0;
    if (cnt < static_cast<std::size_t>(g)) {
      std::fill(xpad, xpad + 256 * g, 0.0f);
      std::copy(xb, xb + qk_k * cnt, xpad);
      xb = xpad;
      if (qw != nullptr) {
        std::fill(wpad, wpad + 256 * g, 0.0f);
        std::copy(qw, qw + qk_k * cnt, wpad);
        qw = wpad;
      }
    }
    superblocks(xb, qw, nmax, ref_rmin, ref_nstep, L, sc, d, dmin);
    for (std::size_t s = 0; s < cnt; ++s) {
      Block& out = y[b0 + s];
      out.d = d[s];
      out.dmin = dmin[s];
      std::copy(sc + 12 * s, sc + 12 * s + 12, out.scales);
      pack(L + 256 * s, out);
    }
  }
}

}  // namespace k45_kernel

/// Bit-identical to ref::quantize_q4_k.
inline void quantize_q4_k(std::span<const float> x, std::span<block_q4_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  k45_kernel::quantize_row(x, y, weights, 15, -1.0f, 20,
                           [](const std::uint8_t* L, block_q4_k& out) { kq_pack::q4_k(L, out.qs); });
}
