// Opening a model for evaluation or calibration from either form users have: an HF
// checkpoint directory (config.json + tokenizer.json + safetensors) or a GGUF file (any
// tensor type sbgq decodes; config and tokenizer from its metadata). Either way the
// result has the config, the tokenizer and a layer-at-a-time weight provider.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../io/gguf.hpp"
#include "model_config.hpp"
#include "qwen35_tensors.hpp"
#include "../io/safetensors.hpp"
#include "tokenizer.hpp"
#include "weights.hpp"

SBGQ_BEGIN_NAMESPACE

/// The qwen35 hyper-parameters stored in a GGUF file's metadata (qwen35-gguf.md 2.2-2.3),
/// checked before anything is sized from them: each against a hard cap (those of
/// config.json), then against each other, then against the tensors present (the tensor
/// plan those values imply must be exactly the file's tensors, with the same shapes).
/// Errors (component "config"): unsupported (another architecture; a tensor no slot of
/// the model uses), the gguf getters' not_found/bad_dtype naming the key, bad_value (a
/// value out of range or inconsistent; a tensor of a block at or past block_count),
/// not_found (a tensor the metadata implies is missing), bad_shape (a tensor of another
/// shape than the metadata implies).
inline result<qwen35_config> qwen35_config_from_gguf(const gguf_file& f) {
  const auto& md = f.metadata();
  SBGQ_TRY(std::string_view arch, md.get_string("general.architecture"));
  if (arch != "qwen35")
    return error(error_code::unsupported, "config", "GGUF architecture '" + std::string(arch) + "': expected qwen35");
  const auto bad = [](const std::string& what) { return error(error_code::bad_value, "config", "GGUF " + what); };
  auto u = [&](const char* k, std::int64_t lo, std::int64_t hi) -> result<std::int64_t> {
    const std::string key = std::string("qwen35.") + k;
    SBGQ_TRY(std::uint32_t v, md.get<std::uint32_t>(key));
    if (v < lo || v > hi)
      return bad(key + " = " + std::to_string(v) + ": expected " + std::to_string(lo) + ".." + std::to_string(hi));
    return static_cast<std::int64_t>(v);
  };
  constexpr std::int64_t big = std::int64_t{1} << 24;  // as config.json's sanity cap
  constexpr std::int64_t max_layers = 4096, max_mtp = 64;
  qwen35_config c;
  SBGQ_TRY(std::int64_t blocks, u("block_count", 1, max_layers + max_mtp));
  std::int64_t nextn = 0;
  if (md.contains("qwen35.nextn_predict_layers")) { SBGQ_TRY(nextn, u("nextn_predict_layers", 0, max_mtp)); }
  if (nextn >= blocks)
    return bad("qwen35.nextn_predict_layers = " + std::to_string(nextn) + " leaves no decoder layer of qwen35.block_count = " +
               std::to_string(blocks));
  c.num_hidden_layers = blocks - nextn;
  c.mtp_num_hidden_layers = nextn;
  SBGQ_TRY(c.hidden_size, u("embedding_length", 1, big));
  SBGQ_TRY(c.intermediate_size, u("feed_forward_length", 1, big));
  SBGQ_TRY(c.num_attention_heads, u("attention.head_count", 1, 4096));
  SBGQ_TRY(c.num_key_value_heads, u("attention.head_count_kv", 1, 4096));
  SBGQ_TRY(c.head_dim, u("attention.key_length", 1, 65536));
  SBGQ_TRY(c.linear_num_key_heads, u("ssm.group_count", 1, 4096));
  SBGQ_TRY(c.linear_num_value_heads, u("ssm.time_step_rank", 1, 4096));
  SBGQ_TRY(c.linear_key_head_dim, u("ssm.state_size", 1, 65536));
  c.linear_value_head_dim = c.linear_key_head_dim;
  SBGQ_TRY(c.linear_conv_kernel_dim, u("ssm.conv_kernel", 1, 64));
  SBGQ_TRY(c.max_position_embeddings, u("context_length", 1, std::numeric_limits<std::uint32_t>::max()));
  c.full_attention_interval = 4;
  if (md.contains("qwen35.full_attention_interval")) { SBGQ_TRY(c.full_attention_interval, u("full_attention_interval", 1, 4096)); }
  SBGQ_TRY(std::int64_t rot, u("rope.dimension_count", 2, 65536));
  SBGQ_TRY(float theta, md.get<float>("qwen35.rope.freq_base"));
  SBGQ_TRY(float eps, md.get<float>("qwen35.attention.layer_norm_rms_epsilon"));
  if (!(theta > 0 && std::isfinite(theta))) return bad("qwen35.rope.freq_base = " + std::to_string(theta) + ": expected a finite value > 0");
  if (!(eps > 0 && eps <= 1)) return bad("qwen35.attention.layer_norm_rms_epsilon = " + std::to_string(eps) + ": expected a value in (0, 1]");
  c.rope_theta = theta;
  c.rms_norm_eps = eps;
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return bad("qwen35.attention.head_count_kv = " + std::to_string(c.num_key_value_heads) +
               " does not divide qwen35.attention.head_count = " + std::to_string(c.num_attention_heads));
  if (c.linear_num_value_heads % c.linear_num_key_heads != 0)
    return bad("qwen35.ssm.group_count = " + std::to_string(c.linear_num_key_heads) +
               " does not divide qwen35.ssm.time_step_rank = " + std::to_string(c.linear_num_value_heads));
  if (rot % 2 != 0 || rot > c.head_dim)
    return bad("qwen35.rope.dimension_count = " + std::to_string(rot) + ": expected an even number in [2, " +
               std::to_string(c.head_dim) + "] (attention.key_length)");
  if (c.full_attention_interval > c.num_hidden_layers)
    return bad("qwen35.full_attention_interval = " + std::to_string(c.full_attention_interval) +
               " leaves no full-attention layer among the " + std::to_string(c.num_hidden_layers) + " decoder layers");
  c.partial_rotary_factor = static_cast<double>(rot) / static_cast<double>(c.head_dim);
  if (md.contains("qwen35.rope.dimension_sections")) {
    SBGQ_TRY(const gguf_array* a, md.get_array("qwen35.rope.dimension_sections"));
    if (a->size() > 4) return bad("qwen35.rope.dimension_sections: expected at most 4 sections, found " + std::to_string(a->size()));
    std::vector<std::int64_t> sec;
    if (a->holds<std::int32_t>()) for (auto v : a->to_vector<std::int32_t>()) sec.push_back(v);
    else if (a->holds<std::uint32_t>()) for (auto v : a->to_vector<std::uint32_t>()) sec.push_back(v);
    for (auto v : sec)
      if (v < 0 || v > 65536) return bad("qwen35.rope.dimension_sections: " + std::to_string(v) + " out of 0..65536");
    while (!sec.empty() && sec.back() == 0) sec.pop_back();
    c.mrope_section = sec;
  }
  const gguf_tensor_info* emb = f.find_tensor("token_embd.weight");
  if (!emb) return error(error_code::not_found, "config", "GGUF file has no token_embd.weight");
  if (emb->n_dims != 2 || emb->ne[0] != c.hidden_size || emb->ne[1] < 1 || emb->ne[1] > big)
    return error(error_code::bad_shape, "config",
                 "GGUF tensor 'token_embd.weight' has ne [" + std::to_string(emb->ne[0]) + ", " + std::to_string(emb->ne[1]) +
                     "] (" + std::to_string(emb->n_dims) + " dims): expected [" + std::to_string(c.hidden_size) +
                     " (embedding_length), 1.." + std::to_string(big) + "]");
  c.vocab_size = emb->ne[1];
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
    c.layer_types.push_back((l + 1) % c.full_attention_interval == 0 ? layer_kind::full_attention : layer_kind::linear_attention);

  // The tensors these values imply must be exactly the file's tensors.
  tensor_plan_options po;
  po.include_mtp = nextn > 0;
  po.tied = c.tie_word_embeddings;
  const auto plan = qwen35_tensor_plan(c, po);
  std::vector<std::string_view> planned;
  planned.reserve(plan.size());
  for (const auto& e : plan) planned.push_back(e.gguf_name);
  std::sort(planned.begin(), planned.end());
  const auto shape_str = [](std::span<const std::int64_t> ne) {
    std::string o = "[";
    for (std::size_t i = 0; i < ne.size(); ++i) o += (i ? ", " : "") + std::to_string(ne[i]);
    return o + "]";
  };
  for (const auto& t : f.tensors()) {  // first: a block the metadata does not count
    std::int64_t n = -1;
    std::string_view rest(t.name);
    if (rest.substr(0, 4) == "blk.") {
      rest.remove_prefix(4);
      std::size_t i = 0;
      for (n = 0; i < rest.size() && i < 9 && rest[i] >= '0' && rest[i] <= '9'; ++i) n = n * 10 + (rest[i] - '0');
      if (i == 0 || i >= rest.size() || rest[i] != '.') n = -1;
    }
    if (n >= blocks)
      return bad("tensor '" + detail::printable(t.name) + "' belongs to block " + std::to_string(n) +
                 ", but qwen35.block_count = " + std::to_string(blocks) + " (blocks 0.." + std::to_string(blocks - 1) +
                 "): the metadata does not describe the file's tensors");
  }
  for (const auto& t : f.tensors())
    if (!std::binary_search(planned.begin(), planned.end(), std::string_view(t.name)))
      return error(error_code::unsupported, "config",
                   "GGUF tensor '" + detail::printable(t.name) + "' is used by no slot of the qwen35 model its metadata describes (block_count = " +
                       std::to_string(blocks) + ", nextn_predict_layers = " + std::to_string(nextn) +
                       ", full_attention_interval = " + std::to_string(c.full_attention_interval) + ")");
  for (const auto& e : plan) {
    const gguf_tensor_info* t = f.find_tensor(e.gguf_name);
    if (!t)
      return error(error_code::not_found, "config",
                   "GGUF tensor '" + e.gguf_name + "' is missing: " +
                       (e.layer >= 0 ? "block " + std::to_string(e.layer) + " < qwen35.block_count = " + std::to_string(blocks) +
                                           " needs it"
                                     : std::string("the model needs it")));
    if (!std::equal(t->shape().begin(), t->shape().end(), e.ne.begin(), e.ne.end()))
      return error(error_code::bad_shape, "config",
                   "GGUF tensor '" + e.gguf_name + "' has ne " + shape_str(t->shape()) + ", the metadata implies " + shape_str(e.ne));
  }
  return c;
}

