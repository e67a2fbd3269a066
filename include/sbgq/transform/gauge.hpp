// Exact gauge scalings of a Qwen3.5 decoder layer, and a solver that picks their scales to
// lower the importance-weighted quantization error of the matrices whose input columns
// they change (AWQ / SmoothQuant-type column balancing, restricted to the symmetries that
// are exact for Qwen3.5).
//
// The four transforms (qwen35-model.md 4.a1, 4.b1, 4.c3, 4.d "norm-weight gauge"; all in
// the forward pass's GGUF convention, see forward.hpp):
//
//   transform        row / vector side (scaled by s)          column side (divided by s)
//   ---------------  ---------------------------------------  ------------------------------
//   swiglu           ffn_up row i                             ffn_down column i
//   attn_vo          attn_v row (kv head g, dim j)            attn_output column (h, j) for
//                                                             every query head h of group g
//                                                             (h / (n_h / n_kv) == g)
//   deltanet_norm    ssm_norm gain[j] (shared by all heads)   ssm_out column (head, j), all heads
//   norm_inputs      attn_norm / post_attention_norm gain[c]  (reversed:) every reader's column
//                    is DIVIDED by s_c                        c is MULTIPLIED by s_c
//
// Why they are exact (real arithmetic; f32 only changes rounding):
//   - swiglu: channel i of the MLP is silu(g_i) * u_i; only u_i enters linearly, so s_i on
//     u_i is undone by 1/s_i in ffn_down. (Scaling ffn_gate is NOT exact: silu(s x) != s
//     silu(x); not offered.)
//   - attn_vo: attention probabilities depend on q and k only, a = sum p v is linear in v,
//     and the sigmoid output gate multiplies elementwise, so (s a) * sig(g) = s (a * sig(g));
//     the G query heads reading kv head g each divide it out. (A per-head rotation is NOT
//     exact because of the elementwise gate; not offered.)
//   - deltanet_norm: y = rms_norm(o) * gamma * silu(z) is linear in gamma, ssm_out is linear
//     in y; gamma is shared by the value heads, so one scale per value dim. (Scaling the V
//     rows of attn_qkv is NOT exact: SiLU after the conv, and the gated RMSNorm removes a
//     per-head factor; not offered.)
//   - norm_inputs: the normalised vector x / rms(x) is multiplied by the gain, then read
//     linearly by every reader, so gain[c] / s_c with reader column c * s_c cancels. The one
//     vector s is shared by all readers of the norm: attn_qkv, attn_gate, ssm_beta, ssm_alpha
//     (DeltaNet) or attn_q (query and gate rows), attn_k, attn_v (attention) for attn_norm;
//     ffn_gate, ffn_up for post_attention_norm.
//
// The solver. Every transform multiplies some matrices' input columns by m_c (and their
// input activations by f_c = 1 / m_c): ffn_down for swiglu (m = 1/s), attn_output for
// attn_vo (m = 1/s), ssm_out for deltanet_norm (m = 1/s), the readers for norm_inputs
// (m = s). For those "affected" matrices it searches the family
//     m_k = a_k^alpha / w_k^(1 - alpha)           (SmoothQuant, Xiao et al. 2022, eq. 4)
// with a_k the RMS of the input activation from the imatrix and w_k the RMS of the weight
// columns that share the scale k, for alpha on a small grid, plus the identity m = 1 (so the
// search can never make its own measure worse). m is normalised to geometric mean 1 and
// clamped to [1/max_scale, max_scale]. Each candidate is scored by quantizing the affected
// matrices at their target type (quantize_rows, with the transformed imatrix as importance
// weights, as the quantizer will see it) and measuring
//     E = sum_rows sum_c imatrix'_c * (W'_rc - deq(q(W'))_rc)^2,    imatrix'_c = imatrix_c / m_c^2,
// which equals the error in the original units (dW_c = dW'_c / m_c). The scored weights
// and weights are computed with the same per-element operations as the apply_* helpers
// and scale_imatrix_inputs, so the reported error_after is exactly that of the weights
// and imatrix the caller ends up with (for the scored matrices). The row-side partners
// (ffn_up, attn_v rows; F32 gains) are not scored: scaling a whole row rescales its block
// scales, which is quantization-neutral up to the f16 rounding of those scales.
//
// Order: norm_inputs runs first on the unmodified weights, then swiglu, attn_vo and
// deltanet_norm, whose scored matrices (ffn_down, attn_output, ssm_out) norm_inputs does
// not touch; error_before / error_after are therefore sums over disjoint tensors.
//
// Design goals:
//   - Ship only exact transforms (qwen35-model.md 4.f); each is a small public helper so a
//     transform can be rebuilt from its scales and tested alone.
//   - Report how the statistics change (gauge_result::input_scales), so the imatrix of the
//     transformed model is derived, not recollected (scale_imatrix_inputs).
//   - Deterministic: the same result for any thread count.
// Non-goals: the residual rotation (hadamard / rotation headers), approximate "balancing"
// of gate_proj or DeltaNet V, solving several transforms jointly.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/base.hpp"
#include "../codec/registry.hpp"
#include "../codec/rows.hpp"
#include "../core/error.hpp"
#include "../model/forward.hpp"
#include "../io/ggml_types.hpp"
#include "../io/imatrix.hpp"
#include "../model/model_config.hpp"
#include "../core/parallel.hpp"
#include "../quant/quant_policy.hpp"

