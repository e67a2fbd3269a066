// The HF -> GGUF converter against llama.cpp: the converted tiny model loads in libllama,
// carries every key the qwen35 loader reads with the exact type, the tokenizer keys equal
// an independent reading of the HF files, and libllama's logits on it equal our forward
// pass on the HF checkpoint, in batch and token by token. Negative control: the same file
// without the V-head reorder computes a different function.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sbgq/convert.hpp>
#include <sbgq/model/model_source.hpp>
#include <sbgq/model/weights.hpp>
#include <span>
#include <string>
#include <vector>

#include "support/oracle.hpp"
#include "support/vocab_gguf.hpp"

namespace fs = std::filesystem;
using sbgq::test::oracle;
using sbgq::test::oracle_model;

namespace {

const std::string model_dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";

std::string tmp(const std::string& name) {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "convert";
  fs::create_directories(dir);
  return (dir / name).string();
}

/// Converts the tiny model once per (outtype, variant) per process.
const std::string& converted(sbgq::ggml_type t, bool reorder = true, bool mtp = true) {
  static std::map<std::string, std::string> done;
  const std::string key = std::string(sbgq::type_name(t)) + (reorder ? "" : "-noreorder") + (mtp ? "" : "-nomtp");
  auto it = done.find(key);
  if (it != done.end()) return it->second;
  const std::string path = tmp("tiny-" + key + ".gguf");
  sbgq::convert_options opt;
  opt.outtype = t;
  opt.skip_v_head_reorder = !reorder;
  opt.include_mtp = mtp;
  auto rep = sbgq::convert_checkpoint(model_dir, path, opt);
  REQUIRE_MESSAGE(rep.has_value(), (rep ? "" : rep.error().message()));
  return done.emplace(key, path).first->second;
}

std::vector<std::int32_t> eval_tokens(oracle_model& m, std::size_t n) {
  std::ifstream f(std::string(SBGQ_SHARED_DIR) + "/data/eval.txt");
  std::string text((std::istreambuf_iterator<char>(f)), {});
  text.resize(std::min<std::size_t>(text.size(), 8 * n + 1000));
  auto t = m.tokenize(text, false);
  REQUIRE(t.size() >= n);
  t.resize(n);
  return t;
}

/// max over rows of max|a - b| / std(b).
double max_rel_diff(const float* a, const float* b, std::size_t rows, std::size_t vocab) {
  double worst = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0, mx = 0;
    for (std::size_t i = 0; i < vocab; ++i) mean += b[r * vocab + i];
    mean /= static_cast<double>(vocab);
    for (std::size_t i = 0; i < vocab; ++i) {
      const double d = b[r * vocab + i] - mean;
      var += d * d;
      mx = std::max(mx, std::fabs(static_cast<double>(a[r * vocab + i]) - b[r * vocab + i]));
    }
    worst = std::max(worst, mx / std::sqrt(var / static_cast<double>(vocab)));
  }
  return worst;
}

/// Our forward pass on the HF checkpoint itself (safetensors provider).
sbgq::matrix_f32 ours_from_hf(const std::vector<std::int32_t>& toks) {
  static auto cfg = sbgq::load_qwen35_config(model_dir).value();
  static auto ckpt = sbgq::safetensors_checkpoint::open(model_dir).value();
  sbgq::safetensors_weight_provider p(ckpt, cfg);
  auto z = sbgq::forward(cfg, p, toks, 1, nullptr, 2);
  REQUIRE_MESSAGE(z.has_value(), (z ? "" : z.error().message()));
  return std::move(*z);
}

}  // namespace

