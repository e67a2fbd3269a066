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
//   - Deterministic for any thread count and SIMD level: rows are processed in chunks of
//     256 rows, every row on its own, and all products are linalg/gemm.hpp's, whose bits
//     depend neither on tiling, threads nor level.
//   - f32 for H, the factor and the lazy updates (as GPTQ's reference implementation);
//     f64 inside the factor's 256 x 256 diagonal blocks (linalg/cholesky.hpp), for the
//     dampening, the objectives' sums and the refit.
// Non-goals: IQ3_S/IQ2_S grids.
//
// Memory: the factor, formed in place in one n^2 f32 matrix (0.6 GB for n = 12288, the
// 9B's ffn_down input), on top of the caller's f32 H (the same size).
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
#include <optional>
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
#include "../linalg/cholesky.hpp"
#include "../linalg/gemm.hpp"

SBGQ_BEGIN_NAMESPACE

class gptq_factor_cache;

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
  /// Row blocks of one matrix under one H: H is factored once (see gptq_factor_cache).
  gptq_factor_cache* factor_cache = nullptr;
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

/// Rows per task (any value gives the same bytes: rows are independent). 256 divides the
/// 9B's row counts into an even number of chunks (288, a multiple of the product's row
/// block, ran 15% slower on 2 threads: 4096 rows made 15 chunks).
inline constexpr std::size_t chunk_rows = 256;

inline error gptq_error(error_code c, std::string text) { return error(c, "gptq", std::move(text)); }

/// The dampened factor: Hd = R R^T, R upper. `rs` holds R_ij / R_jj transposed (element
/// (j, i), f32, column-major, so row i of R / R_jj is contiguous; strict upper part
/// zero); per quantization block the f32 row-major copy of its diagonal block of
/// R / R_jj (the in-block updates) and of R itself (the refit's products).
struct factor {
  Eigen::MatrixXf rs;
  std::vector<matf> rs_blk;
  std::vector<matf> r_blk;
  std::vector<char> dead;
  std::size_t n_dead = 0;
  int retries = 0;
};

inline result<factor> make_factor(const Eigen::MatrixXf& h, std::size_t bv, double damp, bool need_r_blocks,
                                  int n_threads, simd_level level) {
  const auto n = static_cast<Eigen::Index>(h.rows());
  factor f;
  f.dead.assign(static_cast<std::size_t>(n), 0);
  double diag_sum = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    if (h(i, i) == 0.0f) {
      f.dead[static_cast<std::size_t>(i)] = 1;
      ++f.n_dead;
      diag_sum += 1.0;  // GPTQ: H_ii = 1 for a dead column, before the mean
    } else {
      diag_sum += h(i, i);
    }
  }
  const double mean_diag = n > 0 ? diag_sum / static_cast<double>(n) : 1.0;
  double mu = damp * mean_diag;
  Eigen::MatrixXf& a = f.rs;  // factored, then turned into rs, in place
  a.resize(n, n);
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
          float v = (dq || dp) ? 0.0f : h(jq, ip);  // jq >= ip: H's lower triangle
          if (p == q) v = static_cast<float>(static_cast<double>(dq ? 1.0f : v) + mu);
          a(p, q) = v;
        }
      }
    });
    bool ok = cholesky_lower(a, n_threads, level);
    if (ok)
      for (Eigen::Index i = 0; i < n; ++i)
        if (!(a(i, i) > 0.0f) || !std::isfinite(a(i, i))) ok = false;
    if (ok) break;
    if (++f.retries > max_retries)
      return gptq_error(error_code::bad_value, "H + mu*I is not positive definite even with mu = " +
                                                   std::to_string(mu) + " after " + std::to_string(max_retries) +
                                                   " dampening retries (is H symmetric positive semidefinite?)");
    mu = mu > 0 ? mu * 10.0 : 1e-6 * mean_diag;
  }
  // R = J L J (upper): R_ij = L(n-1-i, n-1-j) for i <= j. Stored transposed, so that
  // the rows of R the lazy updates read are contiguous: rs_t(j, i) = R_ij / R_jj, i.e.
  // L(p, q) moves to (n-1-q, n-1-p) -- a reflection across the anti-diagonal that keeps
  // the lower triangle (pairs with p + q < n-1 swap with their mirror; each pair belongs
  // to the column q of its first member, so threads touch disjoint elements) -- then row
  // j is divided by R_jj and the strict upper triangle cleared.
  parallel_for(static_cast<std::size_t>(n), 64, n_threads, [&](std::size_t q0, std::size_t q1) {
    for (auto q = static_cast<Eigen::Index>(q0); q < static_cast<Eigen::Index>(q1); ++q)
      for (Eigen::Index p = q; p + q < n - 1; ++p) std::swap(a(p, q), a(n - 1 - q, n - 1 - p));
  });
  std::vector<float> rdiag(static_cast<std::size_t>(n));
  for (Eigen::Index j = 0; j < n; ++j) rdiag[static_cast<std::size_t>(j)] = a(j, j);
  parallel_for(static_cast<std::size_t>(n), 64, n_threads, [&](std::size_t i0, std::size_t i1) {
    for (auto i = static_cast<Eigen::Index>(i0); i < static_cast<Eigen::Index>(i1); ++i) {
      for (Eigen::Index j = 0; j < i; ++j) a(j, i) = 0.0f;
      for (Eigen::Index j = i; j < n; ++j) a(j, i) /= rdiag[static_cast<std::size_t>(j)];
    }
  });
  const std::size_t nb = static_cast<std::size_t>(n) / bv;
  const auto b = static_cast<Eigen::Index>(bv);
  f.rs_blk.resize(nb);
  if (need_r_blocks) f.r_blk.resize(nb);
  for (std::size_t k = 0; k < nb; ++k) {
    const auto b0 = static_cast<Eigen::Index>(k * bv);
    f.rs_blk[k] = f.rs.block(b0, b0, b, b).transpose();
    if (need_r_blocks) {
      matf r(b, b);
      for (Eigen::Index i = 0; i < b; ++i)
        for (Eigen::Index j = 0; j < b; ++j)
          r(i, j) = j >= i ? static_cast<float>(static_cast<double>(a(b0 + j, b0 + i)) *
                                                  static_cast<double>(rdiag[static_cast<std::size_t>(b0 + j)]))
                           : 0.0f;
      f.r_blk[k] = std::move(r);
    }
  }
  return f;
}

