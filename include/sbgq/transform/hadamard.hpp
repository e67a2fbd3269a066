// Hadamard matrices and orthogonal Hadamard transforms of any supported size:
// constructions (Sylvester, Paley I, Paley II, Kronecker products), transforms of order
// n = m x 2^k through H_m (x) H_{2^k}, randomized (random +-1 diagonal) and
// block-diagonal transforms, their transposes and inverses, and application to the rows
// or columns of a matrix in parallel.
//
// Why. Rotating the residual stream (and other spaces) of a Qwen3.5 model by an
// orthogonal Hadamard matrix spreads outliers before quantization. The widths are not
// all powers of two: 2560 = 20 x 128, 3584 = 28 x 128, 5120 = 20 x 256, 9216 = 36 x 256,
// 12288 = 12 x 1024, 17408 = 68 x 256 (spec/qwen35-model.md section 1.3).
//
// Constructions (a Hadamard matrix H of order m has +-1 entries and H H^T = m I; it can
// exist only for m = 1, 2 or m = 0 mod 4):
//   - Sylvester, m = 2^j:  H[i][j] = (-1)^popcount(i & j).
//   - Paley I, m = q + 1, q prime, q = 3 (mod 4). With chi the Legendre symbol mod q and
//     the Jacobsthal matrix Q[i][j] = chi(j - i) (i, j in 0..q-1, antisymmetric here),
//     S = [[0, 1^T], [-1, Q]] (index 0 is the extra "infinity" point) and H = I + S.
//   - Paley II, m = 2 (q + 1), q prime, q = 1 (mod 4). With the symmetric conference
//     matrix C = [[0, 1^T], [1, Q]], H = C (x) [[1, -1], [-1, -1]] + I (x) [[1, 1], [1, -1]].
//   - Kronecker products H_a (x) H_b of the above (m = a b).
//   (R. E. A. C. Paley, "On orthogonal matrices", J. Math. Phys. 12 (1933) 311-320.)
// Every matrix is checked to satisfy H H^T = m I when built. For the Qwen3.5 widths
// the odd parts need m = 12 (Paley I, q = 11), 20 (Paley I, q = 19), 28 (Paley II,
// q = 13), 36 (Paley II, q = 17) and 68 (Paley I, q = 67).
//
// The transform of order n = m p (p = 2^k) is H_m (x) H_p acting on x viewed as m rows
// of p values (x[a p + b] is row a, column b): a FWHT of every row, then the "Kronecker
// step" y[i][b] = sum_j H_m[i][j] x[j][b] on every column. The Kronecker step has a fixed
// summation order (ref::hadamard_mix), used by every kernel level, so results are
// bit-identical across levels here too. It costs about m/4 + 5.5 adds per value (14
// add/sub for the 8 signed sums of each group of four rows, then one add per group and
// output): for m = 68 that is 22.5 adds against 8 for the p = 256 FWHT, which is why m
// is chosen as small as possible.
//
// Design goals: reproducible transforms (a rotation is fully determined by n, the
// options and the seed); clear errors for unsupported n; thread-safe const plans.
// Non-goals: Williamson-type or other constructions (e.g. order 92 is unsupported);
// prime-power Paley constructions (GF(q^k) arithmetic).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "fwht.hpp"
#include "../core/parallel.hpp"
#include "../simd/dispatch.hpp"

SBGQ_BEGIN_NAMESPACE

/// How a Hadamard matrix was built.
enum class hadamard_construction : std::uint8_t {
  sylvester,  ///< m = 2^j, H[i][j] = (-1)^popcount(i & j)
  paley1,     ///< m = q + 1, q prime = 3 mod 4
  paley2,     ///< m = 2 (q + 1), q prime = 1 mod 4
  kronecker,  ///< H_a (x) H_b of two known orders
};

constexpr std::string_view hadamard_construction_name(hadamard_construction c) noexcept {
  switch (c) {
    case hadamard_construction::sylvester: return "sylvester";
    case hadamard_construction::paley1: return "paley1";
    case hadamard_construction::paley2: return "paley2";
    case hadamard_construction::kronecker: return "kronecker";
  }
  return "?";
}

/// An explicit Hadamard matrix: order m, +-1 entries in row-major order.
struct hadamard_matrix {
  std::size_t order = 0;
  hadamard_construction construction = hadamard_construction::sylvester;
  std::size_t q = 0;             ///< the prime for Paley constructions, else 0
  std::size_t factor_a = 0;      ///< for kronecker: H = H_a (x) H_b with a = factor_a
  std::vector<std::int8_t> h;    ///< h[i * order + j] in {-1, +1}

  int at(std::size_t i, std::size_t j) const { return h[i * order + j]; }
};

/// Largest order m of a dense H_m factor (the Kronecker step costs O(m) per value).
inline constexpr std::size_t hadamard_max_dense_order = 1024;

