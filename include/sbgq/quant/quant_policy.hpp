// llama-quantize's per-tensor type choice ("mixtures" such as Q4_K_M), as a pure function
// from (file metadata, tensor list, options) to one ggml_type per tensor
// (../shared/spec/llama-type-selection.md, "the spec" below; gguf-format.md 6.1).
//
// The rules are those of the llama.cpp build the tests use as oracle (libllama v0.5.0,
// the spec's version <C>): every row of the spec's version table was checked by running
// llama_model_quantize and reading the types back (tests/test_quantize.cpp):
//   - attn_qkv (Qwen3.5 DeltaNet input projection) takes the attn_v branch and advances
//     its counter (spec 4.4 <B, C>);
//   - n_ffn_down = block_count, MTP block included (spec 4.6 <C>: n_layer_all);
//   - --tensor-type patterns: the FIRST match in command-line order wins, even when its
//     type equals the default, and patterns apply under --pure too (spec 6 <C>);
//   - the shape fallback applies to pattern types as well (spec 5 <B, C>), never to
//     --token-embedding-type / --output-tensor-type, which are returned as given.
//
// Visiting order (spec 1.1): the model loader's weights_map order, i.e. by the layer
// number parsed as sscanf("blk.%d.") (-1 for non-block tensors), then by byte-wise name.
// The order matters: the attn_v-like and ffn_down rules use running counters, and it is
// also the order llama_model_quantize writes the tensors in.
//
// Design goals:
//   - One function, choose_tensor_types(), used by the quantize pipeline and by reports
//     (`sbgq quantize` prints its table); no I/O, deterministic.
//   - Each choice says why (norm kept, pattern #k, use_more_bits counter, fallback ...),
//     so a surprising type can be explained without reading llama.cpp.
// Non-goals: the IQ1/IQ2/IQ3/TQ/MXFP4 mixtures (sbgq has no codecs for them; their
// presets are not offered), --prune-layers, --keep-split, --target-bpw.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../io/ggml_types.hpp"
#include "../io/gguf.hpp"
#include "../core/name_pattern.hpp"

SBGQ_BEGIN_NAMESPACE

// ---- presets (llama-quantize's QUANT_OPTIONS, the ones sbgq can produce) ----------------

/// A file type ("mixture") of llama-quantize: its command-line name, the llama_ftype
/// written to general.file_type, and the default tensor type of the mixture.
struct quant_preset {
  std::string_view name;      ///< as llama-quantize spells it: "Q4_K_M"
  llama_ftype ftype;
  ggml_type default_type;     ///< llama_ftype_get_default_type
  std::string_view summary;   ///< llama-quantize's size / perplexity note
};

inline constexpr quant_preset quant_presets[] = {
    {"Q2_K", llama_ftype::mostly_q2_k, ggml_type::q2_k, " 2.96G, +3.5199 ppl @ Llama-3-8B"},
    {"Q3_K_S", llama_ftype::mostly_q3_k_s, ggml_type::q3_k, " 3.41G, +1.6321 ppl @ Llama-3-8B"},
    {"Q3_K_M", llama_ftype::mostly_q3_k_m, ggml_type::q3_k, " 3.74G, +0.6569 ppl @ Llama-3-8B"},
    {"Q3_K_L", llama_ftype::mostly_q3_k_l, ggml_type::q3_k, " 4.03G, +0.5562 ppl @ Llama-3-8B"},
    {"IQ4_NL", llama_ftype::mostly_iq4_nl, ggml_type::iq4_nl, " 4.50 bpw non-linear quantization"},
    {"IQ4_XS", llama_ftype::mostly_iq4_xs, ggml_type::iq4_xs, " 4.25 bpw non-linear quantization"},
    {"Q4_K_S", llama_ftype::mostly_q4_k_s, ggml_type::q4_k, " 4.37G, +0.2689 ppl @ Llama-3-8B"},
    {"Q4_K_M", llama_ftype::mostly_q4_k_m, ggml_type::q4_k, " 4.58G, +0.1754 ppl @ Llama-3-8B"},
    {"Q5_K_S", llama_ftype::mostly_q5_k_s, ggml_type::q5_k, " 5.21G, +0.1049 ppl @ Llama-3-8B"},
    {"Q5_K_M", llama_ftype::mostly_q5_k_m, ggml_type::q5_k, " 5.33G, +0.0569 ppl @ Llama-3-8B"},
    {"Q6_K", llama_ftype::mostly_q6_k, ggml_type::q6_k, " 6.14G, +0.0217 ppl @ Llama-3-8B"},
    {"Q8_0", llama_ftype::mostly_q8_0, ggml_type::q8_0, " 7.96G, +0.0026 ppl @ Llama-3-8B"},
    {"F16", llama_ftype::mostly_f16, ggml_type::f16, "14.00G, +0.0020 ppl @ Mistral-7B"},
    {"BF16", llama_ftype::mostly_bf16, ggml_type::bf16, "14.00G, -0.0050 ppl @ Mistral-7B"},
    {"F32", llama_ftype::all_f32, ggml_type::f32, "26.00G              @ 7B"},
};