TEST_SUITE("convert") {

TEST_CASE("the converted tiny model loads in libllama with the keys and types the loader reads") {
  const std::string& path = converted(sbgq::ggml_type::f32);
  auto f = sbgq::gguf_file::open(path);
  REQUIRE(f.has_value());
  const auto& md = f->metadata();
  // qwen35-gguf.md 2.2: required keys with their exact types.
  for (const char* k : {"qwen35.block_count", "qwen35.context_length", "qwen35.embedding_length",
                        "qwen35.feed_forward_length", "qwen35.attention.head_count", "qwen35.attention.head_count_kv",
                        "qwen35.attention.key_length", "qwen35.attention.value_length", "qwen35.ssm.conv_kernel",
                        "qwen35.ssm.state_size", "qwen35.ssm.group_count", "qwen35.ssm.time_step_rank",
                        "qwen35.ssm.inner_size", "qwen35.full_attention_interval", "qwen35.rope.dimension_count",
                        "qwen35.nextn_predict_layers", "general.file_type", "general.quantization_version"}) {
    CAPTURE(k);
    CHECK(md.get<std::uint32_t>(k).has_value());
  }
  for (const char* k : {"qwen35.rope.freq_base", "qwen35.attention.layer_norm_rms_epsilon"}) {
    CAPTURE(k);
    CHECK(md.get<float>(k).has_value());
  }
  CHECK(md.get_string("general.architecture").value() == "qwen35");
  CHECK(md.get_array_of<std::int32_t>("qwen35.rope.dimension_sections").value() == std::vector<std::int32_t>{3, 3, 2, 0});
  CHECK(md.get<std::uint32_t>("qwen35.block_count").value() == 9);  // 8 + MTP (README)
  CHECK(md.get<std::uint32_t>("qwen35.rope.dimension_count").value() == 16);
  CHECK(md.get<std::uint32_t>("qwen35.ssm.inner_size").value() == 256);
  CHECK(md.get<std::uint32_t>("general.file_type").value() == 0);
  CHECK(f->tensors().size() == 124);
  // Norms and SSM parameters stay F32 whatever the outtype (section 6).
  auto f16 = sbgq::gguf_file::open(converted(sbgq::ggml_type::f16));
  REQUIRE(f16.has_value());
  for (const auto& t : f16->tensors()) {
    CAPTURE(t.name);
    const bool must_f32 = t.n_dims == 1 || t.name.find("_norm.weight") != std::string::npos ||
                          t.name.find("ssm_conv1d") != std::string::npos || t.name.ends_with(".ssm_a");
    CHECK(t.type == (must_f32 ? sbgq::ggml_type::f32 : sbgq::ggml_type::f16));
  }

  oracle_model m(path, oracle_model::options{256, 256, 2, false, true});
  CHECK(oracle().llama_model_n_layer(m.model()) == 8);
  CHECK(oracle().llama_model_n_embd(m.model()) == 256);
  CHECK(m.n_vocab() == 8192);
}

TEST_CASE("tokenizer keys equal an independent reading of the HF files") {
  const auto ref = sbgq::test::read_hf_vocab(model_dir);
  auto f = sbgq::gguf_file::open(converted(sbgq::ggml_type::f32));
  REQUIRE(f.has_value());
  const auto& md = f->metadata();
  CHECK(md.get_string("tokenizer.ggml.model").value() == "gpt2");
  CHECK(md.get_string("tokenizer.ggml.pre").value() == "qwen35");
  CHECK(md.get_array_of<std::string>("tokenizer.ggml.tokens").value() == ref.tokens);
  CHECK(md.get_array_of<std::int32_t>("tokenizer.ggml.token_type").value() == ref.types);
  CHECK(md.get_array_of<std::string>("tokenizer.ggml.merges").value() == ref.merges);
  for (const auto& [key, id] : ref.special_ids) {
    CAPTURE(key);
    CHECK(md.get<std::uint32_t>("tokenizer.ggml." + key).value() == id);
  }
  CHECK(md.get<std::uint32_t>("tokenizer.ggml.eos_token_id").value() == 8191);      // <|im_end|>
  CHECK(md.get<std::uint32_t>("tokenizer.ggml.padding_token_id").value() == 8189);  // <|endoftext|>
  CHECK_FALSE(md.contains("tokenizer.ggml.bos_token_id"));                           // bos_token: null
  for (const auto& [flag, value] : ref.add_flags) CHECK(md.get<bool>("tokenizer.ggml." + flag).value() == value);
  CHECK(md.get_string("tokenizer.chat_template").value() == ref.chat_template);
}

TEST_CASE("libllama on the converted file equals our forward pass on the HF checkpoint") {
  oracle_model m(converted(sbgq::ggml_type::f32), oracle_model::options{512, 512, 2, false, true});
  const std::size_t vocab = 8192;
  const auto toks = eval_tokens(m, 160);
  // Batch path: one decode of 160 tokens (chunked DeltaNet in llama.cpp).
  const auto z_ref = m.decode(toks);
  const auto z = ours_from_hf(toks);
  const double batch = max_rel_diff(z.data(), z_ref.data(), toks.size(), vocab);
  // Token-by-token path (the recurrent form) on the first 24 tokens.
  m.clear();
  std::vector<float> z_tok;
  for (std::size_t i = 0; i < 24; ++i) {
    const auto zi = m.decode({toks[i]}, static_cast<int>(i));
    z_tok.insert(z_tok.end(), zi.begin(), zi.end());
  }
  const double single = max_rel_diff(z.data(), z_tok.data(), 24, vocab);
  MESSAGE("max |ours(HF) - libllama(converted)| / std: batch " << batch << ", token by token " << single);
  CHECK(batch < 1e-4);
  CHECK(single < 1e-4);

  // Our own pass reading the converted F32 file gives exactly the HF-derived values.
  auto f = sbgq::gguf_file::open(converted(sbgq::ggml_type::f32));
  REQUIRE(f.has_value());
  auto cfg = sbgq::load_qwen35_config(model_dir).value();
  sbgq::gguf_weight_provider gp(*f, cfg, 2);
  auto zg = sbgq::forward(cfg, gp, toks, 1, nullptr, 2);
  REQUIRE(zg.has_value());
  CHECK(*zg == z);
}

TEST_CASE("negative control: without the V-head reorder libllama computes another function") {
  oracle_model m(converted(sbgq::ggml_type::f32, /*reorder=*/false), oracle_model::options{512, 512, 2, false, true});
  const auto toks = eval_tokens(m, 64);
  const auto z_ref = m.decode(toks);
  const auto z = ours_from_hf(toks);
  const double d = max_rel_diff(z.data(), z_ref.data(), toks.size(), 8192);
  MESSAGE("without the reorder: max |diff| / std = " << d << " (README measured 5.5)");
  CHECK(d > 0.1);  // orders of magnitude above the 1e-4 of the correct file
}

TEST_CASE("f16, bf16 and q8_0 outputs load and stay close to the f32 file; --no-mtp drops blk.8") {
  oracle_model m32(converted(sbgq::ggml_type::f32), oracle_model::options{256, 128, 2, false, true});
  const auto toks = eval_tokens(m32, 100);
  const auto z32 = m32.decode(toks);
  for (auto t : {sbgq::ggml_type::bf16, sbgq::ggml_type::f16, sbgq::ggml_type::q8_0}) {
    CAPTURE(sbgq::type_name(t));
    oracle_model m(converted(t), oracle_model::options{256, 128, 2, false, true});
    const auto z = m.decode(toks);
    const double d = max_rel_diff(z.data(), z32.data(), toks.size(), 8192);
    MESSAGE(sbgq::type_name(t) << ": max |diff| / std against f32 = " << d);
    // bf16 holds the checkpoint's own values; f16 rounds a few; q8_0 quantizes.
    CHECK(d < (t == sbgq::ggml_type::q8_0 ? 0.2 : 0.02));
  }
  auto f = sbgq::gguf_file::open(converted(sbgq::ggml_type::f32, true, /*mtp=*/false));
  REQUIRE(f.has_value());
  CHECK(f->tensors().size() == 109);
  CHECK(f->metadata().get<std::uint32_t>("qwen35.block_count").value() == 8);
  CHECK_FALSE(f->metadata().contains("qwen35.nextn_predict_layers"));
  oracle_model nomtp(converted(sbgq::ggml_type::f32, true, false), oracle_model::options{256, 128, 2, false, true});
  const auto z = nomtp.decode(toks);
  CHECK(max_rel_diff(z.data(), z32.data(), toks.size(), 8192) == 0.0);
}

TEST_CASE("a checkpoint that does not match its config fails clearly and writes nothing") {
  const fs::path dir = fs::path(tmp("bad-model"));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* name : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"})
    fs::create_symlink(fs::path(model_dir) / name, dir / name);
  std::ifstream in(model_dir + "/config.json");
  std::string cfg((std::istreambuf_iterator<char>(in)), {});
  cfg.replace(cfg.find("\"intermediate_size\": 768"), 24, "\"intermediate_size\": 512");
  std::ofstream(dir / "config.json") << cfg;
  const std::string out = tmp("bad.gguf");
  fs::remove(out);
  auto r = sbgq::convert_checkpoint(dir.string(), out);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::bad_shape);
  CHECK(r.error().message().find("mlp.gate_proj.weight' has shape [768, 256], the config implies [512, 256]") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  for (auto& e : fs::directory_iterator(fs::path(out).parent_path()))
    CHECK(e.path().filename().string().find("bad.gguf.tmp") == std::string::npos);
  sbgq::convert_options q4;
  q4.outtype = sbgq::ggml_type::q4_k;
  auto bad_type = sbgq::convert_checkpoint(model_dir, out, q4);
  REQUIRE_FALSE(bad_type.has_value());
  CHECK(bad_type.error().code == sbgq::error_code::unsupported);
}

namespace {
/// A copy of the tiny model in `name`: shards, tokenizer and index symlinked, config.json
/// edited by `edit_cfg`, plus an optional extra shard "extra.safetensors" holding one
/// 4-element f32 tensor per name in `extra` (added to the index).
fs::path model_variant(const std::string& name, const std::function<void(std::string&)>& edit_cfg,
                       const std::vector<std::string>& extra = {}) {
  const fs::path dir = fs::path(tmp(name));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "tokenizer.json",
                        "tokenizer_config.json"})
    fs::create_symlink(fs::path(model_dir) / f, dir / f);
  std::ifstream in(model_dir + "/config.json");
  std::string cfg((std::istreambuf_iterator<char>(in)), {});
  edit_cfg(cfg);
  std::ofstream(dir / "config.json") << cfg;
  std::ifstream iin(model_dir + "/model.safetensors.index.json");
  std::string index((std::istreambuf_iterator<char>(iin)), {});
  if (!extra.empty()) {
    sbgq::safetensors_writer w;
    static const std::vector<float> data = {1, 2, 3, 4};
    std::string entries;
    for (const auto& n : extra) {
      REQUIRE(w.add(n, sbgq::dtype::f32, {4}, std::as_bytes(std::span(data))).has_value());
      entries += "\"" + n + "\": \"extra.safetensors\", ";
    }
    REQUIRE(w.write_file((dir / "extra.safetensors").string()).has_value());
    const auto at = index.find("\"weight_map\": {");
    REQUIRE(at != std::string::npos);
    index.insert(at + 15, entries);
  }
  std::ofstream(dir / "model.safetensors.index.json") << index;
  return dir;
}