namespace detail {

inline bool hadamard_is_prime(std::size_t q) {
  if (q < 2) return false;
  for (std::size_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}
inline bool paley1_order(std::size_t m) { return m >= 4 && hadamard_is_prime(m - 1) && (m - 1) % 4 == 3; }
inline bool paley2_order(std::size_t m) {
  return m % 2 == 0 && m >= 4 && hadamard_is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1;
}

/// memo[m]: 0 unknown yet, 1 constructible, 2 not.
inline bool hadamard_order_known(std::size_t m, std::vector<std::uint8_t>& memo) {
  if (m == 1 || m == 2) return true;
  if (m == 0 || m % 4 != 0) return false;
  if (m < memo.size() && memo[m] != 0) return memo[m] == 1;
  bool ok = std::has_single_bit(m) || paley1_order(m) || paley2_order(m);
  for (std::size_t a = 2; !ok && a * a <= m; ++a)
    if (m % a == 0) ok = hadamard_order_known(a, memo) && hadamard_order_known(m / a, memo);
  if (m < memo.size()) memo[m] = ok ? 1 : 2;
  return ok;
}

/// Legendre symbol table mod prime q: chi[a] for a in 0..q-1.
inline std::vector<int> paley_legendre_table(std::size_t q) {
  std::vector<int> chi(q, -1);
  chi[0] = 0;
  for (std::size_t x = 1; x < q; ++x) chi[(x * x) % q] = 1;
  return chi;
}

inline std::vector<std::int8_t> build_hadamard(std::size_t m, hadamard_construction& how, std::size_t& q,
                                               std::size_t& fa, std::vector<std::uint8_t>& memo) {
  std::vector<std::int8_t> h(m * m);
  if (std::has_single_bit(m)) {
    how = hadamard_construction::sylvester;
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < m; ++j) h[i * m + j] = (std::popcount(i & j) & 1) ? -1 : 1;
  } else if (paley1_order(m)) {
    how = hadamard_construction::paley1;
    q = m - 1;
    const std::vector<int> chi = paley_legendre_table(q);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < m; ++j) {
        int s;  // S[i][j]
        if (i == 0) s = j == 0 ? 0 : 1;
        else if (j == 0) s = -1;
        else s = chi[(j - 1 + q - (i - 1)) % q];
        h[i * m + j] = static_cast<std::int8_t>(s + (i == j ? 1 : 0));
      }
  } else if (paley2_order(m)) {
    how = hadamard_construction::paley2;
    q = m / 2 - 1;
    const std::size_t c_order = q + 1;
    const std::vector<int> chi = paley_legendre_table(q);
    const int A[2][2] = {{1, -1}, {-1, -1}}, B[2][2] = {{1, 1}, {1, -1}};
    for (std::size_t a = 0; a < c_order; ++a)
      for (std::size_t b = 0; b < c_order; ++b) {
        int c;  // C[a][b]
        if (a == 0) c = b == 0 ? 0 : 1;
        else if (b == 0) c = 1;
        else c = chi[(b - 1 + q - (a - 1)) % q];
        for (int r = 0; r < 2; ++r)
          for (int s = 0; s < 2; ++s)
            h[(2 * a + static_cast<std::size_t>(r)) * m + 2 * b + static_cast<std::size_t>(s)] =
                static_cast<std::int8_t>(c * A[r][s] + (a == b ? B[r][s] : 0));
      }
  } else {
    how = hadamard_construction::kronecker;
    std::size_t a = 2;
    while (!(m % a == 0 && hadamard_order_known(a, memo) && hadamard_order_known(m / a, memo))) ++a;
    fa = a;
    const std::size_t b = m / a;
    hadamard_construction dummy{};
    std::size_t dq = 0, dfa = 0;
    const std::vector<std::int8_t> ha = build_hadamard(a, dummy, dq, dfa, memo);
    dq = dfa = 0;
    const std::vector<std::int8_t> hb = build_hadamard(b, dummy, dq, dfa, memo);
    for (std::size_t i = 0; i < a; ++i)
      for (std::size_t j = 0; j < a; ++j)
        for (std::size_t k = 0; k < b; ++k)
          for (std::size_t l = 0; l < b; ++l)
            h[(i * b + k) * m + j * b + l] = static_cast<std::int8_t>(ha[i * a + j] * hb[k * b + l]);
  }
  return h;
}

inline std::string hadamard_odd_times_pow2(std::size_t n) {
  const int k = std::countr_zero(n);
  return std::to_string(n >> k) + " x 2^" + std::to_string(k);
}

}  // namespace detail

/// True when make_hadamard_matrix(m) succeeds: m = 1, 2, or m = 0 mod 4 built by
/// Sylvester, Paley I, Paley II or a Kronecker product of those, m <= 2^20.
inline bool hadamard_order_supported(std::size_t m) {
  if (m > (std::size_t{1} << 20)) return false;
  std::vector<std::uint8_t> memo(std::min<std::size_t>(m + 1, 1u << 16));
  return detail::hadamard_order_known(m, memo);
}

