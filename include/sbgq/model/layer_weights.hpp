// The f32 weights of a Qwen3.5 decoder layer and THE table of its tensors.
//
// Every part of sbgq that touches a layer's tensors by name derives what it needs from
// `qwen35_layer_tensors` below instead of keeping its own list:
//   - the tensor plan (qwen35_tensors.hpp): GGUF and HF names, shapes, the converter's
//     transform, F32-only tensors;
//   - the loaders (weights.hpp) and every "GGUF name -> field" lookup (layer_tensor());
//   - calibration (calibrate.hpp): which matrices share an input, hence one X^T X;
//   - the residual-stream rotation (rotation.hpp) and the gauge's norm readers
//     (gauge.hpp): which matrices read a normed residual (columns rotated, the norm's
//     gain folded in) and which write the residual (rows rotated).
// So a new tensor kind is one row here plus its math in forward.hpp.
//
// Roles, in the forward pass's order (qwen35-model.md section 3):
//
//   residual --attn_norm--> attn_normed --[mixer readers]--> ... --> deltanet_values
//   (H_v*d_v, DeltaNet) or attn_heads (n_h*D, attention) --[ssm_out | attn_output]-->
//   residual --post_attention_norm--> ffn_normed --[ffn_gate, ffn_up]--> ffn_hidden (f)
//   --[ffn_down]--> residual
//
// Matrices that read the same activations share one input space; the first row of the
// table with that input (in table order, among the rows of the layer's kind) names it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/base.hpp"
#include "detail/forward_ops.hpp"
#include "model_config.hpp"

SBGQ_BEGIN_NAMESPACE

/// The f32 weights of one decoder layer, GGUF names and conventions (forward.hpp's file
/// header). Only the set of the layer's kind is filled; the other tensors stay empty.
struct layer_weights {
  layer_kind kind = layer_kind::linear_attention;
  vector_f32 attn_norm;            ///< blk.N.attn_norm.weight [d], gain
  vector_f32 post_attention_norm;  ///< blk.N.post_attention_norm.weight [d], gain
  matrix_f32 ffn_gate;             ///< [f][d]
  matrix_f32 ffn_up;               ///< [f][d]
  matrix_f32 ffn_down;             ///< [d][f]
  // Gated DeltaNet (linear_attention)
  matrix_f32 attn_qkv;     ///< [2*H_k*d_k + H_v*d_v][d]: q | k | v (v in tiled head order)
  matrix_f32 attn_gate;    ///< z projection [H_v*d_v][d] (tiled order)
  matrix_f32 ssm_beta;     ///< [H_v][d]
  matrix_f32 ssm_alpha;    ///< [H_v][d]
  matrix_f32 ssm_conv1d;   ///< [conv_dim][K]; column K-1 multiplies the current token
  vector_f32 ssm_a;        ///< [H_v], -exp(A_log)
  vector_f32 ssm_dt_bias;  ///< [H_v] (GGUF blk.N.ssm_dt.bias)
  vector_f32 ssm_norm;     ///< [d_v], gated-norm gain (no +1)
  matrix_f32 ssm_out;      ///< [d][H_v*d_v]
  // Gated full attention (full_attention)
  matrix_f32 attn_q;       ///< [n_h*2*D][d]: per head D query rows then D gate rows
  matrix_f32 attn_k;       ///< [n_kv*D][d]
  matrix_f32 attn_v;       ///< [n_kv*D][d]
  matrix_f32 attn_output;  ///< [d][n_h*D]
  vector_f32 attn_q_norm;  ///< [D], gain
  vector_f32 attn_k_norm;  ///< [D], gain
};

/// The f32 weights outside the decoder layers.
struct global_weights {
  matrix_f32 token_embd;   ///< [vocab][d]
  vector_f32 output_norm;  ///< [d], gain
  matrix_f32 output;       ///< [vocab][d]; empty when the embeddings are tied

  /// The LM head: output, or token_embd when tied.
  const matrix_f32& lm_head() const noexcept { return output.size() != 0 ? output : token_embd; }
  /// GGUF name of the LM head matrix.
  const char* lm_head_name() const noexcept { return output.size() != 0 ? "output.weight" : "token_embd.weight"; }
};

/// Which layers have a tensor.
enum class layer_scope : std::uint8_t {
  every,             ///< every decoder layer (norms, SwiGLU); MTP layers too
  linear_attention,  ///< Gated DeltaNet layers
  full_attention,    ///< gated full-attention layers; MTP layers too
};