/// The tokenizer stored in a GGUF file (tokenizer.ggml.tokens/token_type/merges).
inline result<tokenizer> tokenizer_from_gguf(const gguf_file& f) {
  const auto& md = f.metadata();
  SBGQ_TRY(std::string_view model, md.get_string("tokenizer.ggml.model"));
  if (model != "gpt2") return error(error_code::unsupported, "tokenizer", "tokenizer.ggml.model '" + std::string(model) + "': expected gpt2");
  SBGQ_TRY(std::vector<std::string> tokens, md.get_array_of<std::string>("tokenizer.ggml.tokens"));
  SBGQ_TRY(std::vector<std::int32_t> types, md.get_array_of<std::int32_t>("tokenizer.ggml.token_type"));
  SBGQ_TRY(std::vector<std::string> merges, md.get_array_of<std::string>("tokenizer.ggml.merges"));
  std::vector<token_type> tt(types.size());
  for (std::size_t i = 0; i < types.size(); ++i) tt[i] = static_cast<token_type>(types[i]);
  return tokenizer::from_vocab(std::move(tokens), std::move(tt), std::move(merges));
}

/// A model opened for the forward pass.
struct model_source {
  std::string path;
  bool is_gguf = false;
  qwen35_config config;
  tokenizer tok;
  std::optional<safetensors_checkpoint> checkpoint;
  std::optional<gguf_file> gguf;
  std::unique_ptr<weight_provider> provider;
};