/// Builds an explicit Hadamard matrix of order m and verifies H H^T = m I.
/// Errors: [sbgq.hadamard.unsupported] no known construction for m (or m > 4096);
/// [sbgq.hadamard.internal] the built matrix fails the check (a bug).
/// Thread-safe. O(m^3) for the check.
inline result<hadamard_matrix> make_hadamard_matrix(std::size_t m) {
  if (m == 0 || m > 4096 || !hadamard_order_supported(m))
    return error(error_code::unsupported, "hadamard",
                 "no Hadamard matrix construction known for order m = " + std::to_string(m) +
                     " (supported: 1, 2, 2^j, Paley I m = q+1 with q prime = 3 mod 4, Paley II m = 2(q+1) "
                     "with q prime = 1 mod 4, Kronecker products of these; m <= 4096)");
  hadamard_matrix r;
  r.order = m;
  std::vector<std::uint8_t> memo(m + 1);
  r.h = detail::build_hadamard(m, r.construction, r.q, r.factor_a, memo);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = i; j < m; ++j) {
      long dot = 0;
      for (std::size_t k = 0; k < m; ++k) dot += r.h[i * m + k] * r.h[j * m + k];
      if (dot != (i == j ? static_cast<long>(m) : 0))
        return error(error_code::internal, "hadamard",
                     "constructed H_" + std::to_string(m) + " (" +
                         std::string(hadamard_construction_name(r.construction)) + ") fails H H^T = m I at (" +
                         std::to_string(i) + ", " + std::to_string(j) + ")");
    }
  return r;
}

/// n = m x p with p = 2^k and H_m constructible, m as small as possible.
struct hadamard_factors {
  std::size_t m = 1;  ///< order of the dense factor (1 when n is a power of two)
  std::size_t p = 1;  ///< power-of-two factor, transformed by the FWHT
};

/// Splits n into m x 2^k with the smallest m = odd(n) x 2^j that has a construction and
/// m <= hadamard_max_dense_order.
/// Errors: [sbgq.hadamard.unsupported] naming n and its odd part when none exists.
inline result<hadamard_factors> factor_hadamard_size(std::size_t n) {
  if (n == 0) return error(error_code::unsupported, "hadamard", "Hadamard transform of size n = 0");
  const unsigned k = static_cast<unsigned>(std::countr_zero(n));
  const std::size_t odd = n >> k;
  std::vector<std::uint8_t> memo(hadamard_max_dense_order + 1);
  for (unsigned j = 0; j <= k; ++j) {
    const std::size_t m = odd << j;
    if (m > hadamard_max_dense_order) break;
    if (detail::hadamard_order_known(m, memo)) return hadamard_factors{m, n / m};
  }
  return error(error_code::unsupported, "hadamard",
               "no Hadamard transform known for n = " + std::to_string(n) + " = " + detail::hadamard_odd_times_pow2(n) +
                   ": needs a Hadamard matrix of order m = " + std::to_string(odd) +
                   " x 2^j (j <= " + std::to_string(k) + ", m <= " + std::to_string(hadamard_max_dense_order) +
                   ") from Sylvester, Paley I (m-1 prime = 3 mod 4), Paley II (m/2-1 prime = 1 mod 4) or "
                   "Kronecker products, and none exists");
}

namespace ref {

/// Kronecker step, the specification of its summation order. x holds m rows (m % 4 ==
/// 0) of `count` values, `stride` values apart. For each column b, with u_j = x[j][b]:
///   - for every group t of four rows (4t .. 4t+3) and idx in 0..7 (bit k-1 set = minus
///     sign on u_{4t+k}): c_t[idx] = ((u_4t +- u_4t+1) +- u_4t+2) +- u_4t+3, evaluated
///     left to right; c_t[8 + idx] = -c_t[idx];
///   - row i of the result is c_0[code_i0] + c_1[code_i1] + ... + c_{m/4-1}[...], summed
///     left to right, times scale unless scale == 1,
/// where code[i * (m/4) + t] selects the signed combination equal to
/// sum_k H[i][4t+k] u_{4t+k} (see encode_hadamard_rows). `work` has room for 4 m values.
template <class T>
inline void hadamard_mix(T* x, std::size_t m, std::size_t stride, std::size_t count, const std::uint8_t* code,
                         T scale, T* work) {
  const std::size_t g = m / 4;
  for (std::size_t b = 0; b < count; ++b) {
    for (std::size_t t = 0; t < g; ++t) {
      const T u0 = x[(4 * t) * stride + b], u1 = x[(4 * t + 1) * stride + b], u2 = x[(4 * t + 2) * stride + b],
              u3 = x[(4 * t + 3) * stride + b];
      T* c = work + 16 * t;
      for (unsigned idx = 0; idx < 8; ++idx) {
        const T e1 = (idx & 1) ? u0 - u1 : u0 + u1;
        const T e2 = (idx & 2) ? e1 - u2 : e1 + u2;
        c[idx] = (idx & 4) ? e2 - u3 : e2 + u3;
        c[8 + idx] = -c[idx];
      }
    }
    for (std::size_t i = 0; i < m; ++i) {
      T acc = work[code[i * g]];
      for (std::size_t t = 1; t < g; ++t) acc = acc + work[16 * t + code[i * g + t]];
      if (scale != T(1)) acc = acc * scale;
      x[i * stride + b] = acc;
    }
  }
}

}  // namespace ref

