// The pipeline end to end on the tiny model, judged by llama.cpp itself:
//   - every transform off: the tensors it writes are llama_model_quantize's bytes for the
//     same recipe and importance matrix (libllama quantizing the converter's F32 file);
//   - every recipe's file loads in libllama and stays close to the F32 model (KL);
//   - rotation keeps the function: the rotated model written at F32 gives libllama the
//     unrotated model's logits;
//   - auto stays inside its budget and uses it; bad input fails clearly, writes nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <simdjson.h>

#include "sbgq/calibrate.hpp"
#include "sbgq/convert.hpp"
#include "sbgq/io/gguf.hpp"
#include "sbgq/pipeline.hpp"
#include "sbgq/engine/embedding_weights.hpp"
#include "sbgq/quantize.hpp"
#include "sbgq/quant/sensitivity_map.hpp"
#include "sbgq/model/weights.hpp"
#include "support/oracle.hpp"
#include "support/rng.hpp"

namespace {

using sbgq::ggml_type;
using sbgq::test::oracle;
using sbgq::test::oracle_model;

const std::string model_dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";
std::string tmp(const std::string& n) { return std::string(SBGQ_TEST_TMP_DIR) + "/pipeline-" + n; }

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

const std::string& calib_text() {
  static const std::string t = read_text(std::string(SBGQ_SHARED_DIR) + "/data/calib.txt");
  return t;
}

// Under AddressSanitizer the quantize-in-the-loop gauge solver and the codecs run ~50x
// slower: the sanitized pass calibrates on fewer tokens and searches two alphas.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

sbgq::pipeline_options base_options(const std::string& recipe) {
  sbgq::pipeline_options o;
  o.recipe = recipe;
  o.calibration_text = calib_text();
  o.ctx = 128;
  o.chunks = sanitized ? 2 : 4;
  o.n_threads = 2;
  o.rounding = sbgq::rounding_mode::plain;  // the default is gptq; plain is llama-quantize's rounding
  if (sanitized) o.gauge_settings.alphas = {0.0f, 0.2f};
  return o;
}

std::string run(const std::string& name, const sbgq::pipeline_options& o, sbgq::pipeline_report* rep = nullptr) {
  const std::string out = tmp(name + ".gguf");
  auto r = sbgq::run_pipeline(model_dir, out, o);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
  if (rep) *rep = *r;
  return out;
}

const std::string& f32_gguf() {
  static const std::string p = [] {
    const std::string path = tmp("converted-f32.gguf");
    sbgq::convert_options c;
    c.outtype = ggml_type::f32;
    auto r = sbgq::convert_checkpoint(model_dir, path, c);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
    return path;
  }();
  return p;
}

/// llama_model_quantize(F32 file, ftype, imatrix weights S/count) -> path.
std::string oracle_quantize(const std::string& name, std::int32_t ftype, const sbgq::imatrix& im) {
  auto& lib = oracle();
  auto p = lib.llama_model_quantize_default_params();
  p.nthread = 2;
  p.ftype = ftype;
  std::vector<std::vector<float>> w;
  std::vector<sbgq::test::llama_model_imatrix_data> data;
  for (const auto& [n, e] : im.entries) {
    std::vector<float> v(e.sum2.size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = e.sum2[i] / static_cast<float>(e.counts[0]);
    w.push_back(std::move(v));
  }
  std::size_t k = 0;
  for (const auto& [n, e] : im.entries) {
    data.push_back({n.c_str(), w[k].data(), w[k].size()});
    ++k;
  }
  data.push_back({nullptr, nullptr, 0});
  p.imatrix = data.data();
  const std::string out = tmp("oracle-" + name + ".gguf");
  REQUIRE(lib.llama_model_quantize(f32_gguf().c_str(), out.c_str(), &p) == 0);
  return out;
}

std::vector<std::int32_t> eval_tokens(oracle_model& m, std::size_t n) {
  std::string text = read_text(std::string(SBGQ_SHARED_DIR) + "/data/eval.txt");
  text.resize(std::min<std::size_t>(text.size(), 8 * n + 1000));
  auto t = m.tokenize(text, false);
  REQUIRE(t.size() >= n);
  t.resize(n);
  return t;
}

/// Mean KL(P || Q) over rows of two logit matrices [rows][vocab].
double mean_kld(const std::vector<float>& p, const std::vector<float>& q, std::size_t vocab) {
  const std::size_t rows = p.size() / vocab;
  double sum = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    auto lse = [&](const float* z) {
      double mx = z[0];
      for (std::size_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(z[i]));
      double s = 0;
      for (std::size_t i = 0; i < vocab; ++i) s += std::exp(z[i] - mx);
      return mx + std::log(s);
    };
    const float* a = p.data() + r * vocab;
    const float* b = q.data() + r * vocab;
    const double la = lse(a), lb = lse(b);
    double kl = 0;
    for (std::size_t i = 0; i < vocab; ++i) {
      const double lp = a[i] - la, lq = b[i] - lb;
      kl += std::exp(lp) * (lp - lq);
    }
    sum += kl;
  }
  return sum / static_cast<double>(rows);
}

/// max over rows of max|a - b| / std(b).
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b, std::size_t vocab) {
  double worst = 0;
  for (std::size_t r = 0; r < b.size() / vocab; ++r) {
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

struct reference_logits {
  std::vector<std::int32_t> tokens;
  std::vector<float> z;
};
const reference_logits& f32_logits() {
  static const reference_logits r = [] {
    oracle_model m(f32_gguf(), oracle_model::options{256, 256, 2, false, true});
    reference_logits x;
    x.tokens = eval_tokens(m, 200);
    x.z = m.decode(x.tokens);
    return x;
  }();
  return r;
}

std::vector<float> logits_of(const std::string& path) {
  oracle_model m(path, oracle_model::options{256, 256, 2, false, true});
  return m.decode(f32_logits().tokens);
}

}  // namespace

TEST_SUITE("pipeline") {

TEST_CASE("transforms off: the pipeline writes llama_model_quantize's tensors for the same imatrix") {
  // Our imatrix of the same chunks (collect_calibration agrees with libllama's activations:
  // test_calibrate.cpp) drives the oracle.
  auto cfg = sbgq::load_qwen35_config(model_dir).value();
  auto ckpt = sbgq::safetensors_checkpoint::open(model_dir).value();
  auto tok = sbgq::tokenizer::load(model_dir + "/tokenizer.json", 8192).value();
  sbgq::safetensors_weight_provider prov(ckpt, cfg);
  const auto ids = tok.encode(calib_text()).value();
  sbgq::calibration_options co;
  co.ctx = base_options("").ctx;
  co.max_chunks = base_options("").chunks;
  co.n_threads = 2;
  auto cal = sbgq::collect_calibration(cfg, prov, ids, co);
  REQUIRE(cal.has_value());

  const std::pair<const char*, std::int32_t> cases[] = {{"llama-q4_k_m", 15}, {"llama-iq4_xs", 30}};
  for (const auto& [recipe_c, ftype] : cases) {
    if (sanitized && ftype != 15) continue;
    const std::string recipe = recipe_c;
    CAPTURE(recipe);
    const std::string ours = run(recipe, base_options(recipe));
    const std::string ref = oracle_quantize(recipe, ftype, cal->im);
    auto a = sbgq::gguf_file::open(ours).value();
    auto b = sbgq::gguf_file::open(ref).value();
    REQUIRE(a.tensors().size() == b.tensors().size());
    std::size_t same = 0;
    for (const auto& t : b.tensors()) {
      CAPTURE(t.name);
      const auto* mine = a.find_tensor(t.name);
      REQUIRE(mine != nullptr);
      CHECK(mine->type == t.type);
      const auto x = a.tensor_data(t.name).value();
      const auto y = b.tensor_data(t.name).value();
      REQUIRE(x.size() == y.size());
      const bool eq = std::memcmp(x.data(), y.data(), x.size()) == 0;
      CHECK(eq);
      same += eq;
    }
    MESSAGE(recipe << ": " << same << " of " << b.tensors().size() << " tensors byte-identical to llama_model_quantize");
  }
}

TEST_CASE("every recipe loads in libllama and stays close to the F32 model") {
  const auto& ref = f32_logits();
  struct variant {
    const char* name;
    const char* recipe;
    double bpw;
    bool rotate, gauge, gptq;
  };
  const variant vs[] = {
      {"q4km", "llama-q4_k_m", 0, false, false, false},
      {"seed", "seed-iq4_xs", 0, false, false, false},
      {"auto5", "auto", 5.0, false, false, false},
      {"q4km-rot-gauge-gptq", "llama-q4_k_m", 0, true, true, true},
  };
  for (const auto& v : vs) {
    if (sanitized && std::string(v.name) != "q4km-rot-gauge-gptq") continue;  // every stage once under ASan
    const std::string label = v.name;
    CAPTURE(label);
    auto o = base_options(v.recipe);
    o.target_bpw = v.bpw;
    o.measure = sbgq::auto_measure::weight_error;  // measured KLD: test_sensitivity.cpp
    o.rotate = v.rotate ? sbgq::rotation_mode::hadamard : sbgq::rotation_mode::none;
    o.seed = 7;
    o.gauge = v.gauge;
    o.rounding = v.gptq ? sbgq::rounding_mode::gptq : sbgq::rounding_mode::plain;
    o.weigh_embedding = v.gptq;  // the optional embedding weights, with every other stage
    std::vector<sbgq::progress_stage> stages;
    std::size_t n_quantize_events = 0;
    o.progress = [&](const sbgq::progress_event& e) {
      if (e.stage != sbgq::progress_stage::note) stages.push_back(e.stage);
      if (e.stage == sbgq::progress_stage::quantize) ++n_quantize_events;
      CHECK(e.fraction >= 0.0);
      CHECK(e.fraction <= 1.0);
    };
    sbgq::pipeline_report rep;
    const std::string path = run(v.name, o, &rep);
    // One quantize event per tensor, done last; the report's JSON parses and lists every tensor.
    CHECK(n_quantize_events == rep.tensors.size());
    REQUIRE_FALSE(stages.empty());
    CHECK(stages.back() == sbgq::progress_stage::done);
    {
      const std::string json = sbgq::pipeline_report_json(rep);
      simdjson::dom::parser parser;
      auto doc = parser.parse(json);
      REQUIRE_MESSAGE(!doc.error(), json);
      auto tensors = doc["tensors"].get_array();
      REQUIRE(!tensors.error());
      CHECK(tensors.value().size() == rep.tensors.size());
      CHECK(std::string_view(doc["recipe"].get_string().value()) == rep.recipe);
    }
    if (v.gauge) CHECK_FALSE(rep.layer_notes.empty());  // the solver reports on every layer
    if (v.gptq) {  // the head too, under its own X^T X, written after the layers
      const auto n_layers = sbgq::load_qwen35_config(model_dir).value().num_hidden_layers;
      std::size_t head = rep.tensors.size(), last_blk = 0;
      for (std::size_t k = 0; k < rep.tensors.size(); ++k) {
        const std::string& n = rep.tensors[k].name;
        if (n == "output.weight") head = k;
        if (n.rfind("blk.", 0) == 0 && std::stoi(n.substr(4)) < n_layers) last_blk = k;  // not the MTP block
      }
      REQUIRE(head < rep.tensors.size());
      CHECK(head > last_blk);
      const auto& hr = rep.tensors[head];
      CHECK(hr.used_imatrix);
      REQUIRE(std::isfinite(hr.objective));
      CHECK(hr.objective < hr.objective_plain);
      MESSAGE("head gptq: tr(dW H dW^T) " << hr.objective_plain << " -> " << hr.objective);
      // token_embd, weighted by the readers of the residual stream, after the head.
      std::size_t embd = rep.tensors.size();
      for (std::size_t k = 0; k < rep.tensors.size(); ++k)
        if (rep.tensors[k].name == "token_embd.weight") embd = k;
      REQUIRE(embd < rep.tensors.size());
      CHECK(embd > head);
      CHECK(rep.tensors[embd].used_imatrix);
    }
    const double kld = mean_kld(ref.z, logits_of(path), 8192);
    MESSAGE(label << ": " << rep.bits_per_weight() << " bits per weight, mean KLD vs F32 over " << ref.tokens.size()
                   << " tokens = " << kld);
    CHECK(std::isfinite(kld));
    CHECK(kld < 0.01);  // measured ~1e-3 for every variant; a broken tensor gives > 1
    if (std::string(v.recipe) == "auto") CHECK(rep.bits_per_weight() <= v.bpw + 1e-6);
  }
  if (sanitized) return;
  // The seed recipe's types, as the model card lists them.
  auto f = sbgq::gguf_file::open(tmp("seed.gguf")).value();
  CHECK(f.find_tensor("blk.0.ffn_up.weight")->type == ggml_type::iq4_xs);
  CHECK(f.find_tensor("blk.3.attn_v.weight")->type == ggml_type::q5_k);
  CHECK(f.find_tensor("blk.3.attn_output.weight")->type == ggml_type::q5_k);
  CHECK(f.find_tensor("blk.0.ssm_out.weight")->type == ggml_type::q6_k);
  CHECK(f.find_tensor("blk.0.ssm_beta.weight")->type == ggml_type::q5_k);
  CHECK(f.find_tensor("token_embd.weight")->type == ggml_type::q8_0);
  CHECK(f.find_tensor("output.weight")->type == ggml_type::q8_0);
  CHECK(f.find_tensor("blk.0.attn_norm.weight")->type == ggml_type::f32);
}

TEST_CASE("quantized inputs: each layer's statistics come from the model as written before it") {
  // Oracle: our calibration run on the written file's own dequantized weights. Every tensor
  // that reads a layer's input (attn_norm's readers) sees there exactly the states that the
  // file's embedding and earlier layers produce, so its statistics must be the pipeline's.
  auto o = base_options("llama-q4_k_m");
  o.rounding = sbgq::rounding_mode::gptq;
  o.quantized_inputs = true;
  sbgq::pipeline_report rep;
  const std::string path = run("qin", o, &rep);
  auto cfg = sbgq::load_qwen35_config(model_dir).value();
  auto tok = sbgq::tokenizer::load(model_dir + "/tokenizer.json", 8192).value();
  const auto ids = tok.encode(calib_text()).value();
  auto file = sbgq::gguf_file::open(path).value();
  sbgq::gguf_weight_provider written(file, cfg, 2);
  sbgq::calibration_options co;
  co.ctx = o.ctx;
  co.max_chunks = o.chunks;
  co.n_threads = 2;
  auto direct = sbgq::collect_calibration(cfg, written, ids, co);
  REQUIRE(direct.has_value());
  // The f32 model's statistics, which the inputs of later layers must differ from.
  auto ckpt = sbgq::safetensors_checkpoint::open(model_dir).value();
  sbgq::safetensors_weight_provider f32(ckpt, cfg);
  auto plain = sbgq::collect_calibration(cfg, f32, ids, co);
  REQUIRE(plain.has_value());
  auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
      den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / den);
  };
  std::size_t checked = 0;
  double worst = 0, least_moved = 1e30;
  for (const auto& [name, e] : rep.statistics.entries) {
    const std::string suffix = name.substr(name.find('.', 4) + 1);
    const auto* kind = sbgq::find_layer_tensor_kind(suffix);
    if (!kind || kind->reads != sbgq::activation_space::attn_normed) continue;
    CAPTURE(name);
    const auto it = direct->im.entries.find(name);
    REQUIRE(it != direct->im.entries.end());
    CHECK(e.counts == it->second.counts);
    REQUIRE(e.sum2.size() == it->second.sum2.size());
    const double d = rel(e.sum2, it->second.sum2);
    CHECK(d < 1e-6);
    worst = std::max(worst, d);
    ++checked;
    least_moved = std::min(least_moved, rel(e.sum2, plain->im.entries.at(name).sum2));  // layer 0: token_embd as written
  }
  CHECK(checked >= cfg.num_hidden_layers);
  CHECK(least_moved > 1e-4);  // measured ~1e-2: the quantized layers before it moved the inputs
  MESSAGE("quantized inputs: " << checked << " input-side entries equal a direct run on the written file to " << worst
                               << " (relative); they differ from the f32 model's by at least " << least_moved);
  // The file is a working model.
  const double kld = mean_kld(f32_logits().z, logits_of(path), 8192);
  MESSAGE("quantized inputs (gptq, q4_k_m mix): mean KLD vs F32 = " << kld);
  CHECK(kld < 0.01);
  // Not with the embedding weights, which write token_embd after the layers.
  o.weigh_embedding = true;
  auto bad = sbgq::run_pipeline(model_dir, tmp("qin-embw.gguf"), o);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == sbgq::error_code::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(tmp("qin-embw.gguf")));
}