SBGQ_BEGIN_NAMESPACE

/// Which transforms solve_gauge applies, and the solver's search space.
struct gauge_options {
  bool swiglu = true;         ///< ffn_up rows * s, ffn_down columns / s
  bool attn_vo = true;        ///< attn_v rows * s, attn_output columns / s (per kv head and dim)
  bool deltanet_norm = true;  ///< ssm_norm * s, ssm_out columns / s (per value dim)
  bool norm_inputs = true;    ///< reader columns * s, norm gain / s (attn_norm, post_attention_norm)
  /// Exponents tried in m = a^alpha / w^(1-alpha); the identity (no change) is always tried too.
  std::vector<float> alphas = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.75f, 1.0f};
  /// Bound on every scale after normalisation: s in [1/max_scale, max_scale]. Must be >= 1.
  float max_scale = 16.0f;
  int n_threads = 0;  ///< <= 0: all hardware threads; results do not depend on it
};

/// What solve_gauge did to a layer.
struct gauge_result {
  /// Per GGUF tensor name: the factor by which that tensor's INPUT activations are
  /// multiplied after the transform (so imatrix'_c = imatrix_c * f_c^2 and
  /// X'^T X' = F X^T X F); only tensors whose inputs changed.
  std::map<std::string, std::vector<float>> input_scales;
  /// One line per transform: chosen alpha ("identity" if none helped) and the error
  /// before and after, e.g. "blk.3.swiglu: alpha 0.50, error 1.23e-02 -> 1.01e-02".
  std::vector<std::string> notes;
  /// Chosen alpha per transform key ("swiglu", "attn_vo", "deltanet_norm", "attn_norm",
  /// "post_attention_norm"); NaN when the identity was kept.
  std::map<std::string, float> alphas;
  /// Importance-weighted quantization error of the scored matrices, per transform key.
  std::map<std::string, std::pair<double, double>> errors;
  double error_before = 0, error_after = 0;  ///< sums over every scored matrix
};

/// The residual-stream norms whose readers the norm_inputs transform scales.
enum class gauge_norm : std::uint8_t {
  attn_norm,            ///< blk.N.attn_norm: readers are the token mixer's input projections
  post_attention_norm,  ///< blk.N.post_attention_norm: readers ffn_gate, ffn_up
};

namespace detail::gauge {

inline error gauge_error(error_code c, std::string msg) { return error(c, "gauge", std::move(msg)); }

inline std::string blk(int l, std::string_view name) { return "blk." + std::to_string(l) + "." + std::string(name) + ".weight"; }

/// Scales must be finite and non-zero (negative values are exact for the linear sides
/// too, but the solver only produces positive ones).
inline result<void> check_scales(std::span<const float> s, std::size_t n, const char* what) {
  if (s.size() != n)
    return gauge_error(error_code::size_mismatch, std::string(what) + ": " + std::to_string(s.size()) +
                                                      " scales given, expected " + std::to_string(n));
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(s[i]) || s[i] == 0.0f)
      return gauge_error(error_code::bad_value, std::string(what) + ": scale " + std::to_string(i) + " is " +
                                                    std::to_string(s[i]) + ", expected finite and non-zero");
  return {};
}

/// Multiplies the input-scale record of `name` by f (creating it as f).
inline void record_input_scale(gauge_result* rec, const std::string& name, const std::vector<float>& f) {
  if (!rec) return;
  auto [it, fresh] = rec->input_scales.try_emplace(name, f);
  if (!fresh)
    for (std::size_t i = 0; i < f.size() && i < it->second.size(); ++i) it->second[i] *= f[i];
}

