// Tests of the HF checkpoint export (include/sbgq/hf_export.hpp), alone and with the
// residual rotation (include/sbgq/rotation.hpp).
//
// Oracles:
//   - the forward HF -> GGUF transforms of qwen35_tensors.hpp: the export's inverse must
//     give back the HF values bit for bit, and converting an exported (un-rotated) tiny model
//     with sbgq::convert_checkpoint must give exactly the GGUF tensors of converting the
//     original checkpoint (the converter itself is checked against llama.cpp's bytes in
//     test_convert.cpp);
//   - libllama (tests/support/oracle.hpp): the rotated export, converted to an F32 GGUF, runs
//     in llama.cpp with logits equal to the original model's within llama.cpp's own f32
//     noise, measured by exporting a residual permutation (exact in real arithmetic) through
//     the same path; for the tiny model as released (untied) and as a tied variant (the
//     rotation must untie it: lm_head.weight written, tie_word_embeddings = false).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "sbgq/convert.hpp"
#include "sbgq/io/gguf.hpp"
#include "sbgq/hf_export.hpp"
#include "sbgq/transform/rotation.hpp"
#include "sbgq/io/safetensors.hpp"
#include "sbgq/model/weights.hpp"
#include "support/oracle.hpp"
#include "support/rng.hpp"
#include "support/tiny_qwen35.hpp"

using namespace sbgq;
namespace fs = std::filesystem;

namespace {

// Same bound as test_rotation.cpp, same justification: measured rotated / permutation noise
// is about 1x (see the MESSAGE lines); a mapping bug costs orders of magnitude.
constexpr double k_noise = 10.0;

/// A fresh (removed) scratch path.
std::string tmp(const std::string& name) {
  const std::string p = std::string(SBGQ_TEST_TMP_DIR) + "/hf_export/" + name;
  std::error_code ec;
  fs::remove_all(p, ec);
  fs::create_directories(fs::path(p).parent_path(), ec);
  return p;
}

std::string read_file(const std::string& p) { return sbgq::test::detail_tiny::read_text(p); }

/// Exports the model of `dir` through `wrap` (a rotation, or nothing) to `out`.
void export_model(const std::string& dir, const std::string& out, const residual_rotation* q, dtype t = dtype::f32,
                  std::vector<std::string>* notices = nullptr, std::uint64_t shard_bytes = std::uint64_t{4} << 30) {
  const qwen35_config c = load_qwen35_config(dir).value();
  auto ckpt = safetensors_checkpoint::open(dir).value();
  safetensors_weight_provider base(ckpt, c);
  hf_export_options opt;
  opt.out_dtype = t;
  opt.max_shard_bytes = shard_bytes;
  opt.progress = [&](const progress_event& e) {
    if (e.stage == progress_stage::note && notices) notices->emplace_back(e.message);
  };
  result<void> r;
  if (q) {
    rotated_provider rp(base, c, *q);
    r = export_hf_checkpoint(dir, c, rp, out, opt);
  } else {
    r = export_hf_checkpoint(dir, c, base, out, opt);
  }
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
}

std::string convert_f32(const std::string& dir, const std::string& out) {
  convert_options o;
  o.outtype = ggml_type::f32;
  o.include_mtp = false;
  auto r = convert_checkpoint(dir, out, o);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  return out;
}

/// Every tensor of a equals b's: names, types, shapes, bytes. Returns the number compared.
std::size_t check_same_tensors(const std::string& a_path, const std::string& b_path) {
  auto a = gguf_file::open(a_path).value();
  auto b = gguf_file::open(b_path).value();
  REQUIRE(a.tensors().size() == b.tensors().size());
  std::size_t n_diff = 0;
  for (std::size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& t = a.tensors()[i];
    const auto* u = b.find_tensor(t.name);
    REQUIRE_MESSAGE(u != nullptr, t.name);
    CHECK(u->type == t.type);
    CHECK(u->ne == t.ne);
    const auto x = a.tensor_data(i);
    const auto y = b.tensor_data(t.name).value();
    const bool same = x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0;
    if (!same) MESSAGE("tensor " << t.name << " differs");
    n_diff += !same;
  }
  CHECK(n_diff == 0);
  return a.tensors().size();
}

std::vector<std::vector<std::int32_t>> eval_sequences(sbgq::test::oracle_model& m, std::size_t n_seq, std::size_t n_tok) {
  const std::string text = read_file(std::string(SBGQ_SHARED_DIR) + "/data/eval.txt");
  auto toks = m.tokenize(text.substr(0, 8000), false);
  REQUIRE(toks.size() >= n_seq * n_tok);
  std::vector<std::vector<std::int32_t>> out;
  for (std::size_t s = 0; s < n_seq; ++s)
    out.emplace_back(toks.begin() + static_cast<std::ptrdiff_t>(s * n_tok),
                     toks.begin() + static_cast<std::ptrdiff_t>((s + 1) * n_tok));
  return out;
}

/// libllama logits of every token of every sequence (each decoded from position 0).
std::vector<float> llama_logits(const std::string& gguf, const std::vector<std::vector<std::int32_t>>& seqs) {
  sbgq::test::oracle_model m(gguf, sbgq::test::oracle_model::options{256, 256, 1, false, true});
  std::vector<float> all;
  for (const auto& s : seqs) {
    m.clear();
    const auto z = m.decode(s);
    all.insert(all.end(), z.begin(), z.end());
  }
  return all;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& ref) {
  REQUIRE(a.size() == ref.size());
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, static_cast<double>(std::fabs(a[i] - ref[i])));
    m = std::max(m, static_cast<double>(std::fabs(ref[i])));
  }
  return d / m;
}

