// The HF -> GGUF tensor plan: counts and shapes from qwen35-gguf.md section 3.4 (9B), the
// tiny model's README, and the V-head reorder of section 7.4 on hand-made inputs.
#include <doctest/doctest.h>

#include <sbgq/model/layer_weights.hpp>
#include <sbgq/model/qwen35_tensors.hpp>
#include <memory>
#include <set>

namespace {
sbgq::qwen35_config tiny() {
  auto c = sbgq::load_qwen35_config(std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35");
  REQUIRE(c.has_value());
  return *c;
}
const sbgq::tensor_plan& find(const std::vector<sbgq::tensor_plan>& p, const std::string& name) {
  for (const auto& e : p)
    if (e.gguf_name == name) return e;
  FAIL("no tensor " << name);
  return p.front();
}
}  // namespace

TEST_CASE("9B plan: 427 tensors without MTP, 442 with, shapes of section 3.4") {
  const char* json = R"({"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 32,
    "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 256, "linear_num_key_heads": 16,
    "linear_num_value_heads": 32, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4, "vocab_size": 248320, "mtp_num_hidden_layers": 1})";
  auto c = sbgq::parse_qwen35_config(json);
  REQUIRE(c.has_value());
  auto no_mtp = sbgq::qwen35_tensor_plan(*c, {.include_mtp = false});
  auto with_mtp = sbgq::qwen35_tensor_plan(*c, {});
  CHECK(no_mtp.size() == 427);
  CHECK(with_mtp.size() == 442);
  CHECK(sbgq::qwen35_tensor_plan(*c, {.include_mtp = false, .tied = true}).size() == 426);
  std::set<std::string> names;
  for (auto& e : with_mtp) names.insert(e.gguf_name);
  CHECK(names.size() == with_mtp.size());
  CHECK(find(no_mtp, "blk.0.attn_qkv.weight").ne == std::vector<std::int64_t>{4096, 8192});
  CHECK(find(no_mtp, "blk.0.ssm_conv1d.weight").ne == std::vector<std::int64_t>{4, 8192});
  CHECK(find(no_mtp, "blk.0.ssm_beta.weight").ne == std::vector<std::int64_t>{4096, 32});
  CHECK(find(no_mtp, "blk.0.ssm_out.weight").ne == std::vector<std::int64_t>{4096, 4096});
  CHECK(find(no_mtp, "blk.3.attn_q.weight").ne == std::vector<std::int64_t>{4096, 8192});
  CHECK(find(no_mtp, "blk.3.attn_k.weight").ne == std::vector<std::int64_t>{4096, 1024});
  CHECK(find(no_mtp, "blk.31.ffn_down.weight").ne == std::vector<std::int64_t>{12288, 4096});
  CHECK(find(no_mtp, "token_embd.weight").ne == std::vector<std::int64_t>{4096, 248320});
  CHECK(find(with_mtp, "blk.32.nextn.eh_proj.weight").ne == std::vector<std::int64_t>{8192, 4096});
  CHECK(find(with_mtp, "blk.32.nextn.eh_proj.weight").hf_name == "mtp.fc.weight");
  CHECK(find(with_mtp, "blk.32.attn_q.weight").hf_name == "mtp.layers.0.self_attn.q_proj.weight");
  // No full-attention layer may hold an attn_qkv tensor (the fused-QKV trap, section 5.1).
  for (auto& e : with_mtp)
    if (e.layer >= 0 && (e.layer + 1) % 4 == 0) CHECK(e.gguf_name.find("attn_qkv") == std::string::npos);
  // Transforms of section 7.
  CHECK(find(no_mtp, "blk.0.ssm_norm.weight").transform == sbgq::tensor_transform::none);
  CHECK(find(no_mtp, "blk.0.attn_norm.weight").transform == sbgq::tensor_transform::plus_one);
  CHECK(find(no_mtp, "blk.3.attn_k_norm.weight").transform == sbgq::tensor_transform::plus_one);
  CHECK(find(no_mtp, "blk.0.ssm_a").transform == sbgq::tensor_transform::neg_exp);
  CHECK(find(no_mtp, "blk.0.ssm_a").keep_f32);
  CHECK(find(no_mtp, "blk.0.ssm_conv1d.weight").keep_f32);
  CHECK_FALSE(find(no_mtp, "blk.0.ffn_up.weight").keep_f32);
}