namespace detail {

/// Codes of ref::hadamard_mix for the rows of H (or of H^T when transposed): for row i
/// and group t, sigma = H[i][4t], s_k = H[i][4t+k] sigma, code = idx(s_1, s_2, s_3) +
/// (sigma < 0 ? 8 : 0), so that c_t[code] = sum_k H[i][4t+k] u_{4t+k} exactly.
inline std::vector<std::uint8_t> encode_hadamard_rows(const hadamard_matrix& h, bool transposed) {
  const std::size_t m = h.order, g = m / 4;
  std::vector<std::uint8_t> code(m * g);
  auto at = [&](std::size_t i, std::size_t j) { return transposed ? h.at(j, i) : h.at(i, j); };
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t t = 0; t < g; ++t) {
      const int sigma = at(i, 4 * t);
      unsigned c = sigma < 0 ? 8u : 0u;
      for (unsigned k = 1; k < 4; ++k)
        if (at(i, 4 * t + k) * sigma < 0) c |= 1u << (k - 1);
      code[i * g + t] = static_cast<std::uint8_t>(c);
    }
  return code;
}

/// The Kronecker step (ref::hadamard_mix) at the given level: the kernel takes the
/// columns in multiples of its width, the reference the rest. Bit-identical at every level.
template <class T>
inline void hadamard_mix_at(simd_level level, T* x, std::size_t m, std::size_t stride, std::size_t count,
                            const std::uint8_t* code, T scale, T* work) {
  std::size_t done = 0;
  switch (level) {
#if SBGQ_X86_KERNELS
    case simd_level::avx512:
      done = count - count % avx512::mix_columns<T>;
      if (done) avx512::hadamard_mix<T>(x, m, stride, done, code, scale, work);
      break;
    case simd_level::avx2:
      done = count - count % avx2::mix_columns<T>;
      if (done) avx2::hadamard_mix<T>(x, m, stride, done, code, scale, work);
      break;
#endif
    default: break;
  }
  if (done < count) ref::hadamard_mix<T>(x + done, m, stride, count - done, code, scale, work);
}

/// Scratch values hadamard_mix_at needs at any level for order m.
template <class T>
inline std::size_t hadamard_mix_work_size(std::size_t m) {
  std::size_t w = 4 * m;  // ref
#if SBGQ_X86_KERNELS
  w = std::max(w, avx2::mix_work_size<T>(m));
  w = std::max(w, avx512::mix_work_size<T>(m));
#endif
  return w;
}

/// splitmix64 (Steele, Lea, Flood 2014), the documented sign generator.
inline std::uint64_t hadamard_splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// Radix-2^R butterflies of the FWHT applied lane-wise to rows: row k of the group is
/// rows[k][0 .. count); stage d (1, 2, 4) pairs rows k and k + d. Used when the
/// transform runs down the columns of a matrix; per column it is exactly the 1-D
/// algorithm's arithmetic (same butterflies, same operands), so bit-identical to it. The
/// restrict pointers let the compiler vectorize over the columns.
#if defined(__clang__)
#define SBGQ_HADAMARD_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define SBGQ_HADAMARD_IVDEP _Pragma("GCC ivdep")
#else
#define SBGQ_HADAMARD_IVDEP
#endif

template <class T, bool Scale>
inline void fwht_rows_radix2(T* SBGQ_RESTRICT r0, T* SBGQ_RESTRICT r1, std::size_t count, T scale) {
  SBGQ_HADAMARD_IVDEP
  for (std::size_t c = 0; c < count; ++c) {
    const T a = r0[c], b = r1[c];
    T y0 = a + b, y1 = a - b;
    if constexpr (Scale) {
      y0 *= scale;
      y1 *= scale;
    }
    r0[c] = y0;
    r1[c] = y1;
  }
}
template <class T, bool Scale>
inline void fwht_rows_radix4(T* SBGQ_RESTRICT r0, T* SBGQ_RESTRICT r1, T* SBGQ_RESTRICT r2, T* SBGQ_RESTRICT r3,
                        std::size_t count, T scale) {
  SBGQ_HADAMARD_IVDEP
  for (std::size_t c = 0; c < count; ++c) {
    const T a0 = r0[c], a1 = r1[c], a2 = r2[c], a3 = r3[c];
    const T b0 = a0 + a1, b1 = a0 - a1, b2 = a2 + a3, b3 = a2 - a3;       // d = 1
    T y0 = b0 + b2, y2 = b0 - b2, y1 = b1 + b3, y3 = b1 - b3;             // d = 2
    if constexpr (Scale) {
      y0 *= scale; y1 *= scale; y2 *= scale; y3 *= scale;
    }
    r0[c] = y0; r1[c] = y1; r2[c] = y2; r3[c] = y3;
  }
}
template <class T, bool Scale>
inline void fwht_rows_radix8(T* SBGQ_RESTRICT r0, T* SBGQ_RESTRICT r1, T* SBGQ_RESTRICT r2, T* SBGQ_RESTRICT r3,
                        T* SBGQ_RESTRICT r4, T* SBGQ_RESTRICT r5, T* SBGQ_RESTRICT r6, T* SBGQ_RESTRICT r7,
                        std::size_t count, T scale) {
  SBGQ_HADAMARD_IVDEP
  for (std::size_t c = 0; c < count; ++c) {
    const T a0 = r0[c], a1 = r1[c], a2 = r2[c], a3 = r3[c], a4 = r4[c], a5 = r5[c], a6 = r6[c], a7 = r7[c];
    const T b0 = a0 + a1, b1 = a0 - a1, b2 = a2 + a3, b3 = a2 - a3;       // d = 1
    const T b4 = a4 + a5, b5 = a4 - a5, b6 = a6 + a7, b7 = a6 - a7;
    const T e0 = b0 + b2, e2 = b0 - b2, e1 = b1 + b3, e3 = b1 - b3;       // d = 2
    const T e4 = b4 + b6, e6 = b4 - b6, e5 = b5 + b7, e7 = b5 - b7;
    T y0 = e0 + e4, y4 = e0 - e4, y1 = e1 + e5, y5 = e1 - e5;             // d = 4
    T y2 = e2 + e6, y6 = e2 - e6, y3 = e3 + e7, y7 = e3 - e7;
    if constexpr (Scale) {
      y0 *= scale; y1 *= scale; y2 *= scale; y3 *= scale;
      y4 *= scale; y5 *= scale; y6 *= scale; y7 *= scale;
    }
    r0[c] = y0; r1[c] = y1; r2[c] = y2; r3[c] = y3;
    r4[c] = y4; r5[c] = y5; r6[c] = y6; r7[c] = y7;
  }
}