TEST_CASE("embedding weights: unchanged by the exact per-channel gauge, zero where nothing reads a column") {
  const std::size_t d = 8, f = 12;
  sbgq::test::rng r(77);
  auto mat = [&](std::size_t rows, std::size_t cols) {
    const auto v = r.normals(rows * cols);
    return sbgq::matrix_f32(Eigen::Map<const sbgq::matrix_f32>(v.data(), static_cast<Eigen::Index>(rows),
                                                                 static_cast<Eigen::Index>(cols)));
  };
  auto vec = [&](std::size_t n) {
    const auto v = r.normals(n);
    return sbgq::vector_f32(Eigen::Map<const sbgq::vector_f32>(v.data(), static_cast<Eigen::Index>(n)));
  };
  sbgq::layer_weights w;
  w.kind = sbgq::layer_kind::full_attention;
  w.attn_norm = vec(d);
  w.post_attention_norm = vec(d);
  w.attn_q = mat(16, d);
  w.attn_k = mat(4, d);
  w.attn_v = mat(4, d);
  w.ffn_gate = mat(f, d);
  w.ffn_up = mat(f, d);
  const sbgq::matrix_f32 head = mat(20, d);
  const sbgq::vector_f32 out_norm = vec(d);
  auto weights_of = [&](const sbgq::layer_weights& lw, const sbgq::vector_f32& g_out) {
    sbgq::embedding_weights ew(d);
    ew.add_layer(lw, 2.0, 3.0);
    ew.add_head_rows(head.data(), static_cast<std::size_t>(head.rows()));
    ew.finish_head(g_out, 5.0);
    return ew.weights();
  };
  const auto w0 = weights_of(w, out_norm);
  // The gauge: a norm gain scaled per channel, the columns of its readers by the inverse.
  sbgq::layer_weights g = w;
  const sbgq::vector_f32 a = (vec(d).cwiseAbs().array() + 0.5f).matrix();
  g.attn_norm = w.attn_norm.cwiseProduct(a);
  for (sbgq::matrix_f32* m : {&g.attn_q, &g.attn_k, &g.attn_v}) *m = *m * a.cwiseInverse().asDiagonal();
  const auto w1 = weights_of(g, out_norm);
  double mean = 0;
  for (std::size_t j = 0; j < d; ++j) {
    CHECK(w1[j] == doctest::Approx(w0[j]).epsilon(1e-5));
    mean += w0[j];
  }
  CHECK(mean / d == doctest::Approx(1.0));
  // Column 3 read by nothing (every reader's column and the head's zero): weight 0.
  sbgq::layer_weights z = w;
  for (sbgq::matrix_f32* m : {&z.attn_q, &z.attn_k, &z.attn_v, &z.ffn_gate, &z.ffn_up}) m->col(3).setZero();
  sbgq::embedding_weights ez(d);
  ez.add_layer(z, 2.0, 3.0);
  CHECK(ez.weights()[3] == 0.0f);
  CHECK(ez.weights()[2] > 0.0f);
}