void keep_layers(std::string& cfg, int n) {
  cfg.replace(cfg.find("\"num_hidden_layers\": 8"), 22, "\"num_hidden_layers\": " + std::to_string(n));
  const auto b = cfg.find("\"layer_types\": [");
  const auto e = cfg.find(']', b);
  std::string lt = "\"layer_types\": [";
  for (int l = 0; l < n; ++l) lt += std::string(l ? ", " : "") + ((l + 1) % 4 ? "\"linear_attention\"" : "\"full_attention\"");
  cfg.replace(b, e + 1 - b, lt + "]");
}
}  // namespace

TEST_CASE("config.json with fewer layers than the checkpoint: an error naming a tensor and num_hidden_layers") {
  const auto dir = model_variant("four-layers", [](std::string& c) { keep_layers(c, 4); });
  REQUIRE(sbgq::load_qwen35_config(dir.string()).value().num_hidden_layers == 4);  // the config itself is valid
  const std::string out = tmp("four-layers.gguf");
  fs::remove(out);
  auto check = [](const sbgq::error& e) {
    const std::string msg = e.message();
    CAPTURE(msg);
    CHECK(e.code == sbgq::error_code::bad_value);
    const std::string head = "[sbgq.convert.bad_value] tensor 'model.language_model.layers.";
    REQUIRE(msg.substr(0, head.size()) == head);
    const int layer = msg[head.size()] - '0';  // layers 4..7 are the ones config.json leaves out
    CHECK(layer >= 4);
    CHECK(layer <= 7);
    CHECK(msg.find("' belongs to decoder layer " + std::to_string(layer) +
                   ", but config.json has num_hidden_layers = 4 (layers 0..3): the config does not describe this "
                   "checkpoint") != std::string::npos);
  };
  auto r = sbgq::convert_checkpoint(dir.string(), out);
  REQUIRE_FALSE(r.has_value());
  check(r.error());
  CHECK_FALSE(fs::exists(out));
  // The forward pass / evaluation entry point refuses it too.
  auto m = sbgq::open_model(dir.string());
  REQUIRE_FALSE(m.has_value());
  check(m.error());

  // An MTP layer the config does not declare.
  const auto no_mtp = model_variant("no-mtp-layers", [](std::string& c) {
    c.replace(c.find("\"mtp_num_hidden_layers\": 1"), 26, "\"mtp_num_hidden_layers\": 0");
  });
  auto r2 = sbgq::convert_checkpoint(no_mtp.string(), out);
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.error().code == sbgq::error_code::bad_value);
  CHECK(r2.error().message().find("config.json has mtp_num_hidden_layers = 0") != std::string::npos);
}