/// FWHT of 2^log2p rows (ld values apart) applied to each of the `count` columns, in
/// passes of up to three stages split like the 1-D kernels, the last pass times scale
/// unless scale == 1.
template <class T>
inline void fwht_rows(simd_level level, T* x, std::size_t ld, std::size_t count, unsigned log2p, T scale) {
  const std::size_t rows = std::size_t{1} << log2p;
  unsigned s = 0;
  while (s < log2p) {
    const unsigned left = log2p - s, passes = (left + 2) / 3, r = (left + passes - 1) / passes;
    const bool last = s + r == log2p && scale != T(1);
    const std::size_t h = std::size_t{1} << s, k = std::size_t{1} << r;
    for (std::size_t blk = 0; blk < rows; blk += k * h)
      for (std::size_t j = blk; j < blk + h; ++j) {
        T* p0 = x + j * ld;
        const std::size_t st = h * ld;
#if SBGQ_X86_KERNELS
        if (level == simd_level::avx512 && count % avx512::lanes<T> == 0) {
          if (r == 3) avx512::rows_pass<T, 3>(p0, st, count, last, scale);
          else if (r == 2) avx512::rows_pass<T, 2>(p0, st, count, last, scale);
          else avx512::rows_pass<T, 1>(p0, st, count, last, scale);
          continue;
        }
        if (level >= simd_level::avx2 && count % avx2::lanes<T> == 0) {
          if (r == 3) avx2::rows_pass<T, 3>(p0, st, count, last, scale);
          else if (r == 2) avx2::rows_pass<T, 2>(p0, st, count, last, scale);
          else avx2::rows_pass<T, 1>(p0, st, count, last, scale);
          continue;
        }
#else
        (void)level;
#endif
        T* p1 = p0 + st;
        if (r == 3) {
          T *p2 = p0 + 2 * st, *p3 = p0 + 3 * st, *p4 = p0 + 4 * st, *p5 = p0 + 5 * st, *p6 = p0 + 6 * st,
            *p7 = p0 + 7 * st;
          if (last) fwht_rows_radix8<T, true>(p0, p1, p2, p3, p4, p5, p6, p7, count, scale);
          else fwht_rows_radix8<T, false>(p0, p1, p2, p3, p4, p5, p6, p7, count, scale);
        } else if (r == 2) {
          if (last) fwht_rows_radix4<T, true>(p0, p1, p0 + 2 * st, p0 + 3 * st, count, scale);
          else fwht_rows_radix4<T, false>(p0, p1, p0 + 2 * st, p0 + 3 * st, count, scale);
        } else {
          if (last) fwht_rows_radix2<T, true>(p0, p1, count, scale);
          else fwht_rows_radix2<T, false>(p0, p1, count, scale);
        }
      }
    s += r;
  }
}

}  // namespace detail

/// Options of a hadamard_transform.
struct hadamard_options {
  fwht_norm norm = fwht_norm::orthonormal;
  /// Block-diagonal transform with blocks of this size (must divide n and be a supported
  /// size); 0 = one block of size n.
  std::size_t block_size = 0;
  /// Randomized Hadamard: multiply by a +-1 diagonal D generated from `seed` (see
  /// hadamard_transform) before the Hadamard blocks.
  bool randomized = false;
  std::uint64_t seed = 0;
};

