// Output sensitivity (engine/sensitivity.hpp) against an independent computation: the
// whole forward pass run again from the embedding with a provider that hands out the changed
// layer, and the KL-divergence of its logits against the unchanged model's computed here in
// f64 from both softmaxes. Also: unchanged weights measure (almost) zero, a coarser type
// measures more, and the pipeline's "auto" by measured KL-divergence stays in its budget
// and gives token_embd and the head types of their own.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sbgq/engine/sensitivity.hpp>
#include <sbgq/engine/sink.hpp>
#include <sbgq/io/safetensors.hpp>
#include <sbgq/model/tokenizer.hpp>
#include <sbgq/model/weights.hpp>
#include <sbgq/pipeline.hpp>
#include <string>
#include <vector>

namespace {

const std::string model_dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";

std::string calib_text() {
  std::ifstream f(std::string(SBGQ_SHARED_DIR) + "/data/calib.txt");
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

/// A provider that hands out `changed` for layer `l` and the base model otherwise.
class swap_provider : public sbgq::weight_provider {
 public:
  swap_provider(sbgq::weight_provider& base, int l, sbgq::layer_weights changed) : base_(base), l_(l), w_(std::move(changed)) {}
  sbgq::result<sbgq::global_weights> load_globals() override { return base_.load_globals(); }
  sbgq::result<sbgq::layer_weights> load_layer(int l) override {
    if (l == l_) return w_;
    return base_.load_layer(l);
  }

 private:
  sbgq::weight_provider& base_;
  int l_;
  sbgq::layer_weights w_;
};

/// Mean over rows of KL(softmax(a) || softmax(b)), all in f64.
double reference_kld(const sbgq::matrix_f32& a, const sbgq::matrix_f32& b) {
  double total = 0;
  for (Eigen::Index r = 0; r < a.rows(); ++r) {
    auto log_softmax = [&](const sbgq::matrix_f32& z) {
      std::vector<double> v(static_cast<std::size_t>(z.cols()));
      double mx = -1e300, s = 0;
      for (Eigen::Index j = 0; j < z.cols(); ++j) mx = std::max(mx, static_cast<double>(z(r, j)));
      for (Eigen::Index j = 0; j < z.cols(); ++j) s += std::exp(static_cast<double>(z(r, j)) - mx);
      for (Eigen::Index j = 0; j < z.cols(); ++j) v[static_cast<std::size_t>(j)] = static_cast<double>(z(r, j)) - mx - std::log(s);
      return v;
    };
    const auto p = log_softmax(a), q = log_softmax(b);
    for (std::size_t j = 0; j < p.size(); ++j) total += std::exp(p[j]) * (p[j] - q[j]);
  }
  return total / static_cast<double>(a.rows());
}

}  // namespace

TEST_CASE("output sensitivity equals the KL-divergence of a full forward pass with the changed layer") {
  const auto cfg = sbgq::load_qwen35_config(model_dir).value();
  const auto ckpt = sbgq::safetensors_checkpoint::open(model_dir).value();
  const auto tok = sbgq::tokenizer::load(model_dir + "/tokenizer.json", 8192).value();
  const auto ids = tok.encode(calib_text()).value();
  sbgq::safetensors_weight_provider base(ckpt, cfg);
  sbgq::sensitivity_options so;
  so.ctx = 64;
  so.chunks = 2;
  so.n_threads = 2;
  auto s = sbgq::output_sensitivity::start(cfg, base, ids, so);
  REQUIRE_MESSAGE(s.has_value(), (s ? "" : s.error().message()));
  CHECK((*s)->n_tokens() == 128);

  const int l = 2;
  sbgq::layer_weights w = base.load_layer(l).value();
  {  // unchanged: exactly nothing
    const double d = (*s)->kld_with_layer(l, w).value();
    CHECK(d == 0.0);
  }
  const std::span<const std::int32_t> sample(ids.data(), 128);
  const auto ref = sbgq::forward(cfg, base, sample, 2, nullptr, 2).value();
  double prev = 0;
  for (const auto t : {sbgq::ggml_type::q8_0, sbgq::ggml_type::q4_k, sbgq::ggml_type::q3_k}) {
    CAPTURE(sbgq::type_name(t));
    sbgq::layer_weights q = w;
    sbgq::encode_options enc;
    enc.rounding = sbgq::rounding_mode::plain;
    enc.n_threads = 2;
    REQUIRE(sbgq::encode_decode(t, "blk.2.ffn_down.weight", q.ffn_down.data(), static_cast<std::size_t>(q.ffn_down.rows()),
                                static_cast<std::size_t>(q.ffn_down.cols()), {}, nullptr, enc)
                .has_value());
    const double d = (*s)->kld_with_layer(l, q).value();
    swap_provider changed(base, l, q);
    const auto z = sbgq::forward(cfg, changed, sample, 2, nullptr, 2).value();
    const double want = reference_kld(ref, z);
    MESSAGE(sbgq::type_name(t) << ": measured " << d << ", full pass " << want);
    CHECK(want > 0);
    CHECK(std::abs(d - want) <= 1e-3 * want);
    CHECK(d > prev);  // coarser types move the output more
    prev = d;
  }
  {  // the head: only the logits change
    sbgq::global_weights g = (*s)->globals();
    sbgq::encode_options enc;
    enc.rounding = sbgq::rounding_mode::plain;
    REQUIRE(sbgq::encode_decode(sbgq::ggml_type::q4_k, "output.weight", g.output.data(), static_cast<std::size_t>(g.output.rows()),
                                static_cast<std::size_t>(g.output.cols()), {}, nullptr, enc)
                .has_value());
    const double d = (*s)->kld_with_globals(g, false).value();
    CHECK(d > 0);
    const double again = (*s)->kld_with_globals(g, true).value();  // the whole pass gives the same
    CHECK(std::abs(d - again) <= 1e-6 * d);
  }
}

TEST_CASE("measured KL-divergence refuses a model too large for it; automatic falls back with a note") {
  const std::string out = std::string(SBGQ_TEST_TMP_DIR) + "/auto-too-large.gguf";
  sbgq::pipeline_options o;
  o.recipe = "auto";
  o.target_bpw = 5.0;
  o.calibration_text = calib_text();
  o.ctx = 64;
  o.chunks = 1;
  o.keep_mtp = false;
  o.n_threads = 2;
  o.rounding = sbgq::rounding_mode::plain;
  o.sensitivity.max_model_bytes = 1 << 20;  // the tiny model's f32 weights take ~45 MiB
  o.measure = sbgq::auto_measure::output_kld;
  auto r = sbgq::run_pipeline(model_dir, out, o);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::invalid_argument);
  CHECK(r.error().message().find("use --auto-measure weights") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
  o.measure = sbgq::auto_measure::automatic;
  r = sbgq::run_pipeline(model_dir, out, o);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
  bool noted = false;
  for (const auto& n : r->notes) noted = noted || n.find("allocating by importance-weighted weight error") != std::string::npos;
  CHECK(noted);
  std::filesystem::remove(out);
}

#if !defined(__SANITIZE_ADDRESS__)  // a few hundred forward passes: the release run covers it
TEST_CASE("auto by measured KL-divergence stays inside its budget") {
  const std::string out = std::string(SBGQ_TEST_TMP_DIR) + "/auto-kld.gguf";
  sbgq::pipeline_options o;
  o.recipe = "auto";
  o.target_bpw = 5.0;
  o.measure = sbgq::auto_measure::output_kld;
  o.sensitivity.chunks = 1;
  o.calibration_text = calib_text();
  o.ctx = 64;
  o.chunks = 4;
  o.keep_mtp = false;
  o.n_threads = 2;
  auto r = sbgq::run_pipeline(model_dir, out, o);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
  CHECK(r->bits_per_weight() <= 5.0);
  CHECK(r->bits_per_weight() > 4.8);
  bool noted = false;
  for (const auto& n : r->notes) noted = noted || n.find("measured mean KL-divergence") != std::string::npos;
  CHECK(noted);
  // The head is measured as the pipeline writes it: under gptq with its own X^T X, which
  // costs less than plain rounding at every type gptq can write.
  auto head_costs = [](const sbgq::pipeline_report& rep) {
    for (const auto& m : rep.measured)
      if (m.name == "output.weight") return m;
    FAIL("no measurement of output.weight");
    return sbgq::tensor_measurement{};
  };
  const auto gptq = head_costs(*r);
  o.rounding = sbgq::rounding_mode::plain;
  auto p = sbgq::run_pipeline(model_dir, out, o);
  REQUIRE_MESSAGE(p.has_value(), (p ? "" : p.error().message()));
  const auto plain = head_costs(*p);
  REQUIRE(gptq.types == plain.types);
  std::size_t lower = 0;
  for (std::size_t k = 0; k < gptq.types.size(); ++k) {
    CAPTURE(sbgq::type_name(gptq.types[k]));
    MESSAGE("head at " << sbgq::type_name(gptq.types[k]) << ": KLD " << plain.cost[k] << " plain, " << gptq.cost[k] << " gptq");
    if (sbgq::gptq_supported(gptq.types[k])) {
      CHECK(gptq.cost[k] < plain.cost[k]);
      ++lower;
    } else {
      CHECK(gptq.cost[k] == plain.cost[k]);  // no gptq for this type: the same plain bytes
    }
  }
  CHECK(lower >= 3);
  std::filesystem::remove(out);
}

TEST_CASE("auto gives the bits to a tensor made fragile: its output 16x larger") {
  // Ground truth by construction: the tiny model with layer 3's ffn_down scaled by 16 (exact
  // in bf16). Its rounding error, relative to its weights, is unchanged, but what it adds to
  // the residual stream is 16x larger, so its quantization moves the output far more, and a
  // budget should spend more bits on it than on the unchanged model's.
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "fragile-tiny";
  const std::string shard = "model-00002-of-00002.safetensors";
  const std::string target = "model.language_model.layers.3.mlp.down_proj.weight";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(model_dir))
    if (e.path().filename() != shard) fs::copy_file(e.path(), dir / e.path().filename());
  auto f = sbgq::safetensors_file::open(model_dir + "/" + shard).value();
  sbgq::safetensors_writer w;
  REQUIRE(w.add_metadata("format", "pt").has_value());
  std::vector<std::byte> scaled;
  bool found = false;
  for (const auto& t : f.tensors()) {
    const auto v = f.view(t);
    if (t.name != target) {
      REQUIRE(w.add(t.name, t.type, t.shape, v.bytes).has_value());
      continue;
    }
    REQUIRE(t.type == sbgq::dtype::bf16);
    found = true;
    scaled.assign(v.bytes.begin(), v.bytes.end());
    for (std::size_t k = 0; k + 1 < scaled.size(); k += 2) {
      std::uint16_t b;
      std::memcpy(&b, scaled.data() + k, 2);
      b = sbgq::f32_to_bf16_bits(std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16) * 16.0f);
      std::memcpy(scaled.data() + k, &b, 2);
    }
    REQUIRE(w.add(t.name, t.type, t.shape, std::span<const std::byte>(scaled)).has_value());
  }
  REQUIRE(found);
  REQUIRE(w.write_file((dir / shard).string()).has_value());

  auto run_auto = [&](const std::string& model) {
    sbgq::pipeline_options o;
    o.recipe = "auto";
    o.target_bpw = 4.5;
    o.measure = sbgq::auto_measure::output_kld;
    o.sensitivity.chunks = 1;
    o.calibration_text = calib_text();
    o.ctx = 64;
    o.chunks = 4;
    o.keep_mtp = false;
    o.n_threads = 2;
    const std::string out = std::string(SBGQ_TEST_TMP_DIR) + "/auto-fragile.gguf";
    auto r = sbgq::run_pipeline(model, out, o);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
    std::filesystem::remove(out);
    return *r;
  };
  auto bits = [](const sbgq::pipeline_report& rep, const std::string& name) {
    for (const auto& t : rep.tensors)
      if (t.name == name) return 8.0 * sbgq::type_size(t.type) / sbgq::block_size(t.type);
    FAIL("no tensor " << name);
    return 0.0;
  };
  const auto base = run_auto(model_dir), fragile = run_auto(dir.string());
  const std::string t = "blk.3.ffn_down.weight";
  MESSAGE("blk.3.ffn_down at 4.5 bits per weight: " << bits(base, t) << " bits in the model, " << bits(fragile, t)
                                                   << " when its output is 16x larger");
  CHECK(bits(fragile, t) > bits(base, t));
  const int n_layers = static_cast<int>(sbgq::load_qwen35_config(model_dir).value().num_hidden_layers);
  for (int l = 0; l < n_layers; ++l)  // and no other ffn_down gets more
    if (l != 3) CHECK(bits(fragile, "blk." + std::to_string(l) + ".ffn_down.weight") <= bits(fragile, t));
  fs::remove_all(dir);
}
#endif
