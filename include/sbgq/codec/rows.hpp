// Row-parallel quantization of a whole matrix: the entry point the pipeline uses to turn
// an f32 tensor into GGUF tensor data (the equivalent of ggml_quantize_chunk).
//
// Design goals:
//   - Output identical for any thread count: rows are independent (algorithms doc 2) and
//     each row is written by exactly one task (parallel.hpp).
//   - Arguments checked once at the boundary: type, sizes (overflow-checked), finite
//     input and weights; the first offending row (lowest index) is reported whatever
//     the scheduling.
//   - The kernel level is read once per call (STYLE.md 2).
// Non-goals: strided sources (rows must be contiguous), partial writes on error (the
// destination content is unspecified after an error).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../core/base.hpp"
#include "../core/detail/checked.hpp"
#include "../core/error.hpp"
#include "../io/ggml_types.hpp"
#include "../core/parallel.hpp"
#include "../simd/dispatch.hpp"
#include "common.hpp"
#include "registry.hpp"

SBGQ_BEGIN_NAMESPACE

namespace detail::codec {

/// Looks up the codec and checks n_per_row and the byte size of nrows rows.
inline result<const codec_traits*> check_rows(ggml_type type, std::size_t nrows, std::size_t n_per_row,
                                              std::size_t n_floats_given, std::size_t n_bytes_given,
                                              const char* floats_what, const char* bytes_what) {
  const codec_traits* c = find_codec(type);
  if (c == nullptr)
    return codec_error(error_code::unsupported, type_name(type),
                       "sbgq has no codec for this type (supported: f32 f16 bf16 q8_0 q2_K..q6_K q8_K iq4_nl iq4_xs)");
  if (n_per_row % c->block_values != 0)
    return codec_error(error_code::size_mismatch, c->name,
                       "a row of " + std::to_string(n_per_row) + " elements is not a multiple of the block size " +
                           std::to_string(c->block_values));
  std::uint64_t n_floats = 0, n_bytes = 0;
  if (!checked_mul(nrows, n_per_row, n_floats) || !checked_mul(nrows, c->row_bytes(n_per_row), n_bytes) ||
      n_floats > std::numeric_limits<std::size_t>::max() / sizeof(float))
    return codec_error(error_code::overflow, c->name,
                       std::to_string(nrows) + " rows of " + std::to_string(n_per_row) + " elements overflow");
  if (n_floats_given != n_floats)
    return codec_error(error_code::size_mismatch, c->name,
                       std::string(floats_what) + " has " + std::to_string(n_floats_given) + " floats, " +
                           std::to_string(nrows) + " rows of " + std::to_string(n_per_row) + " need " +
                           std::to_string(n_floats));
  if (n_bytes_given != n_bytes)
    return codec_error(error_code::size_mismatch, c->name,
                       std::string(bytes_what) + " has " + std::to_string(n_bytes_given) + " bytes, " +
                           std::to_string(nrows) + " rows of " + std::to_string(n_per_row) + " need " +
                           std::to_string(n_bytes));
  return c;
}

/// Rows per parallel task: about 64 Ki elements, at least one row.
constexpr std::size_t rows_grain(std::size_t n_per_row) noexcept {
  return n_per_row == 0 ? 1 : std::max<std::size_t>(1, (std::size_t{1} << 16) / n_per_row);
}

}  // namespace detail::codec

/// Quantizes `nrows` contiguous rows of `n_per_row` floats at `src` into `dst`
/// (nrows * row_size(type, n_per_row) bytes, any alignment), like llama.cpp's
/// ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, weights).
///
/// `weights`: null, or n_per_row importance values (one per column, the same for every
/// row, as llama-quantize passes the imatrix); ignored by formats that do not use them
/// (find_codec(type)->uses_weights). `n_threads` <= 0 means all hardware threads.
/// Errors: unsupported (type without a codec), size_mismatch (n_per_row not a multiple
/// of the block size, or dst of the wrong size), overflow, not_finite (message names
/// the first bad row and column, or the column of a bad weight).
/// The bytes written do not depend on n_threads. Thread-safe (calls are serialised per
/// thread count by the pool; see parallel.hpp).
inline result<void> quantize_rows(ggml_type type, const float* src, std::size_t nrows, std::size_t n_per_row,
                                  const float* weights, std::span<std::byte> dst, int n_threads = 1) {
  SBGQ_TRY(const codec_traits* c,
           detail::codec::check_rows(type, nrows, n_per_row, nrows * n_per_row, dst.size(), "the input", "the output"));
  if (nrows == 0) return {};
  if (weights) SBGQ_TRY_VOID(detail::codec::check_weights(c->name, std::span<const float>(weights, n_per_row), n_per_row));
  const float* w = c->uses_weights ? weights : nullptr;
  const simd_level level = active_simd_level();
  const std::size_t row_bytes = c->row_bytes(n_per_row);
  constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  std::atomic<std::size_t> first_bad{none};
  parallel_for(nrows, detail::codec::rows_grain(n_per_row), n_threads, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const float* row = src + r * n_per_row;
      if (!detail::codec::check_finite(c->name, std::span<const float>(row, n_per_row), r, "the input").has_value()) {
        std::size_t cur = first_bad.load();
        while (r < cur && !first_bad.compare_exchange_weak(cur, r)) {
        }
        continue;
      }
      c->quantize_row(level, row, dst.data() + r * row_bytes, n_per_row, w);
    }
  });
  const std::size_t bad = first_bad.load();
  if (bad != none)
    return detail::codec::check_finite(c->name, std::span<const float>(src + bad * n_per_row, n_per_row), bad, "the input");
  return {};
}