/// llama-quantize's aliases: the bare K-quant names mean the _M mixture.
inline constexpr std::pair<std::string_view, llama_ftype> quant_preset_aliases[] = {
    {"Q3_K", llama_ftype::mostly_q3_k_m},
    {"Q4_K", llama_ftype::mostly_q4_k_m},
    {"Q5_K", llama_ftype::mostly_q5_k_m},
};

/// The preset of `ftype`, or null if sbgq does not produce that file type.
constexpr const quant_preset* find_quant_preset(llama_ftype ftype) noexcept {
  for (const quant_preset& p : quant_presets)
    if (p.ftype == ftype) return &p;
  return nullptr;
}

namespace detail::qp {

constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}
inline bool contains(std::string_view s, std::string_view part) noexcept { return s.find(part) != std::string_view::npos; }
inline bool ends_with(std::string_view s, std::string_view suffix) noexcept {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
inline error fail(error_code c, std::string ctx) { return error(c, "quantize", std::move(ctx)); }

inline std::string preset_list() {
  std::string s;
  for (const quant_preset& p : quant_presets) s += (s.empty() ? "" : " ") + std::string(p.name);
  return s;
}

}  // namespace detail::qp

/// Parses a quantization type as llama-quantize's TYPE argument does: a preset name in
/// any case ("Q4_K_M", "q4_k_m"), an alias ("Q4_K" = Q4_K_M), or the numeric llama_ftype
/// ("15"). Errors: invalid_argument naming the accepted types.
inline result<llama_ftype> parse_quant_type(std::string_view s) {
  for (const quant_preset& p : quant_presets)
    if (detail::qp::iequals(p.name, s)) return p.ftype;
  for (const auto& [name, ft] : quant_preset_aliases)
    if (detail::qp::iequals(name, s)) return ft;
  if (!s.empty() && s.size() <= 4 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint32_t v = 0;
    for (char c : s) v = v * 10 + static_cast<std::uint32_t>(c - '0');
    if (const quant_preset* p = find_quant_preset(static_cast<llama_ftype>(v))) return p->ftype;
  }
  return detail::qp::fail(error_code::invalid_argument, "unknown quantization type '" + std::string(s) +
                                                            "'; sbgq produces " + detail::qp::preset_list() +
                                                            " (any case, aliases Q3_K Q4_K Q5_K, or the llama_ftype number)");
}

// ---- options -----------------------------------------------------------------------

/// One --tensor-type PATTERN=TYPE: tensors whose name matches `pattern` (anywhere in the
/// name, as llama-quantize's std::regex_search; the bounded subset of name_pattern.hpp)
/// get `type`.
struct tensor_type_override {
  std::string pattern;
  ggml_type type = ggml_type::f16;
};

/// Parses "PATTERN=TYPE" as llama-quantize's --tensor-type does: split at the FIRST '=',
/// the pattern lower-cased (so `\D` becomes `\d`, as there), the type a ggml type name in
/// any case ("q6_k", "Q8_0", "f16"). Errors: invalid_argument (no '=', empty pattern or
/// type, unknown type, pattern that name_pattern::compile refuses).
inline result<tensor_type_override> parse_tensor_type_override(std::string_view arg) {
  const std::size_t eq = arg.find('=');
  if (eq == std::string_view::npos)
    return detail::qp::fail(error_code::invalid_argument,
                            "malformed tensor type override '" + std::string(arg) + "': expected PATTERN=TYPE");
  if (eq == 0)
    return detail::qp::fail(error_code::invalid_argument,
                            "tensor type override '" + std::string(arg) + "' has an empty tensor name pattern");
  if (eq + 1 == arg.size())
    return detail::qp::fail(error_code::invalid_argument,
                            "tensor type override '" + std::string(arg) + "' has no type after '='");
  tensor_type_override o;
  for (char c : arg.substr(0, eq)) o.pattern += detail::qp::lower(c);
  const std::string_view tname = arg.substr(eq + 1);
  const auto t = ggml_type_from_name(tname);
  if (!t)
    return detail::qp::fail(error_code::invalid_argument, "tensor type override '" + std::string(arg) +
                                                              "': unknown ggml type '" + std::string(tname) + "'");
  o.type = *t;
  if (auto re = name_pattern::compile(o.pattern); !re)
    return detail::qp::fail(error_code::invalid_argument, "tensor type override '" + detail::np::excerpt(arg) +
                                                              "': bad regular expression (" + re.error().context + ")");
  return o;
}