/// Column c of m divided by f[c] (or multiplied), row by row: the same per-element
/// operation as the solver's scoring, so scored and applied weights are bit-identical.
inline void divide_columns(matrix_f32& m, const std::vector<float>& f) {
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    float* p = m.row(r).data();
    for (std::size_t c = 0; c < f.size(); ++c) p[c] /= f[c];
  }
}
inline void multiply_columns(matrix_f32& m, std::span<const float> f) {
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    float* p = m.row(r).data();
    for (std::size_t c = 0; c < f.size(); ++c) p[c] *= f[c];
  }
}

/// The GGUF names (without the layer prefix and ".weight") and matrices reading the norm
/// `which`, from the one table of layer tensors (layer_weights.hpp).
inline std::vector<std::pair<std::string_view, matrix_f32*>> norm_readers(layer_weights& w, gauge_norm which) {
  std::vector<std::pair<std::string_view, matrix_f32*>> out;
  const auto space = which == gauge_norm::attn_norm ? activation_space::attn_normed : activation_space::ffn_normed;
  for (const auto& [kind, m] : layer_readers(w, w.kind, space)) out.emplace_back(kind->stem(), m);
  return out;
}

}  // namespace detail::gauge

/// SwiGLU gauge (qwen35-model.md 4.a1): ffn_up row i *= s[i], ffn_down column i /= s[i].
/// s has intermediate_size entries, finite and non-zero. If rec is given, records that
/// ffn_down's input is multiplied by s. Errors: size_mismatch, bad_value, bad_shape.
inline result<void> apply_swiglu_scales(int layer, layer_weights& w, std::span<const float> s, gauge_result* rec = nullptr) {
  const auto f = static_cast<std::size_t>(w.ffn_up.rows());
  if (w.ffn_down.cols() != w.ffn_up.rows())
    return detail::gauge::gauge_error(error_code::bad_shape, "swiglu: ffn_down has " + std::to_string(w.ffn_down.cols()) +
                                                                 " columns, ffn_up " + std::to_string(w.ffn_up.rows()) + " rows");
  SBGQ_TRY_VOID(detail::gauge::check_scales(s, f, "swiglu"));
  const std::vector<float> sv(s.begin(), s.end());
  for (std::size_t i = 0; i < f; ++i) w.ffn_up.row(static_cast<Eigen::Index>(i)) *= s[i];
  detail::gauge::divide_columns(w.ffn_down, sv);
  detail::gauge::record_input_scale(rec, detail::gauge::blk(layer, "ffn_down"), sv);
  return {};
}

/// Attention V/O gauge (qwen35-model.md 4.b1): attn_v row g*D + j *= s[g*D + j] and
/// attn_output column h*D + j /= s[(h / G)*D + j] for every query head h, G = n_h / n_kv.
/// s has n_kv * head_dim entries. Records attn_output's input scales (n_h * D: the kv
/// head's scale copied to each query head of the group). Errors: invalid_argument (not a
/// full-attention layer), size_mismatch, bad_value, bad_shape.
inline result<void> apply_vo_scales(const qwen35_config& c, int layer, layer_weights& w, std::span<const float> s,
                                    gauge_result* rec = nullptr) {
  if (w.kind != layer_kind::full_attention)
    return detail::gauge::gauge_error(error_code::invalid_argument, "attn_vo: layer " + std::to_string(layer) + " is not a full-attention layer");
  const std::int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, D = c.head_dim;
  if (nkv <= 0 || nh % nkv != 0 || w.attn_v.rows() != nkv * D || w.attn_output.cols() != nh * D)
    return detail::gauge::gauge_error(error_code::bad_shape, "attn_vo: attn_v / attn_output shapes do not match the config");
  SBGQ_TRY_VOID(detail::gauge::check_scales(s, static_cast<std::size_t>(nkv * D), "attn_vo"));
  const std::int64_t group = nh / nkv;
  for (std::int64_t r = 0; r < nkv * D; ++r) w.attn_v.row(r) *= s[static_cast<std::size_t>(r)];
  std::vector<float> f(static_cast<std::size_t>(nh * D));
  for (std::int64_t h = 0; h < nh; ++h)
    for (std::int64_t j = 0; j < D; ++j) f[static_cast<std::size_t>(h * D + j)] = s[static_cast<std::size_t>((h / group) * D + j)];
  detail::gauge::divide_columns(w.attn_output, f);
  detail::gauge::record_input_scale(rec, detail::gauge::blk(layer, "attn_output"), f);
  return {};
}

