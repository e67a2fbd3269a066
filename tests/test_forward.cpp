// Tests of the reference forward pass (include/sbgq/forward.hpp).
//
// Oracle: libllama (llama.cpp v0.5.0, dlopen'ed by tests/support/oracle.hpp) decoding an
// F32 GGUF of the tiny Qwen3.5 model that tests/support/tiny_qwen35.hpp writes from the
// very f32 tensors our pass uses, with flash attention off and an F32 KV cache. The
// metric is llama.cpp's own comparison unit: max |ours - libllama| / std(libllama row).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "sbgq/model/forward.hpp"
#include "sbgq/simd/dispatch.hpp"
#include "support/oracle.hpp"
#include "support/tiny_qwen35.hpp"

using namespace sbgq;
using sbgq::test::oracle_model;

namespace {

const std::string& gguf_path() { return sbgq::test::tiny_gguf(SBGQ_TEST_TMP_DIR, "forward"); }

std::vector<std::int32_t> eval_tokens(oracle_model& m, std::size_t n) {
  std::string text = sbgq::test::detail_tiny::read_text(std::string(SBGQ_SHARED_DIR) + "/data/eval.txt");
  text.resize(std::min<std::size_t>(text.size(), 64 * n));
  auto toks = m.tokenize(text, false);
  REQUIRE(toks.size() >= n);
  toks.resize(n);
  return toks;
}

/// Our logits of n_seq equal-length sequences (tokens concatenated).
matrix_f32 our_logits(const std::vector<std::int32_t>& toks, std::int64_t n_seq, int n_threads,
                      observer* obs = nullptr) {
  sbgq::test::tensor_map_provider p(sbgq::test::tiny());
  auto z = forward(sbgq::test::tiny().config, p, toks, n_seq, obs, n_threads);
  REQUIRE_MESSAGE(z.has_value(), z.error().message());
  return std::move(*z);
}

/// max over rows of max|a - b| / std(b row); rows of `ref` are [n][vocab].
struct diff_stats {
  double max_rel = 0, max_abs = 0;
  std::size_t argmax_mismatch = 0;
};
diff_stats compare(const float* ours, const float* ref, std::size_t n_rows, std::size_t vocab) {
  diff_stats d;
  for (std::size_t r = 0; r < n_rows; ++r) {
    const float* a = ours + r * vocab;
    const float* b = ref + r * vocab;
    double mean = 0, var = 0, mx = 0;
    for (std::size_t i = 0; i < vocab; ++i) mean += b[i];
    mean /= static_cast<double>(vocab);
    for (std::size_t i = 0; i < vocab; ++i) {
      var += (b[i] - mean) * (b[i] - mean);
      mx = std::max(mx, std::fabs(static_cast<double>(a[i]) - b[i]));
    }
    const double sd = std::sqrt(var / static_cast<double>(vocab));
    d.max_abs = std::max(d.max_abs, mx);
    d.max_rel = std::max(d.max_rel, mx / sd);
    d.argmax_mismatch += std::max_element(a, a + vocab) - a != std::max_element(b, b + vocab) - b;
  }
  return d;
}

/// The kernel levels this CPU runs.
std::vector<simd_level> levels() {
  std::vector<simd_level> v;
  std::string skipped;
  for (auto l : {simd_level::scalar, simd_level::avx2, simd_level::avx512})
    if (l <= supported_simd_level())
      v.push_back(l);
    else
      skipped += std::string(skipped.empty() ? "" : ", ") + std::string(sbgq::simd_level_name(l));
  static bool printed = false;
  if (!printed) {
    printed = true;
    std::string run;
    for (auto l : v) run += std::string(run.empty() ? "" : ", ") + std::string(sbgq::simd_level_name(l));
    MESSAGE("levels run: " << run << "; skipped as unsupported: " << (skipped.empty() ? "none" : skipped));
  }
  return v;
}

}  // namespace

