// The tensors of a dense Qwen3.5 model: the HF -> GGUF name map, expected shapes, and the
// numeric transforms llama.cpp's converter applies (qwen35-gguf.md sections 3 and 7).
//
// One "plan" entry per GGUF tensor says where it comes from (HF name), what shape both
// sides have, which transform turns the HF values into the GGUF values, and whether it must
// stay F32. The decoder layers' rows come from the one table of layer tensors
// (layer_weights.hpp: qwen35_layer_tensors); the globals and the MTP block's own tensors
// are listed here. The converter, the loaders, the exporter and the transforms all use
// the plan, so the name map and the conversions live in exactly one place.
//
// Transforms (all in f32, exactly as the converter computes them):
//   plus_one       RMSNorm offsets -> gains: g = w + 1 (every *norm.weight except the
//                  DeltaNet gated norm, linear_attn.norm.weight)
//   neg_exp        A_log -> ssm_a = -exp(A_log), with V-head reorder
//   reorder_rows   V-head reorder of whole rows in blocks of `s` (in_proj_z: s = d_v;
//                  in_proj_a/b, dt_bias: s = 1)
//   reorder_v_rows reorder only the V block of rows [2*KD, C) (in_proj_qkv, conv1d)
//   reorder_cols   reorder input columns in blocks of d_v (out_proj)
// The V-head reorder (section 7.4): HF value head j = i*r + m (i = key head, r = H_v/H_k)
// moves to GGUF position m*H_k + i. It is a no-op when H_k == H_v.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../io/ggml_types.hpp"
#include "layer_weights.hpp"
#include "model_config.hpp"

SBGQ_BEGIN_NAMESPACE

/// One GGUF tensor of the model and where it comes from.
struct tensor_plan {
  std::string gguf_name;              ///< "blk.3.attn_q.weight"
  std::string hf_name;                ///< "model.language_model.layers.3.self_attn.q_proj.weight"
  std::vector<std::int64_t> hf_shape; ///< PyTorch order, slowest first
  std::vector<std::int64_t> ne;       ///< GGUF order, fastest first (conv1d squeezed)
  tensor_transform transform = tensor_transform::none;
  std::int64_t reorder_block = 1;     ///< s of the V-head reorder
  bool keep_f32 = false;              ///< norms, ssm_a, ssm_dt.bias, ssm_conv1d: F32 only
  int layer = -1;                     ///< block index, -1 for globals
  bool is_mtp = false;
  /// Elements.
  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto d : ne) n *= d;
    return n;
  }
  /// Rows (product of ne[1..]) and row length ne[0].
  std::int64_t rows() const noexcept { return ne.empty() ? 0 : numel() / ne[0]; }
  /// The GGUF tensor's description at type `t` (what the type rules take).
  tensor_desc desc(ggml_type t = ggml_type::f32) const {
    tensor_desc d;
    d.name = gguf_name;
    d.type = t;
    d.n_dims = static_cast<std::uint32_t>(ne.size());
    for (std::size_t k = 0; k < ne.size() && k < d.ne.size(); ++k) d.ne[k] = ne[k];
    return d;
  }
};

/// Parameters of the main model in a plan (MTP excluded), as general.size_label counts them.
inline std::uint64_t plan_n_params(const std::vector<tensor_plan>& plan) noexcept {
  std::uint64_t n = 0;
  for (const auto& e : plan)
    if (!e.is_mtp) n += static_cast<std::uint64_t>(e.numel());
  return n;
}

/// Options of the plan.
struct tensor_plan_options {
  std::string hf_prefix = "model.language_model.";  ///< "model." for text-only checkpoints
  bool include_mtp = true;                          ///< as llama.cpp's converter (--no-mtp: false)
  bool tied = false;                                ///< no lm_head.weight / output.weight
};