/// DeltaNet gated-norm gauge (qwen35-model.md 4.c3): ssm_norm[j] *= s[j] and ssm_out
/// column v*d_v + j /= s[j] for every value head v (the order of the heads does not
/// matter: one scale per value dim). s has linear_value_head_dim entries. Records ssm_out's
/// input scales. Errors: invalid_argument (not a DeltaNet layer), size_mismatch,
/// bad_value, bad_shape.
inline result<void> apply_deltanet_norm_scales(const qwen35_config& c, int layer, layer_weights& w, std::span<const float> s,
                                               gauge_result* rec = nullptr) {
  if (w.kind != layer_kind::linear_attention)
    return detail::gauge::gauge_error(error_code::invalid_argument, "deltanet_norm: layer " + std::to_string(layer) + " is not a DeltaNet layer");
  const std::int64_t dv = c.linear_value_head_dim, vd = c.linear_value_dim();
  if (w.ssm_norm.size() != dv || w.ssm_out.cols() != vd)
    return detail::gauge::gauge_error(error_code::bad_shape, "deltanet_norm: ssm_norm / ssm_out shapes do not match the config");
  SBGQ_TRY_VOID(detail::gauge::check_scales(s, static_cast<std::size_t>(dv), "deltanet_norm"));
  for (std::int64_t j = 0; j < dv; ++j) w.ssm_norm[j] *= s[static_cast<std::size_t>(j)];
  std::vector<float> f(static_cast<std::size_t>(vd));
  for (std::int64_t col = 0; col < vd; ++col) f[static_cast<std::size_t>(col)] = s[static_cast<std::size_t>(col % dv)];
  detail::gauge::divide_columns(w.ssm_out, f);
  detail::gauge::record_input_scale(rec, detail::gauge::blk(layer, "ssm_out"), f);
  return {};
}

/// Norm-input gauge (qwen35-model.md 4.d, last paragraph): column c of every reader of the
/// norm *= s[c] and the norm's gain[c] /= s[c]. s has hidden_size entries. Records 1/s as
/// the input scale of every reader. Errors: size_mismatch, bad_value, bad_shape.
inline result<void> apply_norm_input_scales(int layer, layer_weights& w, gauge_norm which, std::span<const float> s,
                                            gauge_result* rec = nullptr) {
  vector_f32& gain = which == gauge_norm::attn_norm ? w.attn_norm : w.post_attention_norm;
  const auto d = static_cast<std::size_t>(gain.size());
  SBGQ_TRY_VOID(detail::gauge::check_scales(s, d, which == gauge_norm::attn_norm ? "attn_norm" : "post_attention_norm"));
  const auto readers = detail::gauge::norm_readers(w, which);
  for (const auto& [name, m] : readers)
    if (static_cast<std::size_t>(m->cols()) != d)
      return detail::gauge::gauge_error(error_code::bad_shape, "norm_inputs: " + std::string(name) + " has " +
                                                                   std::to_string(m->cols()) + " columns, the norm " + std::to_string(d));
  std::vector<float> f(d);
  for (std::size_t i = 0; i < d; ++i) {
    gain[static_cast<Eigen::Index>(i)] /= s[i];
    f[i] = 1.0f / s[i];
  }
  for (const auto& [name, m] : readers) detail::gauge::multiply_columns(*m, s);
  for (const auto& [name, m] : readers) detail::gauge::record_input_scale(rec, detail::gauge::blk(layer, name), f);
  return {};
}

/// Applies the input scales of a gauge result to an importance matrix:
/// sum2_c *= f_c^2 for every recorded tensor that has an entry (counts unchanged), so the
/// weights it yields are those of the transformed model. Entries of other sizes are left
/// alone. Not thread-safe on the same imatrix.
inline void scale_imatrix_inputs(imatrix& im, const gauge_result& g) {
  for (const auto& [name, f] : g.input_scales) {
    auto it = im.entries.find(name);
    if (it == im.entries.end() || it->second.n_in != static_cast<std::int64_t>(f.size())) continue;
    auto& e = it->second;
    for (std::size_t i = 0; i < e.sum2.size(); ++i) {
      const float fi = f[i % f.size()];
      e.sum2[i] *= fi * fi;
    }
  }
}