TEST_CASE("tiny plan matches the README's tensor list") {
  const auto c = tiny();
  auto p = sbgq::qwen35_tensor_plan(c, {});
  // 6 DeltaNet layers x 14 + 2 attention x 11 + 3 globals + 15 MTP (README: blk.8.*).
  CHECK(p.size() == 6 * 14 + 2 * 11 + 3 + 15);
  CHECK(find(p, "blk.0.attn_qkv.weight").hf_shape == std::vector<std::int64_t>{512, 256});
  CHECK(find(p, "blk.0.ssm_conv1d.weight").hf_shape == std::vector<std::int64_t>{512, 1, 4});
  CHECK(find(p, "blk.8.nextn.eh_proj.weight").hf_shape == std::vector<std::int64_t>{256, 512});
  CHECK(find(p, "blk.8.attn_q.weight").is_mtp);
}

TEST_CASE("V-head reorder: tiled order k0v0, k1v0, k0v1, k1v1 (README, H_k=2, H_v=4)") {
  // HF value heads 0..3 are (key 0, m 0), (key 0, m 1), (key 1, m 0), (key 1, m 1).
  CHECK(sbgq::v_head_gguf_index(0, 2, 4) == 0);
  CHECK(sbgq::v_head_gguf_index(1, 2, 4) == 2);
  CHECK(sbgq::v_head_gguf_index(2, 2, 4) == 1);
  CHECK(sbgq::v_head_gguf_index(3, 2, 4) == 3);
  for (int j = 0; j < 16; ++j) CHECK(sbgq::v_head_gguf_index(j, 16, 16) == j);  // H_k == H_v: no-op

  const auto c = tiny();
  auto p = sbgq::qwen35_tensor_plan(c, {});
  // A_log: element j of HF lands at the GGUF head, negated and exponentiated.
  {
    const auto& e = find(p, "blk.0.ssm_a");
    std::vector<float> in = {0.0f, 1.0f, 2.0f, 3.0f}, out(4);
    REQUIRE(sbgq::apply_tensor_transform(e, c, in, out).has_value());
    CHECK(out[0] == -std::exp(0.0f));
    CHECK(out[2] == -std::exp(1.0f));
    CHECK(out[1] == -std::exp(2.0f));
    CHECK(out[3] == -std::exp(3.0f));
  }
  // in_proj_qkv: q and k rows (0..255) stay, V heads (64 rows each) move.
  {
    const auto& e = find(p, "blk.1.attn_qkv.weight");
    std::vector<float> in(static_cast<std::size_t>(e.numel())), out(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i / 256);  // value = HF row
    REQUIRE(sbgq::apply_tensor_transform(e, c, in, out).has_value());
    auto row = [&](int r) { return out[static_cast<std::size_t>(r) * 256]; };
    CHECK(row(0) == 0);
    CHECK(row(255) == 255);
    CHECK(row(256) == 256);             // GGUF head 0 = HF head 0
    CHECK(row(256 + 64) == 256 + 128);  // GGUF head 1 = HF head 2
    CHECK(row(256 + 128) == 256 + 64);  // GGUF head 2 = HF head 1
    CHECK(row(256 + 192) == 256 + 192);
  }
  // out_proj: columns move in blocks of d_v = 64.
  {
    const auto& e = find(p, "blk.1.ssm_out.weight");
    std::vector<float> in(static_cast<std::size_t>(e.numel())), out(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 256);  // value = HF column
    REQUIRE(sbgq::apply_tensor_transform(e, c, in, out).has_value());
    CHECK(out[64] == 128);
    CHECK(out[128 + 5] == 64 + 5);
    CHECK(out[256 * 7 + 200] == 200);
  }
  // conv1d: [C, 1, K] rows of K taps; V channels move.
  {
    const auto& e = find(p, "blk.2.ssm_conv1d.weight");
    std::vector<float> in(static_cast<std::size_t>(e.numel())), out(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i / 4);  // value = channel
    REQUIRE(sbgq::apply_tensor_transform(e, c, in, out).has_value());
    CHECK(out[4 * 300] == 300);  // GGUF channel 300 = V head 0 (= HF head 0) + 44
    CHECK(out[4 * 330] == 394);  // GGUF channel 330 = V head 1 (= HF head 2) + 10 -> 256 + 128 + 10
    CHECK(out[4 * 100] == 100);
  }
  std::vector<float> wrong(3), o3(3);
  auto r = sbgq::apply_tensor_transform(find(p, "blk.0.ssm_a"), c, wrong, o3);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::size_mismatch);
}

