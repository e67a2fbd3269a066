// Importance-matrix collection against llama.cpp itself: libllama decodes the same chunks
// of calib.txt with a graph callback that, for every matrix multiplication by a blk.*
// weight, adds the squares of the activation operand per column -- what llama-imatrix
// does (imatrix.md 1.1-1.2). Our layer-streamed collector must agree per tensor and column
// to f32 noise, with the same counts. Also: X^T X consistency and thread determinism.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sbgq/calibrate.hpp>
#include <sbgq/convert.hpp>
#include <sbgq/model/tokenizer.hpp>
#include <sbgq/model/weights.hpp>
#include <string>
#include <vector>

#include "support/oracle.hpp"

namespace fs = std::filesystem;
using sbgq::test::ggml_tensor_layout;
using sbgq::test::oracle;
using sbgq::test::oracle_model;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr std::int64_t n_chunks = 2;
#else
constexpr std::int64_t n_chunks = 8;
#endif
constexpr std::int64_t ctx = 256;

const std::string model_dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";

const std::string& tiny_f32_gguf() {
  static const std::string path = [] {
    const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "calibrate";
    fs::create_directories(dir);
    const std::string p = (dir / "tiny-f32.gguf").string();
    sbgq::convert_options opt;
    opt.outtype = sbgq::ggml_type::f32;
    opt.include_mtp = false;
    REQUIRE(sbgq::convert_checkpoint(model_dir, p, opt).has_value());
    return p;
  }();
  return path;
}

std::vector<std::int32_t> calib_tokens() {
  std::ifstream f(std::string(SBGQ_SHARED_DIR) + "/data/calib.txt");
  const std::string text((std::istreambuf_iterator<char>(f)), {});
  auto tok = sbgq::tokenizer::load(model_dir + "/tokenizer.json", 8192);
  REQUIRE(tok.has_value());
  auto ids = tok->encode(text);
  REQUIRE(ids.has_value());
  REQUIRE(static_cast<std::int64_t>(ids->size()) >= n_chunks * ctx);
  ids->resize(static_cast<std::size_t>(n_chunks * ctx));
  return *ids;
}

// ---- the llama-imatrix-style collector on libllama's graph ----------------------------------
struct lib_collector {
  int mul_mat = -1;
  std::map<std::string, std::vector<double>> sums;  // f64 here: the reference should not add noise
  std::map<std::string, std::int64_t> counts;
  int layout_checked = 0;
  std::string error;
};

bool collect_cb(void* tp, bool ask, void* ud) {
  auto* c = static_cast<lib_collector*>(ud);
  const auto* t = static_cast<const ggml_tensor_layout*>(tp);
  if (t->op != c->mul_mat) return ask ? false : true;
  const ggml_tensor_layout* w = t->src[0];
  const ggml_tensor_layout* x = t->src[1];
  if (!w || !x || std::strncmp(w->name, "blk.", 4) != 0) return ask ? false : true;
  if (ask) return true;
  // Layout sanity (llama-c-api.md 4.8): the weight's row length is the activations' width,
  // the activations are F32 and the result has one row per activation row.
  if (x->type != 0 || w->ne[0] != x->ne[0] || t->ne[1] != x->ne[1] || !x->data) {
    c->error = std::string("unexpected mul_mat operands for ") + w->name;
    return false;
  }
  ++c->layout_checked;
  auto& s = c->sums[w->name];
  if (s.empty()) s.assign(static_cast<std::size_t>(x->ne[0]), 0.0);
  const auto* base = static_cast<const char*>(x->data);
  std::int64_t rows = 0;
  for (std::int64_t i3 = 0; i3 < x->ne[3]; ++i3)
    for (std::int64_t i2 = 0; i2 < x->ne[2]; ++i2)
      for (std::int64_t i1 = 0; i1 < x->ne[1]; ++i1, ++rows) {
        const char* row = base + i1 * static_cast<std::int64_t>(x->nb[1]) + i2 * static_cast<std::int64_t>(x->nb[2]) +
                          i3 * static_cast<std::int64_t>(x->nb[3]);
        for (std::int64_t j = 0; j < x->ne[0]; ++j) {
          float v = 0;
          std::memcpy(&v, row + j * static_cast<std::int64_t>(x->nb[0]), 4);
          s[static_cast<std::size_t>(j)] += static_cast<double>(v) * v;
        }
      }
  c->counts[w->name] += rows;
  return true;
}

