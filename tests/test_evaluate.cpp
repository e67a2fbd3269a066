// Tests of include/sbgq/evaluate.hpp: llama-perplexity-style perplexity and KL divergence.
//
// Oracles:
//   - libllama's logits for the same chunks of data/eval.txt (tokenized by libllama's
//     llama_tokenize) on the same F32 GGUF of the tiny model: our PPL must equal the
//     PPL computed from them to 0.1%;
//   - the tiny model's README: "PPL (2nd half of each window, llama-perplexity style)"
//     of eval.txt at ctx 256 = 261.8, measured with the bf16 weights in fp32 by torch;
//   - independent straightforward re-computations in this file (two-pass mean/variance
//     of the nll, KL divergence from unquantised double log-softmax rows).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "sbgq/evaluate.hpp"
#include "support/oracle.hpp"
#include "support/tiny_qwen35.hpp"

using namespace sbgq;
using sbgq::test::oracle_model;

namespace {

const std::string& gguf_path() { return sbgq::test::tiny_gguf(SBGQ_TEST_TMP_DIR, "evaluate"); }
std::string tmp(const std::string& name) { return std::string(SBGQ_TEST_TMP_DIR) + "/" + name; }

#if defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

/// log softmax in double, the textbook way.
std::vector<double> log_softmax(const float* z, std::size_t n) {
  double mx = z[0];
  for (std::size_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(z[i]));
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += std::exp(z[i] - mx);
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = z[i] - mx - std::log(s);
  return out;
}

/// A provider that perturbs the tiny model (for non-zero KL divergence).
class perturbed_provider : public sbgq::test::tensor_map_provider {
 public:
  using tensor_map_provider::tensor_map_provider;
  result<layer_weights> load_layer(int l) override {
    auto w = tensor_map_provider::load_layer(l);
    if (w && l == 2) w->ffn_down *= 1.5f;
    return w;
  }
};

}  // namespace

