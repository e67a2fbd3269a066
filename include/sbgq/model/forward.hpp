// Reference forward pass of a dense Qwen3.5 text model, one decoder layer at a time.
//
// The pass works in llama.cpp's (GGUF) convention, so its logits can be compared with
// libllama's directly (qwen35-gguf.md section 9):
//   - RMSNorm weights are multiplicative gains (the HF offset + 1 already applied);
//     ssm_norm is the plain DeltaNet gated-norm gain;
//   - ssm_a = -exp(A_log), ssm_dt_bias = dt_bias, ssm_conv1d squeezed to [conv_dim][K];
//   - DeltaNet value heads in GGUF's tiled order: value head j uses key head j mod H_k
//     (qwen35-model.md 2.6, qwen35-gguf.md 7.4);
//   - attn_q keeps HF's per-head [query | gate] interleave;
//   - matrices are row-major [out][in] f32 (matrix_f32), 1-D tensors vector_f32.
//
// Usage (layer-streamed, so a 9B model needs one layer of f32 weights in memory):
//
//   auto g = provider.load_globals();                 // token_embd, output_norm, output
//   auto act = embed(*g, tokens, n_seq);              // n_seq sequences of equal length
//   for (int l = 0; l < config.num_hidden_layers; ++l) {
//     auto w = provider.load_layer(l);
//     run_layer(config, l, *w, *act, &obs, n_threads);   // in place, all sequences
//   }
//   auto z = logits(*g, config, *act, &obs, n_threads);  // [n_seq * n_out][vocab]
//
// Every sequence starts at position 0 with empty state (full-sequence prefill, what
// calibration and perplexity need); there is no KV cache across calls.
//
// Design goals:
//   - Exact math of qwen35-model.md section 3 in f32, rounding like ggml where cheap
//     (detail/forward_ops.hpp): norm sums and softmax denominators in f64.
//   - The DeltaNet recurrence runs token by token (the form HF and llama.cpp define; the
//     chunked form is the same math) with an f32 state, as llama.cpp keeps it.
//   - Deterministic: every parallel split has a fixed size, so logits are bit-identical
//     for any thread count.
//   - An observer sees the input rows of every linear layer (imatrix, X^T X, tests).
// Non-goals: incremental decoding, quantized weights (providers dequantize to f32), the
// MTP head, vision input.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/base.hpp"
#include "detail/forward_ops.hpp"
#include "../core/error.hpp"
#include "layer_weights.hpp"
#include "model_config.hpp"
#include "../core/parallel.hpp"

SBGQ_BEGIN_NAMESPACE

/// A source of weights, loaded one layer at a time. Implementations read GGUF or
/// safetensors files (and apply the HF -> GGUF transforms) or build test weights.
/// Thread-safety: defined by the implementation; the forward pass calls it from one thread.
class weight_provider {
 public:
  virtual ~weight_provider() = default;
  virtual result<global_weights> load_globals() = 0;
  /// Weights of decoder layer l (0 <= l < num_hidden_layers), kind set.
  virtual result<layer_weights> load_layer(int l) = 0;
  /// The token_embd rows of `ids`, in order: [ids.size()][hidden]. The default loads the
  /// globals and copies the rows; providers over big files override it to read only those
  /// rows (a 9B model's f32 embedding matrix alone is 4 GB). Errors: bad_value for an id
  /// outside the vocabulary, and those of the provider.
  virtual result<matrix_f32> embedding_rows(std::span<const std::int32_t> ids);
};

/// Sees the input of every matrix product: X holds one row per token of every sequence
/// of the batch (row s * n_tok + t), one column per input channel of the weight.
/// `layer` is the decoder layer, or -1 for the LM head; `tensor` is the full GGUF name
/// ("blk.3.attn_q.weight", "output.weight" or "token_embd.weight" when tied). Called
/// from the thread that runs the forward pass, in graph order: attn_qkv, attn_gate,
/// ssm_beta, ssm_alpha, ssm_out (DeltaNet) or attn_q, attn_k, attn_v, attn_output, then
/// ffn_gate, ffn_up, ffn_down.
class observer {
 public:
  virtual ~observer() = default;
  virtual void on_linear(int layer, std::string_view tensor, const matrix_f32& x) = 0;
};

