// Building blocks of the reference forward pass (forward.hpp): the row-major f32 matrix
// type, the matrix product (linalg/gemm.hpp), and the element-wise operations written to
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
#include "../../linalg/gemm.hpp"

SBGQ_BEGIN_NAMESPACE

/// A row-major f32 matrix: weights are [out][in] (one row per output channel, as GGUF
/// stores them), activations are [tokens][features].
using matrix_f32 = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// A 1-D f32 tensor (norm gains, per-head scalars).
using vector_f32 = Eigen::VectorXf;

namespace detail::fwd {

using index_t = Eigen::Index;

/// y = x * w^T, i.e. y[r][c] = sum_k x[r][k] * w[c][k]. x: [m][k], w: [n][k], y: [m][n],
/// by linalg/gemm.hpp on n_threads threads at active_simd_level(): the same bits for any
/// thread count, batching (rows are independent) and SIMD level.
inline void linear(const matrix_f32& x, const matrix_f32& w, matrix_f32& y, int n_threads) {
  SBGQ_DASSERT(x.cols() == w.cols());
  const index_t m = x.rows(), n = w.rows(), k = x.cols();
  y.resize(m, n);
  if (m == 0 || n == 0) return;
  gemm_parallel(active_simd_level(), static_cast<std::size_t>(m), static_cast<std::size_t>(n),
                static_cast<std::size_t>(k), 1.0f, {x.data(), k, 1}, {w.data(), 1, k}, 0.0f, {y.data(), n, 1},
                n_threads);
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