Eigen::MatrixXd random_permutation(std::size_t d, std::uint64_t seed) {
  std::vector<std::size_t> p(d);
  std::iota(p.begin(), p.end(), std::size_t{0});
  sbgq::test::rng r(seed);
  for (std::size_t i = d - 1; i > 0; --i) std::swap(p[i], p[static_cast<std::size_t>(r.next_u64() % (i + 1))]);
  Eigen::MatrixXd q = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(d));
  for (std::size_t i = 0; i < d; ++i) q(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(p[i])) = 1.0;
  return q;
}

/// A copy of the tiny model whose config says tie_word_embeddings = true (lm_head.weight is
/// then ignored by every reader, as transformers and llama.cpp's converter do).
std::string tied_tiny_dir() {
  const std::string dir = tmp("tiny-tied");
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(sbgq::test::tiny_model_dir())) {
    if (e.path().filename() == "config.json") continue;
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename());
  }
  std::string cfg = read_file(sbgq::test::tiny_model_dir() + "/config.json");
  std::size_t n = 0;
  for (std::size_t p = 0; (p = cfg.find("\"tie_word_embeddings\": false", p)) != std::string::npos; ++n)
    cfg.replace(p, 28, "\"tie_word_embeddings\": true");
  REQUIRE(n == 2);
  auto f = output_file::create(dir + "/config.json").value();
  REQUIRE(f.write(cfg.data(), cfg.size()).has_value());
  REQUIRE(f.commit().has_value());
  REQUIRE(load_qwen35_config(dir)->tie_word_embeddings);
  return dir;
}

/// A provider that fails when layer `bad` is loaded (for the atomicity test).
class failing_provider : public weight_provider {
 public:
  failing_provider(weight_provider& in, int bad) : in_(in), bad_(bad) {}
  result<global_weights> load_globals() override { return in_.load_globals(); }
  result<layer_weights> load_layer(int l) override {
    if (l == bad_) return error(error_code::io_error, "test", "injected failure at layer " + std::to_string(l));
    return in_.load_layer(l);
  }

 private:
  weight_provider& in_;
  int bad_;
};

}  // namespace

