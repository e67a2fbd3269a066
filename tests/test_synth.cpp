// Synthetic checkpoints: a pure function of (preset, seed, layers) whatever the thread
// count; the HF layout the real checkpoints have (config, shards + index, tokenizer); and,
// converted, a model libllama runs with logits equal to our forward pass on the HF files --
// with unequal DeltaNet head counts (2 key / 4 value heads), so the V-head reorder is
// exercised, and a negative control without it.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sbgq/convert.hpp>
#include <sbgq/model/model_source.hpp>
#include <sbgq/model/synth.hpp>
#include <string>
#include <vector>

#include "support/oracle.hpp"

namespace fs = std::filesystem;
using sbgq::test::oracle_model;

namespace {
std::string tmp(const std::string& name) {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "synth";
  fs::create_directories(dir);
  return (dir / name).string();
}
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}
const std::string& synth_tiny(int n_threads, std::uint64_t seed = 11) {
  static std::map<std::pair<int, std::uint64_t>, std::string> done;
  auto key = std::make_pair(n_threads, seed);
  if (auto it = done.find(key); it != done.end()) return it->second;
  const std::string dir = tmp("tiny-s" + std::to_string(seed) + "-t" + std::to_string(n_threads));
  fs::remove_all(dir);
  sbgq::synth_options o;
  o.preset = "tiny";
  o.seed = seed;
  o.n_threads = n_threads;
  o.shard_bytes = 12u << 20;
  auto r = sbgq::synthesize_checkpoint(dir, o);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
  CHECK(r->n_shards == 2);
  return done.emplace(key, dir).first->second;
}
double max_rel_diff(const float* a, const float* b, std::size_t rows, std::size_t vocab) {
  double worst = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0, mx = 0;
    for (std::size_t i = 0; i < vocab; ++i) mean += b[r * vocab + i];
    mean /= static_cast<double>(vocab);
    for (std::size_t i = 0; i < vocab; ++i) {
      var += (b[r * vocab + i] - mean) * (b[r * vocab + i] - mean);
      mx = std::max(mx, std::fabs(static_cast<double>(a[r * vocab + i]) - b[r * vocab + i]));
    }
    worst = std::max(worst, mx / std::sqrt(var / static_cast<double>(vocab)));
  }
  return worst;
}
}  // namespace

TEST_CASE("a synthetic checkpoint is reproducible from its seed for any thread count") {
  const auto& a = synth_tiny(1);
  const auto& b = synth_tiny(2);
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                        "model.safetensors.index.json", "config.json", "tokenizer.json"}) {
    CAPTURE(f);
    CHECK(slurp(fs::path(a) / f) == slurp(fs::path(b) / f));
  }
  CHECK(slurp(fs::path(synth_tiny(1, 12)) / "model-00001-of-00002.safetensors") !=
        slurp(fs::path(a) / "model-00001-of-00002.safetensors"));
}

TEST_CASE("the synthetic checkpoint has the real layout and dtypes") {
  const auto& dir = synth_tiny(2);
  auto ck = sbgq::safetensors_checkpoint::open(dir);
  REQUIRE_MESSAGE(ck.has_value(), (ck ? "" : ck.error().message()));
  // Same tensor names, shapes and dtypes as the trained tiny model in ../shared.
  auto real = sbgq::safetensors_checkpoint::open(std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35");
  REQUIRE(real.has_value());
  CHECK(ck->size() == real->size());
  for (const auto& v : real->views()) {
    CAPTURE(v.name);
    auto s = ck->find(v.name);
    REQUIRE(s.has_value());
    CHECK(s->shape == v.shape);
  }
  // Dtypes as the real Qwen3.5 (qwen35-model.md 2): BF16 except A_log and the gated norm.
  CHECK(ck->find("model.language_model.layers.0.linear_attn.A_log")->type == sbgq::dtype::f32);
  CHECK(ck->find("model.language_model.layers.0.linear_attn.norm.weight")->type == sbgq::dtype::f32);
  CHECK(ck->find("model.language_model.layers.0.linear_attn.dt_bias")->type == sbgq::dtype::bf16);
  // A_log = log U(1, 16): -exp(A_log) in [-16, -1].
  std::vector<float> alog(4);
  REQUIRE(sbgq::to_f32(*ck->find("model.language_model.layers.1.linear_attn.A_log"), alog).has_value());
  for (float v : alog) CHECK((v >= 0.0f && v <= std::log(16.0f)));
  auto m = sbgq::open_model(dir);
  REQUIRE_MESSAGE(m.has_value(), (m ? "" : m.error().message()));
  auto ids = (*m)->tok.encode("the model and the weight of the people");
  REQUIRE(ids.has_value());
  CHECK(ids->size() == 8);  // the trained merges build every whole word of the list
}

TEST_CASE("converted synthetic model: libllama equals our forward pass; without the V reorder it does not") {
  const auto& dir = synth_tiny(2);
  auto m = sbgq::open_model(dir, 2);
  REQUIRE(m.has_value());
  std::vector<std::int32_t> toks;
  for (int i = 0; i < 70; ++i) toks.push_back((i * 37 + 5) % 300);
  auto z = sbgq::forward((*m)->config, *(*m)->provider, toks, 1, nullptr, 2);
  REQUIRE(z.has_value());
  for (bool reorder : {true, false}) {
    CAPTURE(reorder);
    const std::string out = tmp(reorder ? "syn.gguf" : "syn-noreorder.gguf");
    sbgq::convert_options co;
    co.outtype = sbgq::ggml_type::f32;
    co.skip_v_head_reorder = !reorder;
    REQUIRE(sbgq::convert_checkpoint(dir, out, co).has_value());
    oracle_model lib(out, oracle_model::options{256, 128, 2, false, true});
    CHECK(lib.tokenize("the model and the weight") == (*m)->tok.encode("the model and the weight").value());
    const auto zr = lib.decode(toks);
    const double d = max_rel_diff(z->data(), zr.data(), toks.size(), 8192);
    MESSAGE((reorder ? "with" : "without") << " the V-head reorder: max |diff| / std = " << d);
    if (reorder) CHECK(d < 1e-4);
    else CHECK(d > 1e-2);
  }
}

TEST_CASE("bad synth options") {
  sbgq::synth_options o;
  o.preset = "13b";
  auto r = sbgq::synthesize_checkpoint(tmp("bad"), o);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find("unknown preset '13b'") != std::string::npos);
  o.preset = "tiny";
  o.layers = 0;
  CHECK_FALSE(sbgq::synthesize_checkpoint(tmp("bad"), o).has_value());
}