/// The GGUF tensors of a Qwen3.5 model, in the converter's order: globals first
/// (token_embd, output_norm, output), then each block's tensors, MTP block last.
inline std::vector<tensor_plan> qwen35_tensor_plan(const qwen35_config& c, const tensor_plan_options& o) {
  const std::int64_t d = c.hidden_size, V = c.vocab_size, dv = c.linear_value_head_dim;
  std::vector<tensor_plan> p;
  auto add = [&](std::string g, std::string h, std::vector<std::int64_t> hf_shape, tensor_transform t,
                 std::int64_t block, bool f32, int layer, bool mtp) {
    tensor_plan e;
    e.gguf_name = std::move(g);
    e.hf_name = std::move(h);
    e.hf_shape = hf_shape;
    e.ne.assign(hf_shape.rbegin(), hf_shape.rend());
    e.transform = t;
    e.reorder_block = block;
    e.keep_f32 = f32;
    e.layer = layer;
    e.is_mtp = mtp;
    p.push_back(std::move(e));
  };
  using T = tensor_transform;
  const std::string& pre = o.hf_prefix;
  add("token_embd.weight", pre + "embed_tokens.weight", {V, d}, T::none, 1, false, -1, false);
  add("output_norm.weight", pre + "norm.weight", {d}, T::plus_one, 1, true, -1, false);
  if (!o.tied) add("output.weight", "lm_head.weight", {V, d}, T::none, 1, false, -1, false);

  // A decoder layer's tensors of kind `k`, from the one table (layer_weights.hpp).
  auto layer = [&](int l, const std::string& hp, layer_kind k, bool mtp) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const layer_tensor_kind& t : qwen35_layer_tensors) {
      if (!t.in(k)) continue;
      add(b + std::string(t.gguf), hp + std::string(t.hf), t.hf_shape(c), t.transform, t.reorder_by_value_dim ? dv : 1,
          t.keep_f32, l, mtp);
      const auto& hs = p.back().hf_shape;
      if (hs.size() == 3 && hs[1] == 1) p.back().ne = {hs[2], hs[0]};  // conv1d [C, 1, K] squeezed to ne {K, C}
    }
  };
  for (int l = 0; l < static_cast<int>(c.num_hidden_layers); ++l)
    layer(l, pre + "layers." + std::to_string(l) + ".", c.layer_types[static_cast<std::size_t>(l)], false);
  if (o.include_mtp) {
    for (int i = 0; i < static_cast<int>(c.mtp_num_hidden_layers); ++i) {
      const int l = static_cast<int>(c.num_hidden_layers) + i;
      const std::string hp = "mtp.layers." + std::to_string(i) + ".";
      const std::string b = "blk." + std::to_string(l) + ".";
      layer(l, hp, layer_kind::full_attention, true);
      add(b + "nextn.eh_proj.weight", "mtp.fc.weight", {d, 2 * d}, T::none, 1, false, l, true);
      add(b + "nextn.enorm.weight", "mtp.pre_fc_norm_embedding.weight", {d}, T::plus_one, 1, true, l, true);
      add(b + "nextn.hnorm.weight", "mtp.pre_fc_norm_hidden.weight", {d}, T::plus_one, 1, true, l, true);
      add(b + "nextn.shared_head_norm.weight", "mtp.norm.weight", {d}, T::plus_one, 1, true, l, true);
    }
  }
  return p;
}

/// True for HF tensors the text GGUF never contains (vision tower and other multimodal
/// parts, rotary caches, ...), following the converter's filter (qwen35-gguf.md 3.1).
inline bool is_skipped_hf_tensor(std::string_view name) noexcept {
  for (std::string_view s : {"mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.", "sound_encoder.",
                             "sound_projection.", "speech_embeddings."})
    if (name.substr(0, s.size()) == s) return true;
  for (std::string_view s : {"visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.", "code2wav.",
                             "projector.", "pre_mm_projector_norm", "image_newline", "view_seperator", "patch_embed",
                             "patch_embedding", "patch_merger.", "patch_merge_mlp.", "model.connector."})
    if (name.find(s) != std::string_view::npos) return true;
  for (std::string_view s : {".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias"})
    if (name.size() >= s.size() && name.substr(name.size() - s.size()) == s) return true;
  return false;
}