/// An activation space: what a matrix reads (its columns) or writes (its rows).
enum class activation_space : std::uint8_t {
  none,             ///< not a matrix of a product (norm gains, conv taps, per-head scalars)
  residual,         ///< the residual stream (d)
  attn_normed,      ///< the residual after attn_norm: the mixer's input projections
  ffn_normed,       ///< the residual after post_attention_norm: ffn_gate, ffn_up
  deltanet_values,  ///< DeltaNet's gated-norm output (H_v*d_v): ssm_out
  attn_heads,       ///< gated attention's output (n_h*D): attn_output
  ffn_hidden,       ///< SwiGLU's product (f): ffn_down
};

/// How HF values become GGUF values (qwen35-gguf.md sections 3 and 7; applied by
/// apply_tensor_transform in qwen35_tensors.hpp).
enum class tensor_transform : std::uint8_t {
  none, plus_one, neg_exp, reorder_rows, reorder_v_rows, reorder_cols,
};

/// One tensor kind of a decoder layer.
struct layer_tensor_kind {
  std::string_view gguf;   ///< name after "blk.N.": "attn_qkv.weight"
  std::string_view hf;     ///< HF name after "...layers.N.": "linear_attn.in_proj_qkv.weight"
  layer_scope scope = layer_scope::every;
  /// HF shape (PyTorch order, slowest first) for a config.
  std::vector<std::int64_t> (*hf_shape)(const qwen35_config&) = nullptr;
  tensor_transform transform = tensor_transform::none;
  bool reorder_by_value_dim = false;  ///< V-head reorder in blocks of d_v (else 1)
  bool keep_f32 = false;              ///< norms, ssm_a, ssm_dt.bias, ssm_conv1d
  matrix_f32 layer_weights::*matrix = nullptr;  ///< the field (one of matrix / vector)
  vector_f32 layer_weights::*vector = nullptr;
  activation_space reads = activation_space::none;   ///< a matrix's input (columns)
  activation_space writes = activation_space::none;  ///< a matrix's output (rows)

  /// The name without ".weight" ("attn_qkv"), as the forward pass's observer and the
  /// transforms' messages use it.
  constexpr std::string_view stem() const noexcept {
    constexpr std::string_view w = ".weight";
    return gguf.size() > w.size() && gguf.substr(gguf.size() - w.size()) == w ? gguf.substr(0, gguf.size() - w.size()) : gguf;
  }

  /// True if a layer of kind `k` has this tensor.
  constexpr bool in(layer_kind k) const noexcept {
    return scope == layer_scope::every ||
           (scope == layer_scope::linear_attention) == (k == layer_kind::linear_attention);
  }
};

namespace detail::lt {
using shape = std::vector<std::int64_t>;
inline shape d(const qwen35_config& c) { return {c.hidden_size}; }
inline shape f_by_d(const qwen35_config& c) { return {c.intermediate_size, c.hidden_size}; }
inline shape d_by_f(const qwen35_config& c) { return {c.hidden_size, c.intermediate_size}; }
inline shape conv_by_d(const qwen35_config& c) { return {c.linear_conv_dim(), c.hidden_size}; }
inline shape vd_by_d(const qwen35_config& c) { return {c.linear_value_dim(), c.hidden_size}; }
inline shape hv_by_d(const qwen35_config& c) { return {c.linear_num_value_heads, c.hidden_size}; }
inline shape conv_taps(const qwen35_config& c) { return {c.linear_conv_dim(), 1, c.linear_conv_kernel_dim}; }
inline shape hv(const qwen35_config& c) { return {c.linear_num_value_heads}; }
inline shape dv(const qwen35_config& c) { return {c.linear_value_head_dim}; }
inline shape d_by_vd(const qwen35_config& c) { return {c.hidden_size, c.linear_value_dim()}; }
inline shape q_gate_by_d(const qwen35_config& c) { return {2 * c.num_attention_heads * c.head_dim, c.hidden_size}; }
inline shape kv_by_d(const qwen35_config& c) { return {c.num_key_value_heads * c.head_dim, c.hidden_size}; }
inline shape d_by_heads(const qwen35_config& c) { return {c.hidden_size, c.num_attention_heads * c.head_dim}; }
inline shape head_dim(const qwen35_config& c) { return {c.head_dim}; }
}  // namespace detail::lt

