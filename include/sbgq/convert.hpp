// HF Qwen3.5 checkpoint -> GGUF, exactly as llama.cpp's convert_hf_to_gguf.py does it
// (qwen35-gguf.md), streamed one tensor at a time.
//
// Design goals:
//   - Same file as llama.cpp's converter: every metadata key it writes, with the exact
//     types the loader checks; the tokenizer keys of section 8; the tensor name map and
//     every transform of section 7 (through qwen35_tensors.hpp, the one table of them);
//     1-D tensors, norms, ssm_a, ssm_dt.bias and ssm_conv1d in F32, everything else in the
//     requested output type.
//   - Bounded memory: the shards are memory-mapped; one tensor is converted to f32,
//     transformed, encoded and written at a time, so peak memory is about the largest
//     tensor (twice, in f32) whatever the model size. The output is written through a
//     temporary file and renamed only when complete.
//   - Clear errors for a checkpoint that does not match its config (missing tensor, wrong
//     shape, a tensor of a layer past num_hidden_layers or of no known part, a layer
//     pattern llama.cpp cannot express).
// Non-goals: the vision tower (left out with a notice, as the converter's --mmproj is a
// separate file), MoE checkpoints.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "core/base.hpp"
#include "codec/registry.hpp"
#include "codec/rows.hpp"
#include "core/error.hpp"
#include "io/gguf.hpp"
#include "model/model_config.hpp"
#include "core/output_file.hpp"
#include "model/qwen35_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/tokenizer.hpp"

SBGQ_BEGIN_NAMESPACE

/// What convert_checkpoint writes and how.
struct convert_options {
  ggml_type outtype = ggml_type::f16;  ///< f32, f16, bf16 or q8_0 for the 2-D weights
  bool include_mtp = true;             ///< llama.cpp's converter keeps MTP by default
  std::string name;                    ///< general.name; default: the directory name
  int n_threads = 0;                   ///< for q8_0 encoding (<= 0: all)
  /// Negative control for tests only: leave DeltaNet value heads in HF order. The file
  /// loads but computes a different function whenever H_k != H_v.
  bool skip_v_head_reorder = false;
  /// Progress: (tensor index, tensor count, GGUF name). Also gets notices (index -1).
  std::function<void(int, int, const std::string&)> progress;
};

/// What was written.
struct convert_report {
  std::size_t n_tensors = 0;
  std::uint64_t bytes_read = 0;     ///< source tensor bytes
  std::uint64_t bytes_written = 0;  ///< output file size
  std::size_t n_skipped = 0;        ///< HF tensors left out (vision tower, ...)
  double seconds = 0;
};

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