/// GGUF index of HF value-head position `j` (qwen35-gguf.md 7.4): j = i*r + m -> m*H_k + i.
constexpr std::int64_t v_head_gguf_index(std::int64_t j, std::int64_t n_k_heads, std::int64_t n_v_heads) noexcept {
  const std::int64_t r = n_v_heads / n_k_heads;
  const std::int64_t i = j / r, m = j % r;
  return m * n_k_heads + i;
}

/// Applies `plan.transform` to HF values (f32, PyTorch row-major order of plan.hf_shape),
/// writing GGUF values (same element count, GGUF order) to `out`. `in` and `out` must not
/// overlap. `reorder_v_heads = false` leaves value heads in HF order: that file is wrong
/// for llama.cpp whenever H_k != H_v, and exists only as a negative control for tests.
/// Thread-safe.
inline result<void> apply_tensor_transform(const tensor_plan& plan, const qwen35_config& c,
                                           std::span<const float> in, std::span<float> out,
                                           bool reorder_v_heads = true) {
  const auto n = static_cast<std::size_t>(plan.numel());
  if (in.size() != n || out.size() != n)
    return error(error_code::size_mismatch, "convert",
                 plan.gguf_name + ": expected " + std::to_string(n) + " values, got " + std::to_string(in.size()));
  const std::int64_t Hk = reorder_v_heads ? c.linear_num_key_heads : c.linear_num_value_heads;
  const std::int64_t Hv = c.linear_num_value_heads;
  const std::int64_t s = plan.reorder_block;
  switch (plan.transform) {
    case tensor_transform::none:
      std::copy(in.begin(), in.end(), out.begin());
      return {};
    case tensor_transform::plus_one:
      for (std::size_t i = 0; i < n; ++i) out[i] = in[i] + 1.0f;
      return {};
    case tensor_transform::neg_exp:
      for (std::int64_t j = 0; j < Hv; ++j)
        out[static_cast<std::size_t>(v_head_gguf_index(j, Hk, Hv))] = -std::exp(in[static_cast<std::size_t>(j)]);
      return {};
    case tensor_transform::reorder_rows:
    case tensor_transform::reorder_v_rows: {
      // Rows of the reordered block: whole tensor, or the V rows [2*KD, C).
      const std::int64_t row_len = plan.transform == tensor_transform::reorder_v_rows
                                       ? plan.numel() / c.linear_conv_dim()
                                       : (plan.hf_shape.size() > 1 ? plan.numel() / plan.hf_shape[0] : 1);
      const std::int64_t first = plan.transform == tensor_transform::reorder_v_rows
                                     ? 2 * c.linear_num_key_heads * c.linear_key_head_dim : 0;
      std::copy(in.begin(), in.end(), out.begin());
      for (std::int64_t j = 0; j < Hv; ++j) {
        const std::int64_t jg = v_head_gguf_index(j, Hk, Hv);
        const auto src = static_cast<std::size_t>((first + j * s) * row_len);
        const auto dst = static_cast<std::size_t>((first + jg * s) * row_len);
        std::copy(in.begin() + static_cast<std::ptrdiff_t>(src),
                  in.begin() + static_cast<std::ptrdiff_t>(src + static_cast<std::size_t>(s * row_len)),
                  out.begin() + static_cast<std::ptrdiff_t>(dst));
      }
      return {};
    }
    case tensor_transform::reorder_cols: {
      const std::int64_t rows = plan.hf_shape[0], cols = plan.hf_shape[1];
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < Hv; ++j) {
          const std::int64_t jg = v_head_gguf_index(j, Hk, Hv);
          const auto src = static_cast<std::size_t>(r * cols + j * s);
          const auto dst = static_cast<std::size_t>(r * cols + jg * s);
          std::copy(in.begin() + static_cast<std::ptrdiff_t>(src), in.begin() + static_cast<std::ptrdiff_t>(src + static_cast<std::size_t>(s)),
                    out.begin() + static_cast<std::ptrdiff_t>(dst));
        }
      return {};
    }
  }
  return error(error_code::internal, "convert", "unknown transform");
}

SBGQ_END_NAMESPACE
