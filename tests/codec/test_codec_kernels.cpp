// The AVX2 / AVX-512 codec kernels (kernels/<target>/*.hpp) against the scalar reference
// and llama.cpp, at every level the CPU supports: row lengths from one block to 16384
// values, block counts that leave every possible tail in the lane groups (the kernels
// process 16 blocks or sub-blocks per vector on AVX2, 32 on AVX-512), rows made of
// mixed block kinds (zeros, tiny, huge, constant, ties, outliers) so lanes of one vector
// take different branches, with and without importance weights, and misaligned input
// and output pointers. Dequantize: random blocks with every fp16 scale kind.
//
// tests/codec/test_iq4.cpp and test_k_quants.cpp run the full distribution sweep of
// codec_test_data.hpp at every level as well; this file adds the shapes that exercise
// the kernels' lane grouping and tails.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <sbgq/codec/registry.hpp>

#include "codec/codec_oracle_check.hpp"

using namespace sbgq;
using namespace sbgq::test;

namespace {

const ggml_type kernel_types[] = {ggml_type::iq4_xs, ggml_type::iq4_nl, ggml_type::q4_k, ggml_type::q5_k,
                                  ggml_type::q6_k,   ggml_type::q2_k,   ggml_type::q3_k, ggml_type::q8_0};

/// A row whose 32-value groups each draw one of several kinds, so neighbouring lanes of
/// a kernel vector take different paths of the reference (all-zero groups, flat groups,
/// ties on the rounding grid, subnormal-scale and near-overflow magnitudes, outliers).
std::vector<float> mixed_row(std::size_t n, rng& r) {
  std::vector<float> x(n);
  for (std::size_t g = 0; g < n; g += 32) {
    const std::uint32_t kind = r.next_u32() % 10;
    const float c = r.normal();
    for (std::size_t j = g; j < g + 32 && j < n; ++j) {
      float v = r.normal();
      switch (kind) {
        case 0: v = 0.0f; break;
        case 1: v *= 1e-6f; break;
        case 2: v *= 3e5f; break;
        case 3: v = c; break;                                   // flat group
        case 4: v = std::round(v * 4.0f) / 4.0f; break;         // grid ties
        case 5: v = (r.uniform() < 0.05) ? v * 40.0f : v; break;  // outliers
        case 6: v = std::fabs(v) + 0.5f; break;                 // all positive
        case 7: v = (j % 7 == 0) ? v : 0.0f; break;             // sparse
        case 8: v *= 1e-9f; break;                              // scales underflow fp16
        default: v *= 0.02f; break;
      }
      x[j] = v;
    }
  }
  return x;
}

std::vector<float> importance(std::size_t n, rng& r) {
  std::vector<float> w(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float a = r.normal() * ((i % 97) == 5 ? 30.0f : 1.0f);
    w[i] = (i % 61 == 3) ? 0.0f : a * a + 1e-4f;  // some exact zeros too
  }
  return w;
}

/// Row lengths in blocks: 1 block, every tail modulo 16 and 32 lane groups, and long
/// rows up to 16384 values.
std::vector<std::size_t> block_counts(std::size_t block_values) {
  std::vector<std::size_t> c = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63};
  for (std::size_t n : {std::size_t{4096}, std::size_t{16384}}) c.push_back(n / block_values);
  if (block_values == 32) c.push_back(8 * 16 + 3);  // a 32-block row of 4192 values
  return c;
}

}  // namespace