/// Converts the checkpoint in `model_dir` (config.json, tokenizer.json, safetensors shards
/// or a single model.safetensors) to a GGUF at `out_path`. Errors: everything the config,
/// safetensors and tokenizer readers report; not_found / bad_shape for tensors that do
/// not match the config; unsupported for an outtype other than f32/f16/bf16/q8_0;
/// invalid_argument when `out_path` is a file of `model_dir` (a shard, the config) or not a
/// regular file, before any work.
inline result<convert_report> convert_checkpoint(const std::string& model_dir, const std::string& out_path,
                                                 const convert_options& opt = {}) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.outtype != ggml_type::f32 && opt.outtype != ggml_type::f16 && opt.outtype != ggml_type::bf16 &&
      opt.outtype != ggml_type::q8_0)
    return error(error_code::unsupported, "convert",
                 "output type " + std::string(type_name(opt.outtype)) + ": expected f32, f16, bf16 or q8_0");
  SBGQ_TRY_VOID(check_output_not_input(out_path, {model_dir}, "convert"));
  SBGQ_TRY(qwen35_config cfg, load_qwen35_config(model_dir));
  SBGQ_TRY(safetensors_checkpoint ckpt, safetensors_checkpoint::open(model_dir));
  SBGQ_TRY(tokenizer tok, tokenizer::load(model_dir + "/tokenizer.json", static_cast<std::size_t>(cfg.vocab_size)));
  if (static_cast<std::int64_t>(tok.size()) > cfg.vocab_size)
    return error(error_code::bad_value, "convert",
                 "tokenizer.json has " + std::to_string(tok.size()) + " tokens but vocab_size is " + std::to_string(cfg.vocab_size));

  tensor_plan_options po;
  po.hf_prefix = ckpt.contains("model.language_model.embed_tokens.weight") ? "model.language_model." : "model.";
  po.tied = cfg.tie_word_embeddings || !ckpt.contains("lm_head.weight");
  po.include_mtp = opt.include_mtp && cfg.mtp_num_hidden_layers > 0 && ckpt.contains("mtp.fc.weight");
  const auto plan = qwen35_tensor_plan(cfg, po);

  convert_report rep;
  // HF tensors the plan does not use: vision tower (notice), or MTP with --no-mtp; any
  // other is an error.
  std::uint64_t n_params = 0;
  {
    SBGQ_TRY(rep.n_skipped, check_unused_hf_tensors(ckpt, plan, cfg, po));
    for (const auto& e : plan) {
      SBGQ_TRY(tensor_view v, find_hf_tensor(ckpt, e));
      (void)v;
      if (!e.is_mtp) n_params += static_cast<std::uint64_t>(e.numel());
    }
    if (opt.progress && rep.n_skipped)
      opt.progress(-1, static_cast<int>(plan.size()),
                   "leaving out " + std::to_string(rep.n_skipped) + " tensors that are not part of the text model (vision tower" +
                       std::string(po.include_mtp ? "" : ", MTP") + ")");
  }

  SBGQ_TRY(gguf_writer w, gguf_writer::create(out_path));
  std::string name = opt.name;
  if (name.empty()) name = std::filesystem::path(model_dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(model_dir).lexically_normal().parent_path().filename().string();
  const std::int64_t n_mtp = po.include_mtp ? cfg.mtp_num_hidden_layers : 0;
  SBGQ_TRY_VOID(add_qwen35_metadata(w, cfg, tok, model_dir, name, n_params, converter_file_type(opt.outtype), n_mtp));
  for (const auto& e : plan) {
    SBGQ_TRY(std::size_t index, w.add_tensor(e.gguf_name, converted_type(e, opt.outtype), e.ne));
    (void)index;
  }

  // Tensors whose transform is row-local and cheap (none, or the 1-D ones) are streamed in
  // blocks of rows straight from the mapping, whose pages are released behind us: peak
  // memory is a block, not the 4 GB f32 copy of a 9B embedding. V-head reorders need the
  // whole (at most a few hundred MB) tensor.
  std::vector<std::byte> encoded;
  std::vector<float> rows_f32;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const auto& e = plan[i];
    if (opt.progress) opt.progress(static_cast<int>(i), static_cast<int>(plan.size()), e.gguf_name);
    SBGQ_TRY(tensor_view src, find_hf_tensor(ckpt, e));
    rep.bytes_read += src.bytes.size();
    const ggml_type t = converted_type(e, opt.outtype);
    const auto rows = static_cast<std::size_t>(e.rows()), cols = static_cast<std::size_t>(e.ne[0]);
    const auto out_row = static_cast<std::size_t>(row_size(t, cols));
    if (e.transform == tensor_transform::none && e.ne.size() == 2) {
      const std::size_t block = std::max<std::size_t>(1, (std::size_t{1} << 22) / cols);  // ~16 MB of f32
      for (std::size_t r0 = 0; r0 < rows; r0 += block) {
        const std::size_t nr = std::min(block, rows - r0);
        rows_f32.resize(nr * cols);
        SBGQ_TRY_VOID(to_f32(src, r0, r0 + nr, rows_f32));
        encoded.resize(nr * out_row);
        SBGQ_TRY_VOID(in_context(quantize_rows(t, rows_f32.data(), nr, cols, nullptr, encoded, opt.n_threads),
                                 "tensor '" + e.gguf_name + "' ('" + e.hf_name + "'), rows from " + std::to_string(r0)));
        SBGQ_TRY_VOID(w.write_tensor_chunk(i, std::span<const std::byte>(encoded)));
        const std::size_t in_row = src.bytes.size() / rows;
        release_mapped_pages(src.bytes.subspan(r0 * in_row, nr * in_row));
      }
    } else {
      SBGQ_TRY(std::vector<float> values, load_gguf_values(ckpt, e, cfg, !opt.skip_v_head_reorder));
      encoded.resize(rows * out_row);
      SBGQ_TRY_VOID(in_context(quantize_rows(t, values.data(), rows, cols, nullptr, encoded, opt.n_threads),
                               "tensor '" + e.gguf_name + "' ('" + e.hf_name + "')"));
      SBGQ_TRY_VOID(w.write_tensor_data(i, std::span<const std::byte>(encoded)));
    }
    release_mapped_pages(src.bytes);
  }
  SBGQ_TRY_VOID(w.finish());
  rep.n_tensors = plan.size();
  std::error_code ec;
  rep.bytes_written = std::filesystem::file_size(out_path, ec);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

SBGQ_END_NAMESPACE
