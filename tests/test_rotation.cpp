// Tests of the residual-stream rotation (include/sbgq/rotation.hpp).
//
// Oracles:
//   - the explicit rotation matrix and Eigen f64 products (W diag(g) Q, Q^T W) for the
//     reader / writer helpers;
//   - the model itself: our forward pass on the original weights. A rotation is exact in
//     real arithmetic (spec/qwen35-model.md 4.d), so the logits may differ only by f32
//     rounding. That noise is measured, not assumed: a random permutation of the residual
//     stream goes through the very same machinery (gain folding, f64 products, one
//     rounding) and is exact in real arithmetic, so its deviation is the model's own
//     rounding noise under a change of summation order. The rotated model must stay
//     within k_noise times it; rotation WITHOUT folding the gains (a known-broken
//     transform) must be detected as >100x larger.
// Models: the tiny Qwen3.5 checkpoint (/work/shared/models/tiny-qwen35, H_k = 2, H_v = 4)
// through safetensors_weight_provider, and a synthetic in-memory model with d = 80 (a
// Paley-Kronecker Hadamard, 20 x 4), H_k = 2 != H_v = 6, tied embeddings and random gains.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "sbgq/model/forward.hpp"
#include "sbgq/transform/rotation.hpp"
#include "sbgq/io/safetensors.hpp"
#include "sbgq/simd/dispatch.hpp"
#include "sbgq/model/tokenizer.hpp"
#include "sbgq/model/weights.hpp"
#include "support/rng.hpp"
#include "support/tiny_qwen35.hpp"

using namespace sbgq;