sbgq::calibration_result ours(int n_threads, bool xtx, std::map<std::string, Eigen::MatrixXf>* keep = nullptr) {
  static auto cfg = sbgq::load_qwen35_config(model_dir).value();
  static auto file = sbgq::gguf_file::open(tiny_f32_gguf()).value();
  sbgq::gguf_weight_provider p(file, cfg, n_threads);
  const auto toks = calib_tokens();
  sbgq::calibration_options opt;
  opt.ctx = ctx;
  opt.n_threads = n_threads;
  opt.group_chunks = 3;  // not a divisor of n_chunks: exercises the last partial group
  opt.collect_xtx = xtx;
  opt.dataset = "calib.txt";
  if (keep)
    opt.on_layer_done = [&](int, std::map<std::string, Eigen::MatrixXf>& m) {
      for (auto& [k, v] : m) (*keep)[k] = std::move(v);
    };
  auto r = sbgq::collect_calibration(cfg, p, toks, opt);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
  return std::move(*r);
}

}  // namespace

TEST_CASE("imatrix statistics agree with libllama's mul_mat activations per tensor and column") {
  lib_collector lc;
  for (int op = 0; op < 200; ++op) {
    const char* n = oracle().ggml_op_name(op);
    if (n && std::string(n) == "MUL_MAT") {
      lc.mul_mat = op;
      break;
    }
  }
  REQUIRE(lc.mul_mat >= 0);
  MESSAGE("GGML_OP_MUL_MAT = " << lc.mul_mat << " in this binary");
  {
    oracle_model::options o{static_cast<std::uint32_t>(ctx), static_cast<std::uint32_t>(ctx), 2, false, true};
    o.cb_eval = &collect_cb;
    o.cb_eval_user_data = &lc;
    oracle_model m(tiny_f32_gguf(), o);
    const auto toks = calib_tokens();
    for (std::int64_t c = 0; c < n_chunks; ++c) {
      m.clear();
      m.decode(std::vector<std::int32_t>(toks.begin() + c * ctx, toks.begin() + (c + 1) * ctx));
    }
  }
  REQUIRE_MESSAGE(lc.error.empty(), lc.error);
  REQUIRE(lc.layout_checked > 0);

  const auto r = ours(2, false);
  CHECK(r.im.chunk_count == n_chunks);
  CHECK(r.im.chunk_size == ctx);
  // Same set of tensors: 6 DeltaNet layers x 8 matrices + 2 attention layers x 7.
  CHECK(lc.sums.size() == 6 * 8 + 2 * 7);
  CHECK(r.im.entries.size() == lc.sums.size());
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, ref] : lc.sums) {
    CAPTURE(name);
    auto it = r.im.entries.find(name);
    REQUIRE(it != r.im.entries.end());
    const auto& e = it->second;
    CHECK(e.counts == std::vector<std::int64_t>{lc.counts[name]});
    CHECK(e.counts[0] == n_chunks * ctx);
    REQUIRE(e.sum2.size() == ref.size());
    for (std::size_t j = 0; j < ref.size(); ++j) {
      const double rel = std::fabs(e.sum2[j] - ref[j]) / std::max(ref[j], 1e-30);
      if (rel > worst) {
        worst = rel;
        worst_name = name + " column " + std::to_string(j);
      }
    }
  }
  MESSAGE("worst per-column relative difference vs libllama: " << worst << " (" << worst_name << ")");
  CHECK(worst < 1e-3);
}