/// An orthogonal (or unscaled) Hadamard transform of size n, as a reusable plan:
///   Q = B D,  B = diag(H_b, ..., H_b) (n/b blocks, H_b = H_m (x) H_p, scaled by
///   1/sqrt(b) when orthonormal), D = diag(d_0 .. d_{n-1}) (identity unless randomized).
/// forward: x <- Q x; transpose: x <- Q^T x = D B^T x; inverse: x <- Q^-1 x (= transpose
/// when orthonormal, transpose / b when unscaled).
///
/// The signs: d_i = -1 when bit (i mod 64) of w_{i div 64} is set, where w_0, w_1, ... are
/// the successive outputs of splitmix64 started from state = seed (state += 0x9e3779b97f4a
/// 7c15; z = state; z = (z ^ z>>30) * 0xbf58476d1ce4e5b9; z = (z ^ z>>27) *
/// 0x94d049bb133111eb; w = z ^ z>>31). A rotation is reproducible from (n, options).
///
/// Thread-safe: const member functions may run concurrently on different data.
class hadamard_transform {
 public:
  /// Builds the plan for size n.
  /// Errors: [sbgq.hadamard.unsupported] for n with no construction (message names n);
  /// [sbgq.hadamard.invalid_argument] for a block size that does not divide n.
  static result<hadamard_transform> create(std::size_t n, const hadamard_options& opts = {}) {
    hadamard_transform t;
    t.n_ = n;
    t.opts_ = opts;
    t.block_ = opts.block_size == 0 ? n : opts.block_size;
    if (n == 0) return error(error_code::unsupported, "hadamard", "Hadamard transform of size n = 0");
    if (n % t.block_ != 0)
      return error(error_code::invalid_argument, "hadamard",
                   "block size " + std::to_string(t.block_) + " does not divide n = " + std::to_string(n));
    auto f = factor_hadamard_size(t.block_);
    if (!f.has_value()) {
      sbgq::error e = std::move(f).error();
      if (t.block_ != n) e.context = "block size of the n = " + std::to_string(n) + " transform: " + e.context;
      return e;
    }
    t.m_ = f->m;
    t.p_ = f->p;
    t.log2p_ = static_cast<unsigned>(std::countr_zero(t.p_));
    if (t.m_ > 1) {
      SBGQ_TRY(t.hm_, make_hadamard_matrix(t.m_));
      t.code_fwd_ = detail::encode_hadamard_rows(t.hm_, false);
      t.code_tr_ = detail::encode_hadamard_rows(t.hm_, true);
    } else {
      t.hm_.order = 1;
      t.hm_.h = {1};
    }
    if (opts.randomized) {
      t.signs_.resize(n);
      std::uint64_t state = opts.seed, w = 0;
      for (std::size_t i = 0; i < n; ++i) {
        if (i % 64 == 0) w = detail::hadamard_splitmix64(state);
        t.signs_[i] = static_cast<std::uint8_t>((w >> (i % 64)) & 1u);
      }
    }
    return t;
  }

  std::size_t size() const noexcept { return n_; }
  std::size_t block_size() const noexcept { return block_; }
  /// Order of the dense factor H_m of each block (1 for power-of-two blocks).
  std::size_t dense_order() const noexcept { return m_; }
  /// Power-of-two factor p of each block (block = m p).
  std::size_t pow2_order() const noexcept { return p_; }
  const hadamard_options& options() const noexcept { return opts_; }
  /// The explicit H_m (order 1 for power-of-two blocks).
  const hadamard_matrix& dense_factor() const noexcept { return hm_; }
  /// The diagonal of D as bits (1 = -1); empty unless randomized.
  std::span<const std::uint8_t> sign_bits() const noexcept { return signs_; }

  /// x <- Q x. Errors: [sbgq.hadamard.size_mismatch] when x.size() != size().
  result<void> forward(std::span<float> x) const { return run<float>(x, op::forward); }
  result<void> forward(std::span<double> x) const { return run<double>(x, op::forward); }
  /// x <- Q^T x. Errors as forward().
  result<void> transpose(std::span<float> x) const { return run<float>(x, op::transpose); }
  result<void> transpose(std::span<double> x) const { return run<double>(x, op::transpose); }
  /// x <- Q^-1 x. Errors as forward().
  result<void> inverse(std::span<float> x) const { return run<float>(x, op::inverse); }
  result<void> inverse(std::span<double> x) const { return run<double>(x, op::inverse); }

  /// Operation selector of apply_rows (internal use by the matrix functions).
  enum class op : std::uint8_t { forward, transpose, inverse };

  /// Applies `o` to `count` consecutive vectors of size() values at x, at `level`, with
  /// `work` holding work_size<T>() values. No checks (the public functions check).
  template <class T>
  void apply_unchecked(T* x, std::size_t count, op o, simd_level level, T* work) const {
    const T scale = block_scale<T>(o);
    const std::uint8_t* code = o == op::forward ? code_fwd_.data() : code_tr_.data();
    for (std::size_t v = 0; v < count; ++v, x += n_) {
      if (o == op::forward) flip_signs(x);
      for (std::size_t b = 0; b < n_; b += block_) {
        T* xb = x + b;
        if (m_ == 1) {
          detail::fwht_at<T>(level, xb, log2p_, scale);
        } else {
          for (std::size_t a = 0; a < m_; ++a) detail::fwht_at<T>(level, xb + a * p_, log2p_, T(1));
          detail::hadamard_mix_at<T>(level, xb, m_, p_, p_, code, scale, work);
        }
      }
      if (o != op::forward) flip_signs(x);
    }
  }
  /// Applies `o` to each of the `count` columns of the size() x count block at w (rows
  /// `ld` values apart), with rows as vectors: no transposition, and per column the
  /// same arithmetic as apply_unchecked, so bit-identical to it. No checks.
  template <class T>
  void apply_columns_unchecked(T* w, std::size_t ld, std::size_t count, op o, simd_level level, T* work) const {
    const T scale = block_scale<T>(o);
    const std::uint8_t* code = o == op::forward ? code_fwd_.data() : code_tr_.data();
    if (o == op::forward) flip_row_signs(w, ld, count);
    for (std::size_t b = 0; b < n_; b += block_) {
      T* xb = w + b * ld;
      for (std::size_t a = 0; a < m_; ++a)
        detail::fwht_rows<T>(level, xb + a * p_ * ld, ld, count, log2p_, m_ == 1 ? scale : T(1));
      if (m_ > 1)
        for (std::size_t r = 0; r < p_; ++r)
          detail::hadamard_mix_at<T>(level, xb + r * ld, m_, p_ * ld, count, code, scale, work);
    }
    if (o != op::forward) flip_row_signs(w, ld, count);
  }

