// Error-compensating (GPTQ-style) rounding of a weight matrix into llama.cpp's block
// formats, using the full input second-moment matrix H = X^T X instead of its diagonal.
//
// llama.cpp rounds every block on its own, weighted by diag(H) (the imatrix). GPTQ
// (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", section 3/4 and Algorithm 1) rounds the input columns left to
// right and pushes each column's rounding error onto the columns not yet rounded, so that
// later columns compensate it. Here the rounding grid of each block is llama.cpp's: at the
// start of each quantization block the codec's own importance-weighted scale search runs
// on the current (error-updated) weights (codec/grid.hpp), then the block's columns are
// rounded one at a time on that frozen grid.
//
// Math (why the implementation needs no matrix inverse). Let Hd = H + mu*I (dampened)
// and Hd = R R^T with R *upper* triangular (the Cholesky factor of the reversed matrix:
// J Hd J = L L^T, R = J L J, J the reversal permutation). GPTQ uses U = chol(Hd^-1)
// (upper, U^T U = Hd^-1); one checks U = R^-1. Its column recursion
//     e_i = (w'_i - q_i) / U_ii,   w'_j -= e_i * U_ij  (j > i)
// gives W - Q = E U, i.e. E = (W - Q) R, hence the equivalent forward form used here:
//     w'_j = w_j + sum_{i<j} (w_i - q_i) * R_ij / R_jj
// with the *original* w_i. The objective is tr(dW Hd dW^T) = ||E||_F^2, and the greedy
// step minimises e_j^2 = R_jj^2 (w'_j - q_j)^2, i.e. rounds w'_j to the nearest grid
// value. One Cholesky (n^3/3 flops) replaces GPTQ's Cholesky + inverse + Cholesky.
//
// Design goals:
//   - Bytes exactly what llama.cpp decodes: values are tracked with ggml's dequantization
//     expressions (grid_value), so the optimised matrix is the decoded one.
//   - Control: with a diagonal H and refit off nothing propagates, and the bytes equal
//     sbgq::quantize_rows (the codec's plain imatrix rounding), bit for bit.
//   - Deterministic for any thread count: rows are processed in chunks of a fixed number
//     of rows (independent of n_threads); every chunk runs the same Eigen products.
//   - f64 for H, the dampening and the factor; f32 for the lazy updates of the working
//     weights (as GPTQ), f64 for objectives and the refit.
// Non-goals: IQ3_S/IQ2_S grids; SIMD kernels of its own (Eigen's products are used).
//
// Memory: the working copy of the reversed H (n^2 f64) and the scaled factor (n^2 f32):
// 12 n^2 bytes, 1.8 GB for n = 12288, on top of the caller's H (8 n^2).
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Dense>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../core/base.hpp"
#include "../codec/common.hpp"
#include "../codec/grid.hpp"
#include "../codec/registry.hpp"
#include "../codec/rows.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../io/ggml_types.hpp"
#include "../core/parallel.hpp"
#include "../simd/dispatch.hpp"

SBGQ_BEGIN_NAMESPACE

/// Options of gptq_quantize.
struct gptq_options {
  double damp = 0.01;             ///< lambda: lambda * mean(diag H) added to diag H
  std::size_t lazy_block = 256;   ///< columns per lazy batch update (rounded up to a multiple of the format's block)
  bool refit_scales = true;       ///< closed-form scale refit after rounding, kept per block only if it lowers the objective
  int n_threads = 0;              ///< <= 0: all hardware threads; bytes identical for any count
  bool compute_objectives = true; ///< fill objective_plain / objective (costs two rows x cols^2 / 2 products)
  /// The plain codec's bytes for the same weights and importance (quantize_rows), when the
  /// caller already has them: objective_plain is computed from them instead of rounding
  /// again. Ignored unless compute_objectives and of the output's size.
  std::span<const std::byte> plain_bytes;
};

/// What gptq_quantize did. Objectives use the undampened H.
struct gptq_stats {
  double objective_plain = 0;   ///< tr(dW H dW^T) of the plain codec (quantize_rows with the same importance)
  double objective = 0;         ///< the same for the returned bytes
  int damp_retries = 0;         ///< Cholesky failures answered by a 10x larger dampening
  std::size_t dead_columns = 0; ///< columns with H_ii == 0 (their weights are irrelevant and set to 0)
  double seconds = 0;           ///< wall time of the call
};