TEST_CASE("unused checkpoint tensors: the vision tower is left out, any other name is an error") {
  const auto same = [](std::string&) {};
  {  // vision tower tensors (model.visual.*), as Qwen3.5 checkpoints have them: left out
    const auto dir = model_variant("with-visual", same,
                                   {"model.visual.blocks.0.attn.qkv.weight", "model.visual.patch_embed.proj.weight"});
    auto ckpt = sbgq::safetensors_checkpoint::open(dir.string()).value();
    auto cfg = sbgq::load_qwen35_config(dir.string()).value();
    sbgq::tensor_plan_options po;
    const auto plan = sbgq::qwen35_tensor_plan(cfg, po);
    auto n = sbgq::check_unused_hf_tensors(ckpt, plan, cfg, po);
    REQUIRE_MESSAGE(n.has_value(), n.error().message());
    CHECK(*n == 2);
    po.include_mtp = false;  // then the 15 MTP tensors are left out as well
    const auto plan_nomtp = sbgq::qwen35_tensor_plan(cfg, po);
    CHECK(sbgq::check_unused_hf_tensors(ckpt, plan_nomtp, cfg, po).value() == 2 + 15);
    auto m = sbgq::open_model(dir.string());
    CHECK_MESSAGE(m.has_value(), (m ? "" : m.error().message()));
  }
  for (const char* name : {"model.language_model.layers.3.mlp.extra_proj.weight", "model.language_model.extra.weight",
                           "model.layers.0.mlp.up_proj.weight", "lm_head.bias"}) {
    CAPTURE(name);
    const auto dir = model_variant("with-unknown", same, {name});
    const std::string out = tmp("unknown.gguf");
    auto r = sbgq::convert_checkpoint(dir.string(), out);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::unsupported);
    CHECK(r.error().message() ==
          "[sbgq.convert.unsupported] tensor '" + std::string(name) +
              "' is not part of the Qwen3.5 text model described by config.json (num_hidden_layers = 8, tensor prefix "
              "'model.language_model.') nor of the vision tower or another part the converter leaves out");
    CHECK_FALSE(fs::exists(out));
  }
}