TEST_CASE("auto to a file size: the file fits and uses it; its mix as a recipe writes the same tensors") {
  if (sanitized) return;  // the pipeline's stages run under ASan in the test above
  // The size llama.cpp's Q4_K_M mix gives this model: the budget a user would bring.
  sbgq::pipeline_report q4km;
  const std::string q4km_path = run("size-q4km", base_options("llama-q4_k_m"), &q4km);
  const std::uint64_t target = q4km.file_size;

  auto o = base_options("auto");
  o.target_size = target;
  o.measure = sbgq::auto_measure::weight_error;
  sbgq::pipeline_report rep;
  const std::string path = run("size-auto", o, &rep);
  CHECK(rep.file_size == std::filesystem::file_size(path));
  CHECK(rep.file_size <= target);
  CHECK(rep.file_size >= target - target / 50);  // the budget is used (the last upgrade that fits, within 2%)
  auto f = sbgq::gguf_file::open(path).value();
  CHECK(f.metadata().find("sbgq.auto.target_size")->get_if<std::uint64_t>() != nullptr);
  CHECK(*f.metadata().find("sbgq.auto.target_size")->get_if<std::uint64_t>() == target);
  CHECK(f.metadata().get_string("sbgq.auto.measure").value() == "weights");
  CHECK(f.metadata().find("sbgq.auto.target_bpw") == nullptr);
  // What auto measured: every quantizable tensor, at the type the file has.
  REQUIRE_FALSE(rep.measured.empty());
  CHECK(rep.measure_unit == "weights");
  for (const auto& m : rep.measured) {
    CAPTURE(m.name);
    REQUIRE(f.find_tensor(m.name) != nullptr);
    CHECK(f.find_tensor(m.name)->type == m.chosen);
    CHECK(m.types.size() == m.cost.size());
    CHECK(std::find(m.types.begin(), m.types.end(), m.chosen) != m.types.end());
  }
  {
    simdjson::dom::parser parser;
    auto doc = parser.parse(sbgq::pipeline_report_json(rep));
    REQUIRE(!doc.error());
    CHECK(doc["auto"]["tensors"].get_array().value().size() == rep.measured.size());
    // The picture: one cell per measured tensor, each naming its tensor and chosen type.
    const std::string svg = sbgq::sensitivity_svg(rep.measured, rep.measure_unit);
    std::size_t n_cells = 0;
    for (std::size_t at = 0; (at = svg.find("<g><title>", at)) != std::string::npos; ++at) ++n_cells;
    CHECK(n_cells == rep.measured.size());
    const auto& m0 = rep.measured.front();
    CHECK(svg.find("<title>" + m0.name + ": chose " + std::string(sbgq::type_name(m0.chosen))) != std::string::npos);
    CHECK(svg.rfind("</svg>\n") == svg.size() - 7);
  }

  // The mix, written as a rules recipe and given back, reproduces every tensor byte for byte.
  const std::string recipe_path = tmp("size-auto-mix.json");
  {
    std::ofstream(recipe_path, std::ios::binary) << rep.mix_recipe;
  }
  sbgq::pipeline_report again;
  const std::string again_path = run("size-auto-again", base_options(recipe_path), &again);
  auto g = sbgq::gguf_file::open(again_path).value();
  REQUIRE(g.tensors().size() == f.tensors().size());
  std::size_t n_differ = 0;
  for (const auto& t : f.tensors()) {
    CAPTURE(t.name);
    const auto* u = g.find_tensor(t.name);
    REQUIRE(u != nullptr);
    CHECK(u->type == t.type);
    const auto x = f.tensor_data(t.name).value(), y = g.tensor_data(t.name).value();
    REQUIRE(x.size() == y.size());
    n_differ += std::memcmp(x.data(), y.data(), x.size()) != 0;
  }
  CHECK(n_differ == 0);
  // Not trivially: the mix is not one type (auto moved bits between tensors).
  simdjson::dom::parser parser;
  auto doc = parser.parse(rep.mix_recipe);
  REQUIRE_MESSAGE(!doc.error(), rep.mix_recipe);
  CHECK(doc["rules"].get_array().value().size() > 0);

  // A size below the header alone is refused before any work, naming the flag.
  o.target_size = 1000;
  auto bad = sbgq::run_pipeline(model_dir, tmp("size-tiny.gguf"), o);
  REQUIRE_FALSE(bad.has_value());
  CHECK_MESSAGE(bad.error().message().find("--target-size 1000 bytes leaves no room") != std::string::npos,
                bad.error().message());
  CHECK_FALSE(std::filesystem::exists(tmp("size-tiny.gguf")));
  // Both budgets at once are refused too.
  o.target_size = target;
  o.target_bpw = 5;
  auto both = sbgq::run_pipeline(model_dir, tmp("size-both.gguf"), o);
  REQUIRE_FALSE(both.has_value());
  CHECK(both.error().message().find("not both") != std::string::npos);
}

