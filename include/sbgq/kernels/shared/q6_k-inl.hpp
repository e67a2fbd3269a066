// Shared body of the AVX2 and AVX-512 Q6_K quantizers (no include guard: included once
// inside each target namespace by kernels/<target>/q6_k.hpp, after k_quant_common.hpp).
//
// Lane mapping: lane i is the 16-weight sub-block i of a group of cv::lanes / 16
// consecutive super-blocks (AVX2: one super-block per vector of two registers; AVX-512:
// two). H1 (make_qx_quants, nmax 32) and the re-quantization against the decoded fp16
// scale run lane-parallel with the reference's operations (codec/q6_k.hpp steps 1 and
// 4); steps 2-3 (largest |scale|, int8 sub-scales, fp16 d) are the reference's scalar
// code on the 16 lane results.

namespace q6_kernel {

/// Quantizes the cv::lanes / 16 super-blocks at x into out[0 .. cnt).
inline void superblocks(const float* x, const float* qw, block_q6_k* out, std::size_t cnt) {
  constexpr int g = cv::lanes / 16;
  cv::vf xt[16], wt[16];
  for (int k = 0; k < 16; ++k) {
    xt[k] = cv::gather(x + k, 16);
    wt[k] = qw != nullptr ? cv::gather(qw + k, 16) : xt[k] * xt[k];
  }
  cv::vi Lv[16];
  alignas(64) float scales[cv::lanes], dd[cv::lanes];
  cv::store(scales, kq_kernel::make_qx_quants<16>(32, xt, wt, Lv));
  bool zero_sb[g];
  for (int s = 0; s < g; ++s) {
    const float* sc = scales + 16 * s;
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ++ib) {
      const float abs_scale = std::fabs(sc[ib]);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = sc[ib];
      }
    }
    zero_sb[s] = max_abs_scale < detail::codec::group_max_eps;
    block_q6_k b{};
    if (!zero_sb[s]) {
      const float iscale = -128.0f / max_scale;
      b.d = to_f16(1.0f / iscale);
      for (int ib = 0; ib < 16; ++ib)
        b.scales[ib] = static_cast<std::int8_t>(std::min(127, detail::codec::nearest_int(iscale * sc[ib])));
    }
    const float D = to_f32(b.d);
    for (int ib = 0; ib < 16; ++ib) dd[16 * s + ib] = D * static_cast<float>(b.scales[ib]);
    if (static_cast<std::size_t>(s) < cnt) out[s] = b;
  }
  const cv::vf ddv = cv::load(dd);
  const cv::vm keep = ddv == cv::vf(0.0f);
  const cv::vi lo(-32), hi(31), off(32);
  for (int k = 0; k < 16; ++k)
    Lv[k] = cv::select(keep, Lv[k], cv::max(lo, cv::min(hi, cv::nearest_int(xt[k] / ddv))) + off);
  std::uint8_t L[256 * g];
  kq_kernel::store_levels<16>(Lv, L);
  for (std::size_t s = 0; s < cnt; ++s)
    if (!zero_sb[s]) kq_pack::q6_k(L + 256 * s, out[s].ql, out[s].qh);
}

}  // namespace q6_kernel

/// Bit-identical to ref::quantize_q6_k.
inline void quantize_q6_k(std::span<const float> x, std::span<block_q6_k> y,
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
    q6_kernel::superblocks(xb, qw, y.data() + b0, cnt);
  }
}
