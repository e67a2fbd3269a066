// Fast Walsh-Hadamard transform (FWHT) of power-of-two length: API, scalar reference and
// run-time dispatch to the AVX2 / AVX-512 kernels (kernels/<target>/fwht.hpp).
//
// Definition. For n = 2^k the Walsh-Hadamard matrix in natural (Sylvester, "Hadamard")
// order is H_n[i][j] = (-1)^popcount(i & j); H_n = H_2 (x) H_{n/2}, H_n H_n = n I.
//   unscaled:     y = H_n x                (H_n^-1 = H_n / n)
//   orthonormal:  y = H_n x / sqrt(n)      (an orthogonal, symmetric involution)
// The fast algorithm runs k radix-2 stages; stage s pairs index j (bit s clear) with
// j + 2^s and replaces (a, b) by (a + b, a - b). The scalar reference below is that
// textbook loop, stages in increasing order, then one multiply by the scale. It is the
// specification: the SIMD kernels evaluate the same butterflies with the same operands
// in a different schedule, so every level returns the same bits (see the comment at the
// top of kernels/avx2/fwht.hpp). The orthonormal scale is the float (or double) nearest
// to 1/sqrt(n), computed in double; for even k it is an exact power of two.
//
// Non-power-of-two orders (n = m x 2^k with a Hadamard matrix of order m), randomized
// and block-diagonal transforms and whole-matrix application live in hadamard.hpp.
//
// Design goals: bit-identical results across kernel levels; orthonormal and unscaled
// variants; f32 and f64; cache-blocked for n up to 2^20 and beyond. Non-goals: other
// orderings (sequency/Walsh order), complex input.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../simd/dispatch.hpp"
#include "../kernels/avx2/fwht.hpp"
#include "../kernels/avx512/fwht.hpp"

SBGQ_BEGIN_NAMESPACE

/// Normalisation of a transform: orthonormal (scaled by 1/sqrt(n), inverse = transpose)
/// or unscaled (the plain +-1 matrix; inverse = transpose / n).
enum class fwht_norm : std::uint8_t {
  orthonormal,  ///< y = H x / sqrt(n)
  unscaled,     ///< y = H x
};

namespace ref {

/// Unnormalised FWHT of x[0 .. 2^log2n) in place (textbook radix-2 loop, stage h = 1, 2,
/// 4, ..., each pair (a, b) -> (a + b, a - b)), then x[i] *= scale unless scale == 1.
/// This is the specification every kernel level reproduces bit for bit.
template <class T>
inline void fwht(T* x, unsigned log2n, T scale) {
  const std::size_t n = std::size_t{1} << log2n;
  for (std::size_t h = 1; h < n; h *= 2) {
    for (std::size_t i = 0; i < n; i += 2 * h) {
      for (std::size_t j = i; j < i + h; ++j) {
        const T a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  if (scale != T(1))
    for (std::size_t i = 0; i < n; ++i) x[i] *= scale;
}

}  // namespace ref

namespace detail {

/// The orthonormal scale of a transform of length n: nearest T to 1/sqrt(n).
template <class T>
inline T orthonormal_scale(std::size_t n) {
  return static_cast<T>(1.0 / std::sqrt(static_cast<double>(n)));
}

/// FWHT of 2^log2n values at the given level (falls back to the reference for sizes
/// below a kernel's minimum). Bit-identical at every level.
template <class T>
inline void fwht_at(simd_level level, T* x, unsigned log2n, T scale) {
  switch (level) {
#if SBGQ_X86_KERNELS
    case simd_level::avx512:
      if (log2n >= avx512::fwht_detail::min_log2<T>) return avx512::fwht<T>(x, log2n, scale);
      break;
    case simd_level::avx2:
      if (log2n >= avx2::fwht_detail::min_log2<T>) return avx2::fwht<T>(x, log2n, scale);
      break;
#endif
    default: break;
  }
  ref::fwht<T>(x, log2n, scale);
}

template <class T>
inline result<void> fwht_checked(std::span<T> x, fwht_norm norm) {
  const std::size_t n = x.size();
  if (n == 0 || !std::has_single_bit(n))
    return error(error_code::unsupported, "fwht",
                 "fwht needs a power-of-two length, got n = " + std::to_string(n) +
                     " (use hadamard_transform from hadamard.hpp for n = m x 2^k)");
  const T scale = norm == fwht_norm::orthonormal ? orthonormal_scale<T>(n) : T(1);
  fwht_at<T>(active_simd_level(), x.data(), static_cast<unsigned>(std::countr_zero(n)), scale);
  return {};
}

}  // namespace detail

/// In-place Walsh-Hadamard transform of a power-of-two length: x <- H_n x (/ sqrt(n) when
/// orthonormal). The transform is its own inverse when orthonormal; unscaled, applying
/// it twice multiplies by n. Any alignment. Uses the active kernel level; all levels give
/// bit-identical results.
/// Errors: [sbgq.fwht.unsupported] when x.size() is 0 or not a power of two.
/// Thread-safe (no shared state). O(n log n).
inline result<void> fwht(std::span<float> x, fwht_norm norm = fwht_norm::orthonormal) {
  return detail::fwht_checked<float>(x, norm);
}
/// f64 overload of fwht(std::span<float>, fwht_norm).
inline result<void> fwht(std::span<double> x, fwht_norm norm = fwht_norm::orthonormal) {
  return detail::fwht_checked<double>(x, norm);
}

SBGQ_END_NAMESPACE