TEST_CASE("rotation keeps the function: written at F32, libllama gives the F32 model's logits") {
  const auto& ref = f32_logits();
  const std::string recipe_path = tmp("f32-recipe.json");
  {
    std::ofstream(recipe_path) << R"({"name": "all-f32", "default": "F32", "rules": []})";
  }
  auto plain = base_options(recipe_path);
  const double d_plain = max_rel_diff(logits_of(run("f32-plain", plain)), ref.z, 8192);
  auto rot = plain;
  rot.rotate = sbgq::rotation_mode::hadamard;
  rot.seed = 11;
  rot.keep_mtp = false;
  const double d_rot = max_rel_diff(logits_of(run("f32-rot", rot)), ref.z, 8192);
  MESSAGE("max |logits - F32 logits| / std: same weights " << d_plain << ", rotated " << d_rot);
  CHECK(d_plain == 0.0);  // the same f32 values as the converter's file
  // f32 rounding noise of a 256-wide model, measured ~1e-5; a wrong fold gives > 0.1.
  CHECK(d_rot < 1e-3);
}

TEST_CASE("rotating a tied model gives it its own head after output_norm and keeps the function") {
  // The tiny checkpoint declared tied: the same shards (lm_head.weight is then left out),
  // config.json with tie_word_embeddings = true.
  const std::filesystem::path tied = tmp("tied-model");
  std::filesystem::remove_all(tied);
  std::filesystem::create_directories(tied);
  for (const auto& f : std::filesystem::directory_iterator(model_dir)) {
    if (f.path().filename() == "config.json") continue;
    std::filesystem::create_symlink(std::filesystem::absolute(f.path()), tied / f.path().filename());
  }
  std::string cfg = read_text(model_dir + "/config.json");
  const std::string untied_key = "\"tie_word_embeddings\": false", tied_key = "\"tie_word_embeddings\": true";
  for (std::size_t at = 0; (at = cfg.find(untied_key, at)) != std::string::npos;) cfg.replace(at, untied_key.size(), tied_key);
  std::ofstream(tied / "config.json") << cfg;

  sbgq::convert_options c;
  c.outtype = ggml_type::f32;
  const std::string ref_path = tmp("tied-f32.gguf");
  const auto converted = sbgq::convert_checkpoint(tied.string(), ref_path, c);
  REQUIRE_MESSAGE(converted.has_value(), (converted ? "" : converted.error().message()));
  CHECK_FALSE(sbgq::gguf_file::open(ref_path).value().find_tensor("output.weight"));

  const std::string recipe_path = tmp("f32-recipe-tied.json");
  std::ofstream(recipe_path) << R"({"name": "all-f32", "default": "F32", "rules": []})";
  auto o = base_options(recipe_path);
  o.rotate = sbgq::rotation_mode::hadamard;
  o.seed = 3;
  const std::string out = tmp("tied-rot.gguf");
  auto rep = sbgq::run_pipeline(tied.string(), out, o);
  REQUIRE_MESSAGE(rep.has_value(), (rep ? "" : rep.error().message()));
  auto f = sbgq::gguf_file::open(out).value();
  REQUIRE(f.tensors().size() >= 3);
  CHECK(f.tensors()[1].name == "output_norm.weight");
  CHECK(f.tensors()[2].name == "output.weight");
  oracle_model ref(ref_path, oracle_model::options{256, 256, 2, false, true});
  oracle_model rot(out, oracle_model::options{256, 256, 2, false, true});
  const auto tokens = eval_tokens(ref, 100);
  const double d = max_rel_diff(rot.decode(tokens), ref.decode(tokens), 8192);
  MESSAGE("tied model, rotated at F32: max |logits - F32 logits| / std = " << d);
  CHECK(d < 1e-3);  // f32 rounding noise; a head without the final norm's gain gives > 0.1
}