/// True for the formats gptq_quantize writes: Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS.
constexpr bool gptq_supported(ggml_type t) noexcept { return detail::codec::grid_supported(t); }

namespace detail::gptq {

using matf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Rows per task: fixed, so the Eigen products (and the bytes) do not depend on n_threads.
inline constexpr std::size_t chunk_rows = 128;

inline error gptq_error(error_code c, std::string text) { return error(c, "gptq", std::move(text)); }

/// The dampened factor: Hd = R R^T, R upper. `rs` = R_ij / R_jj (f32, column-major, upper
/// part used); per quantization block the f32 row-major copy of its diagonal block of rs
/// (the in-block updates) and the f64 diagonal block of R itself (the refit objective).
struct factor {
  Eigen::MatrixXf rs;
  std::vector<matf> rs_blk;
  std::vector<matd> r_blk;
  std::vector<char> dead;
  std::size_t n_dead = 0;
  int retries = 0;
};

/// In-place lower Cholesky a = L L^T (only the lower triangle is read and written; the
/// strict upper part of diagonal tiles is scratch). Right-looking blocked algorithm with
/// panels of 256 columns: factor the diagonal block (Eigen LLT), solve the panel below
/// it, update the trailing lower triangle, the last two steps split into fixed tiles run
/// by parallel_for, so the result does not depend on n_threads. n^3/3 multiply-adds,
/// almost all in the tile products. Returns false when a pivot is not positive.
inline bool cholesky_lower(Eigen::MatrixXd& a, int n_threads) {
  const Eigen::Index n = a.rows();
  constexpr Eigen::Index nb = 256;
  for (Eigen::Index k0 = 0; k0 < n; k0 += nb) {
    const Eigen::Index kb = std::min(nb, n - k0), k1 = k0 + kb;
    Eigen::Ref<Eigen::MatrixXd> akk = a.block(k0, k0, kb, kb);
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>, Eigen::Lower> llt(akk);
    if (llt.info() != Eigen::Success) return false;
    if (k1 == n) break;
    const Eigen::Index m = n - k1;
    const std::size_t tiles = static_cast<std::size_t>((m + nb - 1) / nb);
    // Panel: P = A[k1:, k0:k1] L_kk^-T, i.e. solve X L_kk^T = A for X, tile by tile.
    parallel_for(tiles, 1, n_threads, [&](std::size_t t0, std::size_t t1) {
      for (std::size_t t = t0; t < t1; ++t) {
        const Eigen::Index r0 = k1 + static_cast<Eigen::Index>(t) * nb, rc = std::min(nb, n - r0);
        auto blk = a.block(r0, k0, rc, kb);
        a.block(k0, k0, kb, kb).triangularView<Eigen::Lower>().transpose().solveInPlace<Eigen::OnTheRight>(blk);
      }
    });
    // Trailing update of the lower triangle: A[c0:, c0:c1] -= P[c0:] P[c0:c1]^T per
    // column tile [c0, c1).
    parallel_for(tiles, 1, n_threads, [&](std::size_t t0, std::size_t t1) {
      for (std::size_t t = t0; t < t1; ++t) {
        const Eigen::Index c0 = k1 + static_cast<Eigen::Index>(t) * nb, cc = std::min(nb, n - c0);
        a.block(c0, c0, n - c0, cc).noalias() -=
            a.block(c0, k0, n - c0, kb) * a.block(c0, k0, cc, kb).transpose();
      }
    });
  }
  return true;
}

inline result<factor> make_factor(const Eigen::MatrixXd& h, std::size_t bv, double damp, bool need_r_blocks,
                                  int n_threads) {
  const auto n = static_cast<Eigen::Index>(h.rows());
  factor f;
  f.dead.assign(static_cast<std::size_t>(n), 0);
  double diag_sum = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    if (h(i, i) == 0.0) {
      f.dead[static_cast<std::size_t>(i)] = 1;
      ++f.n_dead;
      diag_sum += 1.0;  // GPTQ: H_ii = 1 for a dead column, before the mean
    } else {
      diag_sum += h(i, i);
    }
  }
  const double mean_diag = n > 0 ? diag_sum / static_cast<double>(n) : 1.0;
  double mu = damp * mean_diag;
  Eigen::MatrixXd a(n, n);
  constexpr int max_retries = 12;
  for (;;) {
    // Lower triangle of J Hd J: a(p, q) = Hd(n-1-p, n-1-q) = Hd(n-1-q, n-1-p), p >= q.
    // Dead rows/columns: 0 off the diagonal, 1 on it.
    parallel_for(static_cast<std::size_t>(n), 64, n_threads, [&](std::size_t q0, std::size_t q1) {
      for (auto q = static_cast<Eigen::Index>(q0); q < static_cast<Eigen::Index>(q1); ++q) {
        const Eigen::Index jq = n - 1 - q;
        const bool dq = f.dead[static_cast<std::size_t>(jq)] != 0;
        for (Eigen::Index p = q; p < n; ++p) {
          const Eigen::Index ip = n - 1 - p;
          const bool dp = f.dead[static_cast<std::size_t>(ip)] != 0;
          double v = (dq || dp) ? 0.0 : h(jq, ip);  // jq >= ip: H's lower triangle
          if (p == q) v = (dq ? 1.0 : v) + mu;
          a(p, q) = v;
        }
      }
    });
    bool ok = cholesky_lower(a, n_threads);
    if (ok)
      for (Eigen::Index i = 0; i < n; ++i)
        if (!(a(i, i) > 0.0) || !std::isfinite(a(i, i))) ok = false;
    if (ok) break;
    if (++f.retries > max_retries)
      return gptq_error(error_code::bad_value, "H + mu*I is not positive definite even with mu = " +
                                                   std::to_string(mu) + " after " + std::to_string(max_retries) +
                                                   " dampening retries (is H symmetric positive semidefinite?)");
    mu = mu > 0 ? mu * 10.0 : 1e-6 * mean_diag;
  }
  // R_ij = a(n-1-i, n-1-j) for i <= j: column j of R is column q = n-1-j of a, reversed.
  f.rs.resize(n, n);
  parallel_for(static_cast<std::size_t>(n), 64, n_threads, [&](std::size_t j0, std::size_t j1) {
    for (auto j = static_cast<Eigen::Index>(j0); j < static_cast<Eigen::Index>(j1); ++j) {
      const Eigen::Index q = n - 1 - j;
      const double rjj = a(q, q);
      for (Eigen::Index i = 0; i <= j; ++i) f.rs(i, j) = static_cast<float>(a(n - 1 - i, q) / rjj);
      for (Eigen::Index i = j + 1; i < n; ++i) f.rs(i, j) = 0.0f;
    }
  });
  const std::size_t nb = static_cast<std::size_t>(n) / bv;
  const auto b = static_cast<Eigen::Index>(bv);
  f.rs_blk.resize(nb);
  if (need_r_blocks) f.r_blk.resize(nb);
  for (std::size_t k = 0; k < nb; ++k) {
    const auto b0 = static_cast<Eigen::Index>(k * bv);
    f.rs_blk[k] = f.rs.block(b0, b0, b, b);
    if (need_r_blocks) {
      matd r(b, b);
      for (Eigen::Index i = 0; i < b; ++i)
        for (Eigen::Index j = 0; j < b; ++j) r(i, j) = j >= i ? a(n - 1 - (b0 + i), n - 1 - (b0 + j)) : 0.0;
      f.r_blk[k] = std::move(r);
    }
  }
  return f;
}