  /// Scratch values apply_unchecked needs.
  template <class T>
  std::size_t work_size() const noexcept {
    return m_ > 1 ? detail::hadamard_mix_work_size<T>(m_) : 1;
  }

 private:
  hadamard_transform() = default;

  template <class T>
  T block_scale(op o) const {
    if (opts_.norm == fwht_norm::orthonormal) return detail::orthonormal_scale<T>(block_);
    return o == op::inverse ? static_cast<T>(1.0 / static_cast<double>(block_)) : T(1);
  }

  /// x_i <- -x_i where d_i = -1 (exact: flips the sign bit).
  template <class T>
  void flip_signs(T* x) const {
    if (signs_.empty()) return;
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr unsigned top = sizeof(T) * 8 - 1;
    for (std::size_t i = 0; i < n_; ++i)
      x[i] = std::bit_cast<T>(std::bit_cast<U>(x[i]) ^ (static_cast<U>(signs_[i]) << top));
  }

  /// Row i of the block <- -row i where d_i = -1.
  template <class T>
  void flip_row_signs(T* w, std::size_t ld, std::size_t count) const {
    if (signs_.empty()) return;
    for (std::size_t i = 0; i < n_; ++i)
      if (signs_[i])
        for (std::size_t c = 0; c < count; ++c) w[i * ld + c] = -w[i * ld + c];
  }

  template <class T>
  result<void> run(std::span<T> x, op o) const {
    if (x.size() != n_)
      return error(error_code::size_mismatch, "hadamard",
                   "transform of size " + std::to_string(n_) + " given a vector of " + std::to_string(x.size()) +
                       " values");
    std::vector<T> work(work_size<T>());
    apply_unchecked<T>(x.data(), 1, o, active_simd_level(), work.data());
    return {};
  }

  std::size_t n_ = 0, block_ = 0, m_ = 1, p_ = 1;
  unsigned log2p_ = 0;
  hadamard_options opts_;
  hadamard_matrix hm_;
  std::vector<std::uint8_t> code_fwd_, code_tr_;
  std::vector<std::uint8_t> signs_;
};

// ---- matrices ---------------------------------------------------------------------------

