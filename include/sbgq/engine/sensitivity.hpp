// Output sensitivity: the KL-divergence that one change of the weights alone (one tensor
// quantized at one type) causes in the model's next-token distributions, measured through
// the forward pass on a sample of calibration tokens. It is the quantity an allocation of
// bits needs: the importance-weighted weight error is not comparable across tensors, while
// these per-tensor effects add up to the whole mix's KL-divergence within a few percent
// (bench/RESULTS.md, "Error budget").
//
//   SBGQ_TRY(auto s, output_sensitivity::start(cfg, provider, tokens, so));
//   layer_weights w = ...;  // layer 3 with one tensor quantized and decoded
//   SBGQ_TRY(double d, s->kld_with_layer(3, w));   // mean KLD(reference || changed)
//
// Cost: a reference pass keeps every layer's input for the sample ((n_layers + 1) x tokens x
// hidden f32) and the reference logits (tokens x vocab f32); each measurement
// reruns the layers from the changed one to the head, and a changed embedding the whole
// pass. The layers' f32 weights are kept once loaded. Meant for models whose f32 weights
// fit in memory; at 9B size the measurement needs an estimator (the allocation issue).
// Deterministic: sums in a fixed order whatever the thread count.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../model/forward.hpp"
#include "../model/model_config.hpp"

SBGQ_BEGIN_NAMESPACE

/// The sample a sensitivity is measured on.
struct sensitivity_options {
  std::int64_t ctx = 256;    ///< tokens per chunk
  std::int64_t chunks = 4;   ///< the first chunks of the calibration tokens
  int n_threads = 0;         ///< <= 0: all hardware threads
  /// The largest model (f32 weights) a caller should measure this way (pipeline.hpp).
  std::uint64_t max_model_bytes = std::uint64_t{2} << 30;
};

namespace detail::sens {

/// Per row of z: max + log(sum exp(z - max)), in f64, so that log softmax(z)_j is
/// z_j - shift exactly as the KL-divergence below computes it for the other side.
inline double log_sum_exp(const float* z, Eigen::Index n) {
  float mx = z[0];
  for (Eigen::Index j = 1; j < n; ++j) mx = std::max(mx, z[j]);
  double s = 0;
  for (Eigen::Index j = 0; j < n; ++j) s += std::exp(static_cast<double>(z[j]) - static_cast<double>(mx));
  return static_cast<double>(mx) + std::log(s);
}

inline std::vector<double> log_sum_exp_rows(const matrix_f32& z, int n_threads) {
  std::vector<double> out(static_cast<std::size_t>(z.rows()));
  parallel_for(out.size(), 8, n_threads, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) out[r] = log_sum_exp(z.row(static_cast<Eigen::Index>(r)).data(), z.cols());
  });
  return out;
}

/// Mean over rows of KL(P || Q) = sum_j P_j (log P_j - log Q_j), P = softmax(zp) (given
/// with its rows' log_sum_exp), Q = softmax(zq); per-row sums in f64, added in row order.
/// Exactly 0 when zq == zp.
inline double mean_kld(const matrix_f32& zp, std::span<const double> lse_p, const matrix_f32& zq, int n_threads) {
  std::vector<double> per_row(static_cast<std::size_t>(zq.rows()), 0.0);
  parallel_for(per_row.size(), 8, n_threads, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const auto ri = static_cast<Eigen::Index>(r);
      const float* p = zp.row(ri).data();
      const float* q = zq.row(ri).data();
      const double lse_q = log_sum_exp(q, zq.cols());
      double kld = 0;
      for (Eigen::Index j = 0; j < zq.cols(); ++j) {
        const double lp = static_cast<double>(p[j]) - lse_p[r], lq = static_cast<double>(q[j]) - lse_q;
        kld += std::exp(lp) * (lp - lq);
      }
      per_row[r] = kld;
    }
  });
  double sum = 0;
  for (double k : per_row) sum += k;
  return per_row.empty() ? 0.0 : sum / static_cast<double>(per_row.size());
}

}  // namespace detail::sens