/// Refit of one row-block: closed-form least squares of the fp16 super-scale(s) for the
/// chosen codes under the exact block objective, kept only if it is lower.
///
/// The block's part of the objective is ||e||^2 with e_j = R_jj (x_j - v_j) (x_j: the
/// error-updated weight when column j was rounded, v_j its value; the file comment).
/// Values are v = D a - M b (grid_basis), and e is linear in v with matrix R_BB:
///   e(D + dD, M + dM) = e - dD (a R_BB) + dM (b R_BB),
/// so two triangular products give the whole quadratic. The new super-scales are rounded
/// to fp16 before the comparison; the prediction ignores only the f32 rounding of the
/// decoded values (relative 1e-7). x, v: the block's b values; updates g and v.
inline void refit_block(codec::fixed_grid& g, const matd& r, const float* x, const std::uint8_t* L, float* v) {
  const int b = g.values;
  const bool two = codec::grid_n_super(g.type) == 2;
  double e[256], ra[256], rb[256];
  for (int j = 0; j < b; ++j) {
    e[j] = r(j, j) * (static_cast<double>(x[j]) - static_cast<double>(v[j]));
    ra[j] = 0.0;
    rb[j] = 0.0;
  }
  // ra = a R_BB, rb = b R_BB, row by row (contiguous rows of the upper triangle).
  for (int i = 0; i < b; ++i) {
    double ai = 0.0, bi = 0.0;
    codec::grid_basis(g, i, L[i], ai, bi);
    const double* ri = r.data() + static_cast<Eigen::Index>(i) * b;
    if (ai != 0.0)
      for (int j = i; j < b; ++j) ra[j] += ai * ri[j];
    if (two && bi != 0.0)
      for (int j = i; j < b; ++j) rb[j] += bi * ri[j];
  }
  double saa = 0, sab = 0, sbb = 0, sea = 0, seb = 0, see = 0;
  for (int j = 0; j < b; ++j) {
    saa += ra[j] * ra[j];
    sab += ra[j] * rb[j];
    sbb += rb[j] * rb[j];
    sea += e[j] * ra[j];
    seb += e[j] * rb[j];
    see += e[j] * e[j];
  }
  if (!(saa > 0)) return;
  // ||e - dD ra + dM rb||^2 = see - 2 dD sea + 2 dM seb + dD^2 saa - 2 dD dM sab + dM^2 sbb
  double dD = sea / saa, dM = 0.0;
  if (two) {
    const double det = saa * sbb - sab * sab;
    if (sbb > 0 && det > 1e-12 * saa * sbb) {
      dD = (sea * sbb - seb * sab) / det;
      dM = (sea * sab - seb * saa) / det;
    }
  }
  const double D0 = to_f32(g.d), M0 = two ? to_f32(g.dmin) : 0.0;
  const double D = D0 + dD, M = M0 + dM;
  if (!std::isfinite(D) || !std::isfinite(M) || std::fabs(D) > 65504.0 || std::fabs(M) > 65504.0) return;
  const f16 dn = to_f16(static_cast<float>(D)), mn = two ? to_f16(static_cast<float>(M)) : g.dmin;
  const double qD = static_cast<double>(to_f32(dn)) - D0, qM = two ? static_cast<double>(to_f32(mn)) - M0 : 0.0;
  const double predicted = see - 2 * qD * sea + 2 * qM * seb + qD * qD * saa - 2 * qD * qM * sab + qM * qM * sbb;
  if (!(predicted < see)) return;
  codec::grid_set_super(g, dn, mn);
  for (int j = 0; j < b; ++j) v[j] = codec::grid_value(g, j, L[j]);
}