/// Refit of the row-blocks of a chunk: closed-form least squares of each block's fp16
/// super-scale(s) for its chosen codes under the exact block objective, kept per block
/// only if it is lower.
///
/// A block's part of the objective is ||e||^2 with e_j = R_jj (x_j - v_j) (x_j: the
/// error-updated weight when column j was rounded, v_j its value; the file comment).
/// Values are v = D a - M b (grid_basis), and e is linear in v with matrix R_BB:
///   e(D + dD, M + dM) = e - dD (a R_BB) + dM (b R_BB),
/// so two triangular products give the whole quadratic; for all rows of the chunk at once
/// they are two products (cr x b) (b x b) by gemm (f32; the coefficients a, b are small
/// integers, exact in f32), the rest per row in f64. The new super-scales are rounded to
/// fp16 before the comparison; the prediction ignores only the f32 rounding of the decoded
/// values and of R_BB a. grids/x/L/v: cr rows of b values; updates grids and v.
struct refit_scratch {
  std::vector<float> ca, cb, ra, rb;
};
inline void refit_rows(simd_level level, codec::fixed_grid* grids, std::size_t cr, const matf& r, const float* x,
                       const std::uint8_t* L, float* v, refit_scratch& s) {
  if (cr == 0) return;
  const int b = grids[0].values;
  const auto bu = static_cast<std::size_t>(b);
  const bool two = codec::grid_n_super(grids[0].type) == 2;
  s.ca.assign(cr * bu, 0.0f);
  s.cb.assign(two ? cr * bu : 0, 0.0f);
  for (std::size_t row = 0; row < cr; ++row)
    for (int i = 0; i < b; ++i) {
      double ai = 0.0, bi = 0.0;
      codec::grid_basis(grids[row], i, L[row * bu + static_cast<std::size_t>(i)], ai, bi);
      s.ca[row * bu + static_cast<std::size_t>(i)] = static_cast<float>(ai);
      if (two) s.cb[row * bu + static_cast<std::size_t>(i)] = static_cast<float>(bi);
    }
  s.ra.resize(cr * bu);
  s.rb.assign(cr * bu, 0.0f);
  const auto lb = static_cast<std::ptrdiff_t>(b);
  gemm(level, cr, bu, bu, 1.0f, {s.ca.data(), lb, 1}, {r.data(), lb, 1}, 0.0f, {s.ra.data(), lb, 1});
  if (two) gemm(level, cr, bu, bu, 1.0f, {s.cb.data(), lb, 1}, {r.data(), lb, 1}, 0.0f, {s.rb.data(), lb, 1});
  for (std::size_t row = 0; row < cr; ++row) {
    codec::fixed_grid& g = grids[row];
    const float* xr = x + row * bu;
    const std::uint8_t* Lr = L + row * bu;
    float* vr = v + row * bu;
    const float* ra = s.ra.data() + row * bu;
    const float* rb = s.rb.data() + row * bu;
    double saa = 0, sab = 0, sbb = 0, sea = 0, seb = 0, see = 0;
    for (int j = 0; j < b; ++j) {
      const double e = static_cast<double>(r(j, j)) * (static_cast<double>(xr[j]) - static_cast<double>(vr[j]));
      const double a = ra[j], c = rb[j];
      saa += a * a;
      sab += a * c;
      sbb += c * c;
      sea += e * a;
      seb += e * c;
      see += e * e;
    }
    if (!(saa > 0)) continue;
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
    if (!std::isfinite(D) || !std::isfinite(M) || std::fabs(D) > 65504.0 || std::fabs(M) > 65504.0) continue;
    const f16 dn = to_f16(static_cast<float>(D)), mn = two ? to_f16(static_cast<float>(M)) : g.dmin;
    const double qD = static_cast<double>(to_f32(dn)) - D0, qM = two ? static_cast<double>(to_f32(mn)) - M0 : 0.0;
    const double predicted = see - 2 * qD * sea + 2 * qM * seb + qD * qD * saa - 2 * qD * qM * sab + qM * qM * sbb;
    if (!(predicted < see)) continue;
    codec::grid_set_super(g, dn, mn);
    for (int j = 0; j < b; ++j) vr[j] = codec::grid_value(g, j, Lr[j]);
  }
}

