// Element types and the scalar conversions between f32, f16 and bf16.
//
// The conversions are bit-identical to ggml's (ggml-impl.h / ggml.c), which the GGUF
// files we write are read with:
//   - f32 -> f16: round to nearest, ties to even; overflow to +-inf; NaN -> 0x7E00 with
//     the sign; f16 subnormals produced and honoured.
//   - f32 -> bf16: round to nearest even by adding 0x7FFF + lsb to the bit pattern, NaN
//     forced quiet as (bits >> 16) | 0x40; subnormals kept (ggml_compute_fp32_to_bf16).
//   - f16/bf16 -> f32: exact (a signalling f16 NaN comes back quiet, as in ggml).
// They are written with integer operations only, so the result does not depend on the
// compiler's floating-point flags or the rounding mode. tests/test_dtype.cpp checks all
// 65,536 halves and a large sample of floats against libggml-base.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base.hpp"

SBGQ_BEGIN_NAMESPACE

/// IEEE binary16 bits.
struct f16 {
  std::uint16_t bits = 0;
  friend constexpr bool operator==(f16, f16) = default;
};
/// bfloat16 bits (the upper half of an f32).
struct bf16 {
  std::uint16_t bits = 0;
  friend constexpr bool operator==(bf16, bf16) = default;
};
static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2);

/// f32 -> f16 bits, round to nearest even (ggml_compute_fp32_to_fp16).
constexpr std::uint16_t f32_to_f16_bits(float f) noexcept {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
  if (x >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  if (x >= 0x38800000u) {  // result is a normal half (|f| >= 2^-14)
    // Rebias the exponent from 127 to 15 (subtract 112 << 23) and round the 13 dropped
    // mantissa bits to nearest even: adding 0xfff + lsb carries exactly when the dropped
    // part is above one half, or equal to it with an odd kept lsb.
    const std::uint32_t lsb = (x >> 13) & 1u;
    x += 0xc8000fffu + lsb;
    return static_cast<std::uint16_t>(sign | (x >> 13));
  }
  if (x < 0x33000000u) return static_cast<std::uint16_t>(sign);  // <= 2^-25 rounds to 0
  // Subnormal half: the result is round(|f| * 2^24) as an integer.
  const std::uint32_t e = x >> 23;                       // 102..112
  const std::uint32_t m = (x & 0x7fffffu) | 0x800000u;  // implicit bit
  const std::uint32_t shift = 126u - e;                  // 14..24
  std::uint32_t q = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return static_cast<std::uint16_t>(sign | q);
}

/// f16 bits -> f32, exact.
constexpr float f16_bits_to_f32(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  std::uint32_t m = h & 0x3ffu;
  if (e == 0x1f) {
    // inf, or NaN made quiet (as F16C's vcvtph2ps and ggml's portable path both do)
    return std::bit_cast<float>(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
  }
  if (e != 0) return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return std::bit_cast<float>(sign);
  // Subnormal: normalise the mantissa.
  std::uint32_t exp = 113;  // 127 - 14
  while ((m & 0x400u) == 0) {
    m <<= 1;
    --exp;
  }
  m &= 0x3ffu;
  return std::bit_cast<float>(sign | (exp << 23) | (m << 13));
}

/// f32 -> bf16 bits (ggml_compute_fp32_to_bf16).
constexpr std::uint16_t f32_to_bf16_bits(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 64u);
  return static_cast<std::uint16_t>((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

/// bf16 bits -> f32, exact.
constexpr float bf16_bits_to_f32(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

constexpr f16 to_f16(float f) noexcept { return f16{f32_to_f16_bits(f)}; }
constexpr bf16 to_bf16(float f) noexcept { return bf16{f32_to_bf16_bits(f)}; }
constexpr float to_f32(f16 h) noexcept { return f16_bits_to_f32(h.bits); }
constexpr float to_f32(bf16 b) noexcept { return bf16_bits_to_f32(b.bits); }

/// Row conversions (scalar; these are not hot paths: the codecs convert their own scales).
inline void convert(std::span<const f16> in, std::span<float> out) noexcept {
  SBGQ_DASSERT(in.size() == out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = to_f32(in[i]);
}
inline void convert(std::span<const bf16> in, std::span<float> out) noexcept {
  SBGQ_DASSERT(in.size() == out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = to_f32(in[i]);
}
inline void convert(std::span<const float> in, std::span<f16> out) noexcept {
  SBGQ_DASSERT(in.size() == out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = to_f16(in[i]);
}
inline void convert(std::span<const float> in, std::span<bf16> out) noexcept {
  SBGQ_DASSERT(in.size() == out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = to_bf16(in[i]);
}

SBGQ_END_NAMESPACE