TEST_SUITE("codec") {

TEST_CASE("codec kernels: quantize bytes equal the scalar reference and llama.cpp for every shape") {
  for (ggml_type t : kernel_types) {
    CAPTURE(type_name(t));
    const codec_traits* codec = find_codec(t);
    REQUIRE(codec != nullptr);
    std::size_t rows = 0;
    rng r(7 + static_cast<std::uint64_t>(t));
    for (std::size_t nb : block_counts(codec->block_values)) {
      const std::size_t n = nb * codec->block_values;
      CAPTURE(n);
      // +1 float: input and weights off every vector alignment; +2 bytes: output blocks
      // off their natural offsets (the block structs need 2-byte alignment).
      std::vector<float> xbuf(n + 1), wbuf(n + 3);
      const std::vector<float> xs = mixed_row(n, r), ws = importance(n, r);
      std::copy(xs.begin(), xs.end(), xbuf.begin() + 1);
      std::copy(ws.begin(), ws.end(), wbuf.begin() + 3);
      const float* x = xbuf.data() + 1;
      for (bool with_w : {false, true}) {
        if (with_w && !codec->uses_weights) continue;
        CAPTURE(with_w);
        const float* w = with_w ? wbuf.data() + 3 : nullptr;
        const std::size_t rb = codec->row_bytes(n);
        const std::vector<std::uint8_t> want = oracle_quantize(t, xs.data(), 1, n, with_w ? ws.data() : nullptr);
        std::vector<std::uint8_t> scalar(rb);
        codec->quantize_row(simd_level::scalar, x, reinterpret_cast<std::byte*>(scalar.data()), n, w);
        CHECK(first_difference(scalar.data(), want.data(), rb, codec->block_bytes) == "equal");
        for_each_level([&](simd_level level) {
          std::vector<std::uint8_t> got(rb + 2, 0xA5);
          codec->quantize_row(level, x, reinterpret_cast<std::byte*>(got.data() + 2), n, w);
          CHECK(first_difference(got.data() + 2, scalar.data(), rb, codec->block_bytes) == "equal");
          CHECK(got[0] == 0xA5);  // nothing written before the output
          CHECK(got[1] == 0xA5);
        });
        ++rows;
      }
    }
    MESSAGE(type_name(t) << ": " << rows << " row shapes compared (scalar, kernels, llama.cpp)");
  }
}

TEST_CASE("codec kernels: dequantize equals the scalar reference and llama.cpp for every tail") {
  for (ggml_type t : kernel_types) {
    CAPTURE(type_name(t));
    const codec_traits* codec = find_codec(t);
    REQUIRE(codec != nullptr);
    for (std::size_t nb : block_counts(codec->block_values)) {
      const std::size_t n = nb * codec->block_values;
      CAPTURE(n);
      const auto blocks = random_blocks(t, nb, 1000 + nb + static_cast<std::uint64_t>(t));
      std::vector<float> want(n);
      oracle_dequantize(t, blocks.data(), want.data(), n);
      for_each_level([&](simd_level level) {
        std::vector<float> got(n + 2, 12345.0f);  // +1: misaligned output
        codec->dequantize_row(level, reinterpret_cast<const std::byte*>(blocks.data()), got.data() + 1, n);
        CHECK(std::memcmp(got.data() + 1, want.data(), n * sizeof(float)) == 0);
        CHECK(got[0] == 12345.0f);
        CHECK(got[n + 1] == 12345.0f);
      });
    }
  }
}

TEST_CASE("q8_0 kernels: ties round away from zero; subnormal scales; degenerate blocks") {
  // Block 0: amax 127 gives d = 1 and id = 1, so x = k + 0.5 lands exactly on ties.
  // Blocks 1-4: amax 1e-37, 1e-39, 1e-44, 1.4e-45 (d subnormal or 0, id possibly inf:
  // the kernels hand those blocks to the reference). Block 5: all zero; block 6: -0.0.
  const float tiny[] = {1e-37f, 1e-39f, 1e-44f, 1.4e-45f};
  std::vector<float> x(32 * 7, 0.0f);
  for (int j = 0; j < 32; ++j) x[j] = (j == 0) ? 127.0f : static_cast<float>(j - 16) + 0.5f;
  for (int b = 0; b < 4; ++b)
    for (int j = 0; j < 32; ++j) x[32 * (b + 1) + j] = tiny[b] * static_cast<float>((j % 5) - 2) * 0.5f;
  for (int j = 0; j < 32; ++j) x[32 * 6 + j] = -0.0f;
  const codec_traits* codec = find_codec(ggml_type::q8_0);
  const std::size_t rb = codec->row_bytes(x.size());
  const auto want = oracle_quantize(ggml_type::q8_0, x.data(), 1, x.size(), nullptr);
  for_each_level([&](simd_level level) {
    std::vector<std::uint8_t> got(rb);
    codec->quantize_row(level, x.data(), reinterpret_cast<std::byte*>(got.data()), x.size(), nullptr);
    CHECK(first_difference(got.data(), want.data(), rb, codec->block_bytes) == "equal");
  });
}

}  // TEST_SUITE
