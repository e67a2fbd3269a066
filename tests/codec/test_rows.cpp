// The registry (codec/registry.hpp) and the row-parallel matrix API (codec/rows.hpp):
// ggml_quantize_chunk equality for every codec, thread-count independence, plain types,
// and the documented errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <sbgq/codec/registry.hpp>
#include <sbgq/codec/rows.hpp>

#include "codec/codec_oracle_check.hpp"

using namespace sbgq;
using namespace sbgq::test;

namespace {
std::vector<float> matrix(std::size_t nrows, std::size_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> x(nrows * n);
  for (auto& v : x) v = r.normal() * (r.uniform() < 0.01 ? 20.0f : 0.5f);
  return x;
}
}  // namespace

TEST_SUITE("codec") {

TEST_CASE("registry: geometry equals the oracle's, weights usage per format") {
  auto& o = oracle();
  std::size_t n = 0;
  for (const codec_traits& c : all_codecs()) {
    CAPTURE(c.name);
    CHECK(static_cast<std::int64_t>(c.block_values) == o.ggml_blck_size(static_cast<int>(c.type)));
    CHECK(c.block_bytes == o.ggml_type_size(static_cast<int>(c.type)));
    CHECK(c.name == std::string_view(o.ggml_type_name(static_cast<int>(c.type))));
    CHECK(find_codec(c.type) == &c);
    ++n;
  }
  CHECK(n == 12);
  CHECK(find_codec(ggml_type::q4_0) == nullptr);
  CHECK(find_codec(ggml_type::q4_k)->uses_weights);
  CHECK(find_codec(ggml_type::iq4_nl)->uses_weights);
  CHECK_FALSE(find_codec(ggml_type::q8_0)->uses_weights);
  CHECK_FALSE(find_codec(ggml_type::f16)->uses_weights);
}

TEST_CASE("quantize_rows: equals ggml_quantize_chunk and is identical for 1, 2 and 3 threads") {
  const std::size_t nrows = 37, n = 1024;
  const auto x = matrix(nrows, n, 5);
  const auto w = weight_sets(n, 6)[2];
  for (const codec_traits& c : all_codecs()) {
    if (c.type == ggml_type::q8_k) continue;  // not accepted by ggml_quantize_chunk
    CAPTURE(c.name);
    for (const float* weights : {static_cast<const float*>(nullptr), w.data()}) {
      CAPTURE(weights != nullptr);
      std::vector<std::uint8_t> want(nrows * c.row_bytes(n));
      REQUIRE(oracle().ggml_quantize_chunk(static_cast<int>(c.type), x.data(), want.data(), 0,
                                           static_cast<std::int64_t>(nrows), static_cast<std::int64_t>(n),
                                           weights) == want.size());
      std::vector<std::vector<std::byte>> outs;
      for (int threads : {1, 2, 3}) {
        std::vector<std::byte> dst(want.size(), std::byte{0xEE});
        auto r = quantize_rows(c.type, x.data(), nrows, n, weights, dst, threads);
        REQUIRE(r.has_value());
        outs.push_back(std::move(dst));
      }
      CHECK(std::memcmp(outs[0].data(), want.data(), want.size()) == 0);
      CHECK(outs[0] == outs[1]);
      CHECK(outs[0] == outs[2]);
      // and back: dequantize_rows equals the oracle's row decoder (or plain conversion)
      for (int threads : {1, 3}) {
        std::vector<float> y(nrows * n), yo(nrows * n);
        REQUIRE(dequantize_rows(c.type, std::as_bytes(std::span(want)), nrows, n, y, threads).has_value());
        if (c.type == ggml_type::f32) {
          std::memcpy(yo.data(), want.data(), want.size());
        } else if (c.type == ggml_type::f16) {
          oracle().ggml_fp16_to_fp32_row(reinterpret_cast<const std::uint16_t*>(want.data()), yo.data(),
                                         static_cast<std::int64_t>(yo.size()));
        } else if (c.type == ggml_type::bf16) {
          oracle().ggml_bf16_to_fp32_row(reinterpret_cast<const std::uint16_t*>(want.data()), yo.data(),
                                         static_cast<std::int64_t>(yo.size()));
        } else {
          for (std::size_t r = 0; r < nrows; ++r)
            oracle_dequantize(c.type, want.data() + r * c.row_bytes(n), yo.data() + r * n, n);
        }
        CHECK(std::memcmp(y.data(), yo.data(), y.size() * 4) == 0);
      }
    }
  }
}

TEST_CASE("without weights the codecs equal quantize_row_<fmt>_ref (all but IQ4_NL)") {
  // Algorithms doc 2: quantize_<fmt>(imatrix = NULL) runs the _ref function for these
  // formats; IQ4_NL's _ref is a search-free variant that ggml_quantize_chunk never uses.
  auto& o = oracle();
  const std::size_t n = 4096;
  const auto x = matrix(1, n, 17);
  struct item {
    ggml_type t;
    void (*ref)(const float*, void*, std::int64_t);
  };
  for (const item& it : {item{ggml_type::q8_0, o.quantize_row_q8_0_ref}, item{ggml_type::q2_k, o.quantize_row_q2_K_ref},
                         item{ggml_type::q3_k, o.quantize_row_q3_K_ref}, item{ggml_type::q4_k, o.quantize_row_q4_K_ref},
                         item{ggml_type::q5_k, o.quantize_row_q5_K_ref}, item{ggml_type::q6_k, o.quantize_row_q6_K_ref},
                         item{ggml_type::q8_k, o.quantize_row_q8_K_ref},
                         item{ggml_type::iq4_xs, o.quantize_row_iq4_xs_ref}}) {
    CAPTURE(type_name(it.t));
    std::vector<std::uint8_t> want(row_size(it.t, n));
    it.ref(x.data(), want.data(), static_cast<std::int64_t>(n));
    std::vector<std::byte> got(want.size());
    REQUIRE(quantize_rows(it.t, x.data(), 1, n, nullptr, got, 1).has_value());
    CHECK(std::memcmp(got.data(), want.data(), want.size()) == 0);
  }
}

TEST_CASE("quantize_rows: a misaligned destination gives the same bytes") {
  const std::size_t nrows = 3, n = 512;
  const auto x = matrix(nrows, n, 9);
  for (ggml_type t : {ggml_type::q4_k, ggml_type::iq4_xs, ggml_type::f16, ggml_type::q8_k}) {
    CAPTURE(type_name(t));
    const std::size_t bytes = nrows * row_size(t, n);
    std::vector<std::byte> a(bytes), b(bytes + 1);
    REQUIRE(quantize_rows(t, x.data(), nrows, n, nullptr, a, 1).has_value());
    REQUIRE(quantize_rows(t, x.data(), nrows, n, nullptr, std::span(b).subspan(1), 2).has_value());
    CHECK(std::memcmp(a.data(), b.data() + 1, bytes) == 0);
  }
}

TEST_CASE("quantize_rows: errors name the row and column, sizes are checked") {
  const std::size_t nrows = 5, n = 256;
  auto x = matrix(nrows, n, 3);
  std::vector<std::byte> dst(nrows * 144);
  // Two bad values: the lowest row is reported, whatever the thread count.
  x[4 * n + 3] = INFINITY;
  x[2 * n + 17] = std::nanf("");
  for (int threads : {1, 3}) {
    auto r = quantize_rows(ggml_type::q4_k, x.data(), nrows, n, nullptr, dst, threads);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == error_code::not_finite);
    CHECK(r.error().message() == "[sbgq.codec.not_finite] q4_K: row 2 column 17 of the input is nan");
  }
  x[2 * n + 17] = 0.0f;
  auto r = quantize_rows(ggml_type::q4_k, x.data(), nrows, n, nullptr, dst, 2);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.codec.not_finite] q4_K: row 4 column 3 of the input is inf");
  x[4 * n + 3] = 1.0f;

  std::vector<float> w(n, 1.0f);
  w[200] = -INFINITY;
  r = quantize_rows(ggml_type::iq4_xs, x.data(), nrows, n, w.data(), std::span(dst).first(nrows * 136), 1);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.codec.not_finite] iq4_xs: row 0 column 200 of the importance weights is inf");

  r = quantize_rows(ggml_type::q4_k, x.data(), nrows, n, nullptr, std::span(dst).first(nrows * 144 - 1), 1);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.codec.size_mismatch] q4_K: the output has 719 bytes, 5 rows of 256 need 720");
  r = quantize_rows(ggml_type::q4_k, x.data(), 1, 1000, nullptr, dst, 1);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() ==
        "[sbgq.codec.size_mismatch] q4_K: a row of 1000 elements is not a multiple of the block size 256");
  r = quantize_rows(ggml_type::q4_0, x.data(), nrows, n, nullptr, dst, 1);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::unsupported);
  r = quantize_rows(ggml_type::q4_k, x.data(), std::size_t{1} << 62, 256, nullptr, dst, 1);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::overflow);

  std::vector<float> y(nrows * n);
  auto d = dequantize_rows(ggml_type::q6_k, std::as_bytes(std::span(dst)), nrows, n, y, 1);
  REQUIRE_FALSE(d.has_value());
  CHECK(d.error().message() == "[sbgq.codec.size_mismatch] q6_K: the input has 720 bytes, 5 rows of 256 need 1050");
  CHECK(dequantize_rows(ggml_type::q4_k, std::as_bytes(std::span(dst)), nrows, n, std::span(y).first(10), 1)
            .error()
            .code == error_code::size_mismatch);
  // zero rows: nothing to do, not an error
  CHECK(quantize_rows(ggml_type::q4_k, nullptr, 0, 256, nullptr, {}, 2).has_value());
}

}  // TEST_SUITE