TEST_CASE("the one table of layer tensors: every layer entry of the plan has its field, roles and input spaces") {
  const auto c = tiny();
  const auto plan = sbgq::qwen35_tensor_plan(c, {});
  // Every plan entry of a decoder layer (MTP's nextn.* aside) is a row of the table, and
  // a layer of that kind holds it in a field of the plan's size.
  for (const auto& e : plan) {
    if (e.layer < 0) continue;
    const auto suffix = sbgq::layer_tensor_suffix(e.gguf_name);
    if (suffix.substr(0, 6) == "nextn.") continue;
    CAPTURE(e.gguf_name);
    const sbgq::layer_tensor_kind* k = sbgq::find_layer_tensor_kind(suffix);
    REQUIRE(k != nullptr);
    const sbgq::layer_kind kind =
        e.is_mtp ? sbgq::layer_kind::full_attention : c.layer_types[static_cast<std::size_t>(e.layer)];
    CHECK(k->in(kind));
    sbgq::layer_weights w;
    w.kind = kind;
    if (k->matrix) (w.*(k->matrix)).resize(e.rows(), e.ne[0]);
    else (w.*(k->vector)).resize(e.numel());
    const auto ref = sbgq::layer_tensor(w, e.gguf_name);
    REQUIRE(ref.has_value());
    CHECK(static_cast<std::int64_t>(ref->rows * ref->cols) == e.numel());
    CHECK(ref->cols == static_cast<std::size_t>(e.ne[0]));
  }
  CHECK_FALSE(sbgq::layer_tensor(*std::make_unique<sbgq::layer_weights>(), "blk.0.nextn.eh_proj.weight").has_value());
  // Input spaces: the matrices that read the same activations share one X^T X.
  const std::pair<const char*, const char*> spaces[] = {
      {"blk.0.attn_qkv.weight", "blk.0.attn_qkv.weight"}, {"blk.0.attn_gate.weight", "blk.0.attn_qkv.weight"},
      {"blk.0.ssm_beta.weight", "blk.0.attn_qkv.weight"}, {"blk.0.ssm_alpha.weight", "blk.0.attn_qkv.weight"},
      {"blk.3.attn_q.weight", "blk.3.attn_q.weight"},     {"blk.3.attn_k.weight", "blk.3.attn_q.weight"},
      {"blk.3.attn_v.weight", "blk.3.attn_q.weight"},     {"blk.12.ffn_up.weight", "blk.12.ffn_gate.weight"},
      {"blk.1.ffn_gate.weight", "blk.1.ffn_gate.weight"}, {"blk.1.ffn_down.weight", "blk.1.ffn_down.weight"},
      {"blk.1.ssm_out.weight", "blk.1.ssm_out.weight"},   {"blk.3.attn_output.weight", "blk.3.attn_output.weight"},
      {"output.weight", "output.weight"},                 {"blk.0.attn_norm.weight", "blk.0.attn_norm.weight"},
  };
  for (const auto& [name, space] : spaces) CHECK(sbgq::input_space_of(name) == space);
  // Readers of each normed residual and the residual's writers, per layer kind.
  sbgq::layer_weights w;
  auto stems = [](const std::vector<sbgq::layer_matrix>& v) {
    std::string s;
    for (const auto& [k, m] : v) s += std::string(k->stem()) + " ";
    return s;
  };
  using sbgq::activation_space;
  using sbgq::layer_kind;
  CHECK(stems(sbgq::layer_readers(w, layer_kind::linear_attention, activation_space::attn_normed)) ==
        "attn_qkv attn_gate ssm_beta ssm_alpha ");
  CHECK(stems(sbgq::layer_readers(w, layer_kind::full_attention, activation_space::attn_normed)) == "attn_q attn_k attn_v ");
  CHECK(stems(sbgq::layer_readers(w, layer_kind::full_attention, activation_space::ffn_normed)) == "ffn_gate ffn_up ");
  CHECK(stems(sbgq::residual_writers(w, layer_kind::linear_attention)) == "ssm_out ffn_down ");
  CHECK(stems(sbgq::residual_writers(w, layer_kind::full_attention)) == "attn_output ffn_down ");
}