namespace {
/// `src` rewritten with the library's GGUF writer: metadata edited by `edit`, the tensors
/// named in `drop` left out, and `extra` (f32 [4] tensors, zeros) appended.
std::string rewrite_gguf(const std::string& src, const std::string& name,
                         const std::function<void(sbgq::gguf_writer&)>& edit, const std::vector<std::string>& drop = {},
                         const std::vector<std::string>& extra = {}) {
  const std::string out = tmp(name);
  auto f = sbgq::gguf_file::open(src).value();
  auto w = sbgq::gguf_writer::create(out).value();
  REQUIRE(w.add_all(f.metadata()).has_value());
  edit(w);
  std::vector<std::string> kept;
  for (const auto& t : f.tensors()) {
    if (std::find(drop.begin(), drop.end(), t.name) != drop.end()) continue;
    REQUIRE(w.add_tensor(t.name, t.type, t.shape()).has_value());
    kept.push_back(t.name);
  }
  for (const auto& n : extra) REQUIRE(w.add_tensor(n, sbgq::ggml_type::f32, {4}).has_value());
  for (const auto& n : kept) REQUIRE(w.write_tensor_data(n, f.tensor_data(n).value()).has_value());
  const std::vector<float> zeros(4, 0.0f);
  for (const auto& n : extra) REQUIRE(w.write_tensor_data(n, std::as_bytes(std::span(zeros))).has_value());
  REQUIRE(w.finish().has_value());
  return out;
}
void set_u32(sbgq::gguf_writer& w, const char* key, std::uint32_t v) {
  REQUIRE(w.set(key, sbgq::gguf_value(v)).has_value());
}
}  // namespace