/// A reference forward pass on a token sample and the KL-divergence of changed weights
/// against it (see the file comment). Not copyable; one measurement at a time.
class output_sensitivity {
 public:
  /// Runs the reference pass over the first o.chunks chunks of o.ctx tokens of `tokens`.
  /// Errors: invalid_argument (fewer tokens than one chunk), those of the provider and the
  /// forward pass.
  static result<std::unique_ptr<output_sensitivity>> start(const qwen35_config& c, weight_provider& p,
                                                           std::span<const std::int32_t> tokens, const sensitivity_options& o) {
    const std::int64_t n_chunks = std::min<std::int64_t>(o.chunks, static_cast<std::int64_t>(tokens.size()) / std::max<std::int64_t>(o.ctx, 1));
    if (n_chunks < 1)
      return error(error_code::invalid_argument, "sensitivity",
                   "the calibration text has " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of " +
                       std::to_string(o.ctx));
    std::unique_ptr<output_sensitivity> s(new output_sensitivity(c, p, o.n_threads));
    SBGQ_TRY(s->g_, p.load_globals());
    s->tokens_.assign(tokens.begin(), tokens.begin() + n_chunks * o.ctx);
    s->n_seq_ = n_chunks;
    SBGQ_TRY(activations act, embed(s->g_, s->tokens_, n_chunks));
    const int n_layers = static_cast<int>(c.num_hidden_layers);
    s->layers_.resize(static_cast<std::size_t>(n_layers));
    for (int l = 0; l < n_layers; ++l) {
      s->inputs_.push_back(act);
      SBGQ_TRY(const layer_weights* w, s->layer(l));
      SBGQ_TRY_VOID(run_layer(c, l, *w, act, nullptr, o.n_threads));
    }
    SBGQ_TRY(s->ref_z_, logits(s->g_, c, act, nullptr, o.n_threads));
    s->ref_lse_ = detail::sens::log_sum_exp_rows(s->ref_z_, o.n_threads);
    s->inputs_.push_back(std::move(act));
    return s;
  }

  output_sensitivity(const output_sensitivity&) = delete;
  output_sensitivity& operator=(const output_sensitivity&) = delete;

  /// Mean KL-divergence per token when layer l's weights are `w` (the others unchanged).
  result<double> kld_with_layer(int l, const layer_weights& w) {
    if (l < 0 || l >= static_cast<int>(layers_.size()))
      return error(error_code::invalid_argument, "sensitivity", "layer " + std::to_string(l) + " out of range");
    activations act = inputs_[static_cast<std::size_t>(l)];
    SBGQ_TRY_VOID(run_layer(c_, l, w, act, nullptr, n_threads_));
    return finish_from(l + 1, act, g_);
  }

  /// Mean KL-divergence per token when the weights outside the layers are `g`; with
  /// `embedding_changed` the whole pass reruns, otherwise only the head.
  result<double> kld_with_globals(const global_weights& g, bool embedding_changed) {
    if (!embedding_changed) return finish_from(static_cast<int>(layers_.size()), inputs_.back(), g);
    SBGQ_TRY(activations act, embed(g, tokens_, n_seq_));
    return finish_from(0, act, g);
  }

  /// The reference weights outside the layers, and of layer l.
  const global_weights& globals() const noexcept { return g_; }
  result<const layer_weights*> layer(int l) {
    auto& slot = layers_[static_cast<std::size_t>(l)];
    if (!slot) {
      SBGQ_TRY(layer_weights w, p_.load_layer(l));
      slot = std::move(w);
    }
    return &*slot;
  }
  /// Tokens in the sample.
  std::int64_t n_tokens() const noexcept { return static_cast<std::int64_t>(tokens_.size()); }

 private:
  output_sensitivity(const qwen35_config& c, weight_provider& p, int n_threads) : c_(c), p_(p), n_threads_(n_threads) {}

  result<double> finish_from(int l0, activations act, const global_weights& g) {
    for (int l = l0; l < static_cast<int>(layers_.size()); ++l) {
      SBGQ_TRY(const layer_weights* w, layer(l));
      SBGQ_TRY_VOID(run_layer(c_, l, *w, act, nullptr, n_threads_));
    }
    SBGQ_TRY(const matrix_f32 z, logits(g, c_, act, nullptr, n_threads_));
    return detail::sens::mean_kld(ref_z_, ref_lse_, z, n_threads_);
  }

  const qwen35_config& c_;
  weight_provider& p_;
  int n_threads_;
  global_weights g_;
  std::vector<std::int32_t> tokens_;
  std::int64_t n_seq_ = 1;
  std::vector<std::optional<layer_weights>> layers_;
  std::vector<activations> inputs_;  ///< input of layer l; the last: the final hidden states
  matrix_f32 ref_z_;             ///< the reference logits
  std::vector<double> ref_lse_;  ///< and their rows' log_sum_exp
};

SBGQ_END_NAMESPACE