/// The tensors of a Qwen3.5 decoder layer, in the converter's order within a layer
/// (norms, mixer, SwiGLU). Readers of one input are listed with the space's name first.
inline const layer_tensor_kind qwen35_layer_tensors[] = {
    // clang-format off
    // gguf                          hf                                   scope                         shape                       transform                        by d_v f32    field                                   reads                               writes
    {"attn_norm.weight",           "input_layernorm.weight",             layer_scope::every,           detail::lt::d,           tensor_transform::plus_one,       false, true,  nullptr, &layer_weights::attn_norm},
    {"post_attention_norm.weight", "post_attention_layernorm.weight",    layer_scope::every,           detail::lt::d,           tensor_transform::plus_one,       false, true,  nullptr, &layer_weights::post_attention_norm},
    {"attn_qkv.weight",            "linear_attn.in_proj_qkv.weight",     layer_scope::linear_attention, detail::lt::conv_by_d,  tensor_transform::reorder_v_rows, true,  false, &layer_weights::attn_qkv, nullptr,        activation_space::attn_normed},
    {"attn_gate.weight",           "linear_attn.in_proj_z.weight",       layer_scope::linear_attention, detail::lt::vd_by_d,    tensor_transform::reorder_rows,   true,  false, &layer_weights::attn_gate, nullptr,       activation_space::attn_normed},
    {"ssm_beta.weight",            "linear_attn.in_proj_b.weight",       layer_scope::linear_attention, detail::lt::hv_by_d,    tensor_transform::reorder_rows,   false, false, &layer_weights::ssm_beta, nullptr,        activation_space::attn_normed},
    {"ssm_alpha.weight",           "linear_attn.in_proj_a.weight",       layer_scope::linear_attention, detail::lt::hv_by_d,    tensor_transform::reorder_rows,   false, false, &layer_weights::ssm_alpha, nullptr,       activation_space::attn_normed},
    {"ssm_conv1d.weight",          "linear_attn.conv1d.weight",          layer_scope::linear_attention, detail::lt::conv_taps,  tensor_transform::reorder_v_rows, true,  true,  &layer_weights::ssm_conv1d, nullptr},
    {"ssm_dt.bias",                "linear_attn.dt_bias",                layer_scope::linear_attention, detail::lt::hv,         tensor_transform::reorder_rows,   false, true,  nullptr, &layer_weights::ssm_dt_bias},
    {"ssm_a",                      "linear_attn.A_log",                  layer_scope::linear_attention, detail::lt::hv,         tensor_transform::neg_exp,        false, true,  nullptr, &layer_weights::ssm_a},
    {"ssm_norm.weight",            "linear_attn.norm.weight",            layer_scope::linear_attention, detail::lt::dv,         tensor_transform::none,           false, true,  nullptr, &layer_weights::ssm_norm},
    {"ssm_out.weight",             "linear_attn.out_proj.weight",        layer_scope::linear_attention, detail::lt::d_by_vd,    tensor_transform::reorder_cols,   true,  false, &layer_weights::ssm_out, nullptr,         activation_space::deltanet_values, activation_space::residual},
    {"attn_q.weight",              "self_attn.q_proj.weight",            layer_scope::full_attention,  detail::lt::q_gate_by_d, tensor_transform::none,           false, false, &layer_weights::attn_q, nullptr,          activation_space::attn_normed},
    {"attn_k.weight",              "self_attn.k_proj.weight",            layer_scope::full_attention,  detail::lt::kv_by_d,     tensor_transform::none,           false, false, &layer_weights::attn_k, nullptr,          activation_space::attn_normed},
    {"attn_v.weight",              "self_attn.v_proj.weight",            layer_scope::full_attention,  detail::lt::kv_by_d,     tensor_transform::none,           false, false, &layer_weights::attn_v, nullptr,          activation_space::attn_normed},
    {"attn_output.weight",         "self_attn.o_proj.weight",            layer_scope::full_attention,  detail::lt::d_by_heads,  tensor_transform::none,           false, false, &layer_weights::attn_output, nullptr,     activation_space::attn_heads, activation_space::residual},
    {"attn_q_norm.weight",         "self_attn.q_norm.weight",            layer_scope::full_attention,  detail::lt::head_dim,    tensor_transform::plus_one,       false, true,  nullptr, &layer_weights::attn_q_norm},
    {"attn_k_norm.weight",         "self_attn.k_norm.weight",            layer_scope::full_attention,  detail::lt::head_dim,    tensor_transform::plus_one,       false, true,  nullptr, &layer_weights::attn_k_norm},
    {"ffn_gate.weight",            "mlp.gate_proj.weight",               layer_scope::every,           detail::lt::f_by_d,      tensor_transform::none,           false, false, &layer_weights::ffn_gate, nullptr,        activation_space::ffn_normed},
    {"ffn_up.weight",              "mlp.up_proj.weight",                 layer_scope::every,           detail::lt::f_by_d,      tensor_transform::none,           false, false, &layer_weights::ffn_up, nullptr,          activation_space::ffn_normed},
    {"ffn_down.weight",            "mlp.down_proj.weight",               layer_scope::every,           detail::lt::d_by_f,      tensor_transform::none,           false, false, &layer_weights::ffn_down, nullptr,        activation_space::ffn_hidden, activation_space::residual},
    // clang-format on
};