/// Decodes `nrows` rows of `n_per_row` elements from `src` (nrows * row_size bytes, any
/// alignment) into `dst` (nrows * n_per_row floats). Errors: unsupported, size_mismatch,
/// overflow. Output independent of n_threads (<= 0: all hardware threads).
inline result<void> dequantize_rows(ggml_type type, std::span<const std::byte> src, std::size_t nrows,
                                    std::size_t n_per_row, std::span<float> dst, int n_threads = 1) {
  SBGQ_TRY(const codec_traits* c,
           detail::codec::check_rows(type, nrows, n_per_row, dst.size(), src.size(), "the output", "the input"));
  if (nrows == 0) return {};
  const simd_level level = active_simd_level();
  const std::size_t row_bytes = c->row_bytes(n_per_row);
  parallel_for(nrows, detail::codec::rows_grain(n_per_row), n_threads, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      c->dequantize_row(level, src.data() + r * row_bytes, dst.data() + r * n_per_row, n_per_row);
  });
  return {};
}

/// ggml_validate_row_data for the types sbgq codes: the index of the first block of `data`
/// (of the element, for F32/F16/BF16) with a non-finite fp16 scale or value, or
/// `no_invalid_block` when all are valid (and for types sbgq has no codec for).
inline constexpr std::size_t no_invalid_block = std::numeric_limits<std::size_t>::max();
inline std::size_t first_invalid_block(ggml_type type, std::span<const std::byte> data) noexcept {
  const codec_traits* c = find_codec(type);
  if (!c) return no_invalid_block;
  const std::size_t n = data.size() / c->block_bytes;
  const std::size_t at = c->first_invalid(data.data(), n);
  return at == n ? no_invalid_block : at;
}

/// Importance-weighted squared error of encoded rows and weighted squared norm of their
/// source: error = sum_r sum_j w_j (dq_rj - x_rj)^2, norm = sum_r sum_j w_j x_rj^2, in f64,
/// rows in order (w: one weight per column, or empty for all ones).
struct weighted_sums {
  double error = 0, norm = 0;
};

/// weighted_sums of `nrows` rows of `x` (n_per_row floats each) against their encoding `q`
/// (nrows * row_size bytes) at `type`. Serial (callers parallelise over row blocks).
/// Errors: those of check_rows; size_mismatch for weights of the wrong length.
inline result<weighted_sums> weighted_row_error(ggml_type type, const float* x, std::span<const std::byte> q,
                                                std::size_t nrows, std::size_t n_per_row, std::span<const float> w) {
  SBGQ_TRY(const codec_traits* c,
           detail::codec::check_rows(type, nrows, n_per_row, nrows * n_per_row, q.size(), "the values", "the encoding"));
  if (!w.empty() && w.size() != n_per_row)
    return error(error_code::size_mismatch, "codec",
                 std::to_string(w.size()) + " weights for rows of " + std::to_string(n_per_row));
  const simd_level level = active_simd_level();
  const std::size_t row_bytes = c->row_bytes(n_per_row);
  std::vector<float> deq(n_per_row);
  weighted_sums s;
  for (std::size_t r = 0; r < nrows; ++r) {
    c->dequantize_row(level, q.data() + r * row_bytes, deq.data(), n_per_row);
    const float* xr = x + r * n_per_row;
    for (std::size_t j = 0; j < n_per_row; ++j) {
      const double wj = w.empty() ? 1.0 : static_cast<double>(w[j]);
      const double d = static_cast<double>(deq[j]) - static_cast<double>(xr[j]);
      s.error += wj * d * d;
      s.norm += wj * static_cast<double>(xr[j]) * static_cast<double>(xr[j]);
    }
  }
  return s;
}

SBGQ_END_NAMESPACE