TEST_SUITE("hf_export") {

TEST_CASE("invert_tensor_transform undoes every HF -> GGUF transform bit for bit") {
  qwen35_config c = load_qwen35_config(sbgq::test::tiny_model_dir()).value();
  c.linear_num_value_heads = 6;  // r = 3: a reorder that is not its own inverse
  tensor_plan_options po;
  po.include_mtp = false;
  sbgq::test::rng r(5);
  std::size_t n_checked = 0;
  for (const tensor_plan& e : qwen35_tensor_plan(c, po)) {
    CAPTURE(e.gguf_name);
    if (e.transform == tensor_transform::none && e.numel() > (1 << 18)) continue;  // plain copies (embeddings)
    std::vector<float> hf(static_cast<std::size_t>(e.numel()));
    for (auto& x : hf) {
      // bf16-representable values as in the checkpoints; A_log in [-1, 3); offsets small.
      // (offsets with |w| < 2^-15 lose low bits in w + 1: not used here; GGUF -> HF -> GGUF,
      // which the round trip needs, is exact for them too)
      float v = e.transform == tensor_transform::neg_exp ? r.uniform(-1.0f, 3.0f) : r.normal() * 0.2f;
      if (e.transform != tensor_transform::neg_exp) {
        if (std::fabs(v) < 0x1p-14f) v = 0x1p-14f;
        v = to_f32(to_bf16(v));
      }
      x = v;
    }
    std::vector<float> gguf(hf.size()), back(hf.size()), again(hf.size());
    REQUIRE(apply_tensor_transform(e, c, hf, gguf).has_value());
    REQUIRE(detail::hf_export::invert_tensor_transform(e, c, gguf, back).has_value());
    REQUIRE(apply_tensor_transform(e, c, back, again).has_value());
    CHECK(std::memcmp(again.data(), gguf.data(), gguf.size() * 4) == 0);  // GGUF -> HF -> GGUF exact
    if (e.transform != tensor_transform::neg_exp)                       // HF -> GGUF -> HF exact
      CHECK(std::memcmp(back.data(), hf.data(), hf.size() * 4) == 0);
    ++n_checked;
  }
  CHECK(n_checked > 50);
  CHECK(detail::hf_export::a_log_of(0.5f).error().code == error_code::bad_value);
}

TEST_CASE("set_json_literal rewrites scalar values of a key at any depth, nothing else") {
  std::string j = R"({"a": 1, "tie_word_embeddings": true, "s": "\"tie_word_embeddings\": true",
 "text_config": {"tie_word_embeddings":false,"mtp_num_hidden_layers": 1, "o": {"tie_word_embeddings": [1]}}})";
  CHECK(detail::hf_export::set_json_literal(j, "tie_word_embeddings", "false") == 2);
  CHECK(detail::hf_export::set_json_literal(j, "mtp_num_hidden_layers", "0") == 1);
  CHECK(j == R"({"a": 1, "tie_word_embeddings": false, "s": "\"tie_word_embeddings\": true",
 "text_config": {"tie_word_embeddings":false,"mtp_num_hidden_layers": 0, "o": {"tie_word_embeddings": [1]}}})");
}

