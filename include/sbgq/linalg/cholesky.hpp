// In-place Cholesky factorisation A = L L^T of a symmetric positive definite f32 matrix,
// blocked so that almost all of its n^3 / 6 multiply-adds (n^3 / 3 flops) run in
// linalg/gemm.hpp.
//
// Right-looking, panels of 256 columns. Per panel:
//   1. the 256 x 256 diagonal block is factored in f64 (Eigen's LLT) and its inverse
//      L_kk^-1 formed in f64 (a triangular solve against the identity);
//   2. the panel below it becomes P = A_21 L_kk^-T by one product with that inverse
//      (instead of a triangular solve: twice the flops of this small step, but at the
//      product's speed);
//   3. the trailing lower triangle is updated, A_22 -= P P^T, by syrk_lower with
//      alpha = -1.
// Steps 2 and 3 run on n_threads (gemm_parallel), and gemm's results do not depend on
// tiling, threads or level, so the factor is the same bits for any thread count and at
// every SIMD level.
//
// Precision: f32 storage and products (as GPTQ's reference implementation factors its
// f32 H), f64 inside each diagonal block. Memory: in place, plus one 256-column f32 panel.
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/base.hpp"
#include "../core/parallel.hpp"
#include "../simd/dispatch.hpp"
#include "gemm.hpp"

SBGQ_BEGIN_NAMESPACE

/// Factors the lower triangle of `a` (n x n, column-major) in place: afterwards its lower
/// triangle is L with a = L L^T; the strict upper triangle is not read, and is left
/// unspecified within 512 columns of the diagonal (syrk_lower's tiles; untouched
/// elsewhere). Returns false when a pivot is not positive and finite (the matrix is not positive definite to f32
/// precision); `a` is then partly overwritten.
inline bool cholesky_lower(Eigen::MatrixXf& a, int n_threads, simd_level level = active_simd_level()) {
  const auto n = static_cast<std::size_t>(a.rows());
  constexpr std::size_t nb = 256;
  const auto lda = static_cast<std::ptrdiff_t>(a.rows());
  float* base = a.data();
  std::vector<float> panel, linv_t;
  for (std::size_t k0 = 0; k0 < n; k0 += nb) {
    const std::size_t kb = std::min(nb, n - k0), k1 = k0 + kb;
    const auto ek0 = static_cast<Eigen::Index>(k0), ekb = static_cast<Eigen::Index>(kb);
    // 1. The diagonal block in f64.
    const Eigen::MatrixXd dkk = a.block(ek0, ek0, ekb, ekb).cast<double>();
    Eigen::LLT<Eigen::MatrixXd, Eigen::Lower> llt(dkk);
    if (llt.info() != Eigen::Success) return false;
    const Eigen::MatrixXd l = llt.matrixL();
    for (Eigen::Index i = 0; i < ekb; ++i)
      if (!(l(i, i) > 0.0) || !std::isfinite(l(i, i))) return false;
    a.block(ek0, ek0, ekb, ekb) = l.cast<float>();
    if (k1 == n) break;
    // 2. P = A_21 L_kk^-T, with B(t, j) = (L^-T)(t, j) = L^-1(j, t) stored row-major.
    const Eigen::MatrixXd linv = l.triangularView<Eigen::Lower>().solve(Eigen::MatrixXd::Identity(ekb, ekb));
    linv_t.assign(kb * kb, 0.0f);
    for (std::size_t t = 0; t < kb; ++t)
      for (std::size_t j = t; j < kb; ++j)
        linv_t[t * kb + j] = static_cast<float>(linv(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(t)));
    const std::size_t m = n - k1;
    panel.resize(m * kb);  // row-major m x kb
    const auto pkb = static_cast<std::ptrdiff_t>(kb);
    gemm_parallel(level, m, kb, kb, 1.0f, {base + static_cast<std::ptrdiff_t>(k1) + static_cast<std::ptrdiff_t>(k0) * lda, 1, lda},
                  {linv_t.data(), pkb, 1}, 0.0f, {panel.data(), pkb, 1}, n_threads);
    a.block(static_cast<Eigen::Index>(k1), ek0, static_cast<Eigen::Index>(m), ekb) =
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
            panel.data(), static_cast<Eigen::Index>(m), ekb);
    // 3. A_22 -= P P^T on the lower triangle: X = P^T, X(t, i) = panel[i * kb + t].
    syrk_lower(level, m, kb, -1.0f, {panel.data(), 1, pkb},
               base + static_cast<std::ptrdiff_t>(k1) + static_cast<std::ptrdiff_t>(k1) * lda, n, n_threads);
  }
  return true;
}

SBGQ_END_NAMESPACE