/// tr(dW H dW^T) for rows [r0, r1) given the decoded rows: sum_i H_ii dw_i^2 +
/// 2 sum_{i>j} dw_i H_ij dw_j (lower triangle only). Q = dW * strict_lower(H) by gemm in
/// column tiles of 256 (f32), the final sum in f64.
inline double objective_chunk(const float* deq, const float* w, std::size_t r0, std::size_t r1, std::size_t cols,
                              const Eigen::MatrixXf& h, simd_level level) {
  const std::size_t cr = r1 - r0, n = cols;
  constexpr std::size_t tw = 256;
  std::vector<float> dw(cr * n), q(cr * n), sl(tw * tw);
  for (std::size_t k = 0; k < cr * n; ++k) dw[k] = deq[k] - w[r0 * cols + k];
  const auto ln = static_cast<std::ptrdiff_t>(n), lh = static_cast<std::ptrdiff_t>(h.rows());
  for (std::size_t c0 = 0; c0 < n; c0 += tw) {
    const std::size_t c1 = std::min(n, c0 + tw), w0 = c1 - c0;
    const auto o0 = static_cast<std::ptrdiff_t>(c0), o1 = static_cast<std::ptrdiff_t>(c1);
    // Q[:, c0:c1] = dW[:, c1:] H[c1:, c0:c1] + dW[:, c0:c1] strict_lower(H[c0:c1, c0:c1]).
    gemm(level, cr, w0, n - c1, 1.0f, {dw.data() + o1, ln, 1}, {h.data() + o1 + o0 * lh, 1, lh}, 0.0f,
         {q.data() + o0, ln, 1});
    for (std::size_t i = 0; i < w0; ++i)
      for (std::size_t j = 0; j < w0; ++j)
        sl[i * w0 + j] = i > j ? h(static_cast<Eigen::Index>(c0 + i), static_cast<Eigen::Index>(c0 + j)) : 0.0f;
    gemm(level, cr, w0, w0, 1.0f, {dw.data() + o0, ln, 1}, {sl.data(), static_cast<std::ptrdiff_t>(w0), 1}, 1.0f,
         {q.data() + o0, ln, 1});
  }
  double s = 0.0;
  for (std::size_t r = 0; r < cr; ++r) {
    double sr = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      const double d = dw[r * n + j];
      sr += d * (static_cast<double>(h(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(j))) * d +
                 2.0 * static_cast<double>(q[r * n + j]));
    }
    s += sr;
  }
  return s;
}