/// tr(dW H dW^T) for rows [r0, r1) given the decoded rows: sum_i H_ii dw_i^2 +
/// 2 sum_{i>j} dw_i H_ij dw_j (lower triangle only), in f64.
inline double objective_chunk(const float* deq, const float* w, std::size_t r0, std::size_t r1, std::size_t cols,
                              const Eigen::MatrixXd& h) {
  const auto cr = static_cast<Eigen::Index>(r1 - r0), n = static_cast<Eigen::Index>(cols);
  matd dw(cr, n);
  for (Eigen::Index r = 0; r < cr; ++r)
    for (Eigen::Index j = 0; j < n; ++j) {
      const std::size_t k = (r0 + static_cast<std::size_t>(r)) * cols + static_cast<std::size_t>(j);
      dw(r, j) = static_cast<double>(deq[k - r0 * cols]) - static_cast<double>(w[k]);
    }
  matd p = dw * h.triangularView<Eigen::StrictlyLower>();
  double s = 0.0;
  for (Eigen::Index r = 0; r < cr; ++r) {
    double sr = 0.0;
    for (Eigen::Index j = 0; j < n; ++j) sr += dw(r, j) * (h(j, j) * dw(r, j) + 2.0 * p(r, j));
    s += sr;
  }
  return s;
}

