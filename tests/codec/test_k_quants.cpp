// Q2_K..Q6_K and Q8_K (codec/k_quants.hpp) against llama.cpp, plus exhaustive golden
// tests of every packed sub-block scale code, decoded by hand from the blocks doc.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <sbgq/codec/k_quants.hpp>
#include <sbgq/codec/rows.hpp>

#include "codec/codec_oracle_check.hpp"

using namespace sbgq;
using namespace sbgq::test;

namespace {

// fp16 constants used by the golden blocks: exact binary fractions, so every expected
// value below is exact and the order of the float operations cannot matter.
constexpr std::uint16_t h_half = 0x3800;     // 0.5
constexpr std::uint16_t h_quarter = 0x3400;  // 0.25

void put_u16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }

std::vector<float> decode(ggml_type t, const std::vector<std::uint8_t>& blocks) {
  const std::size_t n = blocks.size() / type_size(t) * block_size(t);
  std::vector<float> y(n);
  auto r = dequantize_rows(t, std::as_bytes(std::span(blocks)), 1, n, y);
  REQUIRE(r.has_value());
  // the oracle must agree on these hand-made blocks as well
  std::vector<float> o(n);
  oracle_dequantize(t, blocks.data(), o.data(), n);
  CHECK(std::memcmp(y.data(), o.data(), n * 4) == 0);
  return y;
}

}  // namespace

