// Residual-stream rotation (QuaRot / SpinQuant "R1") of a Qwen3.5 model, with the RMSNorm
// gains folded into the layers that read them (spec/qwen35-model.md section 4.d).
//
// Convention: activations are row vectors, weights are [out][in] (y = x W^T). An orthogonal
// Q (d x d) rotates the residual stream x -> x Q. In real arithmetic the model computes the
// same logits after
//   readers   W <- W diag(g) Q     (g: the gain of the RMSNorm in front of W; the gain is
//                                  then set to 1, i.e. GGUF 1.0 / HF offset 0)
//   writers   W <- Q^T W           (attn_output, ssm_out, ffn_down)
//   embedding E <- E Q             (every token row)
//   LM head   H <- H diag(g_f) Q   (g_f = output_norm; a tied head gets its own copy)
// because the weightless part of RMSNorm commutes with Q (||x Q|| = ||x||, the mean runs
// over all d channels and eps is untouched), while diag(g) does not: folding is required,
// and rotating without folding changes the function (spec: rel 1.2 in f64).
//
// Readers of the residual stream (all of them; ssm_alpha and ssm_beta are easy to miss):
//   attn_norm            -> attn_qkv, attn_gate, ssm_beta, ssm_alpha   (Gated DeltaNet)
//                        -> attn_q (query and gate rows), attn_k, attn_v (full attention)
//   post_attention_norm  -> ffn_gate, ffn_up
//   output_norm          -> output (LM head)
// Untouched: the per-head norms (attn_q_norm, attn_k_norm), the DeltaNet conv, ssm_norm,
// ssm_a, ssm_dt.bias. The MTP block cannot be kept exact (its input is the final-normed
// hidden state, spec 4.d caveats), so rotated models carry no MTP block.
//
// Arithmetic: every rotated matrix is computed in f64 (gain fold, then the Hadamard
// transform or the dense product) and rounded to f32 once, so each stored weight is the
// correctly rounded value of the exact product up to ~1e-16 relative; the f32 forward pass
// of the rotated model then differs from the original's only by summation order and that
// single rounding (tests/test_rotation.cpp measures it against a permutation, which is the
// same computation with an exactly representable Q).
//
// Design goals: exact transforms only; streaming (one layer at a time, rotated_provider);
// deterministic (results do not depend on the thread count).
// Non-goals: online rotations (need runtime changes), the MTP head, the vision merger.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../model/forward.hpp"
#include "hadamard.hpp"
#include "../model/model_config.hpp"
#include "../core/parallel.hpp"

SBGQ_BEGIN_NAMESPACE

/// An orthogonal Q (d x d) acting on row vectors of the residual stream: x -> x Q.
/// Either a randomized Hadamard transform (fast, O(d log d) per vector) or an explicit
/// matrix (O(d^2) per vector; tests and small models).
/// Thread-safe: const members may run concurrently.
class residual_rotation {
 public:
  /// Randomized orthonormal Hadamard: Q = B D (hadamard_transform with randomized signs
  /// from `seed`, one block of size d; d = m 2^k with a known H_m, e.g. 1024, 2048, 2560,
  /// 4096, 5120). Reproducible from (d, seed).
  /// Errors: [sbgq.hadamard.unsupported] when no Hadamard matrix of order d is known.
  static result<residual_rotation> hadamard(std::size_t d, std::uint64_t seed) {
    hadamard_options o;
    o.norm = fwht_norm::orthonormal;
    o.randomized = true;
    o.seed = seed;
    SBGQ_TRY(hadamard_transform t, hadamard_transform::create(d, o));
    residual_rotation r;
    r.n_ = d;
    r.h_.emplace(std::move(t));
    return r;
  }