/// Hidden states of a batch of n_seq sequences of n_tok tokens each:
/// hidden is [n_seq * n_tok][d], row s * n_tok + t.
struct activations {
  std::int64_t n_seq = 0;
  std::int64_t n_tok = 0;
  matrix_f32 hidden;

  std::int64_t rows() const noexcept { return n_seq * n_tok; }
};

/// Which token positions logits() computes: [begin, end) of each sequence.
struct token_range {
  std::int64_t begin = 0;
  std::int64_t end = -1;  ///< -1: n_tok
};

namespace detail::fwd {

inline error forward_error(error_code c, std::string msg) { return error(c, "forward", std::move(msg)); }

inline std::string shape_str(std::int64_t r, std::int64_t c) {
  std::string s = "[";  // appended piecewise: "lit" + to_string() trips GCC 12's -Wrestrict
  s += std::to_string(r);
  s += " x ";
  s += std::to_string(c);
  s += ']';
  return s;
}

inline result<void> check_matrix(const std::string& name, const matrix_f32& m, std::int64_t rows, std::int64_t cols) {
  if (m.rows() != rows || m.cols() != cols)
    return forward_error(error_code::bad_shape, name + ": expected " + shape_str(rows, cols) + ", found " +
                                                    shape_str(m.rows(), m.cols()));
  return {};
}
/// n tokens split into n_seq equal, non-empty sequences.
inline result<void> check_split(std::int64_t n, std::int64_t n_seq) {
  if (n_seq <= 0 || n == 0 || n % n_seq != 0)
    return forward_error(error_code::invalid_argument, std::to_string(n) + " tokens cannot be split into " +
                                                           std::to_string(n_seq) + " equal non-empty sequences");
  return {};
}
inline result<void> check_vector(const std::string& name, const vector_f32& v, std::int64_t n) {
  if (v.size() != n)
    return forward_error(error_code::bad_shape,
                         name + ": expected " + std::to_string(n) + " elements, found " + std::to_string(v.size()));
  return {};
}

/// One table entry per rotated pair: the angle of pair p at position `pos` is
/// pos * theta_scale^p, computed by repeated float multiplication as ggml's rope cache
/// does; with IMROPE sections a pair can take its angle from the (zero) 4th stream.
struct rope_table {
  std::int64_t n_pairs = 0;
  std::vector<float> cos_, sin_;  // [n_tok][n_pairs]

  rope_table(const qwen35_config& c, std::int64_t n_tok) {
    const std::int64_t r = c.rope_dims();
    n_pairs = r / 2;
    cos_.resize(static_cast<std::size_t>(n_tok * n_pairs));
    sin_.resize(cos_.size());
    int sec[4] = {0, 0, 0, 0};
    for (std::size_t i = 0; i < c.mrope_section.size() && i < 4; ++i) sec[i] = static_cast<int>(c.mrope_section[i]);
    const int sect_dims = sec[0] + sec[1] + sec[2] + sec[3];
    const float theta_scale = std::pow(static_cast<float>(c.rope_theta), -2.0f / static_cast<float>(r));
    for (std::int64_t t = 0; t < n_tok; ++t) {
      float theta_txt = static_cast<float>(t);  // time = height = width = position
      float theta_e = 0.0f;                      // the 4th stream is 0 for text
      for (std::int64_t p = 0; p < n_pairs; ++p) {
        float theta = theta_txt;
        if (sect_dims > 0 && c.mrope_interleaved) {
          const int s = static_cast<int>(p % sect_dims);
          const bool covered = (s % 3 == 1 && s < 3 * sec[1]) || (s % 3 == 2 && s < 3 * sec[2]) ||
                               (s % 3 == 0 && s < 3 * sec[0]);
          if (!covered) theta = theta_e;
        }
        cos_[static_cast<std::size_t>(t * n_pairs + p)] = std::cos(theta);
        sin_[static_cast<std::size_t>(t * n_pairs + p)] = std::sin(theta);
        theta_txt *= theta_scale;
        theta_e *= theta_scale;
      }
    }
  }
  /// NEOX rotation of the first 2 * n_pairs dims of one head vector x at position t.
  void apply(float* x, std::int64_t t) const noexcept {
    const float* cs = cos_.data() + t * n_pairs;
    const float* sn = sin_.data() + t * n_pairs;
    for (std::int64_t p = 0; p < n_pairs; ++p) {
      const float x0 = x[p], x1 = x[p + n_pairs];
      x[p] = x0 * cs[p] - x1 * sn[p];
      x[p + n_pairs] = x0 * sn[p] + x1 * cs[p];
    }
  }
};

inline std::string blk(int l, const char* name) { return "blk." + std::to_string(l) + "." + name + ".weight"; }

inline void notify(observer* obs, int l, const char* name, const matrix_f32& x) {
  if (obs) obs->on_linear(l, blk(l, name), x);
}

/// Gated DeltaNet token mixer (qwen35-gguf.md 9.1) on the normed input h; returns the
/// layer output in `out` ([rows][d]).
inline void deltanet(const qwen35_config& c, int l, const layer_weights& w, const activations& act,
                     const matrix_f32& h, matrix_f32& out, observer* obs, int n_threads) {
  const index_t T = act.n_tok, rows = act.rows();
  const index_t hk = c.linear_num_key_heads, hv = c.linear_num_value_heads;
  const index_t dk = c.linear_key_head_dim, dv = c.linear_value_head_dim;
  const index_t kd = hk * dk, C = c.linear_conv_dim(), K = c.linear_conv_kernel_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);

