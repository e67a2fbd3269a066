// A vocab-only GGUF for tokenizer oracles, written with llama.cpp's own gguf writer from
// an HF model folder (tokenizer.json, tokenizer_config.json, config.json), following
// qwen35-gguf.md section 8 key by key:
//   tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "qwen35", tokens (padded to the
//   config's vocab_size with "[PAD<id>]"), token_type (INT32: 1 normal, 3 control for an
//   added token marked special or looking like <|...|>, 4 user-defined, 5 unused),
//   merges ("left right"; the [left, right] form joined with one space, spaces inside a
//   part spelled U+0120), special ids (tokenizer_config <kind>_token looked up in
//   added_tokens first, then config.json <kind>_token_id, top level else text_config),
//   add_bos/add_eos when tokenizer_config has booleans, and the chat template.
// plus the general.* and qwen35.* keys that llama_model_load_from_file(vocab_only) needs
// to get past hparams loading.
//
// This is deliberately a separate, plain reading of the JSON files (not sbgq's
// tokenizer), so tokenizer tests compare two independent paths, and converter tests can
// compare their tokenizer keys with this file's.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "oracle.hpp"

namespace sbgq::test {

/// GGUF value type ids (gguf-format.md).
enum : int { gguf_int32 = 5, gguf_string = 8 };

/// The tokenizer keys of section 8, read from an HF folder.
struct hf_vocab {
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  std::vector<std::string> merges;
  std::map<std::string, std::uint32_t> special_ids;  ///< GGUF key suffix -> id ("eos_token_id")
  std::map<std::string, bool> add_flags;            ///< "add_bos_token" / "add_eos_token"
  std::string chat_template;
  std::string config_json;                          ///< config.json text (for hparams)
};

namespace vocab_detail {
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
inline bool looks_special(const std::string& t) {
  return t.size() >= 4 && t.rfind("<|", 0) == 0 && t.compare(t.size() - 2, 2, "|>") == 0;
}
}  // namespace vocab_detail

/// Reads tokenizer.json, tokenizer_config.json and config.json of an HF model folder.
inline hf_vocab read_hf_vocab(const std::string& dir) {
  namespace sj = simdjson;
  using vocab_detail::slurp;
  hf_vocab v;
  sj::dom::parser p_tok, p_cfg, p_tcfg;
  const sj::padded_string tok_text(slurp(dir + "/tokenizer.json"));
  v.config_json = slurp(dir + "/config.json");
  const sj::padded_string cfg_text(v.config_json);
  const sj::padded_string tcfg_text(slurp(dir + "/tokenizer_config.json"));
  sj::dom::element tok = p_tok.parse(tok_text).value();
  sj::dom::element cfg = p_cfg.parse(cfg_text).value();
  sj::dom::element tcfg = p_tcfg.parse(tcfg_text).value();

  sj::dom::element text_cfg = cfg;
  if (cfg["text_config"].error() == sj::SUCCESS) text_cfg = cfg["text_config"].value();
  std::int64_t vocab_size = 0;
  if (text_cfg["vocab_size"].get_int64().get(vocab_size) != sj::SUCCESS &&
      cfg["vocab_size"].get_int64().get(vocab_size) != sj::SUCCESS)
    throw std::runtime_error("config.json: no vocab_size");

  // id -> text/type, added tokens after the model vocab (their content wins).
  std::map<std::int64_t, std::pair<std::string, std::int32_t>> by_id;
  // (Named values: a range-for over `x.value()` of a temporary result would dangle.)
  const sj::dom::object vocab_obj = tok["model"]["vocab"].get_object().value();
  const sj::dom::array added_arr = tok["added_tokens"].get_array().value();
  const sj::dom::array merges_arr = tok["model"]["merges"].get_array().value();
  for (auto kv : vocab_obj)
    by_id[kv.value.get_int64().value()] = {std::string(kv.key), 1};
  std::map<std::string, std::int64_t> added_by_content;
  for (sj::dom::element a : added_arr) {
    const std::string content(a["content"].get_string().value());
    const bool special = a["special"].get_bool().value();
    const std::int64_t id = a["id"].get_int64().value();
    by_id[id] = {content, special || vocab_detail::looks_special(content) ? 3 : 4};
    added_by_content[content] = id;
  }
  const std::int64_t n = std::max<std::int64_t>(vocab_size, by_id.rbegin()->first + 1);
  for (std::int64_t i = 0; i < n; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      v.tokens.push_back("[PAD" + std::to_string(i) + "]");
      v.types.push_back(5);
    } else {
      v.tokens.push_back(it->second.first);
      v.types.push_back(it->second.second);
    }
  }

  for (sj::dom::element m : merges_arr) {
    std::string_view s;
    if (m.get_string().get(s) == sj::SUCCESS) {
      v.merges.emplace_back(s);
      continue;
    }
    std::string joined;
    int k = 0;
    const sj::dom::array parts = m.get_array().value();
    for (sj::dom::element part : parts) {
      if (k++) joined += ' ';
      const std::string_view ps = part.get_string().value();
      for (char c : ps) joined += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
    }
    v.merges.push_back(joined);
  }

