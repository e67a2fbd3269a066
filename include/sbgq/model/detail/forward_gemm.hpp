// The matrix product of the forward pass, y = x * w^T (x: [m][k] activations, w: [n][k]
// weights, both row-major), as one tile kernel per SIMD level:
//   sbgq::ref::linear_tile    Eigen's product (the library's generic baseline build),
//   sbgq::avx2::linear_tile   AVX2 + FMA register-blocked dot products (below).
// The AVX-512 level uses the AVX2 kernel (no separate kernel yet).
//
// Why dot products: x rows and w rows are both contiguous along k, so each output is a
// dot product of two contiguous rows. The kernel keeps a 4 x 2 block of outputs in 8
// ymm accumulators: per 8 values of k it loads 4 x vectors and 2 w vectors (6 loads) and
// issues 8 FMAs, which keeps Zen 3's two FMA pipes busy from L1/L2.
//
// Determinism: every output element is accumulated the same way wherever it sits in a
// tile (8 lane-wise partial sums over k in ascending order, one fixed horizontal
// reduction, then the k % 8 tail in order), so the AVX2 result of a row does not depend
// on tiling, batching or the thread count. The Eigen path is deterministic for a fixed
// tile shape, which linear() in forward_ops.hpp guarantees.
// Internal header: included by forward_ops.hpp only.
#pragma once

#include <Eigen/Dense>

#include <cstddef>

#include "../../core/base.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>
#endif

SBGQ_BEGIN_NAMESPACE

namespace ref {
/// y[i][j] = sum_t x[i][t] * w[j][t] for an m x n tile (leading dimensions in floats).
inline void linear_tile(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                        std::size_t m, std::size_t n, std::size_t k) {
  using mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using stride = Eigen::OuterStride<>;
  const auto mi = static_cast<Eigen::Index>(m), ni = static_cast<Eigen::Index>(n), ki = static_cast<Eigen::Index>(k);
  Eigen::Map<const mat, 0, stride> xm(x, mi, ki, stride(static_cast<Eigen::Index>(ldx)));
  Eigen::Map<const mat, 0, stride> wm(w, ni, ki, stride(static_cast<Eigen::Index>(ldw)));
  Eigen::Map<mat, 0, stride> ym(y, mi, ni, stride(static_cast<Eigen::Index>(ldy)));
  ym.noalias() = xm * wm.transpose();
}
}  // namespace ref

#if SBGQ_X86_KERNELS
SBGQ_TARGET_AVX2_FMA_BEGIN
namespace avx2 {
namespace gemm_detail {

/// Sum of the 8 lanes in a fixed order: (lo + hi), then pairs, then the last two.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/// An RB x CB block of outputs.
template <int RB, int CB>
inline void micro(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                  std::size_t k) {
  __m256 acc[RB][CB];
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < CB; ++j) acc[i][j] = _mm256_setzero_ps();
  std::size_t t = 0;
  for (; t + 8 <= k; t += 8) {
    __m256 wv[CB];
    for (int j = 0; j < CB; ++j) wv[j] = _mm256_loadu_ps(w + static_cast<std::size_t>(j) * ldw + t);
    for (int i = 0; i < RB; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + static_cast<std::size_t>(i) * ldx + t);
      for (int j = 0; j < CB; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < CB; ++j) {
      const float* xr = x + static_cast<std::size_t>(i) * ldx;
      const float* wr = w + static_cast<std::size_t>(j) * ldw;
      float s = hsum(acc[i][j]);
      for (std::size_t u = t; u < k; ++u) s += xr[u] * wr[u];
      y[static_cast<std::size_t>(i) * ldy + static_cast<std::size_t>(j)] = s;
    }
}

}  // namespace gemm_detail

/// y[i][j] = sum_t x[i][t] * w[j][t] for an m x n tile (leading dimensions in floats).
inline void linear_tile(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                        std::size_t m, std::size_t n, std::size_t k) {
  using gemm_detail::micro;
  std::size_t i = 0;
  for (; i + 4 <= m; i += 4) {
    std::size_t j = 0;
    for (; j + 2 <= n; j += 2) micro<4, 2>(x + i * ldx, ldx, w + j * ldw, ldw, y + i * ldy + j, ldy, k);
    if (j < n) micro<4, 1>(x + i * ldx, ldx, w + j * ldw, ldw, y + i * ldy + j, ldy, k);
  }
  for (; i < m; ++i) {
    std::size_t j = 0;
    for (; j + 2 <= n; j += 2) micro<1, 2>(x + i * ldx, ldx, w + j * ldw, ldw, y + i * ldy + j, ldy, k);
    if (j < n) micro<1, 1>(x + i * ldx, ldx, w + j * ldw, ldw, y + i * ldy + j, ldy, k);
  }
}

}  // namespace avx2
SBGQ_TARGET_END
#endif

SBGQ_END_NAMESPACE
