// config.json parsing: the tiny model's real config, the 9B figures of the spec in both
// layouts, and a corpus of wrong configs that must each fail with a clear message.
#include <doctest/doctest.h>

#include <sbgq/model/model_config.hpp>
#include <string>

namespace {
// The published 9B text config (qwen35-model.md section 1.3), nested like the checkpoint.
const char* config_9b_nested = R"({
  "architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
  "tie_word_embeddings": false,
  "text_config": {
    "model_type": "qwen3_5_text", "hidden_size": 4096, "intermediate_size": 12288,
    "num_hidden_layers": 32, "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 256,
    "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
    "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "vocab_size": 248320,
    "full_attention_interval": 4, "rms_norm_eps": 1e-06, "attn_output_gate": true,
    "hidden_act": "silu", "mtp_num_hidden_layers": 1, "eos_token_id": 248044,
    "rope_parameters": {"rope_theta": 10000000, "partial_rotary_factor": 0.25,
                        "mrope_section": [11, 11, 10], "mrope_interleaved": true}
  },
  "vision_config": {"depth": 27}
})";
// The same model flattened, with RoPE fields at the top level and no layer_types.
const char* config_9b_flat = R"({
  "model_type": "qwen3_5_text", "hidden_size": 4096, "intermediate_size": 12288,
  "num_hidden_layers": 32, "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 256,
  "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
  "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "vocab_size": 248320,
  "rms_norm_eps": 1e-06, "rope_theta": 1e7, "tie_word_embeddings": false
})";

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto p = s.find(from);
  REQUIRE(p != std::string::npos);
  return s.replace(p, from.size(), to);
}
}  // namespace