TEST_SUITE("forward") {

TEST_CASE("logits equal libllama's on the tiny model (F32 GGUF, 1e-4 of the row std)") {
  oracle_model ref(gguf_path(), oracle_model::options{1024, 512, 1, false, true});
  const std::size_t vocab = static_cast<std::size_t>(ref.n_vocab());
  REQUIRE(vocab == 8192);
  const auto all = eval_tokens(ref, 700);

  double worst = 0;
  for (simd_level level : levels()) {
    CAPTURE(level);
    simd_override cap(level);
    MESSAGE("level " << simd_level_name(level));
  // Single sequences of several lengths: shorter than the conv kernel, around llama.cpp's
    // 64-token DeltaNet chunk, and 300 tokens (five chunks); libllama decodes each in one batch.
    for (std::size_t len : {std::size_t{3}, std::size_t{17}, std::size_t{65}, std::size_t{130}, std::size_t{300}}) {
      CAPTURE(len);
      std::vector<std::int32_t> toks(all.begin() + 11, all.begin() + 11 + static_cast<std::ptrdiff_t>(len));
      ref.clear();
      const auto z_ref = ref.decode(toks);
      const matrix_f32 z = our_logits(toks, 1, 2);
      REQUIRE(static_cast<std::size_t>(z.rows()) == len);
      const diff_stats d = compare(z.data(), z_ref.data(), len, vocab);
      MESSAGE("len " << len << ": max |diff| " << d.max_abs << ", max |diff|/std " << d.max_rel
                     << ", argmax mismatches " << d.argmax_mismatch);
      CHECK(d.max_rel < 1e-4);
      worst = std::max(worst, d.max_rel);
    }

    // A batch of 3 sequences of 96 tokens through our pass at once; libllama decodes each
    // alone, the last one in two calls (70 + 26 tokens) so its recurrent state and KV cache
    // are carried between ubatches.
    {
      const std::int64_t n_seq = 3, len = 96;
      std::vector<std::int32_t> toks(all.begin() + 200, all.begin() + 200 + n_seq * len);
      const matrix_f32 z = our_logits(toks, n_seq, 2);
      for (std::int64_t s = 0; s < n_seq; ++s) {
        CAPTURE(s);
        std::vector<std::int32_t> seq(toks.begin() + s * len, toks.begin() + (s + 1) * len);
        ref.clear();
        std::vector<float> z_ref;
        if (s < 2) {
          z_ref = ref.decode(seq);
        } else {
          z_ref = ref.decode(std::vector<std::int32_t>(seq.begin(), seq.begin() + 70), 0);
          const auto tail = ref.decode(std::vector<std::int32_t>(seq.begin() + 70, seq.end()), 70);
          z_ref.insert(z_ref.end(), tail.begin(), tail.end());
        }
        const diff_stats d = compare(z.data() + s * len * static_cast<std::int64_t>(vocab), z_ref.data(),
                                     static_cast<std::size_t>(len), vocab);
        MESSAGE("batched seq " << s << ": max |diff| " << d.max_abs << ", max |diff|/std " << d.max_rel);
        CHECK(d.max_rel < 1e-4);
        worst = std::max(worst, d.max_rel);
      }
    }
  }
  MESSAGE("worst max |diff|/std over all rows: " << worst);
}

TEST_CASE("logits are bit-identical for 1, 2 and 3 threads, at every level") {
  std::vector<std::int32_t> toks;
  for (int i = 0; i < 2 * 150; ++i) toks.push_back(static_cast<std::int32_t>((i * 7919 + 13) % 8192));
  matrix_f32 scalar_logits;
  for (simd_level level : levels()) {
  CAPTURE(level);
  simd_override cap(level);
  const matrix_f32 z1 = our_logits(toks, 2, 1);
  // The matrix products (linalg/gemm.hpp) give the scalar reference's bits at every level.
  if (level == simd_level::scalar) scalar_logits = z1;
  CHECK(z1 == scalar_logits);
  const matrix_f32 z2 = our_logits(toks, 2, 2);
  const matrix_f32 z3 = our_logits(toks, 2, 3);
  REQUIRE(z1.size() == z2.size());
  CHECK(std::memcmp(z1.data(), z2.data(), sizeof(float) * static_cast<std::size_t>(z1.size())) == 0);
  CHECK(std::memcmp(z1.data(), z3.data(), sizeof(float) * static_cast<std::size_t>(z1.size())) == 0);
  // Sequences of a batch do not interact: the matrix products sum every output the same
  // way wherever its row sits, so sequence 1 alone gives the same bits.
  const matrix_f32 alone = our_logits(std::vector<std::int32_t>(toks.begin() + 150, toks.end()), 1, 2);
  CHECK(std::memcmp(alone.data(), z1.data() + 150 * 8192, sizeof(float) * static_cast<std::size_t>(alone.size())) == 0);
  }
}

TEST_CASE("the observer sees every linear layer with its input shape") {
  struct recorder : observer {
    struct call {
      int layer;
      std::string name;
      Eigen::Index rows, cols;
      double sum_sq;
    };
    std::vector<call> calls;
    void on_linear(int layer, std::string_view tensor, const matrix_f32& x) override {
      calls.push_back({layer, std::string(tensor), x.rows(), x.cols(), static_cast<double>(x.squaredNorm())});
    }
  } rec;
  const qwen35_config& c = sbgq::test::tiny().config;
  std::vector<std::int32_t> toks;
  for (int i = 0; i < 2 * 10; ++i) toks.push_back(i * 37 % 8192);
  sbgq::test::tensor_map_provider p(sbgq::test::tiny());
  auto z = forward(c, p, toks, 2, &rec, 2, token_range{4, 10});
  REQUIRE(z.has_value());
  CHECK(z->rows() == 2 * 6);

  // Expected sequence of calls and input widths, from the config (qwen35-gguf.md 9).
  std::vector<std::pair<std::string, Eigen::Index>> want;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    if (c.layer_types[static_cast<std::size_t>(l)] == layer_kind::linear_attention) {
      for (const char* n : {"attn_qkv", "attn_gate", "ssm_beta", "ssm_alpha"}) want.push_back({b + n + ".weight", c.hidden_size});
      want.push_back({b + "ssm_out.weight", c.linear_value_dim()});
    } else {
      for (const char* n : {"attn_q", "attn_k", "attn_v"}) want.push_back({b + n + ".weight", c.hidden_size});
      want.push_back({b + "attn_output.weight", c.num_attention_heads * c.head_dim});
    }
    want.push_back({b + "ffn_gate.weight", c.hidden_size});
    want.push_back({b + "ffn_up.weight", c.hidden_size});
    want.push_back({b + "ffn_down.weight", c.intermediate_size});
  }
  want.push_back({"output.weight", c.hidden_size});
  REQUIRE(rec.calls.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(rec.calls[i].name == want[i].first);
    CHECK(rec.calls[i].cols == want[i].second);
    const bool is_head = i + 1 == want.size();
    CHECK(rec.calls[i].rows == (is_head ? 12 : 20));
    CHECK(rec.calls[i].layer == (is_head ? -1 : std::stoi(want[i].first.substr(4))));
    CHECK(rec.calls[i].sum_sq > 0);
  }
  // The observer's X really is the input of the product: recompute the LM head rows.
  // (The last call's X times output^T must give the returned logits.)
  struct last_x : observer {
    matrix_f32 x;
    void on_linear(int layer, std::string_view, const matrix_f32& in) override {
      if (layer == -1) x = in;
    }
  } lx;
  sbgq::test::tensor_map_provider p2(sbgq::test::tiny());
  auto z2 = forward(c, p2, toks, 2, &lx, 1, token_range{4, 10});
  REQUIRE(z2.has_value());
  auto g2 = p2.load_globals();
  REQUIRE(g2.has_value());
  const matrix_f32 recomputed = (lx.x.cast<double>() * g2->lm_head().cast<double>().transpose()).cast<float>();
  CHECK((recomputed - *z2).cwiseAbs().maxCoeff() < 1e-3);
}