TEST_SUITE("evaluate") {

TEST_CASE("perplexity of eval.txt at ctx 256 equals libllama's and the README figure") {
  oracle_model ref(gguf_path(), oracle_model::options{256, 256, 1, false, true});  // 1 thread: robust on a busy machine
  const std::string text = sbgq::test::detail_tiny::read_text(std::string(SBGQ_SHARED_DIR) + "/data/eval.txt");
  const std::vector<std::int32_t> toks = ref.tokenize(text, false);
  MESSAGE("eval.txt: " << toks.size() << " tokens (README: 117,777)");
  CHECK(toks.size() == 117777);
  const std::int64_t ctx = 256;
  const std::int64_t all_chunks = static_cast<std::int64_t>(toks.size()) / ctx;
  // The first 24 chunks (12 in sanitizer builds) by default, to keep the suite fast;
  // SBGQ_EVAL_CHUNKS=all (or a number) runs more: all 460 chunks take a few minutes of
  // CPU, and only then is the README figure checked.
  std::int64_t n_chunks = sanitized ? 12 : 24;
  if (const char* e = std::getenv("SBGQ_EVAL_CHUNKS"))
    n_chunks = std::string(e) == "all" ? all_chunks : std::clamp<std::int64_t>(std::atoll(e), 2, all_chunks);
  const std::int64_t vocab = 8192, first = ctx / 2, rows = ctx - 1 - first;

  // libllama: decode each chunk from an empty state, score with the same accumulator and
  // save the scored rows as base logits.
  perplexity_accumulator acc(ctx);
  const std::string base_path = tmp("tiny-eval-base.logits");
  auto writer = base_logits_writer::create(base_path, vocab, ctx,
                                           std::span<const std::int32_t>(toks.data(), static_cast<std::size_t>(n_chunks * ctx)));
  REQUIRE(writer.has_value());
  std::vector<float> first_chunk_logits;
  for (std::int64_t c = 0; c < n_chunks; ++c) {
    ref.clear();
    std::vector<std::int32_t> chunk(toks.begin() + c * ctx, toks.begin() + (c + 1) * ctx);
    const std::vector<float> z = ref.decode(chunk);
    const std::span<const float> scored(z.data() + first * vocab, static_cast<std::size_t>(rows * vocab));
    REQUIRE(acc.add_chunk(scored, vocab, chunk).has_value());
    REQUIRE(writer->append_chunk(scored).has_value());
    if (c == 0) first_chunk_logits.assign(scored.begin(), scored.end());
  }
  REQUIRE(writer->commit().has_value());
  const perplexity_result lib = acc.finish();

  // Ours, through evaluate() (2 threads, 8 chunks per batch), compared with the base.
  auto base = base_logits_file::open(base_path);
  REQUIRE_MESSAGE(base.has_value(), base.error().message());
  sbgq::test::tensor_map_provider p(sbgq::test::tiny());
  evaluate_options opt;
  opt.ctx = ctx;
  opt.max_chunks = n_chunks;
  opt.n_threads = 2;
  auto ev = evaluate(sbgq::test::tiny().config, p, toks, opt, nullptr, &*base);
  REQUIRE_MESSAGE(ev.has_value(), ev.error().message());
  const perplexity_result& ours = ev->perplexity;
  MESSAGE("chunks " << n_chunks << ": PPL ours " << ours.ppl << " +/- " << ours.ppl_error << ", libllama " << lib.ppl
                    << " +/- " << lib.ppl_error);
  CHECK(ours.n_chunks == n_chunks);
  CHECK(ours.n_scored == n_chunks * rows);
  CHECK(std::fabs(ours.ppl / lib.ppl - 1) < 1e-3);
  CHECK(std::fabs(ours.ppl_error / lib.ppl_error - 1) < 1e-2);
  REQUIRE(ours.running_ppl.size() == static_cast<std::size_t>(n_chunks));
  CHECK(ours.running_ppl.back() == doctest::Approx(ours.ppl).epsilon(1e-12));
  if (n_chunks == all_chunks) {
    // README: 261.8 (torch, fp32 on the bf16 weights, same tokenization, "2nd half of each
    // window"). Measured here: 261.447 +/- 2.974 for both ours and libllama; the 0.13% gap
    // is within how the README's script may have delimited the half windows (its exact
    // scoring positions are not documented), so this check is loose (0.5%) and the
    // libllama comparison above is the tight one.
    CHECK(std::fabs(ours.ppl / 261.8 - 1) < 5e-3);
  }

  // The accumulator, recomputed independently: nll of the first chunk from a textbook
  // log-softmax, PPL and llama-perplexity's error from a two-pass mean and variance.
  for (std::int64_t i = 0; i < rows; ++i) {
    const auto ls = log_softmax(first_chunk_logits.data() + i * vocab, static_cast<std::size_t>(vocab));
    CHECK(lib.nll[static_cast<std::size_t>(i)] ==
          doctest::Approx(-ls[static_cast<std::size_t>(toks[static_cast<std::size_t>(first + i + 1)])]).epsilon(1e-6));
  }
  double mean = 0;
  for (float v : lib.nll) mean += v;
  mean /= static_cast<double>(lib.nll.size());
  double var = 0;
  for (float v : lib.nll) var += (v - mean) * (v - mean);
  var /= static_cast<double>(lib.nll.size());  // population variance, as llama-perplexity
  const double se = std::sqrt(var / static_cast<double>(lib.nll.size() - 1));
  CHECK(lib.ppl == doctest::Approx(std::exp(mean)).epsilon(1e-6));
  CHECK(lib.ppl_error == doctest::Approx(std::exp(mean) * se).epsilon(1e-4));

  // KL divergence of ours against libllama's saved logits: the same model, so only f32
  // and 16-bit storage noise remains.
  const kld_result& k = ev->kld;
  MESSAGE("KLD ours vs libllama: mean " << k.kld_mean << ", max " << k.kld_max << ", same top " << k.same_top
                                        << ", PPL ratio " << k.ppl_ratio);
  CHECK(k.n == n_chunks * rows);
  CHECK(std::fabs(k.kld_mean) < 1e-6);
  CHECK(k.kld_max < 1e-4);
  CHECK(k.same_top > 0.999);
  CHECK(k.ppl_base == doctest::Approx(lib.ppl).epsilon(1e-5));  // stored target log P is exact f32
  CHECK(std::fabs(k.ppl_ratio - 1) < 1e-3);
}

TEST_CASE("KL divergence of a perturbed model against saved base logits") {
  // 4 chunks of 64 tokens of synthetic ids; base = the tiny model, Q = the model with
  // layer 2's ffn_down scaled by 1.5. Expected values come from full-precision logits.
  const std::int64_t ctx = 64, n_chunks = 4, vocab = 8192, first = ctx / 2, rows = ctx - 1 - first;
  std::vector<std::int32_t> toks;
  for (std::int64_t i = 0; i < ctx * n_chunks; ++i) toks.push_back(static_cast<std::int32_t>((i * 2654435761u) % 8000));
  const qwen35_config& c = sbgq::test::tiny().config;
  sbgq::test::tensor_map_provider pb(sbgq::test::tiny());
  perturbed_provider pq(sbgq::test::tiny());
  auto zb = forward(c, pb, toks, n_chunks, nullptr, 2, token_range{first, ctx - 1});
  auto zq = forward(c, pq, toks, n_chunks, nullptr, 2, token_range{first, ctx - 1});
  REQUIRE(zb.has_value());
  REQUIRE(zq.has_value());

  // Save the base through evaluate(), then evaluate Q against it.
  const std::string path = tmp("kld-base.logits");
  auto w = base_logits_writer::create(path, vocab, ctx, toks);
  REQUIRE(w.has_value());
  evaluate_options opt;
  opt.ctx = ctx;
  opt.batch_chunks = 3;  // batches of 3 + 1 chunks
  opt.n_threads = 2;
  auto eb = evaluate(c, pb, toks, opt, &*w);
  REQUIRE(eb.has_value());
  REQUIRE(w->commit().has_value());
  auto base = base_logits_file::open(path);
  REQUIRE(base.has_value());
  CHECK(base->n_chunks() == n_chunks);
  CHECK(std::equal(toks.begin(), toks.end(), base->tokens().begin()));
  auto eq = evaluate(c, pq, toks, opt, nullptr, &*base);
  REQUIRE_MESSAGE(eq.has_value(), eq.error().message());
  const kld_result& k = eq->kld;

  // Independent expectation from the unquantised logits.
  std::vector<double> kl;
  double s_nll = 0, s_nllb = 0;
  std::int64_t same = 0;
  for (std::int64_t r = 0; r < n_chunks * rows; ++r) {
    const auto lp = log_softmax(zb->data() + r * vocab, static_cast<std::size_t>(vocab));
    const auto lq = log_softmax(zq->data() + r * vocab, static_cast<std::size_t>(vocab));
    double d = 0;
    for (std::int64_t j = 0; j < vocab; ++j) d += std::exp(lp[static_cast<std::size_t>(j)]) * (lp[static_cast<std::size_t>(j)] - lq[static_cast<std::size_t>(j)]);
    kl.push_back(d);
    const auto next = static_cast<std::size_t>(toks[static_cast<std::size_t>((r / rows) * ctx + first + r % rows + 1)]);
    s_nll -= lq[next];
    s_nllb -= lp[next];
    same += std::max_element(lp.begin(), lp.end()) - lp.begin() == std::max_element(lq.begin(), lq.end()) - lq.begin();
  }
  double mean = 0;
  for (double v : kl) mean += v;
  mean /= static_cast<double>(kl.size());
  std::vector<double> sorted = kl;
  std::sort(sorted.begin(), sorted.end());
  const double n = static_cast<double>(kl.size());
  MESSAGE("perturbed model: mean KLD " << k.kld_mean << " (expected " << mean << "), median " << k.kld_median
                                       << ", same top " << k.same_top << "\n" << format_kld_report(k));
  CHECK(mean > 1e-3);  // the perturbation is visible
  CHECK(k.kld_mean == doctest::Approx(mean).epsilon(1e-3));
  CHECK(k.kld_max == doctest::Approx(sorted.back()).epsilon(1e-3));
  CHECK(k.kld_min == doctest::Approx(sorted.front()).epsilon(1e-2).scale(1e-4));
  // Median of an even count: halfway between the two middle values.
  CHECK(k.kld_median == doctest::Approx(0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2])).epsilon(1e-3));
  CHECK(k.ppl == doctest::Approx(std::exp(s_nll / n)).epsilon(1e-6));
  CHECK(k.ppl_base == doctest::Approx(std::exp(s_nllb / n)).epsilon(1e-6));
  CHECK(k.ppl_delta == doctest::Approx(k.ppl - k.ppl_base).epsilon(1e-12));
  CHECK(k.same_top == doctest::Approx(static_cast<double>(same) / n));
  CHECK(eq->perplexity.ppl == doctest::Approx(k.ppl).epsilon(1e-9));
  CHECK(k.nll_correlation > 0.5);
  CHECK(k.nll_correlation <= 1.0 + 1e-9);
  CHECK(k.kld_mean_error > 0);

  // Against itself the base gives KLD ~ 0 (only the 16-bit storage noise).
  auto eb2 = evaluate(c, pb, toks, opt, nullptr, &*base);
  REQUIRE(eb2.has_value());
  CHECK(std::fabs(eb2->kld.kld_mean) < 1e-6);
  CHECK(eb2->kld.same_top == 1.0);
}