namespace detail {

inline error hadamard_matrix_shape_error(std::size_t rows, std::size_t cols, std::size_t have, const char* what,
                                std::size_t need) {
  return error(error_code::size_mismatch, "hadamard",
               "matrix " + std::to_string(rows) + " x " + std::to_string(cols) + " (" + std::to_string(have) +
                   " values): " + what + " must equal the transform size " + std::to_string(need));
}

template <class T>
inline result<void> apply_right_impl(const hadamard_transform& q, std::span<T> w, std::size_t rows,
                                     std::size_t cols, int n_threads) {
  if (w.size() != rows * cols || cols != q.size())
    return hadamard_matrix_shape_error(rows, cols, w.size(), "the number of columns", q.size());
  const simd_level level = active_simd_level();
  const std::size_t grain = std::max<std::size_t>(1, (std::size_t{1} << 16) / std::max<std::size_t>(cols, 1));
  parallel_for(rows, grain, n_threads, [&](std::size_t r0, std::size_t r1) {
    std::vector<T> work(q.work_size<T>());
    q.apply_unchecked<T>(w.data() + r0 * cols, r1 - r0, hadamard_transform::op::transpose, level, work.data());
  });
  return {};
}

/// Prefetch hint for [p, p + bytes) (no-op where unsupported).
inline void hadamard_prefetch(const void* p, std::size_t bytes, bool for_write) {
#if defined(__GNUC__) || defined(__clang__)
  const char* c = static_cast<const char*>(p);
  for (std::size_t i = 0; i < bytes; i += 64) {
    if (for_write) __builtin_prefetch(c + i, 1, 3);
    else __builtin_prefetch(c + i, 0, 3);
  }
#else
  (void)p, (void)bytes, (void)for_write;
#endif
}

template <class T>
inline result<void> apply_left_impl(const hadamard_transform& q, std::span<T> w, std::size_t rows,
                                    std::size_t cols, int n_threads) {
  if (w.size() != rows * cols || rows != q.size())
    return hadamard_matrix_shape_error(rows, cols, w.size(), "the number of rows", q.size());
  const simd_level level = active_simd_level();
  // Strips of columns, rows as vectors (apply_columns_unchecked). Each strip (all rows,
  // 256 bytes of each) is first copied into a contiguous buffer: the matrix's rows are
  // cols x sizeof(T) bytes apart, usually a multiple of 4 KiB, so in place the rows of a
  // strip would fall into a handful of cache sets and every pass would miss (measured
  // 10x slower). In the buffer, each power-of-two block of p rows is contiguous and stays
  // in L2 while its stages run; each matrix value is read once and written once.
  constexpr std::size_t strip = 256 / sizeof(T);
  const std::size_t n_strips = (cols + strip - 1) / strip;
  parallel_for(n_strips, 1, n_threads, [&](std::size_t s0, std::size_t s1) {
    std::vector<T> work(q.work_size<T>());
    std::vector<T> buf_storage(rows * strip + 64 / sizeof(T));
    T* const buf = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(buf_storage.data()) + 63) &
                                        ~std::uintptr_t{63});  // aligned vector loads: up to 1.5x faster
    for (std::size_t s = s0; s < s1; ++s) {
      const std::size_t c0 = s * strip, cw = std::min(strip, cols - c0);
      // Every row is on another page, out of reach of the hardware prefetchers (they
      // stay within a 4 KiB page): prefetch `ahead` rows in advance by hand.
      constexpr std::size_t ahead = 16;
      for (std::size_t r = 0; r < rows; ++r) {
        if (r + ahead < rows) detail::hadamard_prefetch(w.data() + (r + ahead) * cols + c0, cw * sizeof(T), false);
        std::memcpy(buf + r * strip, w.data() + r * cols + c0, cw * sizeof(T));
      }
      q.apply_columns_unchecked<T>(buf, strip, cw, hadamard_transform::op::transpose, level, work.data());
      for (std::size_t r = 0; r < rows; ++r) {
        if (r + ahead < rows) detail::hadamard_prefetch(w.data() + (r + ahead) * cols + c0, cw * sizeof(T), true);
        std::memcpy(w.data() + r * cols + c0, buf + r * strip, cw * sizeof(T));
      }
    }
  });
  return {};
}

}  // namespace detail

/// W <- W Q for a row-major rows x cols matrix (cols == q.size()): every row w becomes
/// Q^T w. Parallel over rows on n_threads threads (<= 0: all). Deterministic: the result
/// does not depend on the thread count or kernel level.
/// Errors: [sbgq.hadamard.size_mismatch] for inconsistent sizes.
inline result<void> apply_right(const hadamard_transform& q, std::span<float> w, std::size_t rows,
                                std::size_t cols, int n_threads = 0) {
  return detail::apply_right_impl<float>(q, w, rows, cols, n_threads);
}
inline result<void> apply_right(const hadamard_transform& q, std::span<double> w, std::size_t rows,
                                std::size_t cols, int n_threads = 0) {
  return detail::apply_right_impl<double>(q, w, rows, cols, n_threads);
}

/// W <- Q^T W for a row-major rows x cols matrix (rows == q.size()): every column c
/// becomes Q^T c. Parallel over strips of columns. Deterministic.
/// Errors: [sbgq.hadamard.size_mismatch] for inconsistent sizes.
inline result<void> apply_left(const hadamard_transform& q, std::span<float> w, std::size_t rows,
                               std::size_t cols, int n_threads = 0) {
  return detail::apply_left_impl<float>(q, w, rows, cols, n_threads);
}
inline result<void> apply_left(const hadamard_transform& q, std::span<double> w, std::size_t rows,
                               std::size_t cols, int n_threads = 0) {
  return detail::apply_left_impl<double>(q, w, rows, cols, n_threads);
}

/// W <- Q_left^T W Q_right (rows == q_left.size(), cols == q_right.size()): the weight
/// of a linear map from a space rotated by Q_right to one rotated by Q_left.
/// Errors: [sbgq.hadamard.size_mismatch] for inconsistent sizes.
inline result<void> apply_both(const hadamard_transform& q_left, const hadamard_transform& q_right,
                               std::span<float> w, std::size_t rows, std::size_t cols, int n_threads = 0) {
  if (rows != q_left.size())
    return detail::hadamard_matrix_shape_error(rows, cols, w.size(), "the number of rows", q_left.size());
  SBGQ_TRY_VOID(apply_right(q_right, w, rows, cols, n_threads));
  return apply_left(q_left, w, rows, cols, n_threads);
}
inline result<void> apply_both(const hadamard_transform& q_left, const hadamard_transform& q_right,
                               std::span<double> w, std::size_t rows, std::size_t cols, int n_threads = 0) {
  if (rows != q_left.size())
    return detail::hadamard_matrix_shape_error(rows, cols, w.size(), "the number of rows", q_left.size());
  SBGQ_TRY_VOID(apply_right(q_right, w, rows, cols, n_threads));
  return apply_left(q_left, w, rows, cols, n_threads);
}

SBGQ_END_NAMESPACE