/// The knobs of the type choice, one per llama-quantize option.
struct quant_policy {
  llama_ftype ftype = llama_ftype::mostly_q4_k_m;
  std::optional<ggml_type> output_tensor_type;    ///< --output-tensor-type
  std::optional<ggml_type> token_embedding_type;  ///< --token-embedding-type
  std::vector<tensor_type_override> tensor_types; ///< --tensor-type, in command-line order
  bool pure = false;                              ///< --pure: no mixture rules
  bool leave_output_tensor = false;               ///< --leave-output-tensor
};

// ---- model facts ---------------------------------------------------------------------

/// What the mixture rules read from the model's hyper-parameters.
struct model_facts {
  std::string arch;              ///< general.architecture
  std::int64_t n_layer = 0;      ///< {arch}.block_count (MTP blocks included)
  std::int64_t n_head = 0;       ///< layer 0's attention.head_count
  std::int64_t n_head_kv = 0;    ///< layer 0's attention.head_count_kv (defaults to n_head)
  std::int64_t n_expert = 0;     ///< {arch}.expert_count, 0 if absent
  bool llama_70b = false;        ///< llama.cpp's LLM_TYPE_70B: arch llama, 80 layers, GQA

  /// n_head / n_head_kv of layer 0 (0 when that layer has no KV heads), as hparams.n_gqa().
  std::int64_t n_gqa() const noexcept { return n_head_kv > 0 ? n_head / n_head_kv : 0; }

  /// Reads the facts from GGUF metadata. Integers of any width are accepted; per-layer
  /// arrays give layer 0's value. Errors (component "quantize"): not_found
  /// (general.architecture or {arch}.block_count missing), bad_dtype (not an integer).
  static result<model_facts> from_metadata(const gguf_metadata& md) {
    model_facts f;
    SBGQ_TRY(std::string_view arch, md.get_string("general.architecture"));
    f.arch = std::string(arch);
    auto integer = [&](const std::string& key, bool required) -> result<std::optional<std::int64_t>> {
      const gguf_value* v = md.find(key);
      if (!v) {
        if (required) return detail::qp::fail(error_code::not_found, "metadata key '" + key + "' not found");
        return std::optional<std::int64_t>{};
      }
      auto as_int = [](const gguf_value& x) -> std::optional<std::int64_t> {
        return std::visit(
            [](const auto& y) -> std::optional<std::int64_t> {
              using T = std::decay_t<decltype(y)>;
              if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return static_cast<std::int64_t>(y);
              else return std::nullopt;
            },
            x.variant());
      };
      if (const gguf_array* a = v->get_array_if()) {
        if (a->empty()) return std::optional<std::int64_t>{std::int64_t{0}};
        std::optional<std::int64_t> r;
        switch (a->element_type()) {
          case gguf_value_type::uint32: r = a->to_vector<std::uint32_t>()[0]; break;
          case gguf_value_type::int32: r = a->to_vector<std::int32_t>()[0]; break;
          case gguf_value_type::uint16: r = a->to_vector<std::uint16_t>()[0]; break;
          case gguf_value_type::int16: r = a->to_vector<std::int16_t>()[0]; break;
          case gguf_value_type::uint8: r = a->to_vector<std::uint8_t>()[0]; break;
          case gguf_value_type::int8: r = a->to_vector<std::int8_t>()[0]; break;
          case gguf_value_type::uint64: r = static_cast<std::int64_t>(a->to_vector<std::uint64_t>()[0]); break;
          case gguf_value_type::int64: r = a->to_vector<std::int64_t>()[0]; break;
          default: break;
        }
        if (!r) return detail::qp::fail(error_code::bad_dtype, "metadata key '" + key + "' is not an integer array");
        return r;
      }
      const auto r = as_int(*v);
      if (!r) return detail::qp::fail(error_code::bad_dtype, "metadata key '" + key + "' is not an integer");
      return r;
    };
    SBGQ_TRY(auto n_layer, integer(f.arch + ".block_count", true));
    SBGQ_TRY(auto n_head, integer(f.arch + ".attention.head_count", false));
    SBGQ_TRY(auto n_head_kv, integer(f.arch + ".attention.head_count_kv", false));
    SBGQ_TRY(auto n_expert, integer(f.arch + ".expert_count", false));
    f.n_layer = *n_layer;
    f.n_head = n_head.value_or(0);
    f.n_head_kv = n_head_kv.value_or(f.n_head);  // llama.cpp: head_count_kv defaults to head_count
    f.n_expert = n_expert.value_or(0);
    f.llama_70b = f.arch == "llama" && f.n_layer == 80 && f.n_head != f.n_head_kv;
    return f;
  }
};