namespace detail::gauge {

/// A matrix whose input columns a candidate's scales change: column c uses scale
/// group[c] (several columns may share one scale).
struct scored_matrix {
  std::string name;
  const matrix_f32* w = nullptr;
  std::vector<float> sum2;  ///< the imatrix entry's raw sums of x^2, untransformed
  std::int64_t count = 0;   ///< its token count
  ggml_type type = ggml_type::f32;
};

/// How the transform's scale s acts on the scored matrix's columns: divide (swiglu,
/// attn_vo, deltanet_norm: column / s, input activation * s) or multiply (norm_inputs:
/// column * s, input activation * (1/s)).
enum class column_op : std::uint8_t { divide, multiply };

/// Rows per quantization task of the error measurement.
inline constexpr std::size_t error_rows_per_task = 32;

/// Importance-weighted quantization error of the matrix with its columns transformed by
/// the scales s (bit for bit as the apply_* helpers transform them), quantized with the
/// transformed imatrix weights (bit for bit as scale_imatrix_inputs + imatrix::weights
/// compute them) and weighted by the same.
inline result<double> weighted_error(const scored_matrix& s, const std::vector<std::int32_t>& group,
                                     const std::vector<float>& scales, column_op op, int n_threads) {
  const auto rows = static_cast<std::size_t>(s.w->rows()), cols = static_cast<std::size_t>(s.w->cols());
  const codec_traits* codec = find_codec(s.type);
  if (!codec)
    return gauge_error(error_code::unsupported, s.name + ": no codec for type " + std::string(type_name(s.type)));
  if (cols % codec->block_values != 0)
    return gauge_error(error_code::size_mismatch, s.name + ": rows of " + std::to_string(cols) + " are not a multiple of " +
                                                      std::string(type_name(s.type)) + "'s block of " +
                                                      std::to_string(codec->block_values));
  std::vector<float> sc(cols), wq(cols);
  for (std::size_t c = 0; c < cols; ++c) {
    sc[c] = scales[static_cast<std::size_t>(group[c])];
    const float f = op == column_op::divide ? sc[c] : 1.0f / sc[c];  // input activation factor
    wq[c] = s.count > 0 ? (s.sum2[c] * (f * f)) / static_cast<float>(s.count) : 1.0f;
  }
  const std::size_t n_tasks = (rows + error_rows_per_task - 1) / error_rows_per_task;
  std::vector<double> partial(n_tasks, 0.0);
  std::vector<error> errs(n_tasks, error(error_code::success));
  const std::size_t row_bytes = codec->row_bytes(cols);
  parallel_for(n_tasks, 1, n_threads, [&](std::size_t b, std::size_t e) {
    std::vector<float> src;
    std::vector<std::byte> q;
    for (std::size_t t = b; t < e; ++t) {
      const std::size_t r0 = t * error_rows_per_task, nr = std::min(error_rows_per_task, rows - r0);
      src.resize(nr * cols);
      q.resize(nr * row_bytes);
      for (std::size_t r = 0; r < nr; ++r) {
        const float* in = s.w->row(static_cast<Eigen::Index>(r0 + r)).data();
        float* out = src.data() + r * cols;
        if (op == column_op::divide)
          for (std::size_t c = 0; c < cols; ++c) out[c] = in[c] / sc[c];
        else
          for (std::size_t c = 0; c < cols; ++c) out[c] = in[c] * sc[c];
      }
      auto qr = quantize_rows(s.type, src.data(), nr, cols, wq.data(), q, 1);
      if (!qr) {
        errs[t] = std::move(qr).error();
        continue;
      }
      auto sums = weighted_row_error(s.type, src.data(), q, nr, cols, wq);
      if (!sums) {
        errs[t] = std::move(sums).error();
        continue;
      }
      const double acc = sums->error;
      partial[t] = acc;
    }
  });
  double total = 0.0;
  for (std::size_t t = 0; t < n_tasks; ++t) {
    if (errs[t].code != error_code::success) {
      error e = errs[t];
      e.context = s.name + ": " + e.context;
      return e;
    }
    total += partial[t];
  }
  return total;
}

/// The candidate column multipliers m for one alpha: m_k = a_k^alpha / w_k^(1-alpha),
/// computed in logs with floors for dead channels, normalised to geometric mean 1 and
/// clamped to [1/max_scale, max_scale].
inline std::vector<float> candidate(const std::vector<double>& log_a, const std::vector<double>& log_w, double alpha,
                                    double max_scale) {
  const std::size_t n = log_a.size();
  std::vector<double> lm(n);
  double mean = 0.0;
  for (std::size_t k = 0; k < n; ++k) {
    lm[k] = alpha * log_a[k] - (1.0 - alpha) * log_w[k];
    mean += lm[k];
  }
  mean /= static_cast<double>(n ? n : 1);
  const double lim = std::log(max_scale);
  std::vector<float> m(n);
  for (std::size_t k = 0; k < n; ++k) m[k] = static_cast<float>(std::exp(std::clamp(lm[k] - mean, -lim, lim)));
  return m;
}

/// log of v with values below floor_rel * max(v) (dead channels, zeros) raised to it.
inline std::vector<double> floored_log(const std::vector<double>& v, double floor_rel) {
  double mx = 0.0;
  for (double x : v) mx = std::max(mx, x);
  const double fl = mx > 0 ? mx * floor_rel : std::numeric_limits<double>::min();
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::log(std::max(v[i], fl));
  return out;
}

/// Outcome of one search.
struct search_result {
  std::vector<float> s;  ///< chosen scales of the transform (all 1 for the identity)
  float alpha = std::numeric_limits<float>::quiet_NaN();
  double before = 0, after = 0;
};

/// Searches the family for the scales of n_scales groups shared by the scored matrices
/// (group[i][c]: scale index of column c of matrix i); `op` says how a scale acts on the
/// columns, so the column multiplier m of the family is s (multiply) or 1/s (divide).
inline result<search_result> search(const std::vector<scored_matrix>& mats, const std::vector<std::vector<std::int32_t>>& group,
                                    std::size_t n_scales, column_op op, const gauge_options& opt) {
  // Activation mean square and weight mean square per scale group.
  std::vector<double> a2(n_scales, 0.0), w2(n_scales, 0.0), na(n_scales, 0.0), nw(n_scales, 0.0);
  for (std::size_t i = 0; i < mats.size(); ++i) {
    const matrix_f32& w = *mats[i].w;
    const auto& mi = mats[i];
    std::vector<double> colsq(static_cast<std::size_t>(w.cols()), 0.0);  // row by row: contiguous reads
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      const float* p = w.row(r).data();
      for (std::size_t c = 0; c < colsq.size(); ++c) colsq[c] += static_cast<double>(p[c]) * static_cast<double>(p[c]);
    }
    for (std::size_t c = 0; c < colsq.size(); ++c) {
      const auto k = static_cast<std::size_t>(group[i][c]);
      a2[k] += mi.count > 0 ? static_cast<double>(mi.sum2[c]) / static_cast<double>(mi.count) : 1.0;
      na[k] += 1.0;
      w2[k] += colsq[c];
      nw[k] += static_cast<double>(w.rows());
    }
  }
  for (std::size_t k = 0; k < n_scales; ++k) {
    a2[k] = na[k] > 0 ? std::sqrt(a2[k] / na[k]) : 0.0;  // RMS of the activation
    w2[k] = nw[k] > 0 ? std::sqrt(w2[k] / nw[k]) : 0.0;  // RMS of the weight columns
  }
  const std::vector<double> log_a = floored_log(a2, 1e-6), log_w = floored_log(w2, 1e-6);

