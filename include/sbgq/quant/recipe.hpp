// Recipes: which ggml type each tensor of a model gets.
//
// Three kinds:
//   - llama presets ("llama-q4_k_m", "llama-iq4_xs", ... one per quant_presets entry):
//     llama.cpp's own mixture rules, exactly as llama-quantize chooses them
//     (quant_policy.hpp), so a pipeline run with every transform off writes the tensors
//     llama-quantize writes;
//   - rules: regular expressions on GGUF tensor names, first match wins, a default type
//     for the other quantizable weights ("seed-iq4_xs" is built in; users write JSON);
//   - "auto": a type per tensor chosen for a bits-per-weight budget from measured
//     quantization errors (see pipeline.hpp, which measures; choose_auto_types allocates).
//
// JSON form of a rules recipe (a file given to --recipe):
//   { "name": "my-mix", "default": "IQ4_XS",
//     "rules": [ { "match": "attn_v\\.weight$", "type": "Q5_K" }, ... ] }
// Types are ggml names in any case ("q5_k", "Q8_0", "f16"). Tensors llama.cpp never
// quantizes (1-D tensors, norms, ssm_conv1d) stay as they are whatever the rules say;
// a row length the chosen type cannot take falls back as llama.cpp does.
//
// Non-goals: per-layer arithmetic rules beyond regexes (use a regex on "blk\\.(0|1)\\.").
#pragma once

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/json.hpp"
#include "../io/ggml_types.hpp"
#include "../io/gguf.hpp"
#include "../core/name_pattern.hpp"
#include "quant_policy.hpp"

SBGQ_BEGIN_NAMESPACE

enum class recipe_kind : std::uint8_t { llama_preset, rules, automatic };

/// One rule: tensors whose GGUF name matches `pattern` (anywhere, as std::regex_search;
/// the bounded subset of name_pattern.hpp) get `type`.
struct recipe_rule {
  std::string pattern;
  ggml_type type = ggml_type::q8_0;
};

/// A per-tensor type recipe (see the file comment).
struct recipe {
  std::string name;
  recipe_kind kind = recipe_kind::rules;
  /// llama_preset: the preset. Otherwise only the general.file_type label written.
  llama_ftype ftype = llama_ftype::mostly_q4_k_m;
  std::vector<recipe_rule> rules;            ///< rules: first match wins
  ggml_type default_type = ggml_type::q4_k;  ///< rules: quantizable weights no rule matched
  /// automatic: the types a tensor may get, and the fixed type of token_embd (its error
  /// has no importance statistics to weigh it with).
  std::vector<ggml_type> candidates = {ggml_type::q3_k, ggml_type::iq4_xs, ggml_type::q4_k,
                                       ggml_type::q5_k, ggml_type::q6_k, ggml_type::q8_0};
  ggml_type auto_token_embd = ggml_type::q4_k;
  /// automatic: the fixed type of the MTP block. The decoder whose output the allocation
  /// measures never runs it (it serves speculative decoding), so it gets no measured share:
  /// Q4_K, what llama.cpp's Q4_K_M mix gives it (Q8_0 took 6% of an IQ4_XS-size budget).
  ggml_type auto_mtp = ggml_type::q4_k;
};

namespace detail::rc {

inline error fail(error_code c, std::string ctx) { return error(c, "recipe", std::move(ctx)); }

inline std::string lower(std::string_view s) {
  std::string o(s);
  for (char& ch : o) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
  return o;
}

}  // namespace detail::rc

/// The recipe the seed model card describes: FFN IQ4_XS; attn_v, attn_output and
/// ssm_beta Q5_K; ssm_out Q6_K; token embedding and output Q8_0; everything else IQ4_XS.
inline recipe seed_iq4_xs_recipe() {
  recipe r;
  r.name = "seed-iq4_xs";
  r.kind = recipe_kind::rules;
  r.ftype = llama_ftype::mostly_iq4_xs;
  r.default_type = ggml_type::iq4_xs;
  r.rules = {{"^token_embd\\.weight$", ggml_type::q8_0}, {"^output\\.weight$", ggml_type::q8_0},
             {"attn_v\\.weight$", ggml_type::q5_k},      {"attn_output\\.weight$", ggml_type::q5_k},
             {"ssm_out\\.weight$", ggml_type::q6_k},     {"ssm_beta\\.weight$", ggml_type::q5_k}};
  return r;
}

/// Names of the built-in recipes, for help texts.
inline std::string builtin_recipe_names() {
  std::string s;
  for (const quant_preset& p : quant_presets) s += "llama-" + detail::rc::lower(p.name) + ", ";
  return s + "seed-iq4_xs, auto";
}