  /// An explicit orthogonal matrix (signed permutations are recognised and applied as
  /// gathers, with the same results as the product). Errors: [sbgq.rotation.bad_shape] (not square or
  /// empty), [sbgq.rotation.not_finite], [sbgq.rotation.bad_value] when
  /// max |Q^T Q - I| > 1e-9 (the message gives the deviation).
  static result<residual_rotation> from_matrix(Eigen::MatrixXd q) {
    if (q.rows() == 0 || q.rows() != q.cols())
      return error(error_code::bad_shape, "rotation",
                   "rotation matrix is " + std::to_string(q.rows()) + " x " + std::to_string(q.cols()) +
                       ", expected a non-empty square matrix");
    if (!q.allFinite()) return error(error_code::not_finite, "rotation", "rotation matrix has NaN or infinite entries");
    const Eigen::MatrixXd e = q.transpose() * q - Eigen::MatrixXd::Identity(q.rows(), q.cols());
    const double dev = e.cwiseAbs().maxCoeff();
    if (!(dev <= 1e-9))
      return error(error_code::bad_value, "rotation",
                   "rotation matrix is not orthogonal: max |Q^T Q - I| = " + std::to_string(dev) + " (limit 1e-9)");
    residual_rotation r;
    r.n_ = static_cast<std::size_t>(q.rows());
    // A signed permutation (one +-1 per row and column) is applied as a gather: the same
    // values as the dense product (a sum of one exact term and zeros), in O(d) per vector.
    std::vector<std::size_t> src(r.n_, r.n_);
    std::vector<double> sign(r.n_, 0.0);
    bool perm = true;
    for (Eigen::Index j = 0; j < q.cols() && perm; ++j)
      for (Eigen::Index i = 0; i < q.rows() && perm; ++i) {
        const double v = q(i, j);
        if (v == 0.0) continue;
        if ((v != 1.0 && v != -1.0) || src[static_cast<std::size_t>(j)] != r.n_) perm = false;
        src[static_cast<std::size_t>(j)] = static_cast<std::size_t>(i);
        sign[static_cast<std::size_t>(j)] = v;
      }
    if (perm) {
      r.perm_src_ = std::move(src);
      r.perm_sign_ = std::move(sign);
    }
    r.q_ = std::move(q);
    return r;
  }

  /// d.
  std::size_t size() const noexcept { return n_; }
  /// True for the Hadamard form.
  bool is_hadamard() const noexcept { return h_.has_value(); }

  /// The explicit matrix Q (d x d; for the Hadamard form built by transforming I).
  Eigen::MatrixXd matrix() const {
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m =
        Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>::Identity(
            static_cast<Eigen::Index>(n_), static_cast<Eigen::Index>(n_));
    right_multiply(m.data(), n_);
    return m;
  }

  /// X <- X Q for `rows` row-major rows of size() values (f64). No checks.
  void right_multiply(double* x, std::size_t rows) const {
    if (rows == 0) return;
    if (h_) {
      // apply_right: W <- W Q_h, the same matrix Q_h = B D hadamard_transform::forward applies.
      (void)apply_right(*h_, std::span<double>(x, rows * n_), rows, n_, 1);
      return;
    }
    if (!perm_src_.empty()) {
      // (x Q)_j = s_j x_{src(j)}
      std::vector<double> t(n_);
      for (std::size_t r = 0; r < rows; ++r) {
        double* xr = x + r * n_;
        for (std::size_t j = 0; j < n_; ++j) t[j] = perm_sign_[j] * xr[perm_src_[j]];
        std::copy(t.begin(), t.end(), xr);
      }
      return;
    }
    Eigen::Map<rm_matrix> m(x, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(n_));
    const rm_matrix t = m * q_;
    m = t;
  }

  /// W <- Q^T W for a row-major size() x `cols` block (f64). No checks.
  void left_multiply_transpose(double* w, std::size_t cols) const {
    if (cols == 0) return;
    if (h_) {
      (void)apply_left(*h_, std::span<double>(w, n_ * cols), n_, cols, 1);
      return;
    }
    if (!perm_src_.empty()) {
      // (Q^T W)_{j,:} = s_j W_{src(j),:}
      std::vector<double> t(n_ * cols);
      for (std::size_t j = 0; j < n_; ++j)
        for (std::size_t c = 0; c < cols; ++c) t[j * cols + c] = perm_sign_[j] * w[perm_src_[j] * cols + c];
      std::copy(t.begin(), t.end(), w);
      return;
    }
    Eigen::Map<rm_matrix> m(w, static_cast<Eigen::Index>(n_), static_cast<Eigen::Index>(cols));
    const rm_matrix t = q_.transpose() * m;
    m = t;
  }

  /// X <- X Q for an [n][d] matrix of row vectors (hidden states). Errors: bad_shape.
  result<void> rotate_rows(matrix_f32& x, int n_threads = 0) const { return rotate_readers(x, nullptr, n_threads, "rows"); }