inline result<void> check_h(const Eigen::MatrixXf& h, std::size_t cols) {
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
                                     std::size_t cols, const Eigen::MatrixXf& h, int n_threads) {
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
      part[k] = detail::gptq::objective_chunk(deq.data(), w, r0, r1, cols, h, level);
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
/// Cost: rows * cols^2 / 2 multiply-adds (linalg/gemm.hpp), on all hardware threads.
inline result<double> quantization_objective(ggml_type type, std::span<const std::byte> q, const float* w,
                                             std::size_t rows, std::size_t cols, const Eigen::MatrixXf& h) {
  return detail::gptq::objective_impl(type, q, w, rows, cols, h, 0);
}

/// Quantizes W (rows x cols, row-major f32; rows = output channels, blocks along cols)
/// into `type` with error-compensating rounding under H (cols x cols, f32, symmetric PSD,
/// any positive scale, e.g. X^T X). Only H's lower triangle (diagonal included) is read,
/// the part syrk_lower (linalg/gemm.hpp) accumulates for the calibration. `importance`: per-column weights for the
/// codec's scale search (empty: diag(H)). dst: rows * row_size(type, cols) bytes, the
/// layout sbgq::quantize_rows fills.
///
/// Formats: Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
/// Errors: unsupported (other types), size_mismatch (cols not a multiple of the block,
/// H or importance or dst of the wrong size), overflow, not_finite (W, H or importance),
/// bad_value (negative H_ii or importance, H not PSD after the dampening retries),
/// invalid_argument (bad options).
/// The bytes do not depend on n_threads or the SIMD level. Thread-safe.
/// Cost: one Cholesky of n = cols (n^3/6 multiply-adds), rows * n^2 / 2 of lazy updates,
/// plus two objective evaluations of the same order when compute_objectives is set.
/// H's dampened factor kept across the gptq_quantize calls that round the row blocks of one
/// matrix under one H (rows are independent under gptq, so a tensor too large for memory
/// is rounded block by block, and each call would factor the same H again). The first call
/// fills it; later calls with the same H object, format block size and options reuse it.
/// One cache per matrix; H must stay alive and unchanged while the cache is in use.
class gptq_factor_cache {
 public:
  const detail::gptq::factor* find(const Eigen::MatrixXf* h, std::size_t bv, double damp, bool refit) const {
    return f_ && h == h_ && bv == bv_ && damp == damp_ && refit == refit_ ? &*f_ : nullptr;
  }
  const detail::gptq::factor& keep(const Eigen::MatrixXf* h, std::size_t bv, double damp, bool refit,
                                   detail::gptq::factor f) {
    h_ = h;
    bv_ = bv;
    damp_ = damp;
    refit_ = refit;
    f_ = std::move(f);
    return *f_;
  }

 private:
  const Eigen::MatrixXf* h_ = nullptr;
  std::size_t bv_ = 0;
  double damp_ = 0;
  bool refit_ = false;
  std::optional<detail::gptq::factor> f_;
};

inline result<gptq_stats> gptq_quantize(ggml_type type, const float* w, std::size_t rows, std::size_t cols,
                                        const Eigen::MatrixXf& h, std::span<const float> importance,
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

  const factor* cached = opt.factor_cache ? opt.factor_cache->find(&h, bv, opt.damp, opt.refit_scales) : nullptr;
  factor made;
  if (!cached) {
    SBGQ_TRY(made, make_factor(h, bv, opt.damp, opt.refit_scales, opt.n_threads, active_simd_level()));
    if (opt.factor_cache) cached = &opt.factor_cache->keep(&h, bv, opt.damp, opt.refit_scales, std::move(made));
  }
  const factor& f = cached ? *cached : made;
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
    refit_scratch refit;
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
          }
          if (opt.refit_scales)
            refit_rows(level, grids.data(), static_cast<std::size_t>(cr), f.r_blk[blk], start.data(), codes.data(),
                       vals.data(), refit);
          for (Eigen::Index r = 0; r < cr; ++r) {
            const auto ru = static_cast<std::size_t>(r);
            const float* wr = wz.data() + ru * cols + b0;
            const float* val = vals.data() + ru * bv;
            for (int i = 0; i < b; ++i) dm(r, static_cast<Eigen::Index>(b0 - a0) + i) = wr[i] - val[i];
            detail::codec::grid_store(grids[ru], codes.data() + ru * bv, dst.data() + (r0 + ru) * rb + blk * c->block_bytes);
          }
          // Block errors onto the rest of the lazy batch.
          const std::size_t b1 = b0 + bv;
          if (b1 < a1)
            gemm(level, r1 - r0, a1 - b1, bv, 1.0f, {dm.data() + (b0 - a0), dm.cols(), 1},
                 {f.rs.data() + static_cast<std::ptrdiff_t>(b1) + static_cast<std::ptrdiff_t>(b0) * n, n, 1}, 1.0f,
                 {t.data() + b1, n, 1});
        }
        // Batch errors onto every later column (the lazy update, one product).
        if (a1 < cols)
          gemm(level, r1 - r0, cols - a1, a1 - a0, 1.0f, {dm.data(), dm.cols(), 1},
               {f.rs.data() + static_cast<std::ptrdiff_t>(a1) + static_cast<std::ptrdiff_t>(a0) * n, n, 1}, 1.0f,
               {t.data() + a1, n, 1});
      }
    }
  });
  made = factor{};  // release before the objectives (a cached factor stays for the next block)

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