TEST_CASE("GGUF hyper-parameters are range-checked against caps and against the tensors present") {
  const std::string& good = converted(sbgq::ggml_type::f32);  // block_count 9 = 8 layers + 1 MTP
  {
    auto m = sbgq::open_model(good);
    REQUIRE_MESSAGE(m.has_value(), (m ? "" : m.error().message()));
    CHECK((*m)->config.num_hidden_layers == 8);
    CHECK((*m)->config.mtp_num_hidden_layers == 1);
  }
  const auto fails = [](const std::string& path, sbgq::error_code code, const std::string& expect) {
    auto m = sbgq::open_model(path);
    REQUIRE_FALSE(m.has_value());
    const std::string msg = m.error().message();
    CAPTURE(msg);
    CHECK(m.error().code == code);
    CHECK(msg.find(expect) != std::string::npos);
  };
  // Fewer blocks than the file holds: before the fix, 4 decoder layers ran silently.
  fails(rewrite_gguf(good, "blocks5.gguf", [](auto& w) { set_u32(w, "qwen35.block_count", 5); }),
        sbgq::error_code::bad_value,
        "[sbgq.config.bad_value] GGUF tensor 'blk.5.attn_norm.weight' belongs to block 5, but qwen35.block_count = 5 "
        "(blocks 0..4): the metadata does not describe the file's tensors");
  // 2^32 - 1 blocks: refused by the cap before anything is sized from it.
  fails(rewrite_gguf(good, "blocks-max.gguf", [](auto& w) { set_u32(w, "qwen35.block_count", 0xFFFFFFFFu); }),
        sbgq::error_code::bad_value, "[sbgq.config.bad_value] GGUF qwen35.block_count = 4294967295: expected 1..4160");
  fails(rewrite_gguf(good, "blocks0.gguf", [](auto& w) { set_u32(w, "qwen35.block_count", 0); }),
        sbgq::error_code::bad_value, "qwen35.block_count = 0: expected 1..4160");
  // More blocks than the file holds: block 8 (the MTP block) is then read as a linear-attention layer.
  fails(rewrite_gguf(good, "blocks10.gguf", [](auto& w) { set_u32(w, "qwen35.block_count", 10); }),
        sbgq::error_code::unsupported, "GGUF tensor 'blk.8.attn_q.weight' is used by no slot");
  fails(rewrite_gguf(good, "nextn9.gguf", [](auto& w) { set_u32(w, "qwen35.nextn_predict_layers", 9); }),
        sbgq::error_code::bad_value, "qwen35.nextn_predict_layers = 9 leaves no decoder layer of qwen35.block_count = 9");
  fails(rewrite_gguf(good, "width0.gguf", [](auto& w) { set_u32(w, "qwen35.embedding_length", 0); }),
        sbgq::error_code::bad_value, "qwen35.embedding_length = 0: expected 1..16777216");
  fails(rewrite_gguf(good, "heads-big.gguf", [](auto& w) { set_u32(w, "qwen35.attention.head_count", 1u << 31); }),
        sbgq::error_code::bad_value, "qwen35.attention.head_count = 2147483648: expected 1..4096");
  fails(rewrite_gguf(good, "kv3.gguf", [](auto& w) { set_u32(w, "qwen35.attention.head_count_kv", 3); }),
        sbgq::error_code::bad_value, "qwen35.attention.head_count_kv = 3 does not divide qwen35.attention.head_count = 4");
  fails(rewrite_gguf(good, "ff.gguf", [](auto& w) { set_u32(w, "qwen35.feed_forward_length", 512); }),
        sbgq::error_code::bad_shape, "GGUF tensor 'blk.0.ffn_gate.weight' has ne [256, 768], the metadata implies [256, 512]");
  // A tensor no slot uses, and a missing one below block_count.
  fails(rewrite_gguf(good, "extra.gguf", [](auto&) {}, {}, {"blk.2.ffn_extra.weight"}), sbgq::error_code::unsupported,
        "[sbgq.config.unsupported] GGUF tensor 'blk.2.ffn_extra.weight' is used by no slot of the qwen35 model its "
        "metadata describes (block_count = 9, nextn_predict_layers = 1, full_attention_interval = 4)");
  fails(rewrite_gguf(good, "missing.gguf", [](auto&) {}, {"blk.3.ffn_up.weight"}), sbgq::error_code::not_found,
        "[sbgq.config.not_found] GGUF tensor 'blk.3.ffn_up.weight' is missing: block 3 < qwen35.block_count = 9 needs it");
}

