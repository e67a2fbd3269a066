// f16/bf16 conversions against libggml-base (the oracle), exhaustively where the domain
// is small (all 65,536 halves) and on a large sample of f32 bit patterns otherwise.
#include <doctest/doctest.h>

#include <bit>
#include <cstdint>
#include <ios>
#include <sbgq/core/dtype.hpp>
#include <vector>

#include "support/oracle.hpp"
#include "support/rng.hpp"

using sbgq::test::oracle;

namespace {
bool same_float(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

// Every 16-bit pattern as f16 and bf16, and a sample of 32-bit patterns that covers all
// exponents and the rounding edges (low mantissa bits near the half-way points).
std::vector<float> float_sample() {
  std::vector<float> v;
  sbgq::test::rng r(42);
  for (int i = 0; i < 4'000'000; ++i) v.push_back(std::bit_cast<float>(r.next_u32()));
  for (std::uint32_t e = 0; e < 256; ++e)
    for (std::uint32_t low : {0x0000u, 0x0fffu, 0x1000u, 0x1001u, 0x2000u, 0x3000u, 0x7fffu, 0x8000u, 0x8001u,
                              0xffffu, 0x7fe000u, 0x7ff000u, 0x7fffffu})
      for (std::uint32_t s : {0u, 0x80000000u}) v.push_back(std::bit_cast<float>(s | (e << 23) | low));
  for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 65536.0f, 6.1035156e-05f, 5.9604645e-08f,
                  2.9802322e-08f, 2.9802326e-08f, 1e-40f})
    v.push_back(f);
  return v;
}
}  // namespace

TEST_CASE("f16 -> f32 matches ggml for all 65,536 halves") {
  std::vector<std::uint16_t> h(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<std::uint16_t>(i);
  std::vector<float> ref(h.size());
  oracle().ggml_fp16_to_fp32_row(h.data(), ref.data(), static_cast<std::int64_t>(h.size()));
  int bad = 0;
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!same_float(sbgq::f16_bits_to_f32(h[i]), ref[i])) ++bad;
  CHECK(bad == 0);
}

TEST_CASE("bf16 -> f32 matches ggml for all 65,536 patterns") {
  std::vector<std::uint16_t> h(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<std::uint16_t>(i);
  std::vector<float> ref(h.size());
  oracle().ggml_bf16_to_fp32_row(h.data(), ref.data(), static_cast<std::int64_t>(h.size()));
  int bad = 0;
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!same_float(sbgq::bf16_bits_to_f32(h[i]), ref[i])) ++bad;
  CHECK(bad == 0);
}

TEST_CASE("f32 -> f16 and f32 -> bf16 match ggml on every half and a large float sample") {
  std::vector<float> v = float_sample();
  for (std::uint32_t i = 0; i < 65536; ++i) v.push_back(sbgq::f16_bits_to_f32(static_cast<std::uint16_t>(i)));
  std::vector<std::uint16_t> ref16(v.size()), refb(v.size());
  oracle().ggml_fp32_to_fp16_row(v.data(), ref16.data(), static_cast<std::int64_t>(v.size()));
  oracle().ggml_fp32_to_bf16_row(v.data(), refb.data(), static_cast<std::int64_t>(v.size()));
  std::size_t bad16 = 0, badb = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(v[i]);
    const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
    // NaN payloads are not part of either contract beyond "a quiet NaN with the sign";
    // ggml's row function may use F16C, whose NaN payload differs from the scalar path.
    if (nan) {
      const std::uint16_t ours = sbgq::f32_to_f16_bits(v[i]);
      if ((ours & 0x7c00u) != 0x7c00u || (ours & 0x3ffu) == 0 || (ours & 0x8000u) != (ref16[i] & 0x8000u)) ++bad16;
    } else if (sbgq::f32_to_f16_bits(v[i]) != ref16[i]) {
      if (bad16 < 5) MESSAGE("f16 mismatch for bits 0x" << std::hex << bits);
      ++bad16;
    }
    if (!nan && sbgq::f32_to_bf16_bits(v[i]) != refb[i]) {
      if (badb < 5) MESSAGE("bf16 mismatch for bits 0x" << std::hex << bits);
      ++badb;
    }
  }
  CHECK(bad16 == 0);
  CHECK(badb == 0);
  MESSAGE("compared " << v.size() << " floats");
}

TEST_CASE("f16 round trip is exact for every finite half") {
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) continue;  // NaN
    REQUIRE(sbgq::f32_to_f16_bits(sbgq::f16_bits_to_f32(h)) == h);
  }
}
