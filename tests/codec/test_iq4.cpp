// IQ4_NL and IQ4_XS (codec/iq4.hpp) against llama.cpp, plus the exhaustive golden test
// of all 16 codebook indices x 64 six-bit scales and the golden all-zero blocks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <sbgq/codec/iq4.hpp>

#include "codec/codec_oracle_check.hpp"

using namespace sbgq;
using namespace sbgq::test;

namespace {
// kvalues_iq4nl typed from the blocks doc section 8 table (not from sbgq's tables.hpp).
constexpr int spec_kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
}  // namespace

TEST_SUITE("codec") {

TEST_CASE("iq4_nl/iq4_xs: bytes equal llama.cpp's on every distribution, with and without weights") {
  for (ggml_type t : {ggml_type::iq4_nl, ggml_type::iq4_xs}) {
    CAPTURE(type_name(t));
    check_type_against_oracle(t, 16384);
  }
}

TEST_CASE("iq4: decoding random blocks equals dequantize_row_* bit for bit") {
  for (ggml_type t : {ggml_type::iq4_nl, ggml_type::iq4_xs}) {
    CAPTURE(type_name(t));
    const std::size_t n = 2048 * 256;
    const auto blocks = random_blocks(t, n / block_size(t), 21 + static_cast<std::uint64_t>(t));
    std::vector<float> want(n);
    oracle_dequantize(t, blocks.data(), want.data(), n);
    for_each_level([&](simd_level level) {
      std::vector<float> got(n);
      find_codec(t)->dequantize_row(level, reinterpret_cast<const std::byte*>(blocks.data()), got.data(), n);
      CHECK(std::memcmp(got.data(), want.data(), n * 4) == 0);
    });
  }
}

TEST_CASE("iq4_xs: all 16 indices x 64 six-bit scales at every 32-block, decoded by hand") {
  // Blocks doc 9: block ib's scale ls = low nibble ib%2 of scales_l[ib/2] | bits 2ib..2ib+1
  // of scales_h << 4; qs[16ib + j] low nibble = weight 32ib+j, high = 32ib+16+j;
  // y = (d * (ls - 32)) * kvalues[idx]. d = 0.5 (0x3800) keeps every product exact.
  // Each test block puts scale ls and index idx (low nibbles) / 15 - idx (high nibbles)
  // into 32-block ib, and scale 32 (zero) into the others.
  std::vector<block_iq4_xs> blocks;
  for (int ib = 0; ib < 8; ++ib)
    for (int ls = 0; ls < 64; ++ls)
      for (int idx = 0; idx < 16; ++idx) {
        std::uint8_t raw[136] = {};
        const std::uint16_t d = 0x3800;
        std::memcpy(raw, &d, 2);
        std::uint16_t sh = 0;
        for (int k = 0; k < 8; ++k) {
          const int code = k == ib ? ls : 32;
          raw[4 + k / 2] = static_cast<std::uint8_t>(raw[4 + k / 2] | ((code & 15) << (4 * (k % 2))));
          sh = static_cast<std::uint16_t>(sh | ((code >> 4) << (2 * k)));
        }
        std::memcpy(raw + 2, &sh, 2);
        for (int j = 0; j < 16; ++j) raw[8 + 16 * ib + j] = static_cast<std::uint8_t>(idx | ((15 - idx) << 4));
        block_iq4_xs b;
        std::memcpy(&b, raw, 136);
        blocks.push_back(b);
      }
  std::vector<float> y(blocks.size() * 256), o(y.size());
  REQUIRE(dequantize_iq4_xs(blocks, y).has_value());
  oracle_dequantize(ggml_type::iq4_xs, blocks.data(), o.data(), o.size());
  CHECK(std::memcmp(y.data(), o.data(), y.size() * 4) == 0);
  std::size_t bad = 0, k = 0;
  for (int ib = 0; ib < 8; ++ib)
    for (int ls = 0; ls < 64; ++ls)
      for (int idx = 0; idx < 16; ++idx, ++k)
        for (int i = 0; i < 256; ++i) {
          float want = 0.0f;
          if (i / 32 == ib) {
            const int id = (i % 32) < 16 ? idx : 15 - idx;
            want = 0.5f * static_cast<float>(ls - 32) * static_cast<float>(spec_kvalues[id]);
          } else {
            // other blocks: scale code 32 -> dl = 0, so 0 * kvalues[0] = -0.0 (index 0 is
            // negative): compare as values, -0 == 0.
            want = 0.0f;
          }
          bad += y[k * 256 + static_cast<std::size_t>(i)] != want;
        }
  CHECK(bad == 0);
}

TEST_CASE("iq4_nl: all 16 indices in both nibbles, decoded by hand") {
  // Blocks doc 8: y = d * kvalues[idx]; low nibble of qs[j] is weight j, high nibble j+16.
  std::vector<block_iq4_nl> blocks(16 * 3);
  const std::uint16_t ds[3] = {0x3800, 0xBC00, 0x0001};  // 0.5, -1.0, smallest subnormal
  for (int s = 0; s < 3; ++s)
    for (int idx = 0; idx < 16; ++idx) {
      block_iq4_nl& b = blocks[static_cast<std::size_t>(16 * s + idx)];
      b.d = f16{ds[s]};
      for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<std::uint8_t>(idx | ((15 - idx) << 4));
    }
  std::vector<float> y(blocks.size() * 32);
  REQUIRE(dequantize_iq4_nl(blocks, y).has_value());
  const float dv[3] = {0.5f, -1.0f, std::ldexp(1.0f, -24)};
  std::size_t bad = 0;
  for (int s = 0; s < 3; ++s)
    for (int idx = 0; idx < 16; ++idx)
      for (int i = 0; i < 32; ++i) {
        const int id = i < 16 ? idx : 15 - idx;
        bad += y[static_cast<std::size_t>((16 * s + idx) * 32 + i)] != dv[s] * static_cast<float>(spec_kvalues[id]);
      }
  CHECK(bad == 0);
}

TEST_CASE("iq4: golden all-zero blocks (algorithms doc 11)") {
  std::vector<float> zeros(256, 0.0f);
  // IQ4_NL all-zero block: d = 0x0000 and every nibble 8 (the level +1): 00 00 88 .. 88.
  std::vector<block_iq4_nl> nl(8);
  REQUIRE(quantize_iq4_nl(zeros, nl).has_value());
  for (const auto& b : nl) {
    CHECK(b.d.bits == 0x0000);
    for (int j = 0; j < 16; ++j) CHECK(b.qs[j] == 0x88);
  }
  // IQ4_XS all-zero super-block: D = -0.0/32 -> d = 0x8000; every l = 0, stored 32:
  // scales_l 0, scales_h 0xAAAA; nibbles 8.
  std::vector<block_iq4_xs> xs(1);
  REQUIRE(quantize_iq4_xs(zeros, xs).has_value());
  CHECK(xs[0].d.bits == 0x8000);
  CHECK(xs[0].scales_h == 0xAAAA);
  for (int k = 0; k < 4; ++k) CHECK(xs[0].scales_l[k] == 0);
  for (int j = 0; j < 128; ++j) CHECK(xs[0].qs[j] == 0x88);
  // A zero 32-block inside a non-zero super-block: l = 0 (stored 32), nibbles 8.
  for (int i = 32; i < 256; ++i) zeros[static_cast<std::size_t>(i)] = std::sin(static_cast<float>(i));
  REQUIRE(quantize_iq4_xs(zeros, xs).has_value());
  const int ls0 = (xs[0].scales_l[0] & 15) | ((xs[0].scales_h & 3) << 4);
  CHECK(ls0 == 32);
  for (int j = 0; j < 16; ++j) CHECK(xs[0].qs[j] == 0x88);
}

TEST_CASE("iq4: size and finiteness errors") {
  std::vector<float> x(256, 0.25f);
  std::vector<block_iq4_xs> q(1);
  std::vector<float> w(256, 1.0f);
  w[5] = std::nanf("");
  auto r = quantize_iq4_xs(x, q, w);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.codec.not_finite] iq4_xs: row 0 column 5 of the importance weights is nan");
  std::vector<block_iq4_nl> n(7);
  r = quantize_iq4_nl(x, n);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.codec.size_mismatch] iq4_nl: 256 floats need 8 blocks of 32, the block buffer has 7");
}

}  // TEST_SUITE