  /// W <- W diag(gain) Q for a reader [out][d] (gain null: W Q), computed in f64 and
  /// rounded once. Errors: [sbgq.rotation.bad_shape] naming `what`.
  result<void> rotate_readers(matrix_f32& w, const vector_f32* gain, int n_threads = 0, const std::string& what = "reader") const {
    if (static_cast<std::size_t>(w.cols()) != n_)
      return error(error_code::bad_shape, "rotation",
                   what + ": " + std::to_string(w.cols()) + " input columns, the rotation has size " + std::to_string(n_));
    if (gain && static_cast<std::size_t>(gain->size()) != n_)
      return error(error_code::bad_shape, "rotation",
                   what + ": norm gain of " + std::to_string(gain->size()) + " values, expected " + std::to_string(n_));
    const std::size_t rows = static_cast<std::size_t>(w.rows()), d = n_;
    constexpr std::size_t block = 64;
    parallel_for((rows + block - 1) / block, 1, n_threads, [&](std::size_t b0, std::size_t b1) {
      std::vector<double> buf(block * d);
      for (std::size_t b = b0; b < b1; ++b) {
        const std::size_t r0 = b * block, nr = std::min(block, rows - r0);
        for (std::size_t r = 0; r < nr; ++r) {
          const float* src = w.row(static_cast<Eigen::Index>(r0 + r)).data();
          double* dst = buf.data() + r * d;
          if (gain)
            for (std::size_t c = 0; c < d; ++c)
              dst[c] = static_cast<double>(src[c]) * static_cast<double>((*gain)[static_cast<Eigen::Index>(c)]);
          else
            for (std::size_t c = 0; c < d; ++c) dst[c] = static_cast<double>(src[c]);
        }
        right_multiply(buf.data(), nr);
        for (std::size_t r = 0; r < nr; ++r) {
          float* dst = w.row(static_cast<Eigen::Index>(r0 + r)).data();
          const double* src = buf.data() + r * d;
          for (std::size_t c = 0; c < d; ++c) dst[c] = static_cast<float>(src[c]);
        }
      }
    });
    return {};
  }

  /// W <- Q^T W for a writer [d][in], computed in f64 and rounded once.
  /// Errors: [sbgq.rotation.bad_shape] naming `what`.
  result<void> rotate_writer(matrix_f32& w, int n_threads = 0, const std::string& what = "writer") const {
    if (static_cast<std::size_t>(w.rows()) != n_)
      return error(error_code::bad_shape, "rotation",
                   what + ": " + std::to_string(w.rows()) + " output rows, the rotation has size " + std::to_string(n_));
    const std::size_t cols = static_cast<std::size_t>(w.cols()), d = n_;
    constexpr std::size_t strip = 32;
    parallel_for((cols + strip - 1) / strip, 1, n_threads, [&](std::size_t s0, std::size_t s1) {
      std::vector<double> buf(d * strip);
      for (std::size_t s = s0; s < s1; ++s) {
        const std::size_t c0 = s * strip, nc = std::min(strip, cols - c0);
        for (std::size_t r = 0; r < d; ++r) {
          const float* src = w.row(static_cast<Eigen::Index>(r)).data() + c0;
          for (std::size_t c = 0; c < nc; ++c) buf[r * nc + c] = static_cast<double>(src[c]);
        }
        left_multiply_transpose(buf.data(), nc);
        for (std::size_t r = 0; r < d; ++r) {
          float* dst = w.row(static_cast<Eigen::Index>(r)).data() + c0;
          for (std::size_t c = 0; c < nc; ++c) dst[c] = static_cast<float>(buf[r * nc + c]);
        }
      }
    });
    return {};
  }

 private:
  using rm_matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  residual_rotation() = default;
  std::size_t n_ = 0;
  std::optional<hadamard_transform> h_;
  Eigen::MatrixXd q_;
  std::vector<std::size_t> perm_src_;  ///< signed permutations: column j takes row perm_src_[j]
  std::vector<double> perm_sign_;
};

/// Rotates the global weights: folds output_norm into the LM head and sets it to 1, E <- E Q,
/// head <- head diag(g_f) Q. A tied model (output empty) first gets its own head, a copy of
/// token_embd, so g.output is filled afterwards (the model must then be written untied).
/// Errors: [sbgq.rotation.bad_shape] for sizes that do not match q.
inline result<void> rotate_globals(global_weights& g, const residual_rotation& q, int n_threads = 0) {
  if (g.output_norm.size() != static_cast<Eigen::Index>(q.size()))
    return error(error_code::bad_shape, "rotation",
                 "output_norm.weight: " + std::to_string(g.output_norm.size()) + " values, the rotation has size " +
                     std::to_string(q.size()));
  if (g.output.size() == 0) g.output = g.token_embd;  // untie: the head needs diag(g_f), the embedding not
  SBGQ_TRY_VOID(q.rotate_readers(g.output, &g.output_norm, n_threads, "output.weight"));
  SBGQ_TRY_VOID(q.rotate_readers(g.token_embd, nullptr, n_threads, "token_embd.weight"));
  g.output_norm.setOnes();
  return {};
}