TEST_CASE("the tiny model's config.json") {
  auto c = sbgq::load_qwen35_config(std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35");
  REQUIRE_MESSAGE(c.has_value(), (c ? std::string() : c.error().message()));
  // Figures from ../shared/models/tiny-qwen35/README.md.
  CHECK(c->hidden_size == 256);
  CHECK(c->intermediate_size == 768);
  CHECK(c->num_hidden_layers == 8);
  CHECK(c->num_attention_heads == 4);
  CHECK(c->num_key_value_heads == 2);
  CHECK(c->head_dim == 64);
  CHECK(c->linear_num_key_heads == 2);
  CHECK(c->linear_num_value_heads == 4);
  CHECK(c->linear_key_head_dim == 64);
  CHECK(c->vocab_size == 8192);
  CHECK(c->rope_dims() == 16);
  CHECK(c->mrope_section == std::vector<std::int64_t>{3, 3, 2});
  CHECK(c->linear_conv_dim() == 512);
  CHECK(c->q_proj_rows() == 512);
  CHECK(c->mtp_num_hidden_layers == 1);
  CHECK_FALSE(c->tie_word_embeddings);
  CHECK(c->rope_theta == 1e7);
  REQUIRE(c->layer_types.size() == 8);
  for (int l = 0; l < 8; ++l)
    CHECK((c->layer_types[static_cast<std::size_t>(l)] == sbgq::layer_kind::full_attention) == (l == 3 || l == 7));
}

TEST_CASE("9B config, nested and flattened, give the same model") {
  auto a = sbgq::parse_qwen35_config(config_9b_nested);
  auto b = sbgq::parse_qwen35_config(config_9b_flat);
  REQUIRE_MESSAGE(a.has_value(), (a ? std::string() : a.error().message()));
  REQUIRE_MESSAGE(b.has_value(), (b ? std::string() : b.error().message()));
  for (auto* c : {&*a, &*b}) {
    CHECK(c->hidden_size == 4096);
    CHECK(c->linear_conv_dim() == 8192);  // 2*16*128 + 32*128, spec 3.4
    CHECK(c->linear_value_dim() == 4096);
    CHECK(c->q_proj_rows() == 8192);
    CHECK(c->kv_dim() == 1024);
    CHECK(c->rope_dims() == 64);
    CHECK(c->num_full_attention_layers() == 8);
    CHECK(c->layer_types[3] == sbgq::layer_kind::full_attention);
    CHECK(c->layer_types[31] == sbgq::layer_kind::full_attention);
    CHECK(c->layer_types[30] == sbgq::layer_kind::linear_attention);
    CHECK(c->rope_theta == 1e7);
  }
  CHECK(a->mrope_section == std::vector<std::int64_t>{11, 11, 10});
  CHECK(b->partial_rotary_factor == 0.25);  // transformers' default
}

TEST_CASE("wrong configs fail with a message naming the field") {
  struct bad_case {
    const char* what;
    std::string json;
    sbgq::error_code code;
    const char* needle;
  };
  const std::string n = config_9b_nested;
  const bad_case cases[] = {
      {"syntax", "{\"hidden_size\": 4096,", sbgq::error_code::bad_json, "not valid JSON"},
      {"not an object", "[1, 2]", sbgq::error_code::bad_json, "top level"},
      {"missing field", replace(n, "\"hidden_size\": 4096,", ""), sbgq::error_code::not_found, "text_config.hidden_size"},
      {"negative", replace(n, "\"hidden_size\": 4096", "\"hidden_size\": -4096"), sbgq::error_code::bad_value, "text_config.hidden_size"},
      {"string", replace(n, "\"hidden_size\": 4096", "\"hidden_size\": \"4096\""), sbgq::error_code::bad_json, "found a string"},
      {"fraction", replace(n, "\"hidden_size\": 4096", "\"hidden_size\": 4096.5"), sbgq::error_code::bad_json, "expected an integer"},
      {"huge", replace(n, "\"vocab_size\": 248320", "\"vocab_size\": 1e300"), sbgq::error_code::bad_json, "vocab_size"},
      {"gqa", replace(n, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3"), sbgq::error_code::bad_value, "does not divide num_attention_heads 16"},
      {"delta heads", replace(n, "\"linear_num_key_heads\": 16", "\"linear_num_key_heads\": 12"), sbgq::error_code::bad_value, "linear_num_key_heads"},
      {"dk != dv", replace(n, "\"linear_value_head_dim\": 128", "\"linear_value_head_dim\": 64"), sbgq::error_code::unsupported, "linear_key_head_dim"},
      {"nan eps", replace(n, "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": -1"), sbgq::error_code::bad_value, "rms_norm_eps"},
      {"mrope sum", replace(n, "[11, 11, 10]", "[11, 11, 11]"), sbgq::error_code::bad_value, "mrope_section"},
      {"layer types length", replace(n, "\"full_attention_interval\": 4,", "\"layer_types\": [\"full_attention\"],"), sbgq::error_code::bad_value, "has 1 entries but num_hidden_layers is 32"},
      {"layer kind", replace(n, "\"full_attention_interval\": 4,", "\"layer_types\": [\"mamba\"],"), sbgq::error_code::bad_value, "found \"mamba\""},
      {"moe", replace(n, "\"model_type\": \"qwen3_5\"", "\"model_type\": \"qwen3_5_moe\""), sbgq::error_code::unsupported, "MoE"},
      {"other arch", replace(n, "\"model_type\": \"qwen3_5\"", "\"model_type\": \"llama\""), sbgq::error_code::unsupported, "llama"},
      {"no gate", replace(n, "\"attn_output_gate\": true", "\"attn_output_gate\": false"), sbgq::error_code::unsupported, "attn_output_gate"},
      {"act", replace(n, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""), sbgq::error_code::unsupported, "gelu"},
      {"text_config type", "{\"text_config\": 3}", sbgq::error_code::bad_json, "text_config: expected an object"},
      {"rotary", replace(n, "\"partial_rotary_factor\": 0.25", "\"partial_rotary_factor\": 0.001"), sbgq::error_code::bad_value, "rotated dims"},
      {"no attention", replace(n, "\"full_attention_interval\": 4", "\"full_attention_interval\": 64"), sbgq::error_code::bad_value, "no full_attention layer"},
  };
  for (const auto& bc : cases) {
    CAPTURE(bc.what);
    auto r = sbgq::parse_qwen35_config(bc.json);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == bc.code);
    const std::string msg = r.error().message();
    CAPTURE(msg);
    CHECK(msg.find(bc.needle) != std::string::npos);
    CHECK(msg.rfind("[sbgq.config.", 0) == 0);
  }
}

TEST_CASE("missing config file names the path") {
  auto r = sbgq::load_qwen35_config("/nonexistent/model");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::io_error);
  CHECK(r.error().message().find("/nonexistent/model/config.json") != std::string::npos);
}
