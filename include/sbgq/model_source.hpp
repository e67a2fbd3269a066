// Opening a model for evaluation or calibration from either form users have: an HF
// checkpoint directory (config.json + tokenizer.json + safetensors) or a GGUF file (any
// tensor type sbgq decodes; config and tokenizer from its metadata). Either way the
// result has the config, the tokenizer and a layer-at-a-time weight provider.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "base.hpp"
#include "error.hpp"
#include "gguf.hpp"
#include "model_config.hpp"
#include "safetensors.hpp"
#include "tokenizer.hpp"
#include "weights.hpp"

SBGQ_BEGIN_NAMESPACE

/// The qwen35 hyper-parameters stored in a GGUF file's metadata (qwen35-gguf.md 2.2-2.3).
/// Errors: unsupported (another architecture), and the gguf getters' not_found/bad_dtype
/// naming the key, bad_value for inconsistent values.
inline result<qwen35_config> qwen35_config_from_gguf(const gguf_file& f) {
  const auto& md = f.metadata();
  SBGQ_TRY(std::string_view arch, md.get_string("general.architecture"));
  if (arch != "qwen35")
    return error(error_code::unsupported, "config", "GGUF architecture '" + std::string(arch) + "': expected qwen35");
  auto u = [&](const char* k) -> result<std::int64_t> {
    SBGQ_TRY(std::uint32_t v, md.get<std::uint32_t>(std::string("qwen35.") + k));
    return static_cast<std::int64_t>(v);
  };
  qwen35_config c;
  SBGQ_TRY(std::int64_t blocks, u("block_count"));
  std::int64_t nextn = 0;
  if (md.contains("qwen35.nextn_predict_layers")) { SBGQ_TRY(nextn, u("nextn_predict_layers")); }
  c.num_hidden_layers = blocks - nextn;
  c.mtp_num_hidden_layers = nextn;
  SBGQ_TRY(c.hidden_size, u("embedding_length"));
  SBGQ_TRY(c.intermediate_size, u("feed_forward_length"));
  SBGQ_TRY(c.num_attention_heads, u("attention.head_count"));
  SBGQ_TRY(c.num_key_value_heads, u("attention.head_count_kv"));
  SBGQ_TRY(c.head_dim, u("attention.key_length"));
  SBGQ_TRY(c.linear_num_key_heads, u("ssm.group_count"));
  SBGQ_TRY(c.linear_num_value_heads, u("ssm.time_step_rank"));
  SBGQ_TRY(c.linear_key_head_dim, u("ssm.state_size"));
  c.linear_value_head_dim = c.linear_key_head_dim;
  SBGQ_TRY(c.linear_conv_kernel_dim, u("ssm.conv_kernel"));
  SBGQ_TRY(c.max_position_embeddings, u("context_length"));
  c.full_attention_interval = 4;
  if (md.contains("qwen35.full_attention_interval")) { SBGQ_TRY(c.full_attention_interval, u("full_attention_interval")); }
  SBGQ_TRY(std::int64_t rot, u("rope.dimension_count"));
  SBGQ_TRY(float theta, md.get<float>("qwen35.rope.freq_base"));
  SBGQ_TRY(float eps, md.get<float>("qwen35.attention.layer_norm_rms_epsilon"));
  c.rope_theta = theta;
  c.rms_norm_eps = eps;
  if (c.num_hidden_layers <= 0 || c.head_dim <= 0 || c.full_attention_interval <= 0 || c.num_key_value_heads <= 0 ||
      c.linear_num_key_heads <= 0 || rot <= 0 || rot > c.head_dim)
    return error(error_code::bad_value, "config", "GGUF qwen35 hyper-parameters are inconsistent (layers, heads or rope dims)");
  c.partial_rotary_factor = static_cast<double>(rot) / static_cast<double>(c.head_dim);
  if (md.contains("qwen35.rope.dimension_sections")) {
    SBGQ_TRY(const gguf_array* a, md.get_array("qwen35.rope.dimension_sections"));
    std::vector<std::int64_t> sec;
    if (a->holds<std::int32_t>()) for (auto v : a->to_vector<std::int32_t>()) sec.push_back(v);
    else if (a->holds<std::uint32_t>()) for (auto v : a->to_vector<std::uint32_t>()) sec.push_back(v);
    while (!sec.empty() && sec.back() == 0) sec.pop_back();
    c.mrope_section = sec;
  }
  const gguf_tensor_info* emb = f.find_tensor("token_embd.weight");
  if (!emb) return error(error_code::not_found, "config", "GGUF file has no token_embd.weight");
  c.vocab_size = emb->ne[1];
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
    c.layer_types.push_back((l + 1) % c.full_attention_interval == 0 ? layer_kind::full_attention : layer_kind::linear_attention);
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
