// Shared body of the AVX2 and AVX-512 Q2_K quantizers (no include guard: included once
// inside each target namespace by kernels/<target>/q2_k.hpp, after k_quant_common.hpp).
//
// Lane mapping: lane i is the 16-weight sub-block i of a group of cv::lanes / 16
// consecutive super-blocks (AVX2: one super-block per vector of two registers; AVX-512:
// two). The weights and H3 (make_qkx_quants: absolute error without an imatrix, squared
// with one) and the re-quantization against the decoded fp16 scales run lane-parallel
// with the reference's operations (algorithms doc 12); the 4-bit codes (max or H4) are
// the reference's scalar q2_k_codes on the 16 lane results.

namespace q2_kernel {

inline void superblocks(const float* x, const float* qw, block_q2_k* out, std::size_t cnt) {
  constexpr int g = cv::lanes / 16;
  cv::vf xt[16], wt[16];
  for (int k = 0; k < 16; ++k) xt[k] = cv::gather(x + k, 16);
  cv::vi Lv[16];
  cv::vf the_min, scale;
  cv::vf sw(0.0f);
  if (qw == nullptr) {
    for (int k = 0; k < 16; ++k) wt[k] = cv::abs(xt[k]);
    scale = kq_kernel::make_qkx_quants<16, true>(3, xt, wt, Lv, the_min, -0.5f, 0.1f, 15);
  } else {
    alignas(64) float s2[cv::lanes];
    for (int s = 0; s < g; ++s) {
      const float sigma2 = detail::codec::sum_squares(x + 256 * s, 256) / 256.0f;
      for (int i = 0; i < 16; ++i) s2[16 * s + i] = sigma2;
    }
    const cv::vf sigma2 = cv::load(s2);
    for (int k = 0; k < 16; ++k) {
      wt[k] = cv::gather(qw + k, 16) * cv::sqrt(sigma2 + xt[k] * xt[k]);
      sw = sw + wt[k];
    }
    scale = kq_kernel::make_qkx_quants<16, false>(3, xt, wt, Lv, the_min, -0.9f, 0.05f, 36);
  }
  alignas(64) float scales[cv::lanes], mins[cv::lanes], sws[cv::lanes], dj[cv::lanes], dm[cv::lanes];
  cv::store(scales, scale);
  cv::store(mins, the_min);
  cv::store(sws, sw);
  block_q2_k b[g];
  for (int s = 0; s < g; ++s) {
    detail::codec::q2_k_codes(qw != nullptr, scales + 16 * s, mins + 16 * s, sws + 16 * s, b[s]);
    for (int j = 0; j < 16; ++j) detail::codec::q2_k_decoded_scale_min(b[s], j, dj[16 * s + j], dm[16 * s + j]);
  }
  const cv::vf djv = cv::load(dj), dmv = cv::load(dm);
  const cv::vm keep = djv == cv::vf(0.0f);
  const cv::vi zero(0), top(3);
  for (int k = 0; k < 16; ++k)
    Lv[k] = cv::select(keep, Lv[k], cv::max(zero, cv::min(top, cv::nearest_int((xt[k] + dmv) / djv))));
  std::uint8_t L[256 * g];
  kq_kernel::store_levels<16>(Lv, L);
  for (std::size_t s = 0; s < cnt; ++s) {
    kq_pack::q2_k(L + 256 * s, b[s].qs);
    out[s] = b[s];
  }
}

}  // namespace q2_kernel

/// Bit-identical to ref::quantize_q2_k.
inline void quantize_q2_k(std::span<const float> x, std::span<block_q2_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  constexpr int g = cv::lanes / 16;
  alignas(64) float xpad[256 * g], wpad[256 * g];
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
    q2_kernel::superblocks(xb, qw, y.data() + b0, cnt);
  }
}