  // Special ids: tokenizer_config first, then config.json.
  const std::pair<const char*, const char*> kinds[] = {
      {"bos", "bos_token_id"}, {"eos", "eos_token_id"}, {"unk", "unknown_token_id"},
      {"sep", "seperator_token_id"}, {"pad", "padding_token_id"}, {"cls", "cls_token_id"},
      {"mask", "mask_token_id"}};
  for (const auto& [kind, key] : kinds) {
    sj::dom::element e;
    std::string_view content;
    if (tcfg[std::string(kind) + "_token"].get(e) == sj::SUCCESS) {
      if (e.get_string().get(content) != sj::SUCCESS && e["content"].get_string().get(content) != sj::SUCCESS)
        content = {};
      auto it = added_by_content.find(std::string(content));
      if (!content.empty() && it != added_by_content.end()) {
        v.special_ids[key] = static_cast<std::uint32_t>(it->second);
        continue;
      }
    }
    std::int64_t id = -1;
    const std::string cfg_key = std::string(kind) + "_token_id";
    if (cfg[cfg_key].get_int64().get(id) != sj::SUCCESS && text_cfg[cfg_key].get_int64().get(id) != sj::SUCCESS)
      id = -1;
    if (id >= 0 && id < n) v.special_ids[key] = static_cast<std::uint32_t>(id);
  }
  for (const char* flag : {"add_bos_token", "add_eos_token"}) {
    bool b = false;
    if (tcfg[flag].get_bool().get(b) == sj::SUCCESS) v.add_flags[flag] = b;
  }
  std::string_view tmpl;
  if (tcfg["chat_template"].get_string().get(tmpl) == sj::SUCCESS) v.chat_template = std::string(tmpl);
  return v;
}

/// Writes a vocab-only GGUF for the HF model in dir to out_path with llama.cpp's writer.
/// Throws std::runtime_error on failure.
inline void write_vocab_gguf(const std::string& dir, const std::string& out_path) {
  auto& o = oracle();
  const hf_vocab v = read_hf_vocab(dir);
  void* ctx = o.gguf_init_empty();
  // general.* and the qwen35 hyper-parameters llama.cpp reads before the vocab.
  o.gguf_set_val_str(ctx, "general.architecture", "qwen35");
  o.gguf_set_val_str(ctx, "general.name", "vocab-only");
  {
    namespace sj = simdjson;
    sj::dom::parser p;
    const sj::padded_string txt(v.config_json);
    sj::dom::element cfg = p.parse(txt).value();
    sj::dom::element tc = cfg;
    if (cfg["text_config"].error() == sj::SUCCESS) tc = cfg["text_config"].value();
    const auto u32 = [&](const char* key, const char* field, std::uint32_t dflt) {
      std::int64_t x = dflt;
      if (tc[field].get_int64().get(x) != sj::SUCCESS) x = dflt;
      o.gguf_set_val_u32(ctx, key, static_cast<std::uint32_t>(x));
    };
    u32("qwen35.block_count", "num_hidden_layers", 1);
    u32("qwen35.context_length", "max_position_embeddings", 4096);
    u32("qwen35.embedding_length", "hidden_size", 64);
    u32("qwen35.feed_forward_length", "intermediate_size", 64);
    u32("qwen35.attention.head_count", "num_attention_heads", 1);
    u32("qwen35.attention.head_count_kv", "num_key_value_heads", 1);
    u32("qwen35.attention.key_length", "head_dim", 64);
    u32("qwen35.attention.value_length", "head_dim", 64);
    double eps = 1e-6;
    if (tc["rms_norm_eps"].get_double().get(eps) != sj::SUCCESS) eps = 1e-6;
    o.gguf_set_val_f32(ctx, "qwen35.attention.layer_norm_rms_epsilon", static_cast<float>(eps));
  }
  // tokenizer.*
  o.gguf_set_val_str(ctx, "tokenizer.ggml.model", "gpt2");
  o.gguf_set_val_str(ctx, "tokenizer.ggml.pre", "qwen35");
  std::vector<const char*> ptrs;
  for (const auto& t : v.tokens) ptrs.push_back(t.c_str());
  o.gguf_set_arr_str(ctx, "tokenizer.ggml.tokens", ptrs.data(), ptrs.size());
  o.gguf_set_arr_data(ctx, "tokenizer.ggml.token_type", gguf_int32, v.types.data(), v.types.size());
  ptrs.clear();
  for (const auto& m : v.merges) ptrs.push_back(m.c_str());
  o.gguf_set_arr_str(ctx, "tokenizer.ggml.merges", ptrs.data(), ptrs.size());
  for (const auto& [key, id] : v.special_ids) o.gguf_set_val_u32(ctx, ("tokenizer.ggml." + key).c_str(), id);
  for (const auto& [key, b] : v.add_flags) o.gguf_set_val_bool(ctx, ("tokenizer.ggml." + key).c_str(), b);
  if (!v.chat_template.empty()) o.gguf_set_val_str(ctx, "tokenizer.chat_template", v.chat_template.c_str());
  const bool ok = o.gguf_write_to_file(ctx, out_path.c_str(), false);
  o.gguf_free(ctx);
  if (!ok) throw std::runtime_error("gguf_write_to_file(" + out_path + ") failed");
}

}  // namespace sbgq::test
