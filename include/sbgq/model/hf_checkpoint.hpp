// An HF Qwen3.5 checkpoint seen as the GGUF it converts to: the tensors of the plan
// (qwen35_tensors.hpp) found and shape-checked in the safetensors shards, their values in
// GGUF conventions (the converter's transforms applied), and the converter's metadata
// (qwen35-gguf.md sections 2.2 and 8). The converter, the weight provider, the exporter
// and the pipeline all open checkpoints through hf_model, so they agree on which tensors a
// checkpoint holds and which it may leave out.
//
// Design goals:
//   - Checked once, up front: a tensor missing or of the wrong shape, a layer past
//     num_hidden_layers, a tensor of no known part, a tokenizer larger than vocab_size are
//     errors at open, naming the tensor or file.
//   - No copies: tensors stay in the memory-mapped shards until a caller asks for values.
// Non-goals: the vision tower (left out, counted in n_skipped), MoE checkpoints.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../io/gguf.hpp"
#include "../io/safetensors.hpp"
#include "model_config.hpp"
#include "qwen35_tensors.hpp"
#include "tokenizer.hpp"

SBGQ_BEGIN_NAMESPACE

/// The llama_ftype of a converter output type (general.file_type).
constexpr std::uint32_t converter_file_type(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::f32: return 0;
    case ggml_type::f16: return 1;
    case ggml_type::bf16: return 32;
    case ggml_type::q8_0: return 7;
    default: return 0;
  }
}

namespace detail {

inline result<std::string> read_text_file(const std::string& path) {
  SBGQ_TRY(mapped_file m, mapped_file::open(path));
  return std::string(reinterpret_cast<const char*>(m.data()), m.size());
}

/// llama.cpp's size label ("9B", "800M") from the parameter count, as gguf-py's
/// size_label does for a dense model: one significant decimal below 10 of a unit.
inline std::string size_label(std::uint64_t n_params) {
  const char* units[] = {"", "K", "M", "B", "T"};
  double v = static_cast<double>(n_params);
  int u = 0;
  while (v >= 1000.0 && u < 4) {
    v /= 1000.0;
    ++u;
  }
  char buf[32];
  if (v < 10.0 && std::round(v * 10.0) / 10.0 != std::round(v)) std::snprintf(buf, sizeof buf, "%.1f%s", v, units[u]);
  else std::snprintf(buf, sizeof buf, "%.0f%s", v, units[u]);
  return buf;
}

/// Special token ids (qwen35-gguf.md section 8): tokenizer_config.json's <kind>_token
/// looked up in the vocabulary first, then config.json's <kind>_token_id (top level, then
/// text_config), for kinds still unset.
inline result<void> add_special_ids(gguf_writer& w, const tokenizer& tok, const std::string& dir) {
  namespace sj = simdjson;
  struct kind_key {
    const char* kind;
    const char* key;
  };
  static constexpr kind_key kinds[] = {{"bos", "bos_token_id"},      {"eos", "eos_token_id"},
                                       {"unk", "unknown_token_id"},  {"sep", "seperator_token_id"},
                                       {"pad", "padding_token_id"},  {"cls", "cls_token_id"},
                                       {"mask", "mask_token_id"}};
  std::optional<std::int64_t> ids[std::size(kinds)];
  sj::dom::parser p1, p2;
  auto tc_text = read_text_file(dir + "/tokenizer_config.json");
  if (tc_text) {
    sj::padded_string padded(*tc_text);
    sj::dom::element root;
    if (p1.parse(padded).get(root) != sj::SUCCESS)
      return error(error_code::bad_json, "convert", dir + "/tokenizer_config.json is not valid JSON");
    for (std::size_t k = 0; k < std::size(kinds); ++k) {
      sj::dom::element e;
      if (root[std::string(kinds[k].kind) + "_token"].get(e) != sj::SUCCESS || e.is_null()) continue;
      std::string_view text;
      if (e.get_string().get(text) != sj::SUCCESS && e["content"].get_string().get(text) != sj::SUCCESS) continue;
      if (auto id = tok.find(text)) ids[k] = *id;
    }
  }
  auto cfg_text = read_text_file(dir + "/config.json");
  if (cfg_text) {
    sj::padded_string padded(*cfg_text);
    sj::dom::element root;
    if (p2.parse(padded).get(root) == sj::SUCCESS) {
      for (std::size_t k = 0; k < std::size(kinds); ++k) {
        if (ids[k]) continue;
        const std::string field = std::string(kinds[k].kind) + "_token_id";
        std::int64_t v = 0;
        if (root[field].get_int64().get(v) == sj::SUCCESS || root["text_config"][field].get_int64().get(v) == sj::SUCCESS)
          if (v >= 0 && static_cast<std::size_t>(v) < tok.size()) ids[k] = v;
      }
    }
  }
  for (std::size_t k = 0; k < std::size(kinds); ++k)
    if (ids[k]) SBGQ_TRY_VOID(w.add(std::string("tokenizer.ggml.") + kinds[k].key, static_cast<std::uint32_t>(*ids[k])));
  if (tc_text) {
    sj::padded_string padded(*tc_text);
    sj::dom::element root;
    if (p1.parse(padded).get(root) == sj::SUCCESS) {
      for (const char* flag : {"add_bos_token", "add_eos_token"}) {
        bool b = false;
        if (root[flag].get_bool().get(b) == sj::SUCCESS) SBGQ_TRY_VOID(w.add(std::string("tokenizer.ggml.") + flag, b));
      }
    }
  }
  return {};
}

/// tokenizer.chat_template: tokenizer_config.json's chat_template, else
/// chat_template.jinja, else chat_template.json's "chat_template".
inline std::optional<std::string> find_chat_template(const std::string& dir) {
  namespace sj = simdjson;
  sj::dom::parser p;
  for (const char* file : {"/tokenizer_config.json", "/chat_template.json"}) {
    auto text = read_text_file(dir + file);
    if (!text) continue;
    sj::padded_string padded(*text);
    sj::dom::element root;
    std::string_view tmpl;
    if (p.parse(padded).get(root) == sj::SUCCESS && root["chat_template"].get_string().get(tmpl) == sj::SUCCESS)
      return std::string(tmpl);
    if (std::string(file) == "/tokenizer_config.json") {
      auto jinja = read_text_file(dir + "/chat_template.jinja");
      if (jinja) return *jinja;
    }
  }
  return std::nullopt;
}

}  // namespace detail