TEST_CASE("a rotated and gauged provider (sbgq transform's path) computes the same function") {
  auto cfg = sbgq::load_qwen35_config(model_dir).value();
  auto ckpt = sbgq::safetensors_checkpoint::open(model_dir).value();
  auto tok = sbgq::tokenizer::load(model_dir + "/tokenizer.json", 8192).value();
  sbgq::safetensors_weight_provider base(ckpt, cfg);
  const auto ids = tok.encode(calib_text()).value();
  std::vector<std::int32_t> probe(ids.end() - 96, ids.end());
  auto z0 = sbgq::forward(cfg, base, probe, 1, nullptr, 2);
  REQUIRE(z0.has_value());
  auto q = sbgq::residual_rotation::hadamard(static_cast<std::size_t>(cfg.hidden_size), 3).value();
  sbgq::rotated_provider rot(base, cfg, q, 2);
  sbgq::calibration_options co;
  co.ctx = 128;
  co.max_chunks = 2;
  co.n_threads = 2;
  sbgq::gauge_options go = base_options("").gauge_settings;
  go.n_threads = 2;
  auto gp = sbgq::gauged_provider::create(cfg, rot, ids, co, [](const std::string&) { return ggml_type::q4_k; }, go);
  REQUIRE_MESSAGE(gp.has_value(), (gp ? "" : gp.error().message()));
  auto z1 = sbgq::forward(cfg, **gp, probe, 1, nullptr, 2);
  REQUIRE_MESSAGE(z1.has_value(), (z1 ? "" : z1.error().message()));
  CHECK((*gp)->notes().size() > 0);  // scalings were solved (and kept or not) for every layer
  const std::vector<float> a(z1->data(), z1->data() + z1->size()), b(z0->data(), z0->data() + z0->size());
  const double d = max_rel_diff(a, b, 8192);
  MESSAGE("rotated + gauged vs original, our forward pass: max |diff| / std = " << d);
  CHECK(d < 1e-4);  // f32 noise (rotation alone: ~3e-6); a broken scaling moves logits by > 0.1
  // Layers must come in order: the calibration runs through them one after another.
  auto again = (*gp)->load_layer(0);
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().code == sbgq::error_code::invalid_argument);
}