  for (const char* n : {"attn_qkv", "attn_gate", "ssm_beta", "ssm_alpha"}) notify(obs, l, n, h);
  matrix_f32 m, z, b, a;
  linear(h, w.attn_qkv, m, n_threads);
  linear(h, w.attn_gate, z, n_threads);
  linear(h, w.ssm_beta, b, n_threads);
  linear(h, w.ssm_alpha, a, n_threads);

  // Causal depthwise conv + SiLU; sum over k ascending from 0 like ggml_ssm_conv, with
  // zeros before the start of each sequence. Then L2-normalise q and k per key head and
  // scale q by 1/sqrt(d_k).
  const matrix_f32 wt = w.ssm_conv1d.transpose();  // [K][C], rows contiguous over channels
  matrix_f32 u(rows, C);
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for_rows(rows, n_threads, [&](index_t r) {
    const index_t t = r % T;
    float* y = u.row(r).data();
    std::fill(y, y + C, 0.0f);
    for (index_t k = 0; k < K; ++k) {
      const index_t src = t - (K - 1) + k;
      if (src < 0) continue;  // zero padding adds exactly 0
      const float* x = m.row(r - t + src).data();
      const float* wk = wt.row(k).data();
      for (index_t ch = 0; ch < C; ++ch) y[ch] += wk[ch] * x[ch];
    }
    for (index_t ch = 0; ch < C; ++ch) y[ch] = silu(y[ch]);
    for (index_t head = 0; head < 2 * hk; ++head) {
      float* v = y + head * dk;
      const float s = l2_scale(v, dk, eps);
      for (index_t e = 0; e < dk; ++e) v[e] *= s;
      if (head < hk)
        for (index_t e = 0; e < dk; ++e) v[e] *= q_scale;
    }
    // Gates: beta = sigmoid(b), g = softplus(alpha + dt_bias) * ssm_a (log-decay <= 0).
    for (index_t j = 0; j < hv; ++j) {
      b(r, j) = sigmoid(b(r, j));
      a(r, j) = softplus(a(r, j) + w.ssm_dt_bias[j]) * w.ssm_a[j];
    }
  });