/// Adds the metadata of qwen35-gguf.md section 2.2 and the tokenizer keys of section 8,
/// in the converter's order, to a writer. `n_mtp` is the number of MTP blocks written.
inline result<void> add_qwen35_metadata(gguf_writer& w, const qwen35_config& c, const tokenizer& tok,
                                        const std::string& model_dir, const std::string& name,
                                        std::uint64_t n_params, std::uint32_t file_type, std::int64_t n_mtp) {
  // llama.cpp derives the layer pattern from full_attention_interval alone (section 2.1).
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const bool full = (l + 1) % c.full_attention_interval == 0;
    if (full != (c.layer_types[static_cast<std::size_t>(l)] == layer_kind::full_attention))
      return error(error_code::unsupported, "convert",
                   "layer " + std::to_string(l) + " is " +
                       (full ? "linear_attention" : "full_attention") + " but full_attention_interval " +
                       std::to_string(c.full_attention_interval) + " says otherwise; llama.cpp cannot express this pattern");
  }
  auto u32 = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
  const std::string a = "qwen35.";
  SBGQ_TRY_VOID(w.add("general.architecture", "qwen35"));
  SBGQ_TRY_VOID(w.add("general.type", "model"));
  SBGQ_TRY_VOID(w.add("general.name", name));
  SBGQ_TRY_VOID(w.add("general.size_label", detail::size_label(n_params)));
  SBGQ_TRY_VOID(w.add(a + "block_count", u32(c.num_hidden_layers + n_mtp)));
  SBGQ_TRY_VOID(w.add(a + "context_length", u32(c.max_position_embeddings)));
  SBGQ_TRY_VOID(w.add(a + "embedding_length", u32(c.hidden_size)));
  SBGQ_TRY_VOID(w.add(a + "feed_forward_length", u32(c.intermediate_size)));
  SBGQ_TRY_VOID(w.add(a + "attention.head_count", u32(c.num_attention_heads)));
  SBGQ_TRY_VOID(w.add(a + "attention.head_count_kv", u32(c.num_key_value_heads)));
  std::vector<std::int32_t> sections(4, 0);
  if (c.mrope_section.empty()) sections = {11, 11, 10, 0};  // the converter's default
  for (std::size_t i = 0; i < c.mrope_section.size() && i < 4; ++i) sections[i] = static_cast<std::int32_t>(c.mrope_section[i]);
  SBGQ_TRY_VOID(w.add(a + "rope.dimension_sections", gguf_array::of(sections)));
  SBGQ_TRY_VOID(w.add(a + "rope.freq_base", static_cast<float>(c.rope_theta)));
  SBGQ_TRY_VOID(w.add(a + "attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps)));
  SBGQ_TRY_VOID(w.add(a + "attention.key_length", u32(c.head_dim)));
  SBGQ_TRY_VOID(w.add(a + "attention.value_length", u32(c.head_dim)));
  SBGQ_TRY_VOID(w.add("general.file_type", file_type));
  SBGQ_TRY_VOID(w.add(a + "ssm.conv_kernel", u32(c.linear_conv_kernel_dim)));
  SBGQ_TRY_VOID(w.add(a + "ssm.state_size", u32(c.linear_key_head_dim)));
  SBGQ_TRY_VOID(w.add(a + "ssm.group_count", u32(c.linear_num_key_heads)));
  SBGQ_TRY_VOID(w.add(a + "ssm.time_step_rank", u32(c.linear_num_value_heads)));
  SBGQ_TRY_VOID(w.add(a + "ssm.inner_size", u32(c.linear_value_dim())));
  SBGQ_TRY_VOID(w.add(a + "full_attention_interval", u32(c.full_attention_interval)));
  SBGQ_TRY_VOID(w.add(a + "rope.dimension_count", u32(c.rope_dims())));
  if (n_mtp > 0) SBGQ_TRY_VOID(w.add(a + "nextn_predict_layers", u32(n_mtp)));
  SBGQ_TRY_VOID(w.add("general.quantization_version", std::uint32_t{2}));
  // Tokenizer (section 8).
  SBGQ_TRY_VOID(w.add("tokenizer.ggml.model", "gpt2"));
  SBGQ_TRY_VOID(w.add("tokenizer.ggml.pre", "qwen35"));
  SBGQ_TRY_VOID(w.add("tokenizer.ggml.tokens", gguf_array::of(std::vector<std::string>(tok.texts().begin(), tok.texts().end()))));
  std::vector<std::int32_t> types(tok.size());
  for (std::size_t i = 0; i < types.size(); ++i) types[i] = static_cast<std::int32_t>(tok.types()[i]);
  SBGQ_TRY_VOID(w.add("tokenizer.ggml.token_type", gguf_array::of(types)));
  SBGQ_TRY_VOID(w.add("tokenizer.ggml.merges", gguf_array::of(std::vector<std::string>(tok.merges().begin(), tok.merges().end()))));
  SBGQ_TRY_VOID(detail::add_special_ids(w, tok, model_dir));
  if (auto tmpl = detail::find_chat_template(model_dir)) SBGQ_TRY_VOID(w.add("tokenizer.chat_template", *tmpl));
  return {};
}

/// Where a plan entry's HF tensor is in the checkpoint, checked against the plan's shape.
inline result<tensor_view> find_hf_tensor(const safetensors_checkpoint& ckpt, const tensor_plan& e) {
  auto v = ckpt.find(e.hf_name);
  if (!v) return error(error_code::not_found, "convert", "tensor '" + e.hf_name + "' (for " + e.gguf_name + ") is missing from the checkpoint");
  const auto dims = v->shape.dims();
  std::vector<std::int64_t> have(dims.begin(), dims.end());
  if (have != e.hf_shape) {
    auto str = [](const std::vector<std::int64_t>& s) {
      std::string o = "[";
      for (std::size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
      return o + "]";
    };
    return error(error_code::bad_shape, "convert",
                 "tensor '" + e.hf_name + "' has shape " + str(have) + ", the config implies " + str(e.hf_shape));
  }
  return *v;
}

namespace detail {
/// N in "<prefix>layers.N.<rest>", or -1 when `name` has no such form.
inline std::int64_t hf_layer_index(std::string_view name, std::string_view prefix) {
  if (name.substr(0, prefix.size()) != prefix) return -1;
  name.remove_prefix(prefix.size());
  if (name.substr(0, 7) != "layers.") return -1;
  name.remove_prefix(7);
  std::int64_t n = 0;
  std::size_t i = 0;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && i < 9; ++i) n = n * 10 + (name[i] - '0');
  return i > 0 && i < name.size() && name[i] == '.' ? n : -1;
}
}  // namespace detail

/// Checks that the checkpoint holds nothing the plan (built with `po`) silently ignores.
/// A tensor the plan does not use is accepted only when the text GGUF leaves it out on
/// purpose: the converter's multimodal/rotary filter (is_skipped_hf_tensor: the vision
/// tower, "model.visual.*"), MTP tensors ("mtp.*") of an MTP block the config declares
/// when the plan leaves MTP out, and lm_head.weight when the plan ties the output head.
/// Returns how many tensors are left out that way.
/// Errors (component "convert"): bad_value, a tensor of decoder layer N >= num_hidden_layers
/// (or MTP layer N >= mtp_num_hidden_layers, or an MTP tensor with mtp_num_hidden_layers
/// 0): config.json does not describe the checkpoint; unsupported, any other unused tensor.
inline result<std::size_t> check_unused_hf_tensors(const safetensors_checkpoint& ckpt,
                                                   std::span<const tensor_plan> plan, const qwen35_config& c,
                                                   const tensor_plan_options& po) {
  std::vector<std::string_view> used;
  used.reserve(plan.size());
  for (const auto& e : plan) used.push_back(e.hf_name);
  std::sort(used.begin(), used.end());
  std::size_t skipped = 0;
  for (const auto& v : ckpt.views()) {
    if (std::binary_search(used.begin(), used.end(), std::string_view(v.name))) continue;
    const std::string shown = "tensor '" + detail::printable(v.name) + "'";
    const std::int64_t layer = detail::hf_layer_index(v.name, po.hf_prefix);
    if (layer >= c.num_hidden_layers)
      return error(error_code::bad_value, "convert",
                   shown + " belongs to decoder layer " + std::to_string(layer) + ", but config.json has num_hidden_layers = " +
                       std::to_string(c.num_hidden_layers) + " (layers 0.." + std::to_string(c.num_hidden_layers - 1) +
                       "): the config does not describe this checkpoint");
    if (v.name.substr(0, 4) == "mtp.") {
      const std::int64_t ml = detail::hf_layer_index(v.name, "mtp.");
      if (c.mtp_num_hidden_layers == 0 || ml >= c.mtp_num_hidden_layers)
        return error(error_code::bad_value, "convert",
                     shown + (ml >= 0 ? " belongs to MTP layer " + std::to_string(ml) : std::string(" is an MTP tensor")) +
                         ", but config.json has mtp_num_hidden_layers = " + std::to_string(c.mtp_num_hidden_layers) +
                         ": the config does not describe this checkpoint");
      if (!po.include_mtp) {
        ++skipped;
        continue;
      }
    }
    if (v.name == "lm_head.weight" && po.tied) {
      ++skipped;
      continue;
    }
    if (is_skipped_hf_tensor(v.name)) {
      ++skipped;
      continue;
    }
    return error(error_code::unsupported, "convert",
                 shown + " is not part of the Qwen3.5 text model described by config.json (num_hidden_layers = " +
                     std::to_string(c.num_hidden_layers) + ", tensor prefix '" + po.hf_prefix +
                     "') nor of the vision tower or another part the converter leaves out");
  }
  return skipped;
}

/// Reads one HF tensor as f32 and applies its plan transform: the GGUF values, row-major
/// in GGUF order (ne[0] contiguous).
inline result<std::vector<float>> load_gguf_values(const safetensors_checkpoint& ckpt, const tensor_plan& e,
                                                   const qwen35_config& c, bool reorder_v_heads = true) {
  SBGQ_TRY(tensor_view v, find_hf_tensor(ckpt, e));
  std::vector<float> raw(static_cast<std::size_t>(e.numel()));
  SBGQ_TRY_VOID(to_f32(v, raw));
  if (e.transform == tensor_transform::none) return raw;
  std::vector<float> out(raw.size());
  SBGQ_TRY_VOID(apply_tensor_transform(e, c, raw, out, reorder_v_heads));
  return out;
}

/// The tensor type a converter output type gives a plan entry (section 6).
constexpr ggml_type converted_type(const tensor_plan& e, ggml_type outtype) noexcept {
  if (e.keep_f32 || e.ne.size() < 2) return ggml_type::f32;
  if (outtype == ggml_type::q8_0 && e.ne[0] % 32 != 0) return ggml_type::f16;
  return outtype;
}


/// The plan options an HF checkpoint implies: its text tower's prefix ("model.language_model."
/// or, text-only, "model."), a tied head (config says so, or no lm_head.weight), and MTP
/// when asked for and present.
inline tensor_plan_options hf_plan_options(const safetensors_checkpoint& ckpt, const qwen35_config& c, bool keep_mtp) {
  tensor_plan_options po;
  po.hf_prefix = ckpt.contains("model.language_model.embed_tokens.weight") ? "model.language_model." : "model.";
  po.tied = c.tie_word_embeddings || !ckpt.contains("lm_head.weight");
  po.include_mtp = keep_mtp && c.mtp_num_hidden_layers > 0 && ckpt.contains("mtp.fc.weight");
  return po;
}

/// An HF checkpoint directory opened for conversion: config, tokenizer, shards and the
/// plan of GGUF tensors, every plan tensor found with the shape the config implies.
struct hf_model {
  std::string dir;
  qwen35_config cfg;
  safetensors_checkpoint ckpt;
  tokenizer tok;
  tensor_plan_options po;         ///< prefix, tied head, MTP kept
  std::vector<tensor_plan> plan;  ///< the GGUF tensors, in the converter's order
  std::size_t n_skipped = 0;      ///< HF tensors left out (vision tower, unkept MTP)
  bool has_mtp = false;           ///< the checkpoint has an MTP block

  /// Opens `dir`; `keep_mtp`: put the MTP block (if any) in the plan.
  /// Errors: those of the config, safetensors and tokenizer readers; bad_value for a
  /// tokenizer larger than vocab_size; those of check_unused_hf_tensors and find_hf_tensor.
  static result<hf_model> open(const std::string& dir, bool keep_mtp) {
    hf_model m;
    m.dir = dir;
    SBGQ_TRY(m.cfg, load_qwen35_config(dir));
    SBGQ_TRY(m.ckpt, safetensors_checkpoint::open(dir));
    SBGQ_TRY(m.tok, tokenizer::load(dir + "/tokenizer.json", static_cast<std::size_t>(m.cfg.vocab_size)));
    if (static_cast<std::int64_t>(m.tok.size()) > m.cfg.vocab_size)
      return error(error_code::bad_value, "convert",
                   "tokenizer.json has " + std::to_string(m.tok.size()) + " tokens but vocab_size is " +
                       std::to_string(m.cfg.vocab_size));
    m.po = hf_plan_options(m.ckpt, m.cfg, true);
    m.has_mtp = m.po.include_mtp;
    m.po.include_mtp = keep_mtp && m.has_mtp;
    m.plan = qwen35_tensor_plan(m.cfg, m.po);
    SBGQ_TRY(m.n_skipped, check_unused_hf_tensors(m.ckpt, m.plan, m.cfg, m.po));
    for (const auto& e : m.plan) SBGQ_TRY_VOID(find_hf_tensor(m.ckpt, e));
    return m;
  }

  /// MTP blocks in the plan.
  std::int64_t n_mtp() const noexcept { return po.include_mtp ? cfg.mtp_num_hidden_layers : 0; }
  /// Parameters of the main model (MTP excluded), as general.size_label counts them.
  std::uint64_t n_params() const noexcept { return plan_n_params(plan); }
  /// general.name when the user gives none: the directory's name.
  std::string default_name() const {
    const auto p = std::filesystem::path(dir).lexically_normal();
    std::string name = p.filename().string();
    if (name.empty()) name = p.parent_path().filename().string();
    return name;
  }
};

SBGQ_END_NAMESPACE