/// Rotates one decoder layer (see the file header): attn_norm folded into its readers,
/// post_attention_norm into ffn_gate/ffn_up, both set to 1; the readers W <- W diag(g) Q,
/// the writers W <- Q^T W. Per-head norms, conv, ssm_* vectors untouched.
/// Errors: [sbgq.rotation.bad_shape] naming the tensor, invalid_argument if the layer's
/// matrices for its kind are missing.
inline result<void> rotate_layer(const qwen35_config& c, layer_weights& w, const residual_rotation& q, int n_threads = 0) {
  if (c.hidden_size != static_cast<std::int64_t>(q.size()))
    return error(error_code::bad_shape, "rotation",
                 "hidden_size " + std::to_string(c.hidden_size) + " but the rotation has size " + std::to_string(q.size()));
  const auto d = static_cast<Eigen::Index>(q.size());
  if (w.attn_norm.size() != d || w.post_attention_norm.size() != d)
    return error(error_code::bad_shape, "rotation",
                 "attn_norm / post_attention_norm: " + std::to_string(w.attn_norm.size()) + " / " +
                     std::to_string(w.post_attention_norm.size()) + " values, expected " + std::to_string(d));
  // Readers of each normed residual get Q^T on their columns with the norm's gain folded
  // in; the writers of the residual get Q on their rows (the one table, layer_weights.hpp).
  const auto attn_readers = layer_readers(w, w.kind, activation_space::attn_normed);
  const auto ffn_readers = layer_readers(w, w.kind, activation_space::ffn_normed);
  const auto writers = residual_writers(w, w.kind);
  for (const auto* list : {&attn_readers, &ffn_readers, &writers})
    for (const auto& [kind, m] : *list)
      if (m->size() == 0)
        return error(error_code::invalid_argument, "rotation", std::string(kind->stem()) + " is missing from the layer's weights");
  for (const auto& [kind, m] : attn_readers) SBGQ_TRY_VOID(q.rotate_readers(*m, &w.attn_norm, n_threads, std::string(kind->stem())));
  for (const auto& [kind, m] : ffn_readers)
    SBGQ_TRY_VOID(q.rotate_readers(*m, &w.post_attention_norm, n_threads, std::string(kind->stem())));
  for (const auto& [kind, m] : writers) SBGQ_TRY_VOID(q.rotate_writer(*m, n_threads, std::string(kind->stem())));
  w.attn_norm.setOnes();
  w.post_attention_norm.setOnes();
  return {};
}

/// A weight_provider that rotates what another provider loads (rotate_globals /
/// rotate_layer on every load). Neither `inner`, `config` nor `q` is owned; all must
/// outlive it. Thread-safety: that of `inner`.
class rotated_provider : public weight_provider {
 public:
  rotated_provider(weight_provider& inner, const qwen35_config& config, const residual_rotation& q, int n_threads = 0)
      : inner_(inner), c_(config), q_(q), n_threads_(n_threads) {}

  result<global_weights> load_globals() override {
    SBGQ_TRY(global_weights g, inner_.load_globals());
    SBGQ_TRY_VOID(rotate_globals(g, q_, n_threads_));
    return g;
  }
  result<layer_weights> load_layer(int l) override {
    SBGQ_TRY(layer_weights w, inner_.load_layer(l));
    SBGQ_TRY_VOID(rotate_layer(c_, w, q_, n_threads_));
    return w;
  }
  /// Only the embedding rows asked for, rotated (E Q row by row, as rotate_globals).
  result<matrix_f32> embedding_rows(std::span<const std::int32_t> ids) override {
    SBGQ_TRY(matrix_f32 x, inner_.embedding_rows(ids));
    SBGQ_TRY_VOID(q_.rotate_rows(x, n_threads_));
    return x;
  }
  const residual_rotation& rotation() const noexcept { return q_; }

 private:
  weight_provider& inner_;
  const qwen35_config& c_;
  const residual_rotation& q_;
  int n_threads_;
};

SBGQ_END_NAMESPACE