  // Recurrence per (sequence, value head); value head j reads key head j mod H_k.
  //   S <- exp(g) S;  delta = beta (v - S^T k);  S <- S + k delta^T;  o = S^T q
  matrix_f32 o(rows, hv * dv);
  parallel_for(static_cast<std::size_t>(act.n_seq * hv), 1, n_threads, [&](std::size_t b0, std::size_t e0) {
    std::vector<float> state(static_cast<std::size_t>(dk * dv)), ks(static_cast<std::size_t>(dv)),
        delta(static_cast<std::size_t>(dv));
    for (std::size_t task = b0; task < e0; ++task) {
      const index_t s = static_cast<index_t>(task) / hv, j = static_cast<index_t>(task) % hv, i = j % hk;
      std::fill(state.begin(), state.end(), 0.0f);
      for (index_t t = 0; t < T; ++t) {
        const index_t r = s * T + t;
        const float* q = u.row(r).data() + i * dk;
        const float* k = u.row(r).data() + kd + i * dk;
        const float* v = u.row(r).data() + 2 * kd + j * dv;
        const float decay = std::exp(a(r, j)), beta = b(r, j);
        std::fill(ks.begin(), ks.end(), 0.0f);
        for (index_t p = 0; p < dk; ++p) {
          float* srow = state.data() + p * dv;
          const float kp = k[p];
          for (index_t e = 0; e < dv; ++e) {
            srow[e] *= decay;
            ks[static_cast<std::size_t>(e)] += srow[e] * kp;
          }
        }
        for (index_t e = 0; e < dv; ++e)
          delta[static_cast<std::size_t>(e)] = beta * (v[e] - ks[static_cast<std::size_t>(e)]);
        float* y = o.row(r).data() + j * dv;
        std::fill(y, y + dv, 0.0f);
        for (index_t p = 0; p < dk; ++p) {
          float* srow = state.data() + p * dv;
          const float kp = k[p], qp = q[p];
          for (index_t e = 0; e < dv; ++e) {
            srow[e] += kp * delta[static_cast<std::size_t>(e)];
            y[e] += srow[e] * qp;
          }
        }
      }
    }
  });

  // Gated RMSNorm per value head: o <- rms_norm(o) * ssm_norm * silu(z).
  for_rows(rows, n_threads, [&](index_t r) {
    for (index_t j = 0; j < hv; ++j) {
      float* y = o.row(r).data() + j * dv;
      const float* zz = z.row(r).data() + j * dv;
      rms_norm(y, w.ssm_norm.data(), dv, eps, y);
      for (index_t e = 0; e < dv; ++e) y[e] *= silu(zz[e]);
    }
  });
  notify(obs, l, "ssm_out", o);
  linear(o, w.ssm_out, out, n_threads);
}

/// Gated full-attention token mixer (qwen35-gguf.md 9.2).
inline void attention(const qwen35_config& c, int l, const layer_weights& w, const activations& act,
                      const matrix_f32& h, matrix_f32& out, observer* obs, int n_threads) {
  const index_t T = act.n_tok, rows = act.rows();
  const index_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, D = c.head_dim;
  const index_t group = nh / nkv;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(D));

  for (const char* n : {"attn_q", "attn_k", "attn_v"}) notify(obs, l, n, h);
  matrix_f32 qg, k, v;
  linear(h, w.attn_q, qg, n_threads);
  linear(h, w.attn_k, k, n_threads);
  linear(h, w.attn_v, v, n_threads);

  // Per-head RMSNorm of q and k, then RoPE on their first rope_dims dims.
  const rope_table rope(c, T);
  matrix_f32 q(rows, nh * D), gate(rows, nh * D);
  for_rows(rows, n_threads, [&](index_t r) {
    const index_t t = r % T;
    for (index_t hh = 0; hh < nh; ++hh) {
      const float* src = qg.row(r).data() + hh * 2 * D;
      float* dst = q.row(r).data() + hh * D;
      rms_norm(src, w.attn_q_norm.data(), D, eps, dst);
      rope.apply(dst, t);
      std::copy(src + D, src + 2 * D, gate.row(r).data() + hh * D);
    }
    for (index_t j = 0; j < nkv; ++j) {
      float* kk = k.row(r).data() + j * D;
      rms_norm(kk, w.attn_k_norm.data(), D, eps, kk);
      rope.apply(kk, t);
    }
  });

  // Causal softmax attention per (sequence, head, block of 64 queries); query head hh
  // reads KV head hh / group. Scores in f32, softmax sums in f64 (ggml soft_max).
  constexpr index_t qb = 64;
  const index_t n_qb = (T + qb - 1) / qb;
  matrix_f32 att(rows, nh * D);
  parallel_for(static_cast<std::size_t>(act.n_seq * nh * n_qb), 1, n_threads, [&](std::size_t b0, std::size_t e0) {
    matrix_f32 sc;
    for (std::size_t task = b0; task < e0; ++task) {
      const index_t s = static_cast<index_t>(task) / (nh * n_qb);
      const index_t hh = (static_cast<index_t>(task) / n_qb) % nh;
      const index_t t0 = (static_cast<index_t>(task) % n_qb) * qb;
      const index_t nq = std::min(qb, T - t0), nk = t0 + nq, j = hh / group;
      const index_t base = s * T;
      sc.noalias() = q.block(base + t0, hh * D, nq, D) * k.block(base, j * D, nk, D).transpose();
      for (index_t i = 0; i < nq; ++i) {
        float* row = sc.row(i).data();
        const index_t n_valid = t0 + i + 1;
        float mx = -std::numeric_limits<float>::infinity();
        for (index_t tau = 0; tau < n_valid; ++tau) {
          row[tau] *= kq_scale;
          mx = std::max(mx, row[tau]);
        }
        double sum = 0.0;
        for (index_t tau = 0; tau < n_valid; ++tau) {
          row[tau] = std::exp(row[tau] - mx);
          sum += static_cast<double>(row[tau]);
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (index_t tau = 0; tau < n_valid; ++tau) row[tau] *= inv;
        for (index_t tau = n_valid; tau < nk; ++tau) row[tau] = 0.0f;
      }
      att.block(base + t0, hh * D, nq, D).noalias() = sc * v.block(base, j * D, nk, D);
    }
  });
  // Output gate: elementwise sigmoid.
  for_rows(rows, n_threads, [&](index_t r) {
    float* y = att.row(r).data();
    const float* g = gate.row(r).data();
    for (index_t e = 0; e < nh * D; ++e) y[e] *= sigmoid(g[e]);
  });
  notify(obs, l, "attn_output", att);
  linear(att, w.attn_output, out, n_threads);
}

}  // namespace detail::fwd

