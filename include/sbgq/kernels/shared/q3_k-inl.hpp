// Shared body of the AVX2 and AVX-512 Q3_K quantizers (no include guard: included once
// inside each target namespace by kernels/<target>/q3_k.hpp, after k_quant_common.hpp).
//
// Lane mapping: lane i is the 16-weight sub-block i of a group of cv::lanes / 16
// consecutive super-blocks (AVX2: one super-block per vector of two registers; AVX-512:
// two). The sub-block search (H2 without an imatrix, weights + H1 with one) and the
// re-quantization against the decoded fp16 scales run lane-parallel with the
// reference's operations (algorithms doc 13); the 6-bit codes are the reference's
// scalar q3_k_codes on the 16 lane results.

namespace q3_kernel {

inline void superblocks(const float* x, const float* qw, block_q3_k* out, std::size_t cnt) {
  constexpr int g = cv::lanes / 16;
  cv::vf xt[16];
  for (int k = 0; k < 16; ++k) xt[k] = cv::gather(x + k, 16);
  cv::vi Lv[16];
  cv::vf scale;
  cv::vf sw(0.0f);
  if (qw == nullptr) {
    scale = kq_kernel::make_q3_quants<16>(4, xt, Lv);
  } else {
    alignas(64) float s2[cv::lanes];
    for (int s = 0; s < g; ++s) {
      const float sigma2 = 2.0f * detail::codec::sum_squares(x + 256 * s, 256) / 256.0f;
      for (int i = 0; i < 16; ++i) s2[16 * s + i] = sigma2;
    }
    const cv::vf sigma2 = cv::load(s2);
    cv::vf wt[16];
    for (int k = 0; k < 16; ++k) {
      wt[k] = cv::gather(qw + k, 16) * cv::sqrt(sigma2 + xt[k] * xt[k]);
      sw = sw + wt[k];
    }
    scale = kq_kernel::make_qx_quants<16>(4, xt, wt, Lv);
  }
  alignas(64) float scales[cv::lanes], sws[cv::lanes], dj[cv::lanes];
  cv::store(scales, scale);
  cv::store(sws, sw);
  block_q3_k b[g];
  for (int s = 0; s < g; ++s) {
    detail::codec::q3_k_codes(qw != nullptr, scales + 16 * s, sws + 16 * s, b[s]);
    for (int j = 0; j < 16; ++j) dj[16 * s + j] = detail::codec::q3_k_decoded_scale(b[s], j);
  }
  const cv::vf djv = cv::load(dj);
  const cv::vm keep = djv == cv::vf(0.0f);
  const cv::vi lo(-4), hi(3), off(4);
  for (int k = 0; k < 16; ++k)
    Lv[k] = cv::select(keep, Lv[k], cv::max(lo, cv::min(hi, cv::nearest_int(xt[k] / djv))) + off);
  std::uint8_t L[256 * g];
  kq_kernel::store_levels<16>(Lv, L);
  for (std::size_t s = 0; s < cnt; ++s) {
    kq_pack::q3_k(L + 256 * s, b[s].hmask, b[s].qs);
    out[s] = b[s];
  }
}

}  // namespace q3_kernel

/// Bit-identical to ref::quantize_q3_k.
inline void quantize_q3_k(std::span<const float> x, std::span<block_q3_k> y,
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
    q3_kernel::superblocks(xb, qw, y.data() + b0, cnt);
  }
}
