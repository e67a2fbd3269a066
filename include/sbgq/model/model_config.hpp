// config.json -> qwen35_config: the dimensions and layer kinds of a dense Qwen3.5 text model.
//
// Accepts both layouts of qwen35-model.md section 1.1: the multimodal one (fields under
// "text_config") and a flattened one (fields at the root). RoPE settings come from
// "rope_parameters" when present, else from the text-config level; missing
// partial_rotary_factor defaults to 0.25 and missing layer_types are derived from
// full_attention_interval (default 4), as transformers does.
//
// Design goals:
//   - Validate everything: every dimension positive and within a sane cap, head counts
//     that divide, layer_types consistent with num_hidden_layers, finite positive eps and
//     rope base. Errors name the JSON field: "[sbgq.config.bad_value] text_config.
//     num_key_value_heads: 3 does not divide num_attention_heads 4".
//   - Tensor dtypes are never assumed from the config: they are read from the safetensors
//     header by whoever loads the weights (Qwen3.6 stores A_log in BF16, Qwen3.5 in F32).
// Non-goals: the vision tower (ignored), MoE variants (qwen35moe: rejected as unsupported).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/mapped_file.hpp"

SBGQ_BEGIN_NAMESPACE

/// Kind of one decoder layer.
enum class layer_kind : std::uint8_t {
  linear_attention,  ///< Gated DeltaNet
  full_attention,    ///< gated softmax attention with GQA
};

/// The text-tower hyper-parameters of a dense Qwen3.5 model (qwen35-model.md section 1.2).
struct qwen35_config {
  std::int64_t hidden_size = 0;            ///< d
  std::int64_t intermediate_size = 0;      ///< f (SwiGLU inner width)
  std::int64_t num_hidden_layers = 0;      ///< L, MTP layers not counted
  std::int64_t num_attention_heads = 0;    ///< n_h
  std::int64_t num_key_value_heads = 0;    ///< n_kv
  std::int64_t head_dim = 0;               ///< D (not d / n_h)
  std::int64_t linear_num_key_heads = 0;   ///< H_k
  std::int64_t linear_num_value_heads = 0; ///< H_v
  std::int64_t linear_key_head_dim = 0;    ///< d_k
  std::int64_t linear_value_head_dim = 0;  ///< d_v
  std::int64_t linear_conv_kernel_dim = 0; ///< K
  std::int64_t vocab_size = 0;
  std::int64_t full_attention_interval = 4;
  std::int64_t mtp_num_hidden_layers = 0;
  std::int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1e7;
  double partial_rotary_factor = 0.25;
  std::vector<std::int64_t> mrope_section;  ///< e.g. [11, 11, 10]
  bool mrope_interleaved = true;
  bool tie_word_embeddings = false;
  bool attn_output_gate = true;
  std::int64_t eos_token_id = -1;           ///< -1 when absent
  std::vector<layer_kind> layer_types;      ///< one per decoder layer

  // ---- derived sizes ----
  /// Rotated dims per head, int(head_dim * partial_rotary_factor) (rope.dimension_count).
  std::int64_t rope_dims() const noexcept {
    return static_cast<std::int64_t>(static_cast<double>(head_dim) * partial_rotary_factor);
  }
  /// DeltaNet conv channels: 2 * H_k * d_k + H_v * d_v.
  std::int64_t linear_conv_dim() const noexcept {
    return 2 * linear_num_key_heads * linear_key_head_dim + linear_num_value_heads * linear_value_head_dim;
  }
  /// H_v * d_v (ssm.inner_size).
  std::int64_t linear_value_dim() const noexcept { return linear_num_value_heads * linear_value_head_dim; }
  /// n_h * 2D: q_proj rows (query and gate interleaved per head).
  std::int64_t q_proj_rows() const noexcept { return num_attention_heads * head_dim * (attn_output_gate ? 2 : 1); }
  std::int64_t kv_dim() const noexcept { return num_key_value_heads * head_dim; }
  std::int64_t num_full_attention_layers() const noexcept {
    std::int64_t n = 0;
    for (auto k : layer_types) n += k == layer_kind::full_attention;
    return n;
  }
};