/// Checks that w has every tensor of layer l's kind with the shapes config implies.
/// Errors: invalid_argument (l out of range, wrong kind), bad_shape (names the tensor).
inline result<void> check_layer_weights(const qwen35_config& c, int l, const layer_weights& w) {
  using detail::fwd::blk;
  if (l < 0 || l >= c.num_hidden_layers)
    return detail::fwd::forward_error(error_code::invalid_argument, "layer " + std::to_string(l) + " out of range [0, " +
                                                                   std::to_string(c.num_hidden_layers) + ")");
  const layer_kind kind = c.layer_types[static_cast<std::size_t>(l)];
  if (w.kind != kind)
    return detail::fwd::forward_error(error_code::invalid_argument,
                                 "layer " + std::to_string(l) + ": weights of the wrong layer kind");
  const std::int64_t d = c.hidden_size, f = c.intermediate_size;
  SBGQ_TRY_VOID(detail::fwd::check_vector(blk(l, "attn_norm"), w.attn_norm, d));
  SBGQ_TRY_VOID(detail::fwd::check_vector(blk(l, "post_attention_norm"), w.post_attention_norm, d));
  SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "ffn_gate"), w.ffn_gate, f, d));
  SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "ffn_up"), w.ffn_up, f, d));
  SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "ffn_down"), w.ffn_down, d, f));
  if (kind == layer_kind::linear_attention) {
    const std::int64_t hv = c.linear_num_value_heads, vd = c.linear_value_dim();
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "attn_qkv"), w.attn_qkv, c.linear_conv_dim(), d));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "attn_gate"), w.attn_gate, vd, d));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "ssm_beta"), w.ssm_beta, hv, d));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "ssm_alpha"), w.ssm_alpha, hv, d));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "ssm_conv1d"), w.ssm_conv1d, c.linear_conv_dim(), c.linear_conv_kernel_dim));
    SBGQ_TRY_VOID(detail::fwd::check_vector("blk." + std::to_string(l) + ".ssm_a", w.ssm_a, hv));
    SBGQ_TRY_VOID(detail::fwd::check_vector("blk." + std::to_string(l) + ".ssm_dt.bias", w.ssm_dt_bias, hv));
    SBGQ_TRY_VOID(detail::fwd::check_vector(blk(l, "ssm_norm"), w.ssm_norm, c.linear_value_head_dim));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "ssm_out"), w.ssm_out, d, vd));
  } else {
    const std::int64_t D = c.head_dim;
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "attn_q"), w.attn_q, c.q_proj_rows(), d));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "attn_k"), w.attn_k, c.kv_dim(), d));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "attn_v"), w.attn_v, c.kv_dim(), d));
    SBGQ_TRY_VOID(detail::fwd::check_matrix(blk(l, "attn_output"), w.attn_output, d, c.num_attention_heads * D));
    SBGQ_TRY_VOID(detail::fwd::check_vector(blk(l, "attn_q_norm"), w.attn_q_norm, D));
    SBGQ_TRY_VOID(detail::fwd::check_vector(blk(l, "attn_k_norm"), w.attn_k_norm, D));
  }
  return {};
}