TEST_CASE("round trip: exporting the tiny model and converting it gives the original GGUF tensors") {
  const std::string dir = sbgq::test::tiny_model_dir();
  const std::string ref = convert_f32(dir, tmp("orig.gguf"));
  for (dtype t : {dtype::f32, dtype::bf16}) {
    CAPTURE(dtype_name(t));
    const std::string out = tmp(std::string("plain-") + std::string(dtype_name(t)));
    const std::string out_gguf = tmp(std::string("plain-") + std::string(dtype_name(t)) + ".gguf");
    std::vector<std::string> notices;
    // A small shard target: the export is sharded with an index, as the source is.
    export_model(dir, out, nullptr, t, &notices, std::uint64_t{16} << 20);
    CHECK(fs::exists(out + "/model.safetensors.index.json"));
    std::size_t n_shards = 0;
    for (const auto& f : fs::directory_iterator(out)) n_shards += f.path().extension() == ".safetensors";
    CHECK(n_shards >= 2);  // 22 MB of bf16 / 44 MB of f32 in 16 MiB shards
    for (std::size_t s = 1; s <= n_shards; ++s)
      CHECK(fs::exists(out + "/model-0000" + std::to_string(s) + "-of-0000" + std::to_string(n_shards) + ".safetensors"));
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "generation_config.json"})
      CHECK_MESSAGE(read_file(out + "/" + f) == read_file(dir + "/" + f), f);
    const qwen35_config c = load_qwen35_config(out).value();
    CHECK(c.mtp_num_hidden_layers == 0);
    CHECK(!c.tie_word_embeddings);
    REQUIRE(notices.size() == 2);
    CHECK(notices[0].find("MTP block (1 layer) not written") == 0);
    CHECK(notices[1] == "vision tower not written: the export holds the text model only");
    auto ck = safetensors_checkpoint::open(out).value();
    CHECK(!ck.contains("mtp.fc.weight"));
    CHECK(ck.get("model.language_model.layers.0.linear_attn.A_log")->type == dtype::f32);
    CHECK(ck.get("model.language_model.layers.0.linear_attn.norm.weight")->type == dtype::f32);
    CHECK(ck.get("model.language_model.layers.0.linear_attn.conv1d.weight")->type == t);
    CHECK(ck.get("model.language_model.layers.0.linear_attn.conv1d.weight")->shape == tensor_shape{512, 1, 4});
    // bf16: the released weights are bf16, so f32 -> bf16 of the converted values is exact.
    CHECK(check_same_tensors(ref, convert_f32(out, out_gguf)) ==
          2 + 1 + 8 * 5 + 6 * 9 + 2 * 6);
  }
}

TEST_CASE("a rotated export converted to GGUF runs in libllama with the original logits") {
  const std::string dir = sbgq::test::tiny_model_dir();
  const qwen35_config c = load_qwen35_config(dir).value();
  const std::string base_gguf = convert_f32(dir, tmp("base.gguf"));
  std::vector<std::vector<std::int32_t>> seqs;
  {
    sbgq::test::oracle_model vocab(base_gguf, sbgq::test::oracle_model::options{256, 256, 1, true, true});
    seqs = eval_sequences(vocab, 3, 48);
  }
  const auto ref = llama_logits(base_gguf, seqs);

  auto q = residual_rotation::hadamard(static_cast<std::size_t>(c.hidden_size), 2024).value();
  const std::string rot_dir = tmp("rot"), rot_gguf = tmp("rot.gguf");
  export_model(dir, rot_dir, &q);
  auto rotated_file = gguf_file::open(convert_f32(rot_dir, rot_gguf)).value();
  {
    // The stored norms are identity gains (GGUF 1.0, HF offset 0 written back as 0).
    auto v = gguf_weight_provider(rotated_file, c).values("blk.3.attn_norm.weight").value();
    CHECK(std::all_of(v.values.begin(), v.values.end(), [](float x) { return x == 1.0f; }));
  }
  const double err_rot = rel_diff(llama_logits(rot_gguf, seqs), ref);

  double noise = 0;
  for (std::uint64_t seed : {1u, 2u}) {
    auto p = residual_rotation::from_matrix(random_permutation(static_cast<std::size_t>(c.hidden_size), seed)).value();
    const std::string perm_dir = tmp("perm" + std::to_string(seed)), perm_gguf = tmp("perm" + std::to_string(seed) + ".gguf");
    export_model(dir, perm_dir, &p);
    noise = std::max(noise, rel_diff(llama_logits(convert_f32(perm_dir, perm_gguf), seqs), ref));
  }
  MESSAGE("libllama, tiny model: permutation noise " << noise << ", Hadamard rotation " << err_rot << " ("
                                                     << err_rot / noise << "x)");
  CHECK(noise > 0);
  CHECK(err_rot < k_noise * noise);
}