/// Opens `path`: a GGUF file (by its magic) or an HF checkpoint directory.
/// Thread-safety: the returned provider is for one thread of control at a time.
inline result<std::unique_ptr<model_source>> open_model(const std::string& path, int n_threads = 0) {
  auto m = std::make_unique<model_source>();
  m->path = path;
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) {
    SBGQ_TRY(gguf_file f, gguf_file::open(path));
    m->is_gguf = true;
    m->gguf.emplace(std::move(f));
    SBGQ_TRY(m->config, qwen35_config_from_gguf(*m->gguf));
    SBGQ_TRY(m->tok, tokenizer_from_gguf(*m->gguf));
    m->provider = std::make_unique<gguf_weight_provider>(*m->gguf, m->config, n_threads);
  } else {
    SBGQ_TRY(m->config, load_qwen35_config(path));
    SBGQ_TRY(safetensors_checkpoint ck, safetensors_checkpoint::open(path));
    m->checkpoint.emplace(std::move(ck));
    SBGQ_TRY(m->tok, tokenizer::load(path + "/tokenizer.json", static_cast<std::size_t>(m->config.vocab_size)));
    auto prov = std::make_unique<safetensors_weight_provider>(*m->checkpoint, m->config);
    SBGQ_TRY_VOID(prov->check_tensors());
    m->provider = std::move(prov);
  }
  return m;
}

SBGQ_END_NAMESPACE