TEST_CASE("errors: wrong shapes, wrong kind, bad token ids, bad ranges") {
  const qwen35_config& c = sbgq::test::tiny().config;
  sbgq::test::tensor_map_provider p(sbgq::test::tiny());
  auto g = p.load_globals();
  REQUIRE(g.has_value());

  auto bad_tok = embed(*g, std::vector<std::int32_t>{1, 2, 8192}, 1);
  REQUIRE_FALSE(bad_tok.has_value());
  CHECK(bad_tok.error().code == error_code::bad_value);
  CHECK(bad_tok.error().message() == "[sbgq.forward.bad_value] token 2: id 8192 outside the vocabulary [0, 8192)");
  CHECK(embed(*g, std::vector<std::int32_t>{1, 2, 3}, 2).error().code == error_code::invalid_argument);

  auto act = embed(*g, std::vector<std::int32_t>{1, 2, 3, 4}, 1);
  REQUIRE(act.has_value());
  auto w = p.load_layer(3);
  REQUIRE(w.has_value());
  w->attn_k.conservativeResize(w->attn_k.rows() - 1, Eigen::NoChange);
  auto r = run_layer(c, 3, *w, *act);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.forward.bad_shape] blk.3.attn_k.weight: expected [128 x 256], found [127 x 256]");
  auto w0 = p.load_layer(0);
  CHECK(run_layer(c, 3, *w0, *act).error().code == error_code::invalid_argument);
  CHECK(run_layer(c, 8, *w0, *act).error().code == error_code::invalid_argument);
  CHECK(logits(*g, c, *act, nullptr, 1, token_range{2, 9}).error().code == error_code::invalid_argument);
  CHECK(logits(*g, c, *act, nullptr, 1, token_range{3, 3}).error().code == error_code::invalid_argument);
}

}  // TEST_SUITE
