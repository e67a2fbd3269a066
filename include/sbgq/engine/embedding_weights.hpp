// Importance weights for the columns of the token embedding, which has no activation
// statistics of its own (it is looked up, not multiplied): how much an error in column j
// of an embedding row moves what the rest of the model computes from it.
//
// An error d in an embedding row is an error in the residual stream, carried unchanged to
// every norm that reads the stream. A reader of the norm with gain g and input mean square
// s = E[rms(h)^2] sees g_j d_j / sqrt(s) in column j, and a matrix W that reads the norm's
// output turns that into an output error whose expected square (independent d_j) is
//     sum_j d_j^2 g_j^2 ||W[:, j]||^2 / s.
// Summed over every reader -- each layer's input norm (attention/DeltaNet projections),
// its post-attention norm (ffn_gate, ffn_up) and the final norm (the LM head) -- the weight
// of column j is
//     w_j = sum_readers g_j^2 ||W[:, j]||^2 / s,
// the output-space error of the first matrix each path meets, with the residual stream's
// growth (larger s in deeper layers) discounting the later readers. The weights are fed to
// the codecs as an importance matrix (their scale does not matter).
//
//   embedding_weights ew(hidden);
//   ew.add_layer(w, ms_in, ms_out);  // each decoder layer, its input and output mean squares
//   ew.add_head(gain, head_rows, ms_final);
//   std::vector<float> im = ew.weights();
//
// Non-goals: tied models (there the embedding is also the head; the weights would have to
// merge two roles in different units -- the pipeline leaves them unweighted), second-order
// paths (errors through one matrix into the next), the MTP block.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../core/base.hpp"
#include "../model/layer_weights.hpp"

SBGQ_BEGIN_NAMESPACE

/// Accumulates the embedding's column weights (see the file comment).
class embedding_weights {
 public:
  explicit embedding_weights(std::size_t hidden) : w_(hidden, 0.0), colsq_(hidden, 0.0) {}

  /// Mean square of the entries of `h` (rows = tokens): E[rms(h)^2].
  static double mean_square(const matrix_f32& h) {
    if (h.size() == 0) return 0.0;
    double s = 0;
    for (Eigen::Index r = 0; r < h.rows(); ++r) s += static_cast<double>(h.row(r).squaredNorm());
    return s / static_cast<double>(h.size());
  }

  /// One decoder layer: its input norm's readers at input mean square `ms_in`, its
  /// post-attention norm's readers at `ms_out` (the stream after the layer stands in for
  /// the middle, which is not kept).
  void add_layer(const layer_weights& w, double ms_in, double ms_out) {
    clear();
    if (w.kind == layer_kind::linear_attention)
      for (const matrix_f32* m : {&w.attn_qkv, &w.attn_gate, &w.ssm_beta, &w.ssm_alpha}) add_columns(*m);
    else
      for (const matrix_f32* m : {&w.attn_q, &w.attn_k, &w.attn_v}) add_columns(*m);
    flush(w.attn_norm, ms_in);
    clear();
    for (const matrix_f32* m : {&w.ffn_gate, &w.ffn_up}) add_columns(*m);
    flush(w.post_attention_norm, ms_out);
  }

  /// The LM head, given in blocks of rows (rows x hidden, row-major): call add_head_rows
  /// for every block, then finish_head with the final norm's gain and input mean square.
  void add_head_rows(const float* rows, std::size_t n) {
    const std::size_t d = colsq_.size();
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t j = 0; j < d; ++j) colsq_[j] += static_cast<double>(rows[r * d + j]) * rows[r * d + j];
  }
  void finish_head(const vector_f32& gain, double ms_final) {
    flush(gain, ms_final);
    clear();
  }

  /// The weights, scaled so that their mean is 1 (all 1 when nothing was added).
  std::vector<float> weights() const {
    double mean = 0;
    for (double x : w_) mean += x;
    mean /= static_cast<double>(std::max<std::size_t>(1, w_.size()));
    std::vector<float> out(w_.size(), 1.0f);
    if (!(mean > 0)) return out;
    for (std::size_t j = 0; j < w_.size(); ++j) out[j] = static_cast<float>(w_[j] / mean);
    return out;
  }

 private:
  void clear() { std::fill(colsq_.begin(), colsq_.end(), 0.0); }
  void add_columns(const matrix_f32& m) {
    if (m.size() == 0 || static_cast<std::size_t>(m.cols()) != colsq_.size()) return;
    add_head_rows(m.data(), static_cast<std::size_t>(m.rows()));
  }
  void flush(const vector_f32& gain, double ms) {
    if (!(ms > 0) || static_cast<std::size_t>(gain.size()) != w_.size()) return;
    for (std::size_t j = 0; j < w_.size(); ++j) {
      const double g = gain[static_cast<Eigen::Index>(j)];
      w_[j] += g * g * colsq_[j] / ms;
    }
  }

  std::vector<double> w_;
  std::vector<double> colsq_;
};

SBGQ_END_NAMESPACE