/// A built-in recipe by name ("llama-q4_k_m", "seed-iq4_xs", "auto"), case-insensitive.
/// Errors: not_found.
inline result<recipe> builtin_recipe(std::string_view name) {
  const std::string n = detail::rc::lower(name);
  if (n == "seed-iq4_xs") return seed_iq4_xs_recipe();
  if (n == "auto") {
    recipe r;
    r.name = "auto";
    r.kind = recipe_kind::automatic;
    r.ftype = llama_ftype::mostly_q4_k_m;
    return r;
  }
  if (n.rfind("llama-", 0) == 0) {
    for (const quant_preset& p : quant_presets)
      if (detail::rc::lower(p.name) == n.substr(6)) {
        recipe r;
        r.name = n;
        r.kind = recipe_kind::llama_preset;
        r.ftype = p.ftype;
        return r;
      }
  }
  return detail::rc::fail(error_code::not_found,
                          "no built-in recipe '" + std::string(name) + "' (built in: " + builtin_recipe_names() + ")");
}

/// Parses a rules recipe from JSON (format in the file comment). `source` names the text
/// in messages. Errors: bad_json, bad_value (unknown type, bad regex, missing fields).
inline result<recipe> parse_recipe_json(std::string_view json, const std::string& source) {
  using detail::rc::fail;
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::element root;
  if (auto e = parser.parse(text).get(root); e)
    return fail(error_code::bad_json, source + ": not valid JSON (" + simdjson::error_message(e) + ")");
  simdjson::dom::object obj;
  if (root.get(obj)) return fail(error_code::bad_json, source + ": the recipe must be a JSON object");
  recipe r;
  r.kind = recipe_kind::rules;
  r.ftype = llama_ftype::mostly_q4_k_m;
  std::string_view s;
  if (!obj["name"].get(s)) r.name = std::string(s);
  else r.name = source;
  auto parse_type = [&](std::string_view t, const std::string& where) -> result<ggml_type> {
    const auto ty = ggml_type_from_name(t);
    if (!ty) return fail(error_code::bad_value, source + ": " + where + ": unknown ggml type '" + std::string(t) + "'");
    return *ty;
  };
  if (obj["default"].get(s)) return fail(error_code::bad_value, source + ": missing string field 'default' (a ggml type)");
  SBGQ_TRY(r.default_type, parse_type(s, "default"));
  simdjson::dom::array rules;
  if (obj["rules"].get(rules)) return fail(error_code::bad_value, source + ": missing array field 'rules'");
  std::size_t i = 0;
  for (simdjson::dom::element e : rules) {
    const std::string where = "rules[" + std::to_string(i++) + "]";
    std::string_view m, t;
    if (e["match"].get(m) || e["type"].get(t))
      return fail(error_code::bad_value, source + ": " + where + " needs string fields 'match' and 'type'");
    recipe_rule rule;
    rule.pattern = std::string(m);
    SBGQ_TRY(rule.type, parse_type(t, where));
    if (auto re = name_pattern::compile(rule.pattern); !re)
      return fail(error_code::bad_value,
                  source + ": " + where + ": bad regular expression '" + detail::np::excerpt(rule.pattern) + "' (" +
                      re.error().context + ")");
    r.rules.push_back(std::move(rule));
  }
  return r;
}

/// A built-in recipe, or a JSON file when `name_or_path` names an existing file.
inline result<recipe> load_recipe(const std::string& name_or_path) {
  if (auto b = builtin_recipe(name_or_path)) return b;
  std::FILE* f = std::fopen(name_or_path.c_str(), "rb");
  if (!f)
    return detail::rc::fail(error_code::not_found, "recipe '" + name_or_path + "' is neither built in (" +
                                                       builtin_recipe_names() + ") nor a readable file");
  std::string text;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return parse_recipe_json(text, name_or_path);
}

/// True if llama.cpp would ever quantize this tensor (not 1-D, not a norm, not ssm_conv1d...).
inline bool is_quantizable_tensor(const tensor_desc& t) {
  return detail::qp::keep_reason(t, quant_policy{}).empty();
}

/// The type of every tensor of `tensors` (same order) under a llama-preset or rules
/// recipe. `has_imatrix` matters for llama presets (the IQ4 ffn_down rule). Errors:
/// invalid_argument for an automatic recipe (see choose_auto_types), those of
/// choose_tensor_types, bad_value for a rule pattern name_pattern refuses, unsupported
/// when a row length has no fallback. O(tensors x rules x name length x pattern size).
inline result<std::vector<ggml_type>> recipe_types(const recipe& r, const model_facts& facts,
                                                   std::span<const tensor_desc> tensors, bool has_imatrix) {
  std::vector<ggml_type> out(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) out[i] = tensors[i].type;
  if (r.kind == recipe_kind::llama_preset) {
    quant_policy p;
    p.ftype = r.ftype;
    SBGQ_TRY(type_plan plan, choose_tensor_types(facts, tensors, p, has_imatrix));
    for (const tensor_type_choice& c : plan.tensors) out[c.index] = c.type;
    return out;
  }
  if (r.kind == recipe_kind::automatic)
    return detail::rc::fail(error_code::invalid_argument, "recipe 'auto' needs measured errors (choose_auto_types)");
  std::vector<name_pattern> res;
  for (std::size_t j = 0; j < r.rules.size(); ++j) {
    auto re = name_pattern::compile(r.rules[j].pattern);
    if (!re)
      return detail::rc::fail(error_code::bad_value, "recipe '" + r.name + "': rules[" + std::to_string(j) +
                                                         "]: bad regular expression (" + re.error().context + ")");
    res.push_back(std::move(*re));
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!is_quantizable_tensor(tensors[i])) continue;
    ggml_type t = r.default_type;
    for (std::size_t j = 0; j < res.size(); ++j)
      if (res[j].search(tensors[i].name)) {
        t = r.rules[j].type;
        break;
      }
    SBGQ_TRY(out[i], detail::qp::shape_fallback(tensors[i], t));
  }
  return out;
}

