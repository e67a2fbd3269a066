// Q8_0 (codec/q8_0.hpp) against llama.cpp, plus golden blocks from the format text.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <sbgq/codec/q8_0.hpp>

#include "codec/codec_oracle_check.hpp"

using namespace sbgq;
using namespace sbgq::test;

TEST_SUITE("codec") {

TEST_CASE("q8_0: bytes equal llama.cpp's on every distribution, with and without weights") {
  check_type_against_oracle(ggml_type::q8_0, 32768);
}

TEST_CASE("q8_0: decoding random blocks equals dequantize_row_q8_0 bit for bit") {
  const std::size_t nb = 4096;
  const auto blocks = random_blocks(ggml_type::q8_0, nb, 7);
  std::vector<float> want(nb * 32);
  oracle_dequantize(ggml_type::q8_0, blocks.data(), want.data(), want.size());
  for_each_level([&](simd_level level) {
    std::vector<float> got(nb * 32);
    find_codec(ggml_type::q8_0)->dequantize_row(level, reinterpret_cast<const std::byte*>(blocks.data()), got.data(),
                                                got.size());
    CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
  });
}

TEST_CASE("q8_0: golden blocks from the format description") {
  // Blocks doc 2: offset 0 fp16 d, then 32 int8; y[j] = qs[j] * d. Every int8 value
  // with d = 0.5 (0x3800).
  std::vector<block_q8_0> b(8);
  for (int k = 0; k < 8; ++k) {
    b[static_cast<std::size_t>(k)].d = f16{0x3800};
    for (int j = 0; j < 32; ++j) b[static_cast<std::size_t>(k)].qs[j] = static_cast<std::int8_t>(k * 32 + j - 128);
  }
  std::vector<float> y(256);
  REQUIRE(dequantize_q8_0(b, y).has_value());
  for (int i = 0; i < 256; ++i) CHECK(y[static_cast<std::size_t>(i)] == static_cast<float>(i - 128) * 0.5f);

  // Algorithms doc 7: an all-zero block is 34 zero bytes; a block whose largest |x| is
  // 127 gets d = 1.0 (0x3C00) and q = x exactly (roundf of exact integers).
  std::vector<float> x(64, 0.0f);
  for (int j = 0; j < 32; ++j) x[32 + static_cast<std::size_t>(j)] = static_cast<float>(j * 8 - 127);
  x[63] = 127.0f;
  std::vector<block_q8_0> q(2);
  REQUIRE(quantize_q8_0(x, q).has_value());
  std::uint8_t zero[34] = {};
  CHECK(std::memcmp(&q[0], zero, 34) == 0);
  CHECK(q[1].d.bits == 0x3C00);
  for (int j = 0; j < 31; ++j) CHECK(q[1].qs[j] == j * 8 - 127);
  CHECK(q[1].qs[31] == 127);
  // roundf rounds ties away from zero: 0.5 * id with id = 1 -> 1, -2.5 -> -3.
  x[33] = 0.5f;
  x[34] = -2.5f;
  REQUIRE(quantize_q8_0(x, q).has_value());
  CHECK(q[1].qs[1] == 1);
  CHECK(q[1].qs[2] == -3);
}

TEST_CASE("q8_0: size and finiteness errors") {
  std::vector<float> x(64, 1.0f);
  std::vector<block_q8_0> q(2);
  auto r = quantize_q8_0(std::span<const float>(x).first(60), q);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::size_mismatch);
  CHECK(r.error().message() == "[sbgq.codec.size_mismatch] q8_0: the input has 60 floats, not a multiple of the block size 32");
  r = quantize_q8_0(x, std::span<block_q8_0>(q).first(1));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::size_mismatch);
  x[37] = std::nanf("");
  r = quantize_q8_0(x, q);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::not_finite);
  CHECK(r.error().message() == "[sbgq.codec.not_finite] q8_0: row 0 column 37 of the input is nan");
  std::vector<float> y(32);
  CHECK(dequantize_q8_0(q, y).error().code == error_code::size_mismatch);
}

}  // TEST_SUITE