namespace detail {

class config_reader {
 public:
  config_reader(simdjson::dom::object obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  std::string field(std::string_view key) const { return prefix_ + std::string(key); }

  bool has(std::string_view key) const {
    simdjson::dom::element e;
    return obj_[key].get(e) == simdjson::SUCCESS && !e.is_null();
  }

  result<std::int64_t> integer(std::string_view key, std::int64_t lo, std::int64_t hi) const {
    simdjson::dom::element e;
    if (obj_[key].get(e) != simdjson::SUCCESS || e.is_null())
      return error(error_code::not_found, "config", field(key) + ": required field is missing");
    std::int64_t v = 0;
    if (e.get_int64().get(v) != simdjson::SUCCESS) {
      // Accept integral doubles such as 4.0, as Python's json writes them for some configs.
      double d = 0;
      if (e.get_double().get(d) != simdjson::SUCCESS || !std::isfinite(d) || d != std::floor(d) ||
          std::fabs(d) > 9e15)
        return error(error_code::bad_json, "config", field(key) + ": expected an integer, found " + describe(e));
      v = static_cast<std::int64_t>(d);
    }
    if (v < lo || v > hi)
      return error(error_code::bad_value, "config",
                   field(key) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                       "], found " + std::to_string(v));
    return v;
  }
  result<std::int64_t> integer_or(std::string_view key, std::int64_t dflt, std::int64_t lo, std::int64_t hi) const {
    if (!has(key)) return dflt;
    return integer(key, lo, hi);
  }
  result<double> number(std::string_view key, double lo, double hi) const {
    simdjson::dom::element e;
    if (obj_[key].get(e) != simdjson::SUCCESS || e.is_null())
      return error(error_code::not_found, "config", field(key) + ": required field is missing");
    double d = 0;
    if (e.get_double().get(d) != simdjson::SUCCESS)
      return error(error_code::bad_json, "config", field(key) + ": expected a number, found " + describe(e));
    if (!std::isfinite(d) || d < lo || d > hi)
      return error(error_code::bad_value, "config",
                   field(key) + ": expected a number in [" + fmt(lo) + ", " + fmt(hi) + "], found " + fmt(d));
    return d;
  }
  result<double> number_or(std::string_view key, double dflt, double lo, double hi) const {
    if (!has(key)) return dflt;
    return number(key, lo, hi);
  }
  result<bool> boolean_or(std::string_view key, bool dflt) const {
    if (!has(key)) return dflt;
    bool b = false;
    if (obj_[key].get_bool().get(b) != simdjson::SUCCESS)
      return error(error_code::bad_json, "config", field(key) + ": expected true or false, found " + describe(obj_[key].value_unsafe()));
    return b;
  }
  result<std::string> string_or(std::string_view key, std::string dflt) const {
    if (!has(key)) return dflt;
    std::string_view s;
    if (obj_[key].get_string().get(s) != simdjson::SUCCESS)
      return error(error_code::bad_json, "config", field(key) + ": expected a string, found " + describe(obj_[key].value_unsafe()));
    return std::string(s);
  }
  simdjson::dom::object object() const { return obj_; }

  static std::string describe(simdjson::dom::element e) {
    switch (e.type()) {
      case simdjson::dom::element_type::ARRAY: return "an array";
      case simdjson::dom::element_type::OBJECT: return "an object";
      case simdjson::dom::element_type::INT64:
      case simdjson::dom::element_type::UINT64:
      case simdjson::dom::element_type::DOUBLE: return "a number";
      case simdjson::dom::element_type::STRING: return "a string";
      case simdjson::dom::element_type::BOOL: return "a boolean";
      case simdjson::dom::element_type::NULL_VALUE: return "null";
    }
    return "an unknown value";
  }
  static std::string fmt(double d) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", d);
    return buf;
  }

 private:
  simdjson::dom::object obj_;
  std::string prefix_;
};

}  // namespace detail