namespace detail::rc {

/// `name` as a pattern that matches it alone: anchored, every metacharacter escaped.
inline std::string exact_pattern(std::string_view name) {
  std::string p = "^";
  for (char ch : name) {
    if (std::string_view(".^$|()[]{}*+?\\").find(ch) != std::string_view::npos) p += '\\';
    p += ch;
  }
  return p + "$";
}

}  // namespace detail::rc

/// A rules recipe, as the JSON text parse_recipe_json reads, that gives every quantizable
/// tensor of `tensors` the type in `types` (same order): the type with the most weights is
/// the default and every other tensor gets an anchored rule of its own. Given back to
/// --recipe it reproduces the mix (every types[i] is one its tensor's shape takes, as
/// every recipe's choice is, so no shape fallback changes it); users can edit it.
inline std::string mix_recipe_json(std::string_view name, std::span<const tensor_desc> tensors,
                                   std::span<const ggml_type> types) {
  std::vector<std::pair<ggml_type, std::uint64_t>> weight_of;  // type -> weights, first-seen order
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!is_quantizable_tensor(tensors[i])) continue;
    auto it = std::find_if(weight_of.begin(), weight_of.end(), [&](const auto& p) { return p.first == types[i]; });
    if (it == weight_of.end()) it = weight_of.insert(weight_of.end(), std::pair<ggml_type, std::uint64_t>{types[i], 0});
    it->second += tensors[i].n_elements();
  }
  ggml_type dflt = ggml_type::q8_0;
  std::uint64_t most = 0;
  for (const auto& [t, n] : weight_of)
    if (n > most) {
      most = n;
      dflt = t;
    }
  json_writer j;
  j.begin_object();
  j.key("name").value(name);
  j.key("default").value(type_name(dflt));
  j.key("rules").begin_array(json_layout::lines);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!is_quantizable_tensor(tensors[i]) || types[i] == dflt) continue;
    j.begin_object(json_layout::inline_);
    j.key("match").value(detail::rc::exact_pattern(tensors[i].name)).key("type").value(type_name(types[i]));
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return std::move(j).str();
}

/// A tensor's measured cost at each candidate type, for choose_auto_types.
struct tensor_cost {
  std::uint64_t n_elements = 0;
  std::vector<ggml_type> types;  ///< candidates this tensor can take, cheapest first
  std::vector<double> error;     ///< estimated importance-weighted squared error per type
};

/// What the automatic recipe measured for one tensor, for reports: its candidate types,
/// cheapest first, the cost of each (in the measure's unit), and the type chosen.
struct tensor_measurement {
  std::string name;
  std::vector<ggml_type> types;
  std::vector<double> cost;
  ggml_type chosen = ggml_type::f32;
};

/// Chooses one type per tensor (index into costs[i].types) minimising the summed error
/// subject to sum(bits) <= budget_bits: starting from every tensor's cheapest type, it
/// repeatedly takes the upgrade with the largest error decrease per extra bit (over the
/// convex hull of each tensor's (bits, error) points) while it fits. Deterministic (ties
/// go to the lower index). Returns the chosen index per tensor; the budget may be
/// exceeded only when even the cheapest choice does not fit.
inline std::vector<std::size_t> allocate_bits(std::span<const tensor_cost> costs, double budget_bits) {
  const std::size_t n = costs.size();
  std::vector<std::size_t> pick(n, 0);
  auto bits = [&](std::size_t i, std::size_t k) {
    return static_cast<double>(row_size(costs[i].types[k], static_cast<std::uint64_t>(block_size(costs[i].types[k])))) * 8.0 /
           static_cast<double>(block_size(costs[i].types[k])) * static_cast<double>(costs[i].n_elements);
  };
  double used = 0;
  for (std::size_t i = 0; i < n; ++i) used += bits(i, 0);
  for (;;) {
    double best_gain = 0;
    std::size_t best_i = n, best_k = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k0 = pick[i];
      for (std::size_t k = k0 + 1; k < costs[i].types.size(); ++k) {
        const double db = bits(i, k) - bits(i, k0);
        const double de = costs[i].error[k0] - costs[i].error[k];
        if (db <= 0 || de <= 0 || used + db > budget_bits) continue;
        const double gain = de / db;
        if (gain > best_gain) {
          best_gain = gain;
          best_i = i;
          best_k = k;
        }
      }
    }
    if (best_i == n) break;
    used += bits(best_i, best_k) - bits(best_i, pick[best_i]);
    pick[best_i] = best_k;
  }
  return pick;
}

SBGQ_END_NAMESPACE