TEST_CASE("auto meets its budget and a larger budget buys a smaller estimated error") {
  double prev_err = 1e300;
  if (sanitized) return;  // three more calibrated runs: covered by the Release pass
  const std::vector<double> budgets = {4.6, 5.5, 6.5};
  for (double bpw : budgets) {
    CAPTURE(bpw);
    auto o = base_options("auto");
    o.target_bpw = bpw;
    o.measure = sbgq::auto_measure::weight_error;  // the estimated error this test sums
    sbgq::pipeline_report rep;
    run("auto-budget", o, &rep);
    CHECK(rep.bits_per_weight() <= bpw + 1e-6);
    CHECK(rep.bits_per_weight() > bpw - 0.35);
    double err = 0;
    for (const auto& t : rep.tensors)
      if (std::isfinite(t.rel_error)) err += t.rel_error;
    MESSAGE("auto " << bpw << ": " << rep.bits_per_weight() << " bpw, summed relative error " << err);
    CHECK(err < prev_err);
    prev_err = err;
  }
}

TEST_CASE("recipe rules std::regex cannot take safely are clear errors") {
  // 20,000 nested groups overflowed std::regex's recursive parser (SIGSEGV).
  const std::string deep = std::string(20000, '(') + "attn" + std::string(20000, ')');
  const std::string json = R"({"default": "q4_k", "rules": [{"match": "ffn", "type": "q8_0"}, {"match": ")" + deep +
                           R"(", "type": "q8_0"}]})";
  auto r = sbgq::parse_recipe_json(json, "deep.json");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::bad_value);
  CHECK(r.error().message().find("[sbgq.recipe.bad_value] deep.json: rules[1]: bad regular expression '((((") == 0);
  CHECK(r.error().message().find("longer than 1024 bytes (40004)") != std::string::npos);
  CHECK(r.error().message().size() < 400);  // the pattern is shown shortened
  auto look = sbgq::parse_recipe_json(R"j({"default": "q4_k", "rules": [{"match": "(?!ffn)", "type": "q8_0"}]})j", "l.json");
  REQUIRE_FALSE(look.has_value());
  CHECK(look.error().message() ==
        "[sbgq.recipe.bad_value] l.json: rules[0]: bad regular expression '(?!ffn)' (pattern '(?!ffn)': lookahead '(?!' "
        "is not supported at position 0)");

  // A recipe built in code is checked when its types are chosen.
  sbgq::recipe rc = sbgq::seed_iq4_xs_recipe();
  rc.rules.push_back({std::string(100, '(') + std::string(100, ')'), ggml_type::q8_0});
  std::vector<sbgq::tensor_desc> t(1);
  t[0].name = "blk.0.ffn_up.weight";
  t[0].n_dims = 2;
  t[0].ne = {256, 256, 1, 1};
  auto types = sbgq::recipe_types(rc, sbgq::model_facts{}, t, false);
  REQUIRE_FALSE(types.has_value());
  CHECK(types.error().code == sbgq::error_code::bad_value);
  CHECK(types.error().message().find("recipe 'seed-iq4_xs': rules[6]: bad regular expression (pattern '((((") !=
        std::string::npos);
  CHECK(types.error().message().find("nested more than 64 deep at position 64") != std::string::npos);
  rc.rules.pop_back();
  CHECK(sbgq::recipe_types(rc, sbgq::model_facts{}, t, false).value() == std::vector<ggml_type>{ggml_type::iq4_xs});
}