TEST_CASE("base logits file: corrupt and incomplete files are rejected") {
  const std::int64_t ctx = 8, vocab = 16;
  std::vector<std::int32_t> toks(2 * ctx, 3);
  const std::string path = tmp("small.logits");
  {
    auto w = base_logits_writer::create(path, vocab, ctx, toks);
    REQUIRE(w.has_value());
    std::vector<float> z(static_cast<std::size_t>((ctx - 1 - ctx / 2) * vocab), 0.5f);
    z[3] = 4.0f;
    REQUIRE(w->append_chunk(z).has_value());
    auto early = w->commit();
    REQUIRE_FALSE(early.has_value());
    CHECK(early.error().message() == "[sbgq.evaluate.invalid_argument] base logits: 1 of 2 chunks written");
    REQUIRE(w->append_chunk(z).has_value());
    CHECK(w->append_chunk(z).error().code == error_code::invalid_argument);
    CHECK(w->append_chunk(std::span<const float>(z.data(), 5)).error().code == error_code::invalid_argument);
    REQUIRE(w->commit().has_value());
  }
  auto f = base_logits_file::open(path);
  REQUIRE(f.has_value());
  base_logits_row row;
  f->row(0, 0, row);
  CHECK(row.top == 3);
  double sum = 0;
  for (double v : row.log_p) sum += std::exp(v);
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(std::exp(row.log_p[3]) == doctest::Approx(std::exp(4.0) / (std::exp(4.0) + 15 * std::exp(0.5))).epsilon(1e-3));

  std::string bytes = sbgq::test::detail_tiny::read_text(path);
  auto write = [&](const std::string& name, const std::string& b) {
    std::ofstream(tmp(name), std::ios::binary) << b;
    return tmp(name);
  };
  auto trunc = base_logits_file::open(write("trunc.logits", bytes.substr(0, bytes.size() - 1)));
  REQUIRE_FALSE(trunc.has_value());
  CHECK(trunc.error().code == error_code::truncated);
  auto longer = base_logits_file::open(write("long.logits", bytes + "x"));
  CHECK(longer.error().code == error_code::bad_range);
  std::string bad = bytes;
  bad[0] = 'X';
  CHECK(base_logits_file::open(write("magic.logits", bad)).error().code == error_code::bad_magic);
  std::string badctx = bytes;
  badctx[16] = 1;  // first != ctx / 2
  CHECK(base_logits_file::open(write("ctx.logits", badctx)).error().code == error_code::bad_value);
  CHECK(base_logits_file::open(write("short.logits", bytes.substr(0, 20))).error().code == error_code::truncated);

  // Non-finite logits (a NaN weight) are an error, never "PPL = nan".
  {
    perplexity_accumulator acc(4);  // scores 1 row per chunk of 4 tokens
    std::vector<float> z(16, 0.5f);
    z[7] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<std::int32_t> chunk = {1, 2, 3, 4};
    auto r = acc.add_chunk(z, 16, chunk);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message() == "[sbgq.evaluate.not_finite] chunk 0, position 2: the logits are not finite "
                                 "(NaN or infinity in the model's weights?)");
    sbgq::kld_accumulator k;
    CHECK(k.add(z, row, 3).error().code == error_code::not_finite);
  }

  // evaluate() refuses too few tokens and a base saved for other tokens.
  sbgq::test::tensor_map_provider p(sbgq::test::tiny());
  evaluate_options opt;
  opt.ctx = 8;
  auto few = evaluate(sbgq::test::tiny().config, p, std::vector<std::int32_t>(15, 1), opt);
  REQUIRE_FALSE(few.has_value());
  CHECK(few.error().message() ==
        "[sbgq.evaluate.invalid_argument] perplexity needs ctx >= 4 and at least 2 * ctx = 16 tokens, got 15");
}

}  // TEST_SUITE