/// The table's row for a tensor name after "blk.N." ("attn_qkv.weight"), or null.
inline const layer_tensor_kind* find_layer_tensor_kind(std::string_view gguf_suffix) noexcept {
  for (const auto& k : qwen35_layer_tensors)
    if (k.gguf == gguf_suffix) return &k;
  return nullptr;
}

/// "blk.N.<suffix>" -> "<suffix>" (the whole name if it has no block prefix).
inline std::string_view layer_tensor_suffix(std::string_view gguf_name) noexcept {
  if (gguf_name.substr(0, 4) != "blk.") return gguf_name;
  const auto dot = gguf_name.find('.', 4);
  return dot == std::string_view::npos ? gguf_name : gguf_name.substr(dot + 1);
}

/// A tensor of a loaded layer as a row-major f32 block (a 1-D tensor is one row).
struct layer_tensor_ref {
  float* data;
  std::size_t rows, cols;
};

/// The field of `w` holding GGUF tensor `gguf_name` ("blk.3.ffn_up.weight" or
/// "ffn_up.weight"), or nullopt for a name the table does not have.
inline std::optional<layer_tensor_ref> layer_tensor(layer_weights& w, std::string_view gguf_name) {
  const layer_tensor_kind* k = find_layer_tensor_kind(layer_tensor_suffix(gguf_name));
  if (!k) return std::nullopt;
  if (k->matrix) {
    matrix_f32& m = w.*(k->matrix);
    return layer_tensor_ref{m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
  }
  vector_f32& v = w.*(k->vector);
  return layer_tensor_ref{v.data(), 1, static_cast<std::size_t>(v.size())};
}

/// Frees the storage of GGUF tensor `gguf_name` in `w` (once it is written and nothing
/// reads it again); a name the table does not have is ignored.
inline void release_layer_tensor(layer_weights& w, std::string_view gguf_name) {
  const layer_tensor_kind* k = find_layer_tensor_kind(layer_tensor_suffix(gguf_name));
  if (!k) return;
  if (k->matrix)
    w.*(k->matrix) = matrix_f32();
  else
    w.*(k->vector) = vector_f32();
}

/// A matrix of a loaded layer with its row of the table.
using layer_matrix = std::pair<const layer_tensor_kind*, matrix_f32*>;

/// The matrices of a layer of kind `k` that read `space`, in table order (rotation, the
/// gauge's norm readers).
inline std::vector<layer_matrix> layer_readers(layer_weights& w, layer_kind k, activation_space space) {
  std::vector<layer_matrix> out;
  for (const auto& t : qwen35_layer_tensors)
    if (t.in(k) && t.matrix && t.reads == space) out.emplace_back(&t, &(w.*(t.matrix)));
  return out;
}

/// The matrices of a layer of kind `k` that write the residual stream (the mixer's output
/// projection and ffn_down), in table order.
inline std::vector<layer_matrix> residual_writers(layer_weights& w, layer_kind k) {
  std::vector<layer_matrix> out;
  for (const auto& t : qwen35_layer_tensors)
    if (t.in(k) && t.matrix && t.writes == activation_space::residual) out.emplace_back(&t, &(w.*(t.matrix)));
  return out;
}

/// The input space of a layer matrix, named by the first matrix of the table that reads
/// the same activations in a layer of the same kind: "blk.3.attn_gate.weight" ->
/// "blk.3.attn_qkv.weight", "blk.7.attn_v.weight" -> "blk.7.attn_q.weight",
/// "blk.0.ffn_up.weight" -> "blk.0.ffn_gate.weight". Other names are returned as they are.
inline std::string input_space_of(std::string_view gguf_name) {
  const std::string_view suffix = layer_tensor_suffix(gguf_name);
  const layer_tensor_kind* k = find_layer_tensor_kind(suffix);
  if (!k || k->reads == activation_space::none) return std::string(gguf_name);
  for (const auto& t : qwen35_layer_tensors) {
    if (t.reads != k->reads || t.scope != k->scope) continue;
    std::string s(gguf_name.substr(0, gguf_name.size() - suffix.size()));
    return s.append(t.gguf);
  }
  return std::string(gguf_name);
}

SBGQ_END_NAMESPACE