inline result<void> check_h(const Eigen::MatrixXd& h, std::size_t cols) {
  if (static_cast<std::size_t>(h.rows()) != cols || static_cast<std::size_t>(h.cols()) != cols)
    return gptq_error(error_code::size_mismatch, "H is " + std::to_string(h.rows()) + " x " + std::to_string(h.cols()) +
                                                     ", expected cols x cols = " + std::to_string(cols) + " x " +
                                                     std::to_string(cols));
  for (Eigen::Index j = 0; j < h.cols(); ++j)
    for (Eigen::Index i = 0; i < h.rows(); ++i)
      if (!std::isfinite(h(i, j)))
        return gptq_error(error_code::not_finite, "H(" + std::to_string(i) + ", " + std::to_string(j) + ") is " +
                                                      (std::isnan(h(i, j)) ? "nan" : "inf"));
  for (Eigen::Index i = 0; i < h.rows(); ++i)
    if (h(i, i) < 0.0)
      return gptq_error(error_code::bad_value, "H(" + std::to_string(i) + ", " + std::to_string(i) + ") = " +
                                                   std::to_string(h(i, i)) + " is negative (H must be X^T X)");
  return {};
}

/// First non-finite weight (lowest row), as the codecs report it.
inline result<void> check_w(ggml_type type, const float* w, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    auto ok = codec::check_finite(type_name(type), std::span<const float>(w + r * cols, cols), r, "the weights");
    if (!ok.has_value()) return gptq_error(ok.error().code, ok.error().context);
  }
  return {};
}

/// quantization_objective on n_threads threads (the per-chunk sums are added in chunk
/// order, so the value does not depend on the count).
inline result<double> objective_impl(ggml_type type, std::span<const std::byte> q, const float* w, std::size_t rows,
                                     std::size_t cols, const Eigen::MatrixXd& h, int n_threads) {
  SBGQ_TRY(const codec_traits* c, detail::codec::check_rows(type, rows, cols, rows * cols, q.size(),
                                                             "the weights", "the quantized data"));
  if (static_cast<std::size_t>(h.rows()) != cols || static_cast<std::size_t>(h.cols()) != cols)
    return detail::gptq::gptq_error(error_code::size_mismatch, "H is " + std::to_string(h.rows()) + " x " +
                                                                   std::to_string(h.cols()) + ", expected " +
                                                                   std::to_string(cols) + " x " + std::to_string(cols));
  if (rows == 0 || cols == 0) return 0.0;
  if (w == nullptr) return detail::gptq::gptq_error(error_code::invalid_argument, "null weights");
  const std::size_t cr = detail::gptq::chunk_rows, nchunks = (rows + cr - 1) / cr;
  std::vector<double> part(nchunks, 0.0);
  const simd_level level = active_simd_level();
  const std::size_t rb = c->row_bytes(cols);
  parallel_for(nchunks, 1, n_threads, [&](std::size_t k0, std::size_t k1) {
    std::vector<float> deq;
    for (std::size_t k = k0; k < k1; ++k) {
      const std::size_t r0 = k * cr, r1 = std::min(rows, r0 + cr);
      deq.resize((r1 - r0) * cols);
      for (std::size_t r = r0; r < r1; ++r) c->dequantize_row(level, q.data() + r * rb, deq.data() + (r - r0) * cols, cols);
      part[k] = detail::gptq::objective_chunk(deq.data(), w, r0, r1, cols, h);
    }
  });
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}
}  // namespace detail::gptq

/// tr(dW H dW^T) with dW = dequant(q) - W, in f64 (H: cols x cols, symmetric; only its
/// lower triangle is read, as by gptq_quantize). q: rows * row_size(type, cols) bytes of any
/// codec sbgq has. Errors: unsupported, size_mismatch, overflow. Thread-safe.
/// Cost: rows * cols^2 / 2 multiply-adds (Eigen), on all hardware threads.
inline result<double> quantization_objective(ggml_type type, std::span<const std::byte> q, const float* w,
                                             std::size_t rows, std::size_t cols, const Eigen::MatrixXd& h) {
  return detail::gptq::objective_impl(type, q, w, rows, cols, h, 0);
}