TEST_CASE("bad input fails clearly and leaves no file") {
  const std::string out = tmp("bad.gguf");
  std::filesystem::remove(out);
  auto o = base_options("no-such-recipe");
  auto r = sbgq::run_pipeline(model_dir, out, o);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find("no-such-recipe") != std::string::npos);
  auto g = base_options("llama-q4_k_m");
  g.calibration_text.clear();
  g.rounding = sbgq::rounding_mode::gptq;
  r = sbgq::run_pipeline(model_dir, out, g);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::invalid_argument);
  auto bad_json = sbgq::parse_recipe_json(R"({"default": "Q9_K", "rules": []})", "x.json");
  REQUIRE_FALSE(bad_json.has_value());
  CHECK(bad_json.error().message().find("Q9_K") != std::string::npos);
  auto bad_re = sbgq::parse_recipe_json(R"({"default": "q4_k", "rules": [{"match": "(", "type": "q8_0"}]})", "y.json");
  REQUIRE_FALSE(bad_re.has_value());
  auto bad_model = base_options("llama-q4_k_m");
  r = sbgq::run_pipeline(std::string(SBGQ_SHARED_DIR) + "/data", out, bad_model);
  REQUIRE_FALSE(r.has_value());
  CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("a given importance matrix is checked against the model before any work") {
  // Entries of the wrong size were read past their end by the quantizer (heap over-read
  // under ASan) or used silently; degenerate statistics erased tensors.
  const std::string out = tmp("bad-imatrix.gguf");
  std::filesystem::remove(out);
  auto run_with = [&](const sbgq::imatrix& im) {
    auto o = base_options("llama-q4_k_m");
    o.calibration_text.clear();
    o.rounding = sbgq::rounding_mode::plain;
    o.importance = &im;
    return sbgq::run_pipeline(model_dir, out, o);
  };
  auto expect = [&](const sbgq::imatrix& im, sbgq::error_code code, const std::string& text) {
    auto r = run_with(im);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == code);
    CHECK_MESSAGE(r.error().message().find(text) != std::string::npos, r.error().message());
    CHECK_FALSE(std::filesystem::exists(out));
  };
  const std::string down = "blk.0.ffn_down.weight";  // 768 columns in the tiny model
  sbgq::imatrix half;
  half.entries[down] = sbgq::imatrix_entry{384, std::vector<float>(384, 1.0f), {4}};
  expect(half, sbgq::error_code::size_mismatch, "entry 'blk.0.ffn_down.weight' has 384 values, the tensor has 768 columns");
  sbgq::imatrix twice;
  twice.entries[down] = sbgq::imatrix_entry{1536, std::vector<float>(1536, 1.0f), {4}};
  expect(twice, sbgq::error_code::size_mismatch, "has 1536 values, the tensor has 768 columns");
  sbgq::imatrix two_mats;  // the right total, but as two matrices of a 2-D tensor
  two_mats.entries[down] = sbgq::imatrix_entry{384, std::vector<float>(768, 1.0f), {4, 4}};
  expect(two_mats, sbgq::error_code::size_mismatch, "(entry: 2 matrices of 384, tensor: 1)");
  sbgq::imatrix foreign;
  foreign.entries["blk.99.ffn_down.weight"] = sbgq::imatrix_entry{768, std::vector<float>(768, 1.0f), {4}};
  expect(foreign, sbgq::error_code::not_found, "matches no tensor of the model");
  sbgq::imatrix zeros;
  zeros.entries[down] = sbgq::imatrix_entry{768, std::vector<float>(768, 0.0f), {4}};
  expect(zeros, sbgq::error_code::bad_value, "'blk.0.ffn_down.weight': all 768 weights are zero or subnormal");
  sbgq::imatrix denormal;
  denormal.entries[down] = sbgq::imatrix_entry{768, std::vector<float>(768, 1e-40f), {1}};
  expect(denormal, sbgq::error_code::bad_value, "zero or subnormal");
  sbgq::imatrix huge;
  huge.entries[down] = sbgq::imatrix_entry{768, std::vector<float>(768, 1.0f), {4}};
  huge.entries[down].sum2[5] = 1e36f;
  expect(huge, sbgq::error_code::bad_value, "has a weight of");
  sbgq::imatrix nan;
  nan.entries[down] = sbgq::imatrix_entry{768, std::vector<float>(768, 1.0f), {4}};
  nan.entries[down].sum2[9] = std::numeric_limits<float>::quiet_NaN();
  expect(nan, sbgq::error_code::not_finite, "non-finite weight at index 9");
}