namespace {

// Measured (see the report of issue 8): on the tiny model the Hadamard / random orthogonal
// rotations deviate 1-3x the permutation noise, without folding ~1e5x. k = 10 (the spec's
// "small factor", 5.4) leaves room for platform rounding differences while any real
// mapping bug (a missed reader, a gain applied twice) costs orders of magnitude.
constexpr double k_noise = 10.0;
constexpr double k_negative = 100.0;

double rel_diff(const matrix_f32& a, const matrix_f32& ref) {
  return static_cast<double>((a - ref).cwiseAbs().maxCoeff()) / static_cast<double>(ref.cwiseAbs().maxCoeff());
}

std::size_t argmax_mismatches(const matrix_f32& a, const matrix_f32& b) {
  std::size_t n = 0;
  for (Eigen::Index r = 0; r < a.rows(); ++r) {
    Eigen::Index ia = 0, ib = 0;
    a.row(r).maxCoeff(&ia);
    b.row(r).maxCoeff(&ib);
    n += ia != ib;
  }
  return n;
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

Eigen::MatrixXd random_orthogonal(std::size_t d, std::uint64_t seed) {
  sbgq::test::rng r(seed);
  Eigen::MatrixXd g(static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(d));
  for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = r.normal();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  return qr.householderQ() * Eigen::MatrixXd::Identity(g.rows(), g.cols());
}

/// Rotation WITHOUT folding (the negative control of spec 4.d, d3): the norm gains are
/// kept as they are, everything else rotated. Built from the public API: with the gains
/// set to 1 the fold is a no-op; the original gains are put back afterwards.
class unfolded_rotation_provider : public weight_provider {
 public:
  unfolded_rotation_provider(weight_provider& in, const qwen35_config& c, const residual_rotation& q)
      : in_(in), c_(c), q_(q) {}
  result<global_weights> load_globals() override {
    SBGQ_TRY(global_weights g, in_.load_globals());
    const vector_f32 gain = g.output_norm;
    g.output_norm.setOnes();
    SBGQ_TRY_VOID(rotate_globals(g, q_));
    g.output_norm = gain;
    return g;
  }
  result<layer_weights> load_layer(int l) override {
    SBGQ_TRY(layer_weights w, in_.load_layer(l));
    const vector_f32 a = w.attn_norm, p = w.post_attention_norm;
    w.attn_norm.setOnes();
    w.post_attention_norm.setOnes();
    SBGQ_TRY_VOID(rotate_layer(c_, w, q_));
    w.attn_norm = a;
    w.post_attention_norm = p;
    return w;
  }

 private:
  weight_provider& in_;
  const qwen35_config& c_;
  const residual_rotation& q_;
};

/// A provider over weights held in memory (copies on load).
class memory_provider : public weight_provider {
 public:
  global_weights g;
  std::vector<layer_weights> layers;
  result<global_weights> load_globals() override { return g; }
  result<layer_weights> load_layer(int l) override { return layers.at(static_cast<std::size_t>(l)); }
};

/// A Qwen3.5-shaped random model: d = 80, 3 DeltaNet layers (H_k = 2, H_v = 6, d_k = d_v = 16)
/// and 1 gated attention layer (2 query heads, 1 KV head, D = 32, 8 rotary dims), tied
/// embeddings, non-trivial gains everywhere, two outlier residual channels.
struct synthetic_model {
  qwen35_config c;
  memory_provider p;
};

synthetic_model make_synthetic(std::uint64_t seed) {
  synthetic_model m;
  qwen35_config& c = m.c;
  c.hidden_size = 80;
  c.intermediate_size = 96;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 32;
  c.linear_num_key_heads = 2;
  c.linear_num_value_heads = 6;
  c.linear_key_head_dim = 16;
  c.linear_value_head_dim = 16;
  c.linear_conv_kernel_dim = 4;
  c.vocab_size = 300;
  c.full_attention_interval = 4;
  c.max_position_embeddings = 4096;
  c.rope_theta = 1e7;
  c.partial_rotary_factor = 0.25;
  c.mrope_section = {2, 1, 1};
  c.tie_word_embeddings = true;
  c.layer_types = {layer_kind::linear_attention, layer_kind::linear_attention, layer_kind::linear_attention,
                   layer_kind::full_attention};
  sbgq::test::rng r(seed);
  const Eigen::Index d = c.hidden_size;
  auto mat = [&](Eigen::Index rows, Eigen::Index cols, float s, bool reads_stream) {
    matrix_f32 x(rows, cols);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = r.normal() * s;
    if (reads_stream)
      for (Eigen::Index col : {Eigen::Index{5}, Eigen::Index{41}}) x.col(col) *= 6.0f;
    return x;
  };
  auto gain = [&](Eigen::Index n, float s) {
    vector_f32 v(n);
    for (Eigen::Index i = 0; i < n; ++i) v[i] = 1.0f + r.normal() * s;
    return v;
  };
  const float sr = 1.0f / std::sqrt(static_cast<float>(d));
  m.p.g.token_embd = mat(c.vocab_size, d, 1.0f, false);
  m.p.g.output_norm = gain(d, 0.3f);
  for (std::size_t l = 0; l < c.layer_types.size(); ++l) {
    layer_weights w;
    w.kind = c.layer_types[l];
    w.attn_norm = gain(d, 0.3f);
    w.post_attention_norm = gain(d, 0.3f);
    w.ffn_gate = mat(c.intermediate_size, d, sr, true);
    w.ffn_up = mat(c.intermediate_size, d, sr, true);
    w.ffn_down = mat(d, c.intermediate_size, 0.5f / std::sqrt(static_cast<float>(c.intermediate_size)), false);
    if (w.kind == layer_kind::linear_attention) {
      const Eigen::Index hv = c.linear_num_value_heads, vd = c.linear_value_dim();
      w.attn_qkv = mat(c.linear_conv_dim(), d, sr, true);
      w.attn_gate = mat(vd, d, sr, true);
      w.ssm_beta = mat(hv, d, sr, true);
      w.ssm_alpha = mat(hv, d, sr, true);
      w.ssm_conv1d = mat(c.linear_conv_dim(), c.linear_conv_kernel_dim, 0.3f, false);
      w.ssm_a.resize(hv);
      w.ssm_dt_bias.resize(hv);
      for (Eigen::Index j = 0; j < hv; ++j) {
        w.ssm_a[j] = -std::exp(r.uniform(0.0f, 2.0f));
        w.ssm_dt_bias[j] = r.normal() * 0.5f;
      }
      w.ssm_norm = gain(c.linear_value_head_dim, 0.2f);
      w.ssm_out = mat(d, vd, 0.5f / std::sqrt(static_cast<float>(vd)), false);
    } else {
      w.attn_q = mat(c.q_proj_rows(), d, sr, true);
      w.attn_k = mat(c.kv_dim(), d, sr, true);
      w.attn_v = mat(c.kv_dim(), d, sr, true);
      w.attn_output = mat(d, c.num_attention_heads * c.head_dim, 0.5f / std::sqrt(64.0f), false);
      w.attn_q_norm = gain(c.head_dim, 0.2f);
      w.attn_k_norm = gain(c.head_dim, 0.2f);
    }
    m.p.layers.push_back(std::move(w));
  }
  return m;
}

matrix_f32 logits_of(const qwen35_config& c, weight_provider& p, const std::vector<std::int32_t>& toks, std::int64_t n_seq) {
  auto z = forward(c, p, toks, n_seq, nullptr, 2);
  REQUIRE_MESSAGE(z.has_value(), z.error().message());
  return std::move(*z);
}

/// Max over layers of rel |x'_l - x_l Q| (hidden states after each layer), the per-layer
/// localisation of spec 5.3.
double max_layer_deviation(const qwen35_config& c, weight_provider& base, weight_provider& rotated,
                           const residual_rotation& q, const std::vector<std::int32_t>& toks, std::int64_t n_seq) {
  auto g0 = base.load_globals().value();
  auto g1 = rotated.load_globals().value();
  auto a0 = embed(g0, toks, n_seq).value();
  auto a1 = embed(g1, toks, n_seq).value();
  double worst = 0;
  for (int l = 0; l < static_cast<int>(c.num_hidden_layers); ++l) {
    REQUIRE(run_layer(c, l, base.load_layer(l).value(), a0, nullptr, 2).has_value());
    REQUIRE(run_layer(c, l, rotated.load_layer(l).value(), a1, nullptr, 2).has_value());
    matrix_f32 expect = a0.hidden;
    REQUIRE(q.rotate_rows(expect).has_value());
    worst = std::max(worst, rel_diff(a1.hidden, expect));
  }
  return worst;
}

struct exactness {
  double noise = 0, hadamard = 0, random_q = 0, unfolded = 0, layer_hadamard = 0;
  std::size_t top1_mismatch = 0;
};

exactness measure(const qwen35_config& c, weight_provider& base, const std::vector<std::int32_t>& toks, std::int64_t n_seq,
                  bool dense_random_q) {
  const std::size_t d = static_cast<std::size_t>(c.hidden_size);
  exactness e;
  const matrix_f32 ref = logits_of(c, base, toks, n_seq);
  for (std::uint64_t seed : {11u, 12u, 13u}) {
    auto q = residual_rotation::from_matrix(random_permutation(d, seed)).value();
    rotated_provider rp(base, c, q);
    e.noise = std::max(e.noise, rel_diff(logits_of(c, rp, toks, n_seq), ref));
  }
  {
    auto q = residual_rotation::hadamard(d, 1234).value();
    rotated_provider rp(base, c, q);
    const matrix_f32 z = logits_of(c, rp, toks, n_seq);
    e.hadamard = rel_diff(z, ref);
    e.top1_mismatch = argmax_mismatches(z, ref);
    e.layer_hadamard = max_layer_deviation(c, base, rp, q, toks, n_seq);
    unfolded_rotation_provider up(base, c, q);
    e.unfolded = rel_diff(logits_of(c, up, toks, n_seq), ref);
  }
  if (dense_random_q) {  // O(d^2) per row: the synthetic model only (slow under ASan at d = 256)
    auto q = residual_rotation::from_matrix(random_orthogonal(d, 99)).value();
    rotated_provider rp(base, c, q);
    e.random_q = rel_diff(logits_of(c, rp, toks, n_seq), ref);
  }
  return e;
}

std::string random_q_text(const exactness& e) {
  if (e.random_q == 0) return "not measured";
  std::ostringstream o;
  o << e.random_q << " (" << e.random_q / e.noise << "x)";
  return o.str();
}

void check_exactness(const exactness& e) {
  MESSAGE("rel max|dlogits|/max|logits|: permutation noise " << e.noise << ", Hadamard " << e.hadamard << " ("
                                                              << e.hadamard / e.noise << "x), random orthogonal "
                                                              << random_q_text(e)
                                                              << ", without folding " << e.unfolded << " ("
                                                              << e.unfolded / std::max(e.noise, e.hadamard)
                                                              << "x); per-layer x'_l vs x_l Q " << e.layer_hadamard);
  CHECK(e.noise > 0);  // a permutation does change the summation order
  CHECK(e.hadamard < k_noise * e.noise);
  CHECK(e.random_q < k_noise * e.noise);  // 0 when not measured
  CHECK(e.unfolded > k_negative * std::max({e.noise, e.hadamard, e.random_q}));
  CHECK(e.layer_hadamard < 1e-4);
  CHECK(e.top1_mismatch == 0);
}

}  // namespace

TEST_SUITE("rotation") {

TEST_CASE("residual_rotation: explicit matrix, readers, writers and rows against f64 products") {
  for (std::size_t d : {std::size_t{64}, std::size_t{80}}) {
    CAPTURE(d);
    auto h = residual_rotation::hadamard(d, 42);
    REQUIRE_MESSAGE(h.has_value(), h.error().message());
    CHECK(h->size() == d);
    const Eigen::MatrixXd q = h->matrix();
    const auto n = static_cast<Eigen::Index>(d);
    // Orthogonal, entries +-1/sqrt(d), and a different seed gives a different matrix.
    CHECK((q.transpose() * q - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff() < 1e-13);
    CHECK((q.cwiseAbs() * std::sqrt(static_cast<double>(d)) - Eigen::MatrixXd::Ones(n, n)).cwiseAbs().maxCoeff() < 1e-13);
    CHECK((residual_rotation::hadamard(d, 43)->matrix() - q).cwiseAbs().maxCoeff() > 0.1);
    CHECK((residual_rotation::hadamard(d, 42)->matrix() - q).cwiseAbs().maxCoeff() == 0.0);

    sbgq::test::rng r(d);
    matrix_f32 w(7, n), wt(n, 9), x(5, n);
    vector_f32 g(n);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = r.normal();
    for (Eigen::Index i = 0; i < wt.size(); ++i) wt.data()[i] = r.normal();
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = r.normal();
    for (Eigen::Index i = 0; i < n; ++i) g[i] = 1.0f + 0.3f * r.normal();

    const Eigen::MatrixXd want_reader = w.cast<double>() * g.cast<double>().asDiagonal() * q;
    const Eigen::MatrixXd want_writer = q.transpose() * wt.cast<double>();
    const Eigen::MatrixXd want_rows = x.cast<double>() * q;
    auto dense = residual_rotation::from_matrix(q);
    REQUIRE(dense.has_value());
    for (const residual_rotation* rot : {&*h, &*dense}) {
      CAPTURE(rot->is_hadamard());
      matrix_f32 a = w, b = wt, c = x;
      REQUIRE(rot->rotate_readers(a, &g).has_value());
      REQUIRE(rot->rotate_writer(b).has_value());
      REQUIRE(rot->rotate_rows(c).has_value());
      // f64 products rounded once to f32: within half an f32 ulp of the f64 value (plus
      // f64 round-off), measured relative to the row magnitude.
      CHECK((a.cast<double>() - want_reader).cwiseAbs().maxCoeff() < 1e-6 * want_reader.cwiseAbs().maxCoeff());
      CHECK((b.cast<double>() - want_writer).cwiseAbs().maxCoeff() < 1e-6 * want_writer.cwiseAbs().maxCoeff());
      CHECK((c.cast<double>() - want_rows).cwiseAbs().maxCoeff() < 1e-6 * want_rows.cwiseAbs().maxCoeff());
      // The point of it all: (x Q) (W diag(g) Q)^T = x diag(g) W^T.
      const Eigen::MatrixXd y0 = x.cast<double>() * g.cast<double>().asDiagonal() * w.cast<double>().transpose();
      const Eigen::MatrixXd y1 = c.cast<double>() * a.cast<double>().transpose();
      CHECK((y1 - y0).cwiseAbs().maxCoeff() < 1e-5 * y0.cwiseAbs().maxCoeff());
    }
  }
}

TEST_CASE("residual_rotation: a signed permutation (gather path) equals the dense product") {
  Eigen::MatrixXd p = random_permutation(24, 4);
  p.col(3) *= -1.0;  // signed
  auto q = residual_rotation::from_matrix(p).value();
  sbgq::test::rng r(6);
  matrix_f32 w(5, 24), t(24, 7);
  vector_f32 g(24);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = r.normal();
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = r.normal();
  for (Eigen::Index i = 0; i < g.size(); ++i) g[i] = 1.0f + 0.3f * r.normal();
  const Eigen::MatrixXd want_w = w.cast<double>() * g.cast<double>().asDiagonal() * p;
  const Eigen::MatrixXd want_t = p.transpose() * t.cast<double>();
  REQUIRE(q.rotate_readers(w, &g).has_value());
  REQUIRE(q.rotate_writer(t).has_value());
  CHECK(w == want_w.cast<float>());  // every product has one exact term: bit-identical
  CHECK(t == want_t.cast<float>());
}

TEST_CASE("residual_rotation: the Hadamard form is bit-identical at every SIMD level") {
  // The f64 Hadamard kernels of hadamard.hpp have a fixed summation order at every level.
  auto q = residual_rotation::hadamard(80, 9).value();
  sbgq::test::rng r(10);
  matrix_f32 w0(37, 80), t0(80, 45);
  for (Eigen::Index i = 0; i < w0.size(); ++i) w0.data()[i] = r.normal();
  for (Eigen::Index i = 0; i < t0.size(); ++i) t0.data()[i] = r.normal();
  matrix_f32 w_ref = w0, t_ref = t0;
  {
    simd_override cap(simd_level::scalar);
    REQUIRE(q.rotate_readers(w_ref, nullptr).has_value());
    REQUIRE(q.rotate_writer(t_ref).has_value());
  }
  std::string ran = "scalar ", skipped;
  for (simd_level l : {simd_level::avx2, simd_level::avx512}) {
    if (l > supported_simd_level()) {
      skipped += std::string(simd_level_name(l)) + " ";
      continue;
    }
    ran += std::string(simd_level_name(l)) + " ";
    simd_override cap(l);
    matrix_f32 w = w0, t = t0;
    REQUIRE(q.rotate_readers(w, nullptr, 2).has_value());
    REQUIRE(q.rotate_writer(t, 2).has_value());
    CHECK(w == w_ref);
    CHECK(t == t_ref);
  }
  MESSAGE("rotation levels run: " << ran << "| skipped (unsupported by this CPU/build): " << (skipped.empty() ? "none" : skipped));
}

TEST_CASE("residual_rotation: errors") {
  auto bad = residual_rotation::from_matrix(Eigen::MatrixXd::Identity(4, 4) * 1.001);
  REQUIRE(!bad.has_value());
  CHECK(bad.error().message().rfind("[sbgq.rotation.bad_value] rotation matrix is not orthogonal: max |Q^T Q - I| = ", 0) == 0);
  auto rect = residual_rotation::from_matrix(Eigen::MatrixXd::Zero(3, 4));
  REQUIRE(!rect.has_value());
  CHECK(rect.error().message() == "[sbgq.rotation.bad_shape] rotation matrix is 3 x 4, expected a non-empty square matrix");
  Eigen::MatrixXd nan = Eigen::MatrixXd::Identity(2, 2);
  nan(0, 1) = std::nan("");
  CHECK(residual_rotation::from_matrix(nan).error().code == error_code::not_finite);
  auto h6 = residual_rotation::hadamard(6, 1);
  REQUIRE(!h6.has_value());
  CHECK(h6.error().code == error_code::unsupported);
  CHECK(h6.error().component == "hadamard");

  auto q = residual_rotation::hadamard(64, 1).value();
  matrix_f32 w(3, 32);
  auto r = q.rotate_readers(w, nullptr, 1, "blk.0.ffn_up.weight");
  REQUIRE(!r.has_value());
  CHECK(r.error().message() == "[sbgq.rotation.bad_shape] blk.0.ffn_up.weight: 32 input columns, the rotation has size 64");
  auto m = make_synthetic(1);
  layer_weights lw = m.p.layers[0];
  auto rl = rotate_layer(m.c, lw, q);
  REQUIRE(!rl.has_value());
  CHECK(rl.error().message() == "[sbgq.rotation.bad_shape] hidden_size 80 but the rotation has size 64");
  global_weights g = m.p.g;
  CHECK(rotate_globals(g, q).error().code == error_code::bad_shape);
}

TEST_CASE("rotate_globals unties a tied head; rotate_layer folds every gain") {
  auto m = make_synthetic(3);
  auto q = residual_rotation::hadamard(80, 5).value();
  global_weights g = m.p.g;
  REQUIRE(g.output.size() == 0);
  REQUIRE(rotate_globals(g, q).has_value());
  CHECK(g.output.rows() == g.token_embd.rows());
  CHECK(g.output_norm.isOnes());
  // Head = E diag(g_f) Q, embedding = E Q: they differ because g_f is not constant.
  const Eigen::MatrixXd qm = q.matrix();
  const Eigen::MatrixXd want_head = m.p.g.token_embd.cast<double>() * m.p.g.output_norm.cast<double>().asDiagonal() * qm;
  CHECK((g.output.cast<double>() - want_head).cwiseAbs().maxCoeff() < 1e-6 * want_head.cwiseAbs().maxCoeff());
  for (std::size_t l = 0; l < m.p.layers.size(); ++l) {
    layer_weights w = m.p.layers[l];
    REQUIRE(rotate_layer(m.c, w, q).has_value());
    CHECK(w.attn_norm.isOnes());
    CHECK(w.post_attention_norm.isOnes());
    const layer_weights& o = m.p.layers[l];
    // Untouched: conv, per-head norms, gates' vectors.
    CHECK(w.ssm_conv1d == o.ssm_conv1d);
    CHECK(w.ssm_norm == o.ssm_norm);
    CHECK(w.ssm_a == o.ssm_a);
    CHECK(w.attn_q_norm == o.attn_q_norm);
    // ssm_alpha (an easy reader to forget) is folded and rotated.
    if (o.kind == layer_kind::linear_attention) {
      const Eigen::MatrixXd want = o.ssm_alpha.cast<double>() * o.attn_norm.cast<double>().asDiagonal() * qm;
      CHECK((w.ssm_alpha.cast<double>() - want).cwiseAbs().maxCoeff() < 1e-6 * want.cwiseAbs().maxCoeff());
    }
  }
}

TEST_CASE("rotation is exact on the tiny model (logits within the f32 noise; unfolded rotation is not)") {
  const std::string dir = sbgq::test::tiny_model_dir();
  const qwen35_config c = load_qwen35_config(dir).value();
  auto ckpt = safetensors_checkpoint::open(dir).value();
  safetensors_weight_provider base(ckpt, c);
  auto tok = tokenizer::load(dir + "/tokenizer.json", static_cast<std::size_t>(c.vocab_size)).value();
  auto text = sbgq::test::detail_tiny::read_text(std::string(SBGQ_SHARED_DIR) + "/data/eval.txt");
  auto ids = tok.encode(text.substr(0, 4000)).value();
  constexpr std::int64_t n_seq = 3, n_tok = 40;
  REQUIRE(ids.size() >= static_cast<std::size_t>(n_seq * n_tok));
  std::vector<std::int32_t> toks(ids.begin(), ids.begin() + n_seq * n_tok);
  check_exactness(measure(c, base, toks, n_seq, false));
}

TEST_CASE("rotation is exact on a synthetic model with H_k != H_v, d = 80 and tied embeddings") {
  auto m = make_synthetic(7);
  sbgq::test::rng r(8);
  constexpr std::int64_t n_seq = 3, n_tok = 24;
  std::vector<std::int32_t> toks(static_cast<std::size_t>(n_seq * n_tok));
  for (auto& t : toks) t = static_cast<std::int32_t>(r.next_u64() % static_cast<std::uint64_t>(m.c.vocab_size));
  check_exactness(measure(m.c, m.p, toks, n_seq, true));
}

}  // TEST_SUITE