// ---- the choice -------------------------------------------------------------------------

/// The broad tensor classes the mixture rules distinguish (spec 3), first match wins.
enum class tensor_category : std::uint8_t {
  output, token_embd, attention_qkv, attention_kv_b, attention_v, attention_k, attention_q,
  attention_output, ffn_up, ffn_gate, ffn_down, other,
};

constexpr std::string_view tensor_category_name(tensor_category c) noexcept {
  switch (c) {
    case tensor_category::output: return "output";
    case tensor_category::token_embd: return "token_embd";
    case tensor_category::attention_qkv: return "attn_qkv";
    case tensor_category::attention_kv_b: return "attn_kv_b";
    case tensor_category::attention_v: return "attn_v";
    case tensor_category::attention_k: return "attn_k";
    case tensor_category::attention_q: return "attn_q";
    case tensor_category::attention_output: return "attn_output";
    case tensor_category::ffn_up: return "ffn_up";
    case tensor_category::ffn_gate: return "ffn_gate";
    case tensor_category::ffn_down: return "ffn_down";
    case tensor_category::other: return "other";
  }
  return "?";
}

/// The category of a tensor name (spec 3).
inline tensor_category categorize_tensor(std::string_view name) noexcept {
  using detail::qp::contains;
  if (name == "output.weight") return tensor_category::output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return tensor_category::token_embd;
  if (contains(name, "attn_qkv.weight")) return tensor_category::attention_qkv;
  if (contains(name, "attn_kv_b.weight")) return tensor_category::attention_kv_b;
  if (contains(name, "attn_v.weight")) return tensor_category::attention_v;
  if (contains(name, "attn_k.weight")) return tensor_category::attention_k;
  if (contains(name, "attn_q.weight")) return tensor_category::attention_q;
  if (contains(name, "attn_output.weight")) return tensor_category::attention_output;
  if (contains(name, "ffn_up")) return tensor_category::ffn_up;
  if (contains(name, "ffn_gate")) return tensor_category::ffn_gate;
  if (contains(name, "ffn_down")) return tensor_category::ffn_down;
  return tensor_category::other;
}

/// The layer key of the loader's order: what sscanf(name, "blk.%d.") stores, -1 if the
/// name does not start with "blk." followed by a number. (Like sscanf, the '.' after the
/// number is not required for the number to count.)
inline int tensor_layer_key(std::string_view name) noexcept {
  if (name.substr(0, 4) != "blk.") return -1;
  std::size_t i = 4;
  while (i < name.size() && (name[i] == ' ' || (name[i] >= '\t' && name[i] <= '\r'))) ++i;  // %d skips spaces
  bool neg = false;
  if (i < name.size() && (name[i] == '+' || name[i] == '-')) neg = name[i++] == '-';
  const std::size_t digits = i;
  long long v = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
    v = std::min<long long>(v * 10 + (name[i] - '0'), 1LL << 40);  // saturate instead of overflowing
    ++i;
  }
  if (i == digits) return -1;
  v = neg ? -v : v;
  return static_cast<int>(std::clamp<long long>(v, INT32_MIN, INT32_MAX));
}

/// The visiting (and llama_model_quantize writing) order of `tensors`: indices sorted by
/// (tensor_layer_key, name) as the loader's weights_map sorts them.
inline std::vector<std::size_t> llama_tensor_order(std::span<const tensor_desc> tensors) {
  std::vector<std::size_t> idx(tensors.size());
  std::vector<int> key(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    idx[i] = i;
    key[i] = tensor_layer_key(tensors[i].name);
  }
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    if (key[a] != key[b]) return key[a] < key[b];
    return tensors[a].name < tensors[b].name;
  });
  return idx;
}