/// Checks the global weights against config (vocab x d embeddings, optional LM head).
inline result<void> check_global_weights(const qwen35_config& c, const global_weights& g) {
  SBGQ_TRY_VOID(detail::fwd::check_matrix("token_embd.weight", g.token_embd, c.vocab_size, c.hidden_size));
  SBGQ_TRY_VOID(detail::fwd::check_vector("output_norm.weight", g.output_norm, c.hidden_size));
  if (g.output.size() != 0) SBGQ_TRY_VOID(detail::fwd::check_matrix("output.weight", g.output, c.vocab_size, c.hidden_size));
  return {};
}

/// Hidden states of n_seq equal-length sequences from their embedding rows (as returned
/// by weight_provider::embedding_rows). Errors: invalid_argument (row count not a
/// multiple of n_seq, or empty).
inline result<activations> embed_rows(matrix_f32 rows, std::int64_t n_seq = 1) {
  SBGQ_TRY_VOID(detail::fwd::check_split(rows.rows(), n_seq));
  activations act;
  act.n_seq = n_seq;
  act.n_tok = rows.rows() / n_seq;
  act.hidden = std::move(rows);
  return act;
}

/// Embeds n_seq sequences of equal length: tokens holds n_seq * n_tok ids, sequence
/// after sequence. Errors: invalid_argument (size not a multiple of n_seq, or empty),
/// bad_value (a token id outside [0, vocab)).
inline result<activations> embed(const global_weights& g, std::span<const std::int32_t> tokens, std::int64_t n_seq = 1) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  SBGQ_TRY_VOID(detail::fwd::check_split(n, n_seq));
  matrix_f32 rows(n, g.token_embd.cols());
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t id = tokens[static_cast<std::size_t>(i)];
    if (id < 0 || id >= g.token_embd.rows())
      return detail::fwd::forward_error(error_code::bad_value, "token " + std::to_string(i) + ": id " + std::to_string(id) +
                                                              " outside the vocabulary [0, " +
                                                              std::to_string(g.token_embd.rows()) + ")");
    rows.row(i) = g.token_embd.row(id);
  }
  return embed_rows(std::move(rows), n_seq);
}

inline result<matrix_f32> weight_provider::embedding_rows(std::span<const std::int32_t> ids) {
  SBGQ_TRY(global_weights g, load_globals());
  SBGQ_TRY(activations act, embed(g, ids, 1));
  return std::move(act.hidden);
}

