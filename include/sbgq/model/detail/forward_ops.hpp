// Building blocks of the reference forward pass (forward.hpp): the row-major f32 matrix
// type, a deterministic tiled matrix product, and the element-wise operations written to
// round like ggml's CPU backend (llama.cpp), so our logits can be compared with libllama's
// at the 1e-4 level.
//
// Rounding notes (ggml-cpu ops.cpp, the operations llama.cpp's qwen35 graph uses):
//   - rms_norm: sum of float squares accumulated in double, mean rounded to float,
//     scale = 1 / sqrtf(mean + eps), y = x * scale; the gain is a separate multiply.
//   - l2_norm:  sum of float squares in double, scale = 1 / max(sqrtf(sum), eps).
//   - soft_max: max-shifted expf, sum in double, rows scaled by (float)(1 / sum).
//   - softplus: x > 20 ? x : log1pf(expf(x)).
// Internal header: included by forward.hpp only.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../../core/base.hpp"
#include "../../core/parallel.hpp"
#include "../../simd/dispatch.hpp"
#include "forward_gemm.hpp"

SBGQ_BEGIN_NAMESPACE

/// A row-major f32 matrix: weights are [out][in] (one row per output channel, as GGUF
/// stores them), activations are [tokens][features].
using matrix_f32 = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// A 1-D f32 tensor (norm gains, per-head scalars).
using vector_f32 = Eigen::VectorXf;

namespace detail::fwd {

using index_t = Eigen::Index;

/// Tile sizes of linear(): fixed, so the summation order of every output element (and
/// thus every bit of the result) is independent of the thread count.
inline constexpr index_t linear_row_tile = 64;
inline constexpr index_t linear_col_tile = 128;

/// y = x * w^T, i.e. y[r][c] = sum_k x[r][k] * w[c][k]. x: [m][k], w: [n][k], y: [m][n].
/// Work is split in fixed tiles of (64 rows x 128 output channels), run on n_threads
/// threads; the kernel is chosen once per call by active_simd_level() (forward_gemm.hpp).
/// Deterministic for any thread count.
inline void linear(const matrix_f32& x, const matrix_f32& w, matrix_f32& y, int n_threads) {
  SBGQ_DASSERT(x.cols() == w.cols());
  const index_t m = x.rows(), n = w.rows();
  y.resize(m, n);
  if (m == 0 || n == 0) return;
  const index_t n_rt = (m + linear_row_tile - 1) / linear_row_tile;
  const index_t n_ct = (n + linear_col_tile - 1) / linear_col_tile;
  const simd_level level = active_simd_level();
  const auto k = static_cast<std::size_t>(x.cols());
  parallel_for(static_cast<std::size_t>(n_rt * n_ct), 1, n_threads, [&](std::size_t b, std::size_t e) {
    for (std::size_t t = b; t < e; ++t) {
      // Column tiles vary fastest, so consecutive tiles share their x rows in cache.
      const index_t rt = static_cast<index_t>(t) / n_ct, ct = static_cast<index_t>(t) % n_ct;
      const index_t r0 = rt * linear_row_tile, c0 = ct * linear_col_tile;
      const auto nr = static_cast<std::size_t>(std::min(linear_row_tile, m - r0));
      const auto nc = static_cast<std::size_t>(std::min(linear_col_tile, n - c0));
      const float* xp = x.row(r0).data();
      const float* wp = w.row(c0).data();
      float* yp = y.data() + r0 * n + c0;
      const auto ldx = static_cast<std::size_t>(x.cols()), ldy = static_cast<std::size_t>(n);
#if SBGQ_X86_KERNELS
      if (level != simd_level::scalar) {
        avx2::linear_tile(xp, ldx, wp, k, yp, ldy, nr, nc, k);
        continue;
      }
#endif
      (void)level;
      ref::linear_tile(xp, ldx, wp, k, yp, ldy, nr, nc, k);
    }
  });
}

/// Runs body(row) for every row in [0, n) on n_threads threads (rows are independent).
template <class Body>
inline void for_rows(index_t n, int n_threads, Body&& body) {
  parallel_for(static_cast<std::size_t>(n), 16, n_threads, [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) body(static_cast<index_t>(r));
  });
}

/// 1 / sqrt(mean(x^2) + eps), as ggml_rms_norm computes it.
inline float rms_scale(const float* x, index_t n, float eps) noexcept {
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  return 1.0f / std::sqrt(mean + eps);
}

/// 1 / max(||x||, eps), as ggml_l2_norm computes it.
inline float l2_scale(const float* x, index_t n, float eps) noexcept {
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  return 1.0f / std::max(std::sqrt(static_cast<float>(sum)), eps);
}

/// y[i] = (x[i] * rms_scale(x)) * w[i]; x and y may alias.
inline void rms_norm(const float* x, const float* w, index_t n, float eps, float* y) noexcept {
  const float s = rms_scale(x, n, eps);
  for (index_t i = 0; i < n; ++i) y[i] = (x[i] * s) * w[i];
}

/// Row-wise RMSNorm with gain w of every row of x into y (resized).
inline void rms_norm_rows(const matrix_f32& x, const vector_f32& w, float eps, matrix_f32& y, int n_threads) {
  y.resize(x.rows(), x.cols());
  for_rows(x.rows(), n_threads, [&](index_t r) { rms_norm(x.row(r).data(), w.data(), x.cols(), eps, y.row(r).data()); });
}

inline float sigmoid(float x) noexcept { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) noexcept { return x / (1.0f + std::exp(-x)); }
inline float softplus(float x) noexcept { return x > 20.0f ? x : std::log1p(std::exp(x)); }

}  // namespace detail::fwd

SBGQ_END_NAMESPACE