TEST_CASE("a rotated tied model is exported untied and matches the tied original in libllama") {
  const std::string dir = tied_tiny_dir();
  const qwen35_config c = load_qwen35_config(dir).value();
  const std::string base_gguf = convert_f32(dir, tmp("tied-base.gguf"));
  REQUIRE(gguf_file::open(base_gguf).value().find_tensor("output.weight") == nullptr);
  std::vector<std::vector<std::int32_t>> seqs;
  {
    sbgq::test::oracle_model vocab(base_gguf, sbgq::test::oracle_model::options{256, 256, 1, true, true});
    seqs = eval_sequences(vocab, 2, 40);
  }
  const auto ref = llama_logits(base_gguf, seqs);

  auto q = residual_rotation::hadamard(static_cast<std::size_t>(c.hidden_size), 77).value();
  std::vector<std::string> notices;
  const std::string rot_dir = tmp("tied-rot");
  export_model(dir, rot_dir, &q, dtype::f32, &notices);
  REQUIRE(!notices.empty());
  CHECK(notices[0] ==
        "the model has its own LM head (a rotated tied model must be untied): writing lm_head.weight and "
        "tie_word_embeddings = false");
  CHECK(!load_qwen35_config(rot_dir).value().tie_word_embeddings);
  CHECK(read_file(rot_dir + "/config.json").find("\"tie_word_embeddings\": true") == std::string::npos);
  CHECK(safetensors_checkpoint::open(rot_dir).value().contains("lm_head.weight"));
  const std::string rot_gguf = convert_f32(rot_dir, tmp("tied-rot.gguf"));
  CHECK(gguf_file::open(rot_gguf).value().find_tensor("output.weight") != nullptr);
  const double err_rot = rel_diff(llama_logits(rot_gguf, seqs), ref);

  auto p = residual_rotation::from_matrix(random_permutation(static_cast<std::size_t>(c.hidden_size), 3)).value();
  const std::string perm_dir = tmp("tied-perm");
  export_model(dir, perm_dir, &p);
  const double noise = rel_diff(llama_logits(convert_f32(perm_dir, tmp("tied-perm.gguf")), seqs), ref);
  MESSAGE("libllama, tied tiny model: permutation noise " << noise << ", Hadamard rotation (untied) " << err_rot << " ("
                                                          << err_rot / noise << "x)");
  CHECK(noise > 0);
  CHECK(err_rot < k_noise * noise);
}

TEST_CASE("export errors; a failed export leaves nothing behind") {
  const std::string dir = sbgq::test::tiny_model_dir();
  const qwen35_config c = load_qwen35_config(dir).value();
  auto ckpt = safetensors_checkpoint::open(dir).value();
  safetensors_weight_provider base(ckpt, c);

  const std::string busy = tmp("busy");
  fs::create_directories(busy);
  { std::ofstream(busy + "/x") << "x"; }
  auto r = export_hf_checkpoint(dir, c, base, busy, {});
  REQUIRE(!r.has_value());
  CHECK(r.error().message() == "[sbgq.hf_export.invalid_argument] output directory '" + busy + "' exists and is not empty");
  // The source directory itself: named as the input, refused before anything is written.
  auto self = export_hf_checkpoint(dir, c, base, dir, {});
  REQUIRE(!self.has_value());
  CHECK(self.error().message() ==
        "[sbgq.hf_export.invalid_argument] output '" + dir + "' is the input '" + dir + "': refusing to overwrite it");
  CHECK(check_hf_export_target(dir, busy).error().message().find("exists and is not empty") != std::string::npos);
  CHECK(check_hf_export_target(dir, tmp("fresh")).has_value());

  hf_export_options o;
  o.out_dtype = dtype::f16;
  CHECK(export_hf_checkpoint(dir, c, base, tmp("f16"), o).error().message() ==
        "[sbgq.hf_export.invalid_argument] output dtype F16: expected F32 or BF16");

  qwen35_config other = c;
  other.hidden_size = 128;
  CHECK(export_hf_checkpoint(dir, other, base, tmp("other"), {}).error().code == error_code::bad_value);

  const std::string out = tmp("failing");
  failing_provider fp(base, 5);
  auto f = export_hf_checkpoint(dir, c, fp, out, {});
  REQUIRE(!f.has_value());
  CHECK(f.error().message() == "[sbgq.test.io_error] injected failure at layer 5");
  CHECK(!fs::exists(out));
  for (const auto& e : fs::directory_iterator(fs::path(out).parent_path()))
    CHECK_MESSAGE(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().string());
}

}  // TEST_SUITE