TEST_CASE("a NaN in a weight kept at F32 is an error naming the tensor, in the pipeline and in quantize") {
  // A copy of the tiny model whose first layer's input norm holds a NaN.
  const std::string dir = tmp("nan-model");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const auto& f : std::filesystem::directory_iterator(model_dir))
    if (f.path().extension() != ".safetensors") std::filesystem::copy_file(f.path(), dir + "/" + f.path().filename().string());
  const std::string norm = "model.language_model.layers.0.input_layernorm.weight";
  for (const auto& f : std::filesystem::directory_iterator(model_dir)) {
    if (f.path().extension() != ".safetensors") continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> bytes(chars.size());
    std::memcpy(bytes.data(), chars.data(), chars.size());
    {
      auto st = sbgq::safetensors_file::parse(bytes);
      REQUIRE(st.has_value());
      if (auto v = st->find(norm)) {
        // bf16 NaN (0x7fc0) as the fourth element, at the tensor's place in the file
        const auto at = static_cast<std::size_t>(v->bytes.data() - bytes.data()) + 6;
        chars[at] = static_cast<char>(0xc0);
        chars[at + 1] = static_cast<char>(0x7f);
      }
    }
    std::ofstream(dir + "/" + f.path().filename().string(), std::ios::binary).write(chars.data(), static_cast<std::streamsize>(chars.size()));
  }
  const std::string out = tmp("nan-model.gguf");
  std::filesystem::remove(out);
  auto o = base_options("llama-q4_k_m");
  o.rounding = sbgq::rounding_mode::plain;
  o.calibration_text.clear();
  auto r = sbgq::run_pipeline(dir, out, o);
  REQUIRE_FALSE(r.has_value());
  CHECK_MESSAGE(r.error().message().find("blk.0.attn_norm.weight") != std::string::npos, r.error().message());
  CHECK(r.error().code == sbgq::error_code::not_finite);
  CHECK_FALSE(std::filesystem::exists(out));
  // The converter names the tensor too.
  const std::string f32 = tmp("nan-model-f32.gguf");
  std::filesystem::remove(f32);  // left by an earlier run's quantize case
  sbgq::convert_options co;
  co.outtype = ggml_type::f32;
  auto c = sbgq::convert_checkpoint(dir, f32, co);
  REQUIRE_FALSE(c.has_value());
  CHECK_MESSAGE(c.error().message().find("tensor 'blk.0.attn_norm.weight'") != std::string::npos, c.error().message());
  CHECK_FALSE(std::filesystem::exists(f32));
  // quantize: an F32 GGUF with a NaN in a norm (kept at F32) is refused, naming it.
  {
    std::ifstream in(f32_gguf(), std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> bytes(chars.size());
    std::memcpy(bytes.data(), chars.data(), chars.size());
    auto g = sbgq::gguf_file::parse(bytes);
    REQUIRE(g.has_value());
    auto t = g->tensor_data("blk.0.attn_norm.weight");
    REQUIRE(t.has_value());
    const float nan_value = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(chars.data() + (t->data() - bytes.data()) + 12, &nan_value, 4);
    std::ofstream(f32, std::ios::binary).write(chars.data(), static_cast<std::streamsize>(chars.size()));
  }
  sbgq::quantize_options q;
  auto qr = sbgq::quantize_file(f32, out, q);
  REQUIRE_FALSE(qr.has_value());
  CHECK_MESSAGE(qr.error().message().find("tensor 'blk.0.attn_norm.weight' (kept as f32): value 3 is not finite") !=
                    std::string::npos,
                qr.error().message());
  CHECK_FALSE(std::filesystem::exists(out));
}

}  // TEST_SUITE
