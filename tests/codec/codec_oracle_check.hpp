// Byte-for-byte comparison of sbgq's codecs with llama.cpp's (the dlopen'ed oracle), run
// at every kernel level the CPU supports. Shared by the per-header codec tests.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <sbgq/codec/registry.hpp>
#include <sbgq/simd/dispatch.hpp>

#include "codec/codec_test_data.hpp"
#include "support/oracle.hpp"
#include "support/rng.hpp"

namespace sbgq::test {

/// Runs fn(level) for every level up to what the CPU supports; reports the rest as
/// skipped (doctest MESSAGE), once per process.
inline bool& levels_reported() {
  static bool reported = false;
  return reported;
}
template <class F>
void for_each_level(F&& fn) {
  bool& reported = levels_reported();
  std::string ran, skipped;
  for (simd_level l : {simd_level::scalar, simd_level::avx2, simd_level::avx512}) {
    if (l <= supported_simd_level()) {
      CAPTURE(simd_level_name(l));
      fn(l);
      ran += std::string(simd_level_name(l)) + " ";
    } else {
      skipped += std::string(simd_level_name(l)) + " ";
    }
  }
  if (!reported) {
    reported = true;
    MESSAGE("codec levels run: " << ran << "| skipped as unsupported by this CPU: " << (skipped.empty() ? "none" : skipped));
  }
}

/// The oracle's bytes for nrows rows: ggml_quantize_chunk (what llama-quantize calls),
/// except Q8_K, which it rejects: quantize_row_q8_K_ref per row, with the bsums of an
/// all-zero block zeroed as sbgq writes them (ggml leaves them untouched).
inline std::vector<std::uint8_t> oracle_quantize(ggml_type t, const float* x, std::size_t nrows,
                                                 std::size_t n_per_row, const float* w) {
  auto& o = oracle();
  const std::size_t rb = row_size(t, n_per_row);
  std::vector<std::uint8_t> out(nrows * rb, 0);
  if (t == ggml_type::q8_k) {
    for (std::size_t r = 0; r < nrows; ++r)
      o.quantize_row_q8_K_ref(x + r * n_per_row, out.data() + r * rb, static_cast<std::int64_t>(n_per_row));
    return out;
  }
  const std::size_t n = o.ggml_quantize_chunk(static_cast<int>(t), x, out.data(), 0, static_cast<std::int64_t>(nrows),
                                              static_cast<std::int64_t>(n_per_row), w);
  REQUIRE(n == out.size());
  return out;
}

/// The oracle's dequantize_row_<t>.
inline void oracle_dequantize(ggml_type t, const void* src, float* dst, std::size_t n) {
  auto& o = oracle();
  const auto k = static_cast<std::int64_t>(n);
  switch (t) {
    case ggml_type::q8_0: o.dequantize_row_q8_0(src, dst, k); break;
    case ggml_type::q2_k: o.dequantize_row_q2_K(src, dst, k); break;
    case ggml_type::q3_k: o.dequantize_row_q3_K(src, dst, k); break;
    case ggml_type::q4_k: o.dequantize_row_q4_K(src, dst, k); break;
    case ggml_type::q5_k: o.dequantize_row_q5_K(src, dst, k); break;
    case ggml_type::q6_k: o.dequantize_row_q6_K(src, dst, k); break;
    case ggml_type::q8_k: o.dequantize_row_q8_K(src, dst, k); break;
    case ggml_type::iq4_nl: o.dequantize_row_iq4_nl(src, dst, k); break;
    case ggml_type::iq4_xs: o.dequantize_row_iq4_xs(src, dst, k); break;
    default: FAIL("no oracle dequantizer for " << type_name(t));
  }
}

/// Describes the first differing byte of two rows.
inline std::string first_difference(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, std::size_t block_bytes) {
  for (std::size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) {
      std::ostringstream s;
      s << "block " << i / block_bytes << " byte " << i % block_bytes << ": sbgq 0x" << std::hex << int(a[i])
        << " oracle 0x" << int(b[i]);
      return s.str();
    }
  return "equal";
}

/// Quantizes `c` with and without each weight vector through the registry at every
/// supported level and compares every row with the oracle's bytes; then decodes the
/// oracle's bytes with both decoders and compares the floats bit for bit.
/// Returns the number of rows compared (per level).
inline std::size_t check_case_against_oracle(ggml_type t, const codec_case& c, const float* weights) {
  const codec_traits* codec = find_codec(t);
  REQUIRE(codec != nullptr);
  CAPTURE(c.name);
  CAPTURE(c.n_per_row);
  CAPTURE(weights != nullptr);
  const std::size_t rb = codec->row_bytes(c.n_per_row);
  const std::vector<std::uint8_t> want = oracle_quantize(t, c.x.data(), c.nrows, c.n_per_row, weights);
  for_each_level([&](simd_level level) {
    std::vector<std::uint8_t> got(c.nrows * rb, 0);
    std::size_t bad_rows = 0;
    std::string first;
    for (std::size_t r = 0; r < c.nrows; ++r) {
      codec->quantize_row(level, c.x.data() + r * c.n_per_row, reinterpret_cast<std::byte*>(got.data() + r * rb),
                          c.n_per_row, codec->uses_weights ? weights : nullptr);
      if (std::memcmp(got.data() + r * rb, want.data() + r * rb, rb) != 0) {
        if (bad_rows++ == 0)
          first = "row " + std::to_string(r) + " " +
                  first_difference(got.data() + r * rb, want.data() + r * rb, rb, codec->block_bytes);
      }
    }
    CAPTURE(first);
    CHECK(bad_rows == 0);
    // Decoding the (identical) bytes: ours vs the oracle's, bit for bit.
    std::vector<float> ours(c.x.size()), theirs(c.x.size());
    for (std::size_t r = 0; r < c.nrows; ++r) {
      codec->dequantize_row(level, reinterpret_cast<const std::byte*>(want.data() + r * rb), ours.data() + r * c.n_per_row,
                            c.n_per_row);
      oracle_dequantize(t, want.data() + r * rb, theirs.data() + r * c.n_per_row, c.n_per_row);
    }
    CHECK(std::memcmp(ours.data(), theirs.data(), ours.size() * sizeof(float)) == 0);
  });
  return c.nrows;
}

/// The full byte-exactness sweep for one type: synthetic distributions and real
/// weights, without importance weights and with each kind of importance weights.
inline void check_type_against_oracle(ggml_type t, std::size_t elems_per_case) {
  std::size_t rows = 0, rows_w = 0;
  auto cases = synthetic_cases(elems_per_case, 1234 + static_cast<std::uint64_t>(t));
  for (auto& rc : real_cases(48)) cases.push_back(std::move(rc));
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const codec_case& c = cases[i];
    rows += check_case_against_oracle(t, c, nullptr);
    // One kind of importance weights per case, rotating through the four kinds.
    const auto wsets = weight_sets(c.n_per_row, 99 + i);
    rows_w += check_case_against_oracle(t, c, wsets[i % wsets.size()].data());
  }
  MESSAGE(type_name(t) << ": " << cases.size() << " cases, " << rows << " rows without and " << rows_w
                       << " rows with importance weights compared with llama.cpp");
}