TEST_SUITE("codec") {

TEST_CASE("k-quants: bytes equal llama.cpp's on every distribution, with and without weights") {
  for (ggml_type t : {ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k,
                      ggml_type::q8_k}) {
    CAPTURE(type_name(t));
    check_type_against_oracle(t, 24576);
  }
}

TEST_CASE("k-quants: decoding random blocks equals dequantize_row_* bit for bit") {
  for (ggml_type t : {ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k,
                      ggml_type::q8_k}) {
    CAPTURE(type_name(t));
    const std::size_t nb = 2000;
    const auto blocks = random_blocks(t, nb, 11 + static_cast<std::uint64_t>(t));
    std::vector<float> want(nb * 256);
    oracle_dequantize(t, blocks.data(), want.data(), want.size());
    for_each_level([&](simd_level level) {
      std::vector<float> got(nb * 256);
      find_codec(t)->dequantize_row(level, reinterpret_cast<const std::byte*>(blocks.data()), got.data(), got.size());
      CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
    });
  }
}

TEST_CASE("q4_k/q5_k: all 64 x 64 scale/min codes at every sub-block, decoded by hand") {
  // Blocks doc 3.1, written here bit by bit from the text (independent of sbgq's packer):
  //   j < 4 : scales[j] bits 0-5 = sc, scales[j+4] bits 0-5 = m
  //   j >= 4: scales[j+4] bits 0-3 = sc & 15, bits 4-7 = m & 15,
  //           scales[j-4] bits 6-7 = sc >> 4, scales[j] bits 6-7 = m >> 4
  // Quants: every byte 0xA5 (low nibble 5, high 10); Q5_K with qh bytes 0x55 (the low-half
  // weight of every chunk has its fifth bit set, the high-half weight not).
  for (ggml_type t : {ggml_type::q4_k, ggml_type::q5_k}) {
    CAPTURE(type_name(t));
    const bool q5 = t == ggml_type::q5_k;
    const std::size_t bb = type_size(t);
    std::vector<std::uint8_t> blocks(8 * 64 * 64 * bb, 0);
    std::size_t k = 0;
    for (int j = 0; j < 8; ++j)
      for (int sc = 0; sc < 64; ++sc)
        for (int m = 0; m < 64; ++m, ++k) {
          std::uint8_t* b = blocks.data() + k * bb;
          put_u16(b + 0, h_half);
          put_u16(b + 2, h_quarter);
          std::uint8_t* s = b + 4;
          if (j < 4) {
            s[j] = static_cast<std::uint8_t>(sc);
            s[j + 4] = static_cast<std::uint8_t>(m);
          } else {
            s[j + 4] = static_cast<std::uint8_t>((sc & 15) | ((m & 15) << 4));
            s[j - 4] = static_cast<std::uint8_t>(s[j - 4] | ((sc >> 4) << 6));
            s[j] = static_cast<std::uint8_t>(s[j] | ((m >> 4) << 6));
          }
          if (q5) std::memset(b + 16, 0x55, 32);
          std::memset(b + (q5 ? 48 : 16), 0xA5, 128);
        }
    const auto y = decode(t, blocks);
    std::size_t bad = 0;
    k = 0;
    for (int j = 0; j < 8; ++j)
      for (int sc = 0; sc < 64; ++sc)
        for (int m = 0; m < 64; ++m, ++k)
          for (int i = 0; i < 32; ++i) {
            const bool high_half = (j % 2) == 1;  // sub-block 2c+1 uses the high nibbles
            int q = high_half ? 10 : 5;
            if (q5 && !high_half) q += 16;
            const float want = 0.5f * static_cast<float>(sc) * static_cast<float>(q) - 0.25f * static_cast<float>(m);
            bad += y[k * 256 + static_cast<std::size_t>(32 * j + i)] != want;
          }
    CHECK(bad == 0);
  }
}

TEST_CASE("q3_k: all 64 six-bit scale codes at every sub-block, decoded by hand") {
  // Blocks doc 7: S_j low 4 bits in scales[j] (j < 8) or the high half of scales[j-8];
  // high 2 bits in scales[8 + j%4] at bits 2*(j/4). Signed scale S - 32. Quants: qs all
  // 0xE4 (fields 0,1,2,3 for the four 32-weight groups of a half); hmask bit set for
  // even weights' groups... here hmask bytes 0x0F: weights 0..127 have the high bit set
  // (no -4), weights 128..255 do not.
  const std::size_t bb = 110;
  std::vector<std::uint8_t> blocks(16 * 64 * bb, 0);
  std::size_t k = 0;
  for (int j = 0; j < 16; ++j)
    for (int S = 0; S < 64; ++S, ++k) {
      std::uint8_t* b = blocks.data() + k * bb;
      std::memset(b, 0x0F, 32);
      std::memset(b + 32, 0xE4, 64);
      std::uint8_t* s = b + 96;
      for (int jj = 0; jj < 16; ++jj) {  // every other sub-block: code 32 (scale 0)
        const int code = jj == j ? S : 32;
        if (jj < 8) s[jj] = static_cast<std::uint8_t>(s[jj] | (code & 15));
        else s[jj - 8] = static_cast<std::uint8_t>(s[jj - 8] | ((code & 15) << 4));
        s[8 + jj % 4] = static_cast<std::uint8_t>(s[8 + jj % 4] | ((code >> 4) << (2 * (jj / 4))));
      }
      put_u16(b + 108, h_half);
    }
  const auto y = decode(ggml_type::q3_k, blocks);
  std::size_t bad = 0;
  k = 0;
  for (int j = 0; j < 16; ++j)
    for (int S = 0; S < 64; ++S, ++k)
      for (int i = 0; i < 256; ++i) {
        const int sc = (i / 16 == j) ? S - 32 : 0;
        const int q2 = (i % 128) / 32;  // 0xE4 = fields 0,1,2,3
        const int q = q2 - (i < 128 ? 0 : 4);
        const float want = 0.5f * static_cast<float>(sc) * static_cast<float>(q);
        bad += y[k * 256 + static_cast<std::size_t>(i)] != want;
      }
  CHECK(bad == 0);
}

TEST_CASE("q6_k: all 256 int8 scales at every sub-block; q2_k: all 256 scale/min bytes") {
  {
    // Blocks doc 5: q = (low | high << 4) - 32. ql bytes 0x3C (low nibble 12, high 3),
    // qh bytes 0x1B (bit pairs 3,2,1,0): weight 128h + 32g + l has low nibble 12 (g even)
    // or 3 (g odd) and high bits (3,2,1,0)[g].
    std::vector<std::uint8_t> blocks(16 * 256 * 210, 0);
    std::size_t k = 0;
    for (int j = 0; j < 16; ++j)
      for (int s = -128; s < 128; ++s, ++k) {
        std::uint8_t* b = blocks.data() + k * 210;
        std::memset(b, 0x3C, 128);
        std::memset(b + 128, 0x1B, 64);
        b[192 + j] = static_cast<std::uint8_t>(s);
        put_u16(b + 208, h_quarter);
      }
    const auto y = decode(ggml_type::q6_k, blocks);
    std::size_t bad = 0;
    k = 0;
    for (int j = 0; j < 16; ++j)
      for (int s = -128; s < 128; ++s, ++k)
        for (int i = 0; i < 256; ++i) {
          const int g = (i % 128) / 32;
          const int low = (g == 0 || g == 1) ? 12 : 3;  // g 0,1 low nibbles; 2,3 high nibbles
          const int high = 3 - g;
          const int q = (low | (high << 4)) - 32;
          const int sc = (i / 16 == j) ? s : 0;
          bad += y[k * 256 + static_cast<std::size_t>(i)] != 0.25f * static_cast<float>(sc) * static_cast<float>(q);
        }
    CHECK(bad == 0);
  }
  {
    // Blocks doc 6: scales[j] = s | m << 4; y = (d*s)*q - (dmin*m); qs bytes 0x1B give
    // q = 3,2,1,0 for the four 32-weight groups of each half.
    std::vector<std::uint8_t> blocks(16 * 256 * 84, 0);
    std::size_t k = 0;
    for (int j = 0; j < 16; ++j)
      for (int v = 0; v < 256; ++v, ++k) {
        std::uint8_t* b = blocks.data() + k * 84;
        b[j] = static_cast<std::uint8_t>(v);
        std::memset(b + 16, 0x1B, 64);
        put_u16(b + 80, h_half);
        put_u16(b + 82, h_quarter);
      }
    const auto y = decode(ggml_type::q2_k, blocks);
    std::size_t bad = 0;
    k = 0;
    for (int j = 0; j < 16; ++j)
      for (int v = 0; v < 256; ++v, ++k)
        for (int i = 0; i < 256; ++i) {
          const int q = 3 - (i % 128) / 32;
          const int s = (i / 16 == j) ? (v & 15) : 0, m = (i / 16 == j) ? (v >> 4) : 0;
          const float want = 0.5f * static_cast<float>(s) * static_cast<float>(q) - 0.25f * static_cast<float>(m);
          bad += y[k * 256 + static_cast<std::size_t>(i)] != want;
        }
    CHECK(bad == 0);
  }
}

TEST_CASE("k-quants: golden all-zero super-blocks and a hand-checkable q6_k block") {
  std::vector<float> zeros(256, 0.0f);
  // Algorithms doc 10.2: an all-zero Q6_K super-block is 210 zero bytes.
  std::vector<block_q6_k> q6(1);
  REQUIRE(quantize_q6_k(zeros, q6).has_value());
  std::vector<std::uint8_t> z(210, 0);
  CHECK(std::memcmp(q6.data(), z.data(), 210) == 0);
  // Q8_K (blocks doc 12): x = i - 128; the largest |x| is x[0] = -128, so iscale =
  // -127/-128 = 0.9921875 (exact), q = nearest(0.9921875 * x), d = 1/iscale.
  std::vector<float> x(256);
  for (int i = 0; i < 256; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i - 128);
  std::vector<block_q8_k> q8(1);
  REQUIRE(quantize_q8_k(x, q8).has_value());
  CHECK(q8[0].qs[0] == -127);
  CHECK(q8[0].qs[128] == 0);
  CHECK(q8[0].qs[255] == 126);  // 127 * 0.9921875 = 126.0078
  CHECK(q8[0].d == 1.0f / 0.9921875f);
  int s0 = 0;
  for (int i = 0; i < 16; ++i) s0 += q8[0].qs[i];
  CHECK(q8[0].bsums[0] == s0);
}

TEST_CASE("k-quants: size and finiteness errors name the format, row and column") {
  std::vector<float> x(512, 0.5f);
  std::vector<block_q4_k> q(2);
  auto r = quantize_q4_k(std::span<const float>(x).first(300), q);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.codec.size_mismatch] q4_K: the input has 300 floats, not a multiple of the block size 256");
  r = quantize_q4_k(x, std::span<block_q4_k>(q).first(1));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message() == "[sbgq.codec.size_mismatch] q4_K: 512 floats need 2 blocks of 256, the block buffer has 1");
  std::vector<float> w(511, 1.0f);
  r = quantize_q4_k(x, q, w);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::size_mismatch);
  w.resize(512, 1.0f);
  w[300] = INFINITY;
  std::vector<block_q5_k> q5(2);
  auto r5 = quantize_q5_k(x, q5, w);
  REQUIRE_FALSE(r5.has_value());
  CHECK(r5.error().message() == "[sbgq.codec.not_finite] q5_K: row 0 column 300 of the importance weights is inf");
  x[257] = -INFINITY;
  std::vector<block_q2_k> q2(2);
  auto r2 = quantize_q2_k(x, q2);
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.error().message() == "[sbgq.codec.not_finite] q2_K: row 0 column 257 of the input is inf");
  std::vector<block_q3_k> q3(2);
  CHECK(quantize_q3_k(x, q3).error().code == error_code::not_finite);
  std::vector<block_q6_k> q6(2);
  CHECK(quantize_q6_k(x, q6).error().code == error_code::not_finite);
  std::vector<float> y(256);
  CHECK(dequantize_q6_k(q6, y).error().code == error_code::size_mismatch);
}

}  // TEST_SUITE