/// Parses config.json text. Errors: bad_json (syntax or field type), not_found (a required
/// field), bad_value (out of range or inconsistent), unsupported (not a dense Qwen3.5).
inline result<qwen35_config> parse_qwen35_config(std::string_view json) {
  constexpr std::int64_t big = std::int64_t{1} << 24;  // sanity cap for any dimension
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  if (auto err = parser.parse(padded).get(root); err != simdjson::SUCCESS)
    return error(error_code::bad_json, "config", std::string("config.json is not valid JSON: ") + simdjson::error_message(err));
  simdjson::dom::object root_obj;
  if (root.get_object().get(root_obj) != simdjson::SUCCESS)
    return error(error_code::bad_json, "config", "config.json: expected a JSON object at the top level");

  // Model type: refuse MoE and other architectures with a clear message.
  {
    std::string_view mt;
    if (root_obj["model_type"].get_string().get(mt) == simdjson::SUCCESS && mt.find("moe") != std::string_view::npos)
      return error(error_code::unsupported, "config", "model_type '" + std::string(mt) + "': MoE models are not supported (dense Qwen3.5 only)");
    if (root_obj["model_type"].get_string().get(mt) == simdjson::SUCCESS && mt != "qwen3_5" && mt != "qwen3_5_text")
      return error(error_code::unsupported, "config", "model_type '" + std::string(mt) + "': expected qwen3_5 or qwen3_5_text");
  }

  simdjson::dom::object text_obj = root_obj;
  std::string prefix;
  simdjson::dom::element tc;
  if (root_obj["text_config"].get(tc) == simdjson::SUCCESS && !tc.is_null()) {
    if (tc.get_object().get(text_obj) != simdjson::SUCCESS)
      return error(error_code::bad_json, "config", "text_config: expected an object, found " + detail::config_reader::describe(tc));
    prefix = "text_config.";
  }
  detail::config_reader r(text_obj, prefix);
  detail::config_reader top(root_obj, "");

  qwen35_config c;
  SBGQ_TRY(c.hidden_size, r.integer("hidden_size", 1, big));
  SBGQ_TRY(c.intermediate_size, r.integer("intermediate_size", 1, big));
  SBGQ_TRY(c.num_hidden_layers, r.integer("num_hidden_layers", 1, 4096));
  SBGQ_TRY(c.num_attention_heads, r.integer("num_attention_heads", 1, 4096));
  SBGQ_TRY(c.num_key_value_heads, r.integer("num_key_value_heads", 1, 4096));
  SBGQ_TRY(c.head_dim, r.integer_or("head_dim", c.hidden_size / c.num_attention_heads, 1, 65536));
  SBGQ_TRY(c.linear_num_key_heads, r.integer("linear_num_key_heads", 1, 4096));
  SBGQ_TRY(c.linear_num_value_heads, r.integer("linear_num_value_heads", 1, 4096));
  SBGQ_TRY(c.linear_key_head_dim, r.integer("linear_key_head_dim", 1, 65536));
  SBGQ_TRY(c.linear_value_head_dim, r.integer("linear_value_head_dim", 1, 65536));
  SBGQ_TRY(c.linear_conv_kernel_dim, r.integer("linear_conv_kernel_dim", 1, 64));
  SBGQ_TRY(c.vocab_size, r.integer("vocab_size", 1, big));
  SBGQ_TRY(c.full_attention_interval, r.integer_or("full_attention_interval", 4, 1, 4096));
  SBGQ_TRY(c.mtp_num_hidden_layers, r.integer_or("mtp_num_hidden_layers", 0, 0, 64));
  SBGQ_TRY(c.max_position_embeddings, r.integer_or("max_position_embeddings", 262144, 1, std::int64_t{1} << 40));
  SBGQ_TRY(c.rms_norm_eps, r.number_or("rms_norm_eps", 1e-6, 1e-30, 1.0));
  SBGQ_TRY(c.attn_output_gate, r.boolean_or("attn_output_gate", true));
  if (!c.attn_output_gate)
    return error(error_code::unsupported, "config", r.field("attn_output_gate") + ": false is not supported (llama.cpp's qwen35 needs the output gate)");
  SBGQ_TRY(bool attention_bias, r.boolean_or("attention_bias", false));
  if (attention_bias)
    return error(error_code::unsupported, "config", r.field("attention_bias") + ": true is not supported (Qwen3.5 has no biases)");
  SBGQ_TRY(std::string act, r.string_or("hidden_act", "silu"));
  if (act != "silu")
    return error(error_code::unsupported, "config", r.field("hidden_act") + ": expected \"silu\", found \"" + act + "\"");
  // tie_word_embeddings: the text config wins over the root, as transformers reads it.
  SBGQ_TRY(bool tie_root, top.boolean_or("tie_word_embeddings", false));
  SBGQ_TRY(c.tie_word_embeddings, r.boolean_or("tie_word_embeddings", tie_root));
  SBGQ_TRY(c.eos_token_id, r.integer_or("eos_token_id", -1, -1, big));

  // RoPE: rope_parameters (newer transformers) or the text-config level.
  detail::config_reader rope = r;
  simdjson::dom::element rp;
  if (text_obj["rope_parameters"].get(rp) == simdjson::SUCCESS && !rp.is_null()) {
    simdjson::dom::object rpo;
    if (rp.get_object().get(rpo) != simdjson::SUCCESS)
      return error(error_code::bad_json, "config", r.field("rope_parameters") + ": expected an object");
    rope = detail::config_reader(rpo, r.field("rope_parameters."));
  }
  // Each RoPE field: rope_parameters first, then the text-config level, then the default.
  const detail::config_reader& theta_src = rope.has("rope_theta") ? rope : r;
  SBGQ_TRY(c.rope_theta, theta_src.number_or("rope_theta", 1e7, 1e-3, 1e30));
  const detail::config_reader& prf_src = rope.has("partial_rotary_factor") ? rope : r;
  SBGQ_TRY(c.partial_rotary_factor, prf_src.number_or("partial_rotary_factor", 0.25, 1e-9, 1.0));
  SBGQ_TRY(c.mrope_interleaved, rope.boolean_or("mrope_interleaved", true));
  {
    simdjson::dom::element ms;
    if (rope.object()["mrope_section"].get(ms) == simdjson::SUCCESS && !ms.is_null()) {
      simdjson::dom::array arr;
      if (ms.get_array().get(arr) != simdjson::SUCCESS)
        return error(error_code::bad_json, "config", rope.field("mrope_section") + ": expected an array of integers");
      for (auto v : arr) {
        std::int64_t x = 0;
        if (v.get_int64().get(x) != simdjson::SUCCESS || x < 0 || x > 65536)
          return error(error_code::bad_value, "config", rope.field("mrope_section") + ": expected non-negative integers");
        c.mrope_section.push_back(x);
      }
      if (c.mrope_section.size() > 4)
        return error(error_code::bad_value, "config", rope.field("mrope_section") + ": expected at most 4 sections, found " + std::to_string(c.mrope_section.size()));
    }
  }

  // Layer kinds.
  simdjson::dom::element lt;
  if (text_obj["layer_types"].get(lt) == simdjson::SUCCESS && !lt.is_null()) {
    simdjson::dom::array arr;
    if (lt.get_array().get(arr) != simdjson::SUCCESS)
      return error(error_code::bad_json, "config", r.field("layer_types") + ": expected an array of strings");
    for (auto v : arr) {
      std::string_view s;
      if (v.get_string().get(s) != simdjson::SUCCESS)
        return error(error_code::bad_json, "config", r.field("layer_types") + ": expected an array of strings");
      if (s == "linear_attention") c.layer_types.push_back(layer_kind::linear_attention);
      else if (s == "full_attention") c.layer_types.push_back(layer_kind::full_attention);
      else
        return error(error_code::bad_value, "config",
                     r.field("layer_types") + "[" + std::to_string(c.layer_types.size()) + "]: expected \"linear_attention\" or \"full_attention\", found \"" + std::string(s) + "\"");
    }
    if (static_cast<std::int64_t>(c.layer_types.size()) != c.num_hidden_layers)
      return error(error_code::bad_value, "config",
                   r.field("layer_types") + ": has " + std::to_string(c.layer_types.size()) +
                       " entries but num_hidden_layers is " + std::to_string(c.num_hidden_layers));
  } else {
    for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
      c.layer_types.push_back((l + 1) % c.full_attention_interval == 0 ? layer_kind::full_attention : layer_kind::linear_attention);
  }

  // Consistency (llama.cpp's qwen35 graph relies on each of these).
  auto inconsistent = [&](const std::string& what) { return error(error_code::bad_value, "config", what); };
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return inconsistent(r.field("num_key_value_heads") + ": " + std::to_string(c.num_key_value_heads) +
                        " does not divide num_attention_heads " + std::to_string(c.num_attention_heads));
  if (c.linear_num_value_heads % c.linear_num_key_heads != 0)
    return inconsistent(r.field("linear_num_key_heads") + ": " + std::to_string(c.linear_num_key_heads) +
                        " does not divide linear_num_value_heads " + std::to_string(c.linear_num_value_heads));
  if (c.linear_key_head_dim != c.linear_value_head_dim)
    return error(error_code::unsupported, "config",
                 r.field("linear_key_head_dim") + ": " + std::to_string(c.linear_key_head_dim) +
                     " differs from linear_value_head_dim " + std::to_string(c.linear_value_head_dim) +
                     " (llama.cpp's qwen35 requires them equal)");
  const std::int64_t rd = c.rope_dims();
  if (rd < 2 || rd % 2 != 0 || rd > c.head_dim)
    return inconsistent(rope.field("partial_rotary_factor") + ": gives " + std::to_string(rd) +
                        " rotated dims for head_dim " + std::to_string(c.head_dim) + " (expected an even number in [2, head_dim])");
  if (!c.mrope_section.empty()) {
    std::int64_t sum = 0;
    for (auto s : c.mrope_section) sum += s;
    if (sum != rd / 2)
      return inconsistent(rope.field("mrope_section") + ": sections sum to " + std::to_string(sum) +
                          " but there are " + std::to_string(rd / 2) + " rotary frequencies");
  }
  if (c.num_full_attention_layers() == 0)
    return inconsistent(r.field("layer_types") + ": no full_attention layer (llama.cpp's qwen35 needs at least one)");
  return c;
}

/// Reads and parses `path` (a config.json file, or a model directory holding one).
inline result<qwen35_config> load_qwen35_config(const std::string& path) {
  std::string file = path;
  if (file.size() < 5 || file.compare(file.size() - 5, 5, ".json") != 0) file += "/config.json";
  auto m = mapped_file::open(file);
  if (!m) return std::move(m).error();
  auto c = parse_qwen35_config(std::string_view(reinterpret_cast<const char*>(m->data()), m->size()));
  if (!c) {
    auto e = std::move(c).error();
    e.context = file + ": " + e.context;
    return e;
  }
  return c;
}

SBGQ_END_NAMESPACE