TEST_CASE("collection is deterministic across thread counts and X^T X matches the imatrix diagonal") {
  std::map<std::string, Eigen::MatrixXf> h;
  std::map<std::string, Eigen::MatrixXf> h2;
  const auto a = ours(1, true, &h);
  const auto b = ours(2, true, &h2);
  for (const auto& [name, e] : a.im.entries) {
    CAPTURE(name);
    CHECK(b.im.entries.at(name).sum2 == e.sum2);
  }
  // X^T X (linalg/gemm.hpp's syrk_lower) is the same bits on 1 and 2 threads.
  REQUIRE(h2.size() == h.size());
  for (const auto& [name, H] : h) {
    CAPTURE(name);
    CHECK(h2.at(name) == H);
  }
  // One H per input space: per DeltaNet layer attn_qkv (shared by gate/beta/alpha), ssm_out,
  // ffn_gate (shared with up), ffn_down; per attention layer attn_q, attn_output, ffn_gate, ffn_down.
  CHECK(h.size() == 6 * 4 + 2 * 4);
  for (const char* name : {"blk.0.attn_qkv.weight", "blk.3.attn_q.weight", "blk.5.ffn_down.weight", "blk.7.attn_output.weight"}) {
    CAPTURE(name);
    const auto& H = h.at(name);
    const auto& s = a.im.entries.at(name).sum2;
    REQUIRE(H.rows() == static_cast<Eigen::Index>(s.size()));
    double worst = 0;
    for (std::size_t j = 0; j < s.size(); ++j)
      worst = std::max(worst, std::fabs(H(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(j)) - s[j]) / std::max<double>(s[j], 1e-30));
    CHECK(worst < 1e-4);  // blocked f32 products vs f32 column sums
    // X^T X is positive semi-definite: its smallest eigenvalue is not meaningfully negative
    // (f32 accumulation: rounding of order 1e-7 of the largest).
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(H.cast<double>(), Eigen::EigenvaluesOnly);
    CHECK(es.eigenvalues().minCoeff() > -1e-5 * es.eigenvalues().maxCoeff());
  }
  // The shared input spaces really are shared: attn_gate's imatrix equals attn_qkv's.
  CHECK(a.im.entries.at("blk.1.attn_gate.weight").sum2 == a.im.entries.at("blk.1.attn_qkv.weight").sum2);
}

TEST_CASE("the LM head's X^T X: the final-normed hidden states' Gram matrix, the same bits on 1 and 2 threads") {
  const auto cfg = sbgq::load_qwen35_config(model_dir).value();
  const auto file = sbgq::gguf_file::open(tiny_f32_gguf()).value();
  const auto toks = calib_tokens();
  auto head_h = [&](int n_threads, sbgq::matrix_f32* hidden) {
    sbgq::gguf_weight_provider p(file, cfg, n_threads);
    sbgq::calibration_options opt;
    opt.ctx = ctx;
    opt.n_threads = n_threads;
    opt.group_chunks = 3;  // the last group partial
    auto s = sbgq::calibration_session::start(cfg, p, toks, opt);
    REQUIRE(s.has_value());
    for (int l = 0; l < static_cast<int>(cfg.num_hidden_layers); ++l) {
      auto w = p.load_layer(l);
      REQUIRE(w.has_value());
      REQUIRE((*s)->run_layer(l, *w).has_value());
    }
    const auto g = p.load_globals().value();
    if (hidden) *hidden = (*s)->hidden().hidden;
    return std::make_pair((*s)->head_xtx(g.output_norm), g.output_norm);
  };
  sbgq::matrix_f32 hidden;
  const auto [h1, gain] = head_h(1, &hidden);
  const auto [h2, gain2] = head_h(2, nullptr);
  CHECK(h1.triangularView<Eigen::Lower>().toDenseMatrix() == h2.triangularView<Eigen::Lower>().toDenseMatrix());
  // Independently, in f64: x = g * h / sqrt(mean(h^2) + eps) per token, H = X^T X.
  const auto d = hidden.cols();
  Eigen::MatrixXd x(hidden.rows(), d);
  for (Eigen::Index r = 0; r < hidden.rows(); ++r) {
    const Eigen::VectorXd h = hidden.row(r).transpose().cast<double>();
    const double inv = 1.0 / std::sqrt(h.squaredNorm() / static_cast<double>(d) + cfg.rms_norm_eps);
    x.row(r) = (h * inv).cwiseProduct(gain.cast<double>()).transpose();
  }
  const Eigen::MatrixXd ref = x.transpose() * x;
  double worst = 0;
  for (Eigen::Index j = 0; j < d; ++j)
    for (Eigen::Index i = j; i < d; ++i)
      worst = std::max(worst, std::fabs(h1(i, j) - ref(i, j)) / std::sqrt(ref(i, i) * ref(j, j)));
  MESSAGE("head X^T X vs f64: worst error relative to sqrt(H_ii H_jj) " << worst);
  CHECK(worst < 1e-5);
}

TEST_CASE("bad calibration input") {
  auto cfg = sbgq::load_qwen35_config(model_dir).value();
  auto file = sbgq::gguf_file::open(tiny_f32_gguf()).value();
  sbgq::gguf_weight_provider p(file, cfg, 1);
  std::vector<std::int32_t> few(100, 1);
  sbgq::calibration_options opt;
  opt.ctx = 256;
  auto r = sbgq::collect_calibration(cfg, p, few, opt);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::invalid_argument);
  std::vector<std::int32_t> bad(256, 99999);
  auto r2 = sbgq::collect_calibration(cfg, p, bad, opt);
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.error().message().find("outside the vocabulary") != std::string::npos);
}