TEST_CASE("an output that is one of the input shards is refused before any work; the shard is untouched") {
  const fs::path dir = fs::path(tmp("shard-model"));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(model_dir)) fs::copy_file(e.path(), dir / e.path().filename());
  const std::string shard = (dir / "model-00002-of-00002.safetensors").string();
  const auto size = fs::file_size(shard);
  const auto mtime = fs::last_write_time(shard);
  auto r = sbgq::convert_checkpoint(dir.string(), shard);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::invalid_argument);
  CHECK_MESSAGE(r.error().message() == "[sbgq.convert.invalid_argument] output '" + shard + "' is '" + shard +
                                           "', a file of the input directory '" + dir.string() + "': refusing to overwrite it",
                r.error().message());
  CHECK(fs::file_size(shard) == size);
  CHECK(fs::last_write_time(shard) == mtime);
  // Through a link from elsewhere, too; the link stays a link.
  const fs::path link = fs::path(tmp("shard-link.gguf"));
  fs::remove(link);
  fs::create_symlink(shard, link);
  auto l = sbgq::convert_checkpoint(dir.string(), link.string());
  REQUIRE_FALSE(l.has_value());
  CHECK(l.error().message().find("shard-link.gguf' is '" + shard + "'") != std::string::npos);
  CHECK(fs::is_symlink(link));
  CHECK(fs::last_write_time(shard) == mtime);
  // The library's own safetensors reader still opens the checkpoint.
  CHECK(sbgq::safetensors_checkpoint::open(dir.string()).has_value());
  fs::remove_all(dir);
}

}  // TEST_SUITE