  auto score = [&](const std::vector<float>& s) -> result<double> {
    double e = 0.0;
    for (std::size_t i = 0; i < mats.size(); ++i) {
      SBGQ_TRY(double ei, weighted_error(mats[i], group[i], s, op, opt.n_threads));
      e += ei;
    }
    return e;
  };
  search_result best;
  best.s.assign(n_scales, 1.0f);
  SBGQ_TRY(best.before, score(best.s));
  best.after = best.before;
  const double max_scale = std::max(1.0, static_cast<double>(opt.max_scale));
  for (float alpha : opt.alphas) {
    if (!std::isfinite(alpha)) continue;
    std::vector<float> s = candidate(log_a, log_w, static_cast<double>(alpha), max_scale);
    if (op == column_op::divide)
      for (float& x : s) x = 1.0f / x;  // column multiplier m = 1 / s
    SBGQ_TRY(double e, score(s));
    if (e < best.after) {  // strictly better: ties keep the identity / the earlier alpha
      best.after = e;
      best.alpha = alpha;
      best.s = std::move(s);
    }
  }
  return best;
}

/// The imatrix entry of `name` (one matrix, n_in columns), or an error naming it.
inline result<const imatrix_entry*> im_entry(const imatrix& im, const std::string& name, std::int64_t n_in) {
  auto it = im.entries.find(name);
  if (it == im.entries.end()) return gauge_error(error_code::not_found, "the imatrix has no entry '" + name + "'");
  const imatrix_entry& e = it->second;
  if (e.n_in != n_in || e.counts.size() != 1 || static_cast<std::int64_t>(e.sum2.size()) != n_in)
    return gauge_error(error_code::size_mismatch, "imatrix entry '" + name + "' has " + std::to_string(e.sum2.size()) +
                                                      " values in " + std::to_string(e.counts.size()) +
                                                      " matrices, the tensor one matrix of " + std::to_string(n_in) + " columns");
  return &e;
}