/// llama.cpp's use_more_bits(i, n): the first and last eighth of the layers, and every
/// third layer in between, get more bits. For n = 32: 16 of 32 layers.
constexpr bool use_more_bits(std::int64_t i, std::int64_t n) noexcept {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/// How a tensor's type was decided.
enum class type_source : std::uint8_t {
  kept,                  ///< not quantizable: stays in its source type
  default_type,          ///< the mixture's default type (no rule applied, or --pure)
  mixture,               ///< a mixture rule changed it
  pattern,               ///< a --tensor-type pattern
  output_override,       ///< --output-tensor-type
  token_embd_override,   ///< --token-embedding-type
};

/// The decision for one tensor.
struct tensor_type_choice {
  std::size_t index = 0;               ///< position in the input tensor list
  std::string name;
  ggml_type source_type = ggml_type::f32;
  ggml_type type = ggml_type::f32;     ///< the output type
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
  std::uint32_t n_dims = 1;
  tensor_category category = tensor_category::other;
  type_source source = type_source::kept;
  bool fell_back = false;              ///< the shape fallback replaced `before_fallback`
  ggml_type before_fallback = ggml_type::f32;
  std::string why;                     ///< short explanation for reports

  /// True if the data must be converted (type differs from the source type).
  bool converts() const noexcept { return type != source_type; }
};

/// What choose_tensor_types found, in visiting order.
struct type_plan {
  std::vector<tensor_type_choice> tensors;  ///< llama_model_quantize's order
  std::int64_t n_attention_wv = 0;          ///< attn_v-like tensors counted (spec 1.2)
  std::int64_t n_ffn_down = 0;              ///< = model_facts::n_layer
  bool has_tied_embeddings = false;
  int n_fallback = 0;
};

/// The type llama.cpp writes for a row of `ncols` values when `t`'s block does not divide
/// it (spec 5): `t` itself when it does, nullopt where llama.cpp defines no fallback.
inline std::optional<ggml_type> shape_fallback_type(std::int64_t ncols, ggml_type t) noexcept {
  using T = ggml_type;
  if (ncols % block_size(t) == 0) return t;
  T to = t;
  switch (t) {
    case T::iq1_s: case T::iq1_m: case T::iq2_xxs: case T::iq2_xs: case T::iq2_s: case T::iq3_xxs:
    case T::iq3_s: case T::iq4_xs: to = T::iq4_nl; break;
    case T::q2_0: case T::q2_k: case T::q3_k: case T::tq1_0: case T::tq2_0: to = T::q4_0; break;
    case T::q4_k: to = T::q5_0; break;
    case T::q5_k: to = T::q5_1; break;
    case T::q6_k: to = T::q8_0; break;
    default: return std::nullopt;
  }
  if (ncols % block_size(to) != 0) to = T::f16;
  return to;
}

namespace detail::qp {

/// Why a tensor is never quantized, or empty if it may be (spec 2).
inline std::string_view keep_reason(const tensor_desc& t, const quant_policy& p) {
  const std::string_view name = t.name;
  // ggml_n_dims: the number of dims ignoring trailing 1s.
  int n_dims = 1;
  for (int j = 3; j >= 1; --j)
    if (t.ne[static_cast<std::size_t>(j)] != 1) {
      n_dims = j + 1;
      break;
    }
  if (n_dims < 2) return "1-D";
  if (!ends_with(name, "weight")) return "name does not end in 'weight'";
  if (contains(name, "_norm.weight")) return "norm";
  if (p.leave_output_tensor && name == "output.weight") return "--leave-output-tensor";
  static constexpr std::string_view never[] = {
      "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
      "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
      "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
      "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
      "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
      "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
      "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
      ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"};
  for (std::string_view s : never)
    if (contains(name, s)) return s == "ssm_conv1d" ? "convolution (ssm_conv1d)" : "small special tensor";
  if (name == "position_embd.weight" || name == "token_types.weight") return "position/token-type embedding";
  return {};
}

/// Running state of the mixture rules (llama.cpp's quantize_state_impl counters).
struct mix_state {
  std::int64_t n_attention_wv = 0, i_attention_wv = 0;
  std::int64_t n_ffn = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
  bool has_imatrix = false;
  bool tied = true;
};

inline bool is_attn_v_like(tensor_category c) noexcept {
  return c == tensor_category::attention_v || c == tensor_category::attention_qkv ||
         c == tensor_category::attention_kv_b;
}

/// The layer index an FFN rule uses: the running counter for dense models, the number in
/// the name for MoE models (spec 4.6). Errors: bad_value.
inline result<std::int64_t> ffn_layer(std::int64_t counter, std::int64_t n, const std::string& name,
                                      const model_facts& m) {
  if (m.n_expert <= 1) return counter;
  const int l = tensor_layer_key(name);
  if (name.substr(0, 4) != "blk." || l < 0 || l >= n)
    return fail(error_code::bad_value, "tensor '" + name + "': cannot use layer " + std::to_string(l) +
                                           " for the MoE mixture rules (must be in [0, " + std::to_string(n) + "))");
  return std::int64_t{l};
}

/// The mixture rules (spec 4) for a quantizable tensor. `t` is the default type in and
/// the chosen type out; `why` gets the rule that fired. Advances the counters exactly as
/// llama.cpp does (only for tensors that reach the rules).
inline result<void> apply_mixture(mix_state& s, const model_facts& m, llama_ftype ft, tensor_category cat,
                                  const tensor_desc& info, ggml_type& t, std::string& why) {
  using F = llama_ftype;
  using T = ggml_type;
  const bool falcon = m.arch == "falcon";
  const auto set = [&](T to, std::string reason) {
    t = to;
    why = std::move(reason);
  };
  if (cat == tensor_category::output || (s.tied && cat == tensor_category::token_embd)) {
    const std::string who = cat == tensor_category::output ? "output" : "tied token_embd";
    // (--output-tensor-type was handled by the caller for OUTPUT; for a tied token_embd it
    // arrives here through the same rule, see choose_tensor_types.)
    if (falcon || info.ne[0] % block_size(t) != 0) set(T::q8_0, who + ": Q8_0 (ne[0] not a multiple of the block)");
    else if (t != T::q8_0) set(T::q6_k, who + ": Q6_K");
    return {};
  }
  if (cat == tensor_category::token_embd) return {};  // untied: the default (no IQ1/IQ2/IQ3 presets here)
  if (is_attn_v_like(cat)) {
    const std::int64_t i = s.i_attention_wv, n = s.n_attention_wv;
    const std::string at = " (attn_v-like #" + std::to_string(i) + " of " + std::to_string(n) + ")";
    if (ft == F::mostly_q2_k) set(m.n_gqa() >= 4 ? T::q4_k : T::q3_k, "Q2_K attn_v: n_gqa " + std::to_string(m.n_gqa()) + at);
    else if (ft == F::mostly_q3_k_m) set(i < 2 ? T::q5_k : T::q4_k, "Q3_K_M attn_v: first 2 -> Q5_K, else Q4_K" + at);
    else if (ft == F::mostly_q3_k_l) set(T::q5_k, "Q3_K_L attn_v" + at);
    else if ((ft == F::mostly_iq4_nl || ft == F::mostly_iq4_xs) && m.n_gqa() >= 4)
      set(T::q5_k, "IQ4 attn_v with n_gqa " + std::to_string(m.n_gqa()) + " >= 4" + at);
    else if ((ft == F::mostly_q4_k_m || ft == F::mostly_q5_k_m) && use_more_bits(i, n))
      set(T::q6_k, "use_more_bits" + at);
    else if (ft == F::mostly_q4_k_s && i < 4) set(T::q5_k, "Q4_K_S attn_v: first 4" + at);
    if (m.llama_70b && (t == T::q3_k || t == T::q4_k)) set(T::q5_k, "70B attn_v bump" + at);
    if (m.n_expert == 8) set(T::q8_0, "8-expert attn_v" + at);
    ++s.i_attention_wv;
    return {};
  }
  if (cat == tensor_category::attention_k) {
    if (m.n_expert == 8) set(T::q8_0, "8-expert attn_k");
    return {};
  }
  if (cat == tensor_category::attention_q) return {};
  if (cat == tensor_category::ffn_down) {
    SBGQ_TRY(const std::int64_t i, ffn_layer(s.i_ffn_down, s.n_ffn, info.name, m));
    const std::int64_t n = s.n_ffn;
    const std::string at = " (ffn_down layer " + std::to_string(i) + " of " + std::to_string(n) + ")";
    if (ft == F::mostly_q2_k) set(T::q3_k, "Q2_K ffn_down" + at);
    else if (ft == F::mostly_q3_k_m)
      set(i < n / 16 ? T::q5_k : (!falcon || use_more_bits(i, n)) ? T::q4_k : T::q3_k, "Q3_K_M ffn_down" + at);
    else if (ft == F::mostly_q3_k_l) set(falcon ? T::q4_k : T::q5_k, "Q3_K_L ffn_down" + at);
    else if (ft == F::mostly_q4_k_m) {
      if (falcon) set(i < n / 16 ? T::q6_k : use_more_bits(i, n) ? T::q5_k : T::q4_k, "Falcon Q4_K_M ffn_down" + at);
      else if (use_more_bits(i, n)) set(T::q6_k, "use_more_bits" + at);
    } else if (i < n / 8 && (ft == F::mostly_iq4_nl || ft == F::mostly_iq4_xs) && !s.has_imatrix)
      set(T::q5_k, "IQ4 ffn_down in the first eighth, no imatrix" + at);
    else if (ft == F::mostly_q5_k_m && use_more_bits(i, n)) set(T::q6_k, "use_more_bits" + at);
    else if (ft == F::mostly_q4_k_s && !falcon && i < n / 8) set(T::q5_k, "Q4_K_S ffn_down in the first eighth" + at);
    ++s.i_ffn_down;
    return {};
  }
  if (cat == tensor_category::attention_output) {
    if (!falcon) {
      if (m.n_expert == 8) {
        if (ft == F::mostly_q2_k || ft == F::mostly_q3_k_s || ft == F::mostly_q3_k_m || ft == F::mostly_iq4_nl ||
            ft == F::mostly_q4_k_s || ft == F::mostly_q4_k_m || ft == F::mostly_iq4_xs)
          set(T::q5_k, "8-expert attn_output");
      } else if (ft == F::mostly_q2_k) set(T::q3_k, "Q2_K attn_output");
      else if (ft == F::mostly_q3_k_m) set(T::q4_k, "Q3_K_M attn_output");
      else if (ft == F::mostly_q3_k_l) set(T::q5_k, "Q3_K_L attn_output");
    } else if (ft == F::mostly_q3_k_l) {
      set(T::q4_k, "Falcon Q3_K_L attn_output");
    }
    return {};
  }
  // attn_qkv has its own branch in llama.cpp, but the attn_v branch above catches it
  // first (spec 4.4 <B, C>), so it is unreachable and not reproduced.
  if (cat == tensor_category::ffn_gate) {
    SBGQ_TRY(const std::int64_t i, ffn_layer(s.i_ffn_gate, s.n_ffn, info.name, m));
    (void)i;  // only IQ3_XS (not offered) uses it
    ++s.i_ffn_gate;
    return {};
  }
  if (cat == tensor_category::ffn_up) {
    SBGQ_TRY(const std::int64_t i, ffn_layer(s.i_ffn_up, s.n_ffn, info.name, m));
    (void)i;
    ++s.i_ffn_up;
    return {};
  }
  return {};
}

/// The shape fallback (spec 5). Errors: unsupported (no fallback defined for the type).
inline result<ggml_type> shape_fallback(const tensor_desc& info, ggml_type t) {
  const auto to = shape_fallback_type(info.ne[0], t);
  if (!to)
    return fail(error_code::unsupported, "tensor '" + info.name + "': ne[0] = " + std::to_string(info.ne[0]) +
                                             " is not a multiple of the " + std::string(type_name(t)) + " block size " +
                                             std::to_string(block_size(t)) + " and llama.cpp defines no fallback for " +
                                             std::string(type_name(t)));
  return *to;
}

}  // namespace detail::qp

/// Chooses the output type of every tensor, as llama_model_quantize would for `policy`
/// (see the file comment for the version). `has_imatrix`: an importance matrix with at
/// least one entry will be used (it changes the IQ4 ffn_down rule).
///
/// Returns the tensors in visiting order, which is also the order to write them in.
/// Errors (component "quantize"): invalid_argument (ftype not a preset sbgq offers, or a
/// pattern that name_pattern::compile refuses), unsupported (a row length with no fallback for the
/// chosen type), bad_value (MoE tensor without a usable layer number).
/// Pure: no I/O. Complexity: O(tensors x patterns) name_pattern searches.
inline result<type_plan> choose_tensor_types(const model_facts& model, std::span<const tensor_desc> tensors,
                                             const quant_policy& policy, bool has_imatrix) {
  namespace qp = detail::qp;
  const quant_preset* preset = find_quant_preset(policy.ftype);
  if (!preset)
    return qp::fail(error_code::invalid_argument, "llama_ftype " + std::to_string(static_cast<std::uint32_t>(policy.ftype)) +
                                                      " is not a file type sbgq produces (" + qp::preset_list() + ")");
  const ggml_type def = preset->default_type;

  std::vector<name_pattern> patterns;
  patterns.reserve(policy.tensor_types.size());
  for (const auto& o : policy.tensor_types) {
    auto re = name_pattern::compile(o.pattern);
    if (!re) return qp::fail(error_code::invalid_argument, "bad --tensor-type regular expression: " + re.error().context);
    patterns.push_back(std::move(*re));
  }

  type_plan plan;
  qp::mix_state s;
  s.has_imatrix = has_imatrix;
  const std::vector<std::size_t> order = llama_tensor_order(tensors);
  for (const tensor_desc& t : tensors) {  // preliminary counts over all tensors (spec 1.2)
    const tensor_category c = categorize_tensor(t.name);
    if (qp::is_attn_v_like(c)) ++s.n_attention_wv;
    if (c == tensor_category::output) s.tied = false;
  }
  s.n_ffn = model.n_layer;
  plan.n_attention_wv = s.n_attention_wv;
  plan.n_ffn_down = s.n_ffn;
  plan.has_tied_embeddings = s.tied;

  plan.tensors.reserve(tensors.size());
  for (std::size_t k : order) {
    const tensor_desc& info = tensors[k];
    tensor_type_choice c;
    c.index = k;
    c.name = info.name;
    c.source_type = info.type;
    c.type = info.type;
    c.ne = info.ne;
    c.n_dims = info.n_dims;
    c.category = categorize_tensor(info.name);
    c.before_fallback = info.type;
    if (const std::string_view r = qp::keep_reason(info, policy); !r.empty()) {
      c.source = type_source::kept;
      c.why = "kept: " + std::string(r);
      plan.tensors.push_back(std::move(c));
      continue;
    }
    if (policy.token_embedding_type && c.category == tensor_category::token_embd) {
      c.type = c.before_fallback = *policy.token_embedding_type;
      c.source = type_source::token_embd_override;
      c.why = "--token-embedding-type";
      plan.tensors.push_back(std::move(c));
      continue;
    }
    if (policy.output_tensor_type && c.category == tensor_category::output) {
      c.type = c.before_fallback = *policy.output_tensor_type;
      c.source = type_source::output_override;
      c.why = "--output-tensor-type";
      plan.tensors.push_back(std::move(c));
      continue;
    }
    ggml_type t = def;
    c.source = type_source::default_type;
    c.why = "default of " + std::string(preset->name);
    if (is_quantized(def)) {
      bool manual = false;
      for (std::size_t j = 0; j < patterns.size(); ++j)
        if (patterns[j].search(info.name)) {
          t = policy.tensor_types[j].type;
          manual = true;
          c.source = type_source::pattern;
          c.why = "--tensor-type #" + std::to_string(j) + " '" + policy.tensor_types[j].pattern + "'";
          break;
        }
      if (!manual && !policy.pure) {
        // A tied token_embd reaches the output rule; --output-tensor-type applies there.
        if (s.tied && c.category == tensor_category::token_embd && policy.output_tensor_type) {
          t = *policy.output_tensor_type;
          c.source = type_source::output_override;
          c.why = "tied token_embd: --output-tensor-type";
        } else {
          std::string why;
          SBGQ_TRY_VOID(qp::apply_mixture(s, model, policy.ftype, c.category, info, t, why));
          if (t != def) {
            c.source = type_source::mixture;
            c.why = std::move(why);
          }
        }
      }
      c.before_fallback = t;
      SBGQ_TRY(t, qp::shape_fallback(info, t));
      if (t != c.before_fallback) {
        c.fell_back = true;
        ++plan.n_fallback;
        c.why += "; ne[0] = " + std::to_string(info.ne[0]) + " not a multiple of " +
                 std::to_string(block_size(c.before_fallback)) + ": " + std::string(type_name(c.before_fallback)) +
                 " -> " + std::string(type_name(t));
      }
    } else {
      c.before_fallback = t;
    }
    c.type = t;
    plan.tensors.push_back(std::move(c));
  }
  return plan;
}

SBGQ_END_NAMESPACE