/// Random blocks with sane scales: random bytes, then every fp16 scale field replaced by
/// a random finite fp16 (normal or subnormal, either sign). Offsets of the scale fields
/// come from the blocks doc tables (not from sbgq's structs).
inline std::vector<std::uint8_t> random_blocks(ggml_type t, std::size_t n_blocks, std::uint64_t seed) {
  rng r(seed);
  const std::size_t bb = type_size(t);
  std::vector<std::uint8_t> b(n_blocks * bb);
  for (auto& v : b) v = static_cast<std::uint8_t>(r.next_u32());
  std::vector<std::size_t> f16_fields;
  switch (t) {
    case ggml_type::q8_0: case ggml_type::iq4_nl: case ggml_type::iq4_xs: f16_fields = {0}; break;
    case ggml_type::q2_k: f16_fields = {80, 82}; break;
    case ggml_type::q3_k: f16_fields = {108}; break;
    case ggml_type::q4_k: case ggml_type::q5_k: f16_fields = {0, 2}; break;
    case ggml_type::q6_k: f16_fields = {208}; break;
    default: break;
  }
  for (std::size_t k = 0; k < n_blocks; ++k) {
    std::uint8_t* blk = b.data() + k * bb;
    for (std::size_t off : f16_fields) {
      const std::uint32_t u = r.next_u32();
      // exponent field 0..29 (subnormals up to 2^14), random mantissa and sign
      const auto h = static_cast<std::uint16_t>((u & 0x8000u) | (((u >> 16) % 30u) << 10) | (u & 0x3ffu));
      std::memcpy(blk + off, &h, 2);
    }
    if (t == ggml_type::q8_k) {  // float32 d: random sign, magnitude 2^-20 .. 2^10
      const float d = std::ldexp(r.uniform(1.0f, 2.0f), static_cast<int>(r.next_u32() % 31) - 20) *
                      ((r.next_u32() & 1) ? -1.0f : 1.0f);
      std::memcpy(blk, &d, 4);
    }
  }
  return b;
}

}  // namespace sbgq::test