/// Quantizes W (rows x cols, row-major f32; rows = output channels, blocks along cols)
/// into `type` with error-compensating rounding under H (cols x cols, symmetric PSD, any
/// positive scale, e.g. X^T X). Only H's lower triangle (diagonal included) is read, the
/// convention of Eigen's selfadjointView<Lower>::rankUpdate, which is how calibrate.hpp
/// accumulates X^T X (its upper triangle stays zero). `importance`: per-column weights for the
/// codec's scale search (empty: diag(H)). dst: rows * row_size(type, cols) bytes, the
/// layout sbgq::quantize_rows fills.
///
/// Formats: Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
/// Errors: unsupported (other types), size_mismatch (cols not a multiple of the block,
/// H or importance or dst of the wrong size), overflow, not_finite (W, H or importance),
/// bad_value (negative H_ii or importance, H not PSD after the dampening retries),
/// invalid_argument (bad options).
/// The bytes do not depend on n_threads. Thread-safe.
/// Cost: one Cholesky of n = cols (n^3/3), rows * n^2 / 2 multiply-adds of lazy updates,
/// plus two objective evaluations of the same order when compute_objectives is set.
inline result<gptq_stats> gptq_quantize(ggml_type type, const float* w, std::size_t rows, std::size_t cols,
                                        const Eigen::MatrixXd& h, std::span<const float> importance,
                                        std::span<std::byte> dst, const gptq_options& opt = {}) {
  using namespace detail::gptq;
  const auto t_start = std::chrono::steady_clock::now();
  if (!detail::codec::grid_supported(type))
    return gptq_error(error_code::unsupported,
                      std::string(type_name(type)) +
                          ": error-compensating rounding supports q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs");
  SBGQ_TRY(const codec_traits* c,
           detail::codec::check_rows(type, rows, cols, rows * cols, dst.size(), "the weights", "the output"));
  if (!(opt.damp >= 0.0) || !std::isfinite(opt.damp))
    return gptq_error(error_code::invalid_argument, "damp = " + std::to_string(opt.damp) + " must be finite and >= 0");
  if (opt.lazy_block == 0) return gptq_error(error_code::invalid_argument, "lazy_block must be positive");
  SBGQ_TRY_VOID(check_h(h, cols));
  if (!importance.empty()) {
    if (importance.size() != cols)
      return gptq_error(error_code::size_mismatch, "importance has " + std::to_string(importance.size()) +
                                                       " values, expected one per column (" + std::to_string(cols) + ")");
    for (std::size_t j = 0; j < cols; ++j)
      if (!std::isfinite(importance[j]) || importance[j] < 0.0f)
        return gptq_error(std::isfinite(importance[j]) ? error_code::bad_value : error_code::not_finite,
                          "importance[" + std::to_string(j) + "] = " + std::to_string(importance[j]) +
                              " (must be finite and >= 0)");
  }
  gptq_stats st;
  if (rows == 0 || cols == 0) return st;
  if (w == nullptr) return gptq_error(error_code::invalid_argument, "null weights");
  SBGQ_TRY_VOID(check_w(type, w, rows, cols));

  const std::size_t bv = c->block_values, rb = c->row_bytes(cols);
  const std::size_t lazy = (opt.lazy_block + bv - 1) / bv * bv;
  std::vector<float> qw(cols);
  for (std::size_t j = 0; j < cols; ++j)
    qw[j] = importance.empty() ? static_cast<float>(h(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(j)))
                               : importance[j];

  SBGQ_TRY(factor f, make_factor(h, bv, opt.damp, opt.refit_scales, opt.n_threads));
  st.damp_retries = f.retries;
  st.dead_columns = f.n_dead;

  const simd_level level = active_simd_level();
  const auto n = static_cast<Eigen::Index>(cols);
  const auto b = static_cast<int>(bv);
  const std::size_t nchunks = (rows + chunk_rows - 1) / chunk_rows;
  parallel_for(nchunks, 1, opt.n_threads, [&](std::size_t k0, std::size_t k1) {
    matf t, dm;
    std::vector<detail::codec::fixed_grid> grids(chunk_rows);
    std::vector<std::uint8_t> codes(chunk_rows * bv);
    std::vector<float> vals(chunk_rows * bv), start(chunk_rows * bv), wz(chunk_rows * cols);
    for (std::size_t k = k0; k < k1; ++k) {
      const std::size_t r0 = k * chunk_rows, r1 = std::min(rows, r0 + chunk_rows);
      const auto cr = static_cast<Eigen::Index>(r1 - r0);
      // Working weights: W with dead columns zeroed (GPTQ); wz keeps the unmodified ones.
      t.resize(cr, n);
      for (Eigen::Index r = 0; r < cr; ++r)
        for (Eigen::Index j = 0; j < n; ++j) {
          const float v = f.dead[static_cast<std::size_t>(j)] ? 0.0f : w[(r0 + static_cast<std::size_t>(r)) * cols +
                                                                          static_cast<std::size_t>(j)];
          t(r, j) = v;
          wz[static_cast<std::size_t>(r) * cols + static_cast<std::size_t>(j)] = v;
        }
      for (std::size_t a0 = 0; a0 < cols; a0 += lazy) {
        const std::size_t a1 = std::min(cols, a0 + lazy);
        dm.resize(cr, static_cast<Eigen::Index>(a1 - a0));
        for (std::size_t b0 = a0; b0 < a1; b0 += bv) {
          const std::size_t blk = b0 / bv;
          const matf& rsb = f.rs_blk[blk];
          for (Eigen::Index r = 0; r < cr; ++r) {
            const auto ru = static_cast<std::size_t>(r);
            float* x = t.data() + r * n + static_cast<Eigen::Index>(b0);
            const float* wr = wz.data() + ru * cols + b0;
            detail::codec::fixed_grid& g = grids[ru];
            std::uint8_t* L = codes.data() + ru * bv;
            float* val = vals.data() + ru * bv;
            // The codec's search on the current weights fixes the block's grid ...
            detail::codec::make_grid(type, level, x, qw.data() + b0, g);
            // ... then each column is rounded on it and its error pushed right.
            float* xs = start.data() + ru * bv;  // x_i when column i is rounded
            for (int i = 0; i < b; ++i) {
              xs[i] = x[i];
              const int l = detail::codec::grid_round(g, i, x[i]);
              L[i] = static_cast<std::uint8_t>(l);
              val[i] = detail::codec::grid_value(g, i, l);
              const float d = wr[i] - val[i];
              if (d != 0.0f) {
                const float* rrow = rsb.data() + static_cast<Eigen::Index>(i) * b;
                for (int j = i + 1; j < b; ++j) x[j] += d * rrow[j];
              }
            }
            if (opt.refit_scales)
              refit_block(g, f.r_blk[blk], xs, L, val);
            for (int i = 0; i < b; ++i) dm(r, static_cast<Eigen::Index>(b0 - a0) + i) = wr[i] - val[i];
            detail::codec::grid_store(g, L, dst.data() + (r0 + ru) * rb + blk * c->block_bytes);
          }
          // Block errors onto the rest of the lazy batch.
          const std::size_t b1 = b0 + bv;
          if (b1 < a1)
            t.block(0, static_cast<Eigen::Index>(b1), cr, static_cast<Eigen::Index>(a1 - b1)).noalias() +=
                dm.block(0, static_cast<Eigen::Index>(b0 - a0), cr, b) *
                f.rs.block(static_cast<Eigen::Index>(b0), static_cast<Eigen::Index>(b1), b,
                           static_cast<Eigen::Index>(a1 - b1));
        }
        // Batch errors onto every later column (the lazy update, one GEMM).
        if (a1 < cols)
          t.block(0, static_cast<Eigen::Index>(a1), cr, n - static_cast<Eigen::Index>(a1)).noalias() +=
              dm * f.rs.block(static_cast<Eigen::Index>(a0), static_cast<Eigen::Index>(a1),
                              static_cast<Eigen::Index>(a1 - a0), n - static_cast<Eigen::Index>(a1));
      }
    }
  });
  f = factor{};  // release before the objectives

  if (opt.compute_objectives) {
    std::vector<std::byte> own;
    std::span<const std::byte> plain = opt.plain_bytes;
    if (plain.size() != dst.size()) {
      own.resize(dst.size());
      SBGQ_TRY_VOID(quantize_rows(type, w, rows, cols, qw.data(), own, opt.n_threads));
      plain = own;
    }
    SBGQ_TRY(st.objective_plain, objective_impl(type, plain, w, rows, cols, h, opt.n_threads));
    SBGQ_TRY(st.objective, objective_impl(type, dst, w, rows, cols, h, opt.n_threads));
  }
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return st;
}

SBGQ_END_NAMESPACE