/// Runs decoder layer l over every sequence of act, in place:
///   x += mixer(rms_norm(x) * attn_norm);  x += ffn(rms_norm(x) * post_attention_norm).
/// n_threads <= 0 uses all hardware threads; the result does not depend on it.
/// Errors: those of check_layer_weights, bad_shape if act's width is not hidden_size.
inline result<void> run_layer(const qwen35_config& c, int l, const layer_weights& w, activations& act,
                              observer* obs = nullptr, int n_threads = 0) {
  SBGQ_TRY_VOID(check_layer_weights(c, l, w));
  if (act.hidden.cols() != c.hidden_size || act.hidden.rows() != act.rows())
    return detail::fwd::forward_error(error_code::bad_shape, "activations: expected " + detail::fwd::shape_str(act.rows(), c.hidden_size) +
                                                            ", found " + detail::fwd::shape_str(act.hidden.rows(), act.hidden.cols()));
  const float eps = static_cast<float>(c.rms_norm_eps);
  matrix_f32 h, mix;
  detail::fwd::rms_norm_rows(act.hidden, w.attn_norm, eps, h, n_threads);
  if (w.kind == layer_kind::linear_attention)
    detail::fwd::deltanet(c, l, w, act, h, mix, obs, n_threads);
  else
    detail::fwd::attention(c, l, w, act, h, mix, obs, n_threads);
  act.hidden += mix;

  detail::fwd::rms_norm_rows(act.hidden, w.post_attention_norm, eps, h, n_threads);
  matrix_f32 gt, up;
  detail::fwd::notify(obs, l, "ffn_gate", h);
  detail::fwd::notify(obs, l, "ffn_up", h);
  detail::fwd::linear(h, w.ffn_gate, gt, n_threads);
  detail::fwd::linear(h, w.ffn_up, up, n_threads);
  detail::fwd::for_rows(gt.rows(), n_threads, [&](detail::fwd::index_t r) {
    float* y = gt.row(r).data();
    const float* uu = up.row(r).data();
    for (detail::fwd::index_t e = 0; e < gt.cols(); ++e) y[e] = detail::fwd::silu(y[e]) * uu[e];
  });
  detail::fwd::notify(obs, l, "ffn_down", gt);
  detail::fwd::linear(gt, w.ffn_down, mix, n_threads);
  act.hidden += mix;
  return {};
}

/// Logits of the token positions [range.begin, range.end) of every sequence:
/// lm_head * rms_norm(x) * output_norm, as [n_seq * n_out][vocab] (row s * n_out + i is
/// position range.begin + i of sequence s). The observer sees the normed rows under
/// layer -1. Errors: invalid_argument (empty or out-of-range range), bad_shape.
inline result<matrix_f32> logits(const global_weights& g, const qwen35_config& c, const activations& act,
                                 observer* obs = nullptr, int n_threads = 0, token_range range = {}) {
  const std::int64_t end = range.end < 0 ? act.n_tok : range.end;
  if (range.begin < 0 || range.begin >= end || end > act.n_tok)
    return detail::fwd::forward_error(error_code::invalid_argument, "token range [" + std::to_string(range.begin) + ", " +
                                                                   std::to_string(end) + ") is empty or outside [0, " +
                                                                   std::to_string(act.n_tok) + ")");
  SBGQ_TRY_VOID(check_global_weights(c, g));
  if (act.hidden.cols() != c.hidden_size)
    return detail::fwd::forward_error(error_code::bad_shape, "activations: width " + std::to_string(act.hidden.cols()) +
                                                            ", expected hidden_size " + std::to_string(c.hidden_size));
  const std::int64_t n_out = end - range.begin;
  matrix_f32 h(act.n_seq * n_out, c.hidden_size);
  const float eps = static_cast<float>(c.rms_norm_eps);
  detail::fwd::for_rows(h.rows(), n_threads, [&](detail::fwd::index_t r) {
    const detail::fwd::index_t src = (r / n_out) * act.n_tok + range.begin + r % n_out;
    detail::fwd::rms_norm(act.hidden.row(src).data(), g.output_norm.data(), c.hidden_size, eps, h.row(r).data());
  });
  if (obs) obs->on_linear(-1, g.lm_head_name(), h);
  matrix_f32 z;
  detail::fwd::linear(h, g.lm_head(), z, n_threads);
  return z;
}

/// The whole pass: embed, every layer loaded from the provider in turn, logits.
inline result<matrix_f32> forward(const qwen35_config& c, weight_provider& provider, std::span<const std::int32_t> tokens,
                                  std::int64_t n_seq = 1, observer* obs = nullptr, int n_threads = 0,
                                  token_range range = {}) {
  SBGQ_TRY(global_weights g, provider.load_globals());
  SBGQ_TRY_VOID(check_global_weights(c, g));
  SBGQ_TRY(activations act, embed(g, tokens, n_seq));
  for (int l = 0; l < static_cast<int>(c.num_hidden_layers); ++l) {
    SBGQ_TRY(layer_weights w, provider.load_layer(l));
    SBGQ_TRY_VOID(run_layer(c, l, w, act, obs, n_threads));
  }
  return logits(g, c, act, obs, n_threads, range);
}

SBGQ_END_NAMESPACE