inline std::string format_note(int layer, const std::string& key, const search_result& r) {
  char buf[160];
  if (std::isnan(r.alpha))
    std::snprintf(buf, sizeof buf, "blk.%d.%s: identity kept, error %.4e", layer, key.c_str(), r.before);
  else
    std::snprintf(buf, sizeof buf, "blk.%d.%s: alpha %.2f, error %.4e -> %.4e (%.2f%%)", layer, key.c_str(),
                  static_cast<double>(r.alpha), r.before, r.after, r.before > 0 ? 100.0 * (r.after - r.before) / r.before : 0.0);
  return buf;
}

inline void record_search(gauge_result& g, int layer, const std::string& key, const search_result& r) {
  g.notes.push_back(format_note(layer, key, r));
  g.alphas[key] = r.alpha;
  g.errors[key] = {r.before, r.after};
  g.error_before += r.before;
  g.error_after += r.after;
}

}  // namespace detail::gauge

/// Chooses and applies the enabled exact gauge scalings of decoder layer `layer`, in
/// place (see the file header for the transforms, the search and the order).
///
/// `im` holds the layer's statistics of the untransformed model (entries
/// blk.<layer>.<tensor>.weight of the scored matrices; not modified); `type_of` maps a
/// GGUF tensor name to the type it will be quantized to. Transforms whose imatrix entries
/// are missing are skipped with a note. The returned input_scales turn `im` into the
/// transformed model's statistics (scale_imatrix_inputs).
/// Errors: those of check_layer_weights, bad_value (max_scale < 1), and from the quantizer
/// (a type without a codec or whose block does not divide a scored row: unsupported,
/// size_mismatch), each naming the tensor. On error the weights may be partly transformed.
/// Thread-safety: w is modified; other arguments are read only. Complexity: per transform,
/// (1 + alphas.size()) quantizations of the scored matrices.
inline result<gauge_result> solve_gauge(const qwen35_config& c, int layer, layer_weights& w, const imatrix& im,
                                        const std::function<ggml_type(const std::string&)>& type_of,
                                        const gauge_options& opt) {
  namespace dg = detail::gauge;
  SBGQ_TRY_VOID(check_layer_weights(c, layer, w));
  if (!(opt.max_scale >= 1.0f) || !std::isfinite(opt.max_scale))
    return dg::gauge_error(error_code::bad_value, "max_scale " + std::to_string(opt.max_scale) + " must be finite and >= 1");
  gauge_result g;
  auto identity_groups = [](Eigen::Index n) {
    std::vector<std::int32_t> v(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int32_t>(i);
    return v;
  };
  // Builds the scored matrices; returns false (and a note) if an imatrix entry is missing.
  auto scored = [&](const std::string& key, const std::vector<std::pair<std::string, const matrix_f32*>>& list,
                    std::vector<dg::scored_matrix>& out) -> result<bool> {
    for (const auto& [name, m] : list) {
      auto e = dg::im_entry(im, name, m->cols());
      if (!e) {
        if (e.error().code != error_code::not_found) return std::move(e).error();
        g.notes.push_back("blk." + std::to_string(layer) + "." + key + ": skipped, " + e.error().context);
        return false;
      }
      // Score in the type llama.cpp will really write: its shape fallback applies to rows
      // the requested block does not divide (a DeltaNet value width of 6 x 64 = 384 under
      // Q4_K is written as Q5_0). A type sbgq has no codec for is not scored.
      const ggml_type asked = type_of(name);
      const auto t = shape_fallback_type(m->cols(), asked);
      if (!t || !is_quantized(*t) || !find_codec(*t)) {
        g.notes.push_back("blk." + std::to_string(layer) + "." + key + ": " + name + " not scored (" +
                          std::to_string(m->cols()) + " columns: " + std::string(type_name(asked)) + " falls back to " +
                          (t ? std::string(type_name(*t)) : std::string("nothing")) + ", which sbgq cannot score)");
        continue;
      }
      out.push_back(dg::scored_matrix{name, m, (*e)->sum2, (*e)->counts[0], *t});
    }
    return !out.empty();
  };

  // 1. Norm readers (first: the later transforms score matrices these do not touch).
  if (opt.norm_inputs) {
    for (gauge_norm which : {gauge_norm::attn_norm, gauge_norm::post_attention_norm}) {
      const std::string key = which == gauge_norm::attn_norm ? "attn_norm" : "post_attention_norm";
      std::vector<std::pair<std::string, const matrix_f32*>> list;
      for (const auto& [name, m] : dg::norm_readers(w, which)) list.emplace_back(dg::blk(layer, name), m);
      std::vector<dg::scored_matrix> mats;
      SBGQ_TRY(bool ok, scored(key, list, mats));
      if (!ok) continue;
      std::vector<std::vector<std::int32_t>> groups;
      for (const auto& s : mats) groups.push_back(identity_groups(s.w->cols()));
      SBGQ_TRY(dg::search_result r, dg::search(mats, groups, static_cast<std::size_t>(c.hidden_size), dg::column_op::multiply, opt));
      dg::record_search(g, layer, key, r);
      if (!std::isnan(r.alpha)) SBGQ_TRY_VOID(apply_norm_input_scales(layer, w, which, r.s, &g));
    }
  }
  // 2. SwiGLU: ffn_down columns * m, s = 1/m.
  if (opt.swiglu) {
    std::vector<dg::scored_matrix> mats;
    SBGQ_TRY(bool ok, scored("swiglu", {{dg::blk(layer, "ffn_down"), &w.ffn_down}}, mats));
    if (ok) {
      SBGQ_TRY(dg::search_result r, dg::search(mats, {identity_groups(w.ffn_down.cols())},
                                               static_cast<std::size_t>(w.ffn_down.cols()), dg::column_op::divide, opt));
      dg::record_search(g, layer, "swiglu", r);
      if (!std::isnan(r.alpha)) SBGQ_TRY_VOID(apply_swiglu_scales(layer, w, r.s, &g));
    }
  }
  // 3. Attention V/O: attn_output column (h, j) * m[(h / G) * D + j].
  if (opt.attn_vo && w.kind == layer_kind::full_attention) {
    std::vector<dg::scored_matrix> mats;
    SBGQ_TRY(bool ok, scored("attn_vo", {{dg::blk(layer, "attn_output"), &w.attn_output}}, mats));
    if (ok) {
      const std::int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, D = c.head_dim, grp = nh / nkv;
      std::vector<std::int32_t> gm(static_cast<std::size_t>(nh * D));
      for (std::int64_t h = 0; h < nh; ++h)
        for (std::int64_t j = 0; j < D; ++j) gm[static_cast<std::size_t>(h * D + j)] = static_cast<std::int32_t>((h / grp) * D + j);
      SBGQ_TRY(dg::search_result r, dg::search(mats, {gm}, static_cast<std::size_t>(nkv * D), dg::column_op::divide, opt));
      dg::record_search(g, layer, "attn_vo", r);
      if (!std::isnan(r.alpha)) SBGQ_TRY_VOID(apply_vo_scales(c, layer, w, r.s, &g));
    }
  }
  // 4. DeltaNet gated norm: ssm_out column (v, j) * m[j].
  if (opt.deltanet_norm && w.kind == layer_kind::linear_attention) {
    std::vector<dg::scored_matrix> mats;
    SBGQ_TRY(bool ok, scored("deltanet_norm", {{dg::blk(layer, "ssm_out"), &w.ssm_out}}, mats));
    if (ok) {
      const std::int64_t dv = c.linear_value_head_dim, vd = c.linear_value_dim();
      std::vector<std::int32_t> gm(static_cast<std::size_t>(vd));
      for (std::int64_t col = 0; col < vd; ++col) gm[static_cast<std::size_t>(col)] = static_cast<std::int32_t>(col % dv);
      SBGQ_TRY(dg::search_result r, dg::search(mats, {gm}, static_cast<std::size_t>(dv), dg::column_op::divide, opt));
      dg::record_search(g, layer, "deltanet_norm", r);
      if (!std::isnan(r.alpha)) SBGQ_TRY_VOID(apply_deltanet_norm_scales(c, layer, w, r.s, &g));
    }
  }
  return g;
}

SBGQ_END_NAMESPACE
