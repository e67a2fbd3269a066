// Shared body of the AVX2 and AVX-512 Walsh-Hadamard kernels (fwht.hpp, hadamard.hpp). No
// include guard: it is included once inside each target namespace by
// kernels/<target>/fwht.hpp, after that target's vector traits fwht_detail::vt<float> and
// vt<double> (the only per-target code: register type, lane count, load/store/add/sub/
// mul/set1/neg and the in-register stages); it includes nothing itself.
//
// Every function here computes exactly the same arithmetic as its scalar reference in
// sbgq::ref (fwht.hpp), operation for operation, only scheduled differently, so the
// results are bit-identical (tests/test_fwht.cpp and test_hadamard.cpp check this at every
// level the CPU supports).
//
// Why the results are bit-identical. The radix-2 transform is a fixed graph: after stage
// s (butterfly distance h = 2^s), element j holds a+b (j has bit s clear) or a-b (bit s
// set), where a and b are the stage s-1 values at the lower and the upper index of the pair.
// Any schedule that evaluates every node of that graph with the same two operands in the
// same roles gets the same bits, whatever the loop order, blocking or vector width. So
// the kernel is free to
//   - do the first log2(lanes) stages inside a register (a lane permute brings the
//     partner in; x + (-y) is exactly x - y in IEEE arithmetic, so one xor of the sign
//     bit and one add evaluate a+b on the low lanes and a-b on the high ones),
//   - do the next three stages across 8 registers (the "base pass" of 8 x lanes values),
//   - do the remaining stages in passes of up to three stages (radix 8, 4 or 2) that load
//     2^r vectors h apart, and
//   - block the passes for the caches: first all stages below l1_block inside each
//     l1_block, then the stages below l2_block inside each l2_block, then the rest.
// The orthonormal scale is a multiply of the final value, fused into the last pass.
//
// Operation counts (f32, AVX2, per 8-lane vector and stage): a cross-register stage is 1
// add or sub; an in-register stage is 1 permute + 1 xor + 1 add. Zen 3 has two 256-bit FP
// add pipes, so the add/sub bound is n log2(n) / 16 cycles; the permutes share a pipe
// with one adder, the xors go to any pipe.
//
// The Kronecker step (hadamard_mix) evaluates the reference's fixed summation tree on a
// whole vector of columns at once: every lane does the reference's operations in the
// reference's order.
//

namespace fwht_detail {

/// Cache blocks in bytes: the stages inside 16 KiB blocks run first (L1-resident), then
/// the stages inside 256 KiB blocks (L2-resident), then the rest in full sweeps.
inline constexpr std::size_t l1_block_bytes = std::size_t{16} << 10;
inline constexpr std::size_t l2_block_bytes = std::size_t{256} << 10;

template <class T>
inline void butterfly(typename vt<T>::v& a, typename vt<T>::v& b) {
  const typename vt<T>::v s = vt<T>::add(a, b);
  b = vt<T>::sub(a, b);
  a = s;
}

/// Base pass: 8 registers = 8 x lanes values, stages 0 .. log2_lanes + 2.
template <class T>
inline void base_pass(T* x, std::size_t n, bool scale_it, T scale) {
  using V = vt<T>;
  constexpr std::size_t L = V::lanes;
  const typename V::v s = V::set1(scale);
  for (std::size_t i = 0; i < n; i += 8 * L) {
    typename V::v r0 = V::in_register_stages(V::load(x + i + 0 * L));
    typename V::v r1 = V::in_register_stages(V::load(x + i + 1 * L));
    typename V::v r2 = V::in_register_stages(V::load(x + i + 2 * L));
    typename V::v r3 = V::in_register_stages(V::load(x + i + 3 * L));
    typename V::v r4 = V::in_register_stages(V::load(x + i + 4 * L));
    typename V::v r5 = V::in_register_stages(V::load(x + i + 5 * L));
    typename V::v r6 = V::in_register_stages(V::load(x + i + 6 * L));
    typename V::v r7 = V::in_register_stages(V::load(x + i + 7 * L));
    butterfly<T>(r0, r1); butterfly<T>(r2, r3); butterfly<T>(r4, r5); butterfly<T>(r6, r7);  // h = L
    butterfly<T>(r0, r2); butterfly<T>(r1, r3); butterfly<T>(r4, r6); butterfly<T>(r5, r7);  // h = 2L
    butterfly<T>(r0, r4); butterfly<T>(r1, r5); butterfly<T>(r2, r6); butterfly<T>(r3, r7);  // h = 4L
    if (scale_it) {
      r0 = V::mul(r0, s); r1 = V::mul(r1, s); r2 = V::mul(r2, s); r3 = V::mul(r3, s);
      r4 = V::mul(r4, s); r5 = V::mul(r5, s); r6 = V::mul(r6, s); r7 = V::mul(r7, s);
    }
    V::store(x + i + 0 * L, r0); V::store(x + i + 1 * L, r1);
    V::store(x + i + 2 * L, r2); V::store(x + i + 3 * L, r3);
    V::store(x + i + 4 * L, r4); V::store(x + i + 5 * L, r5);
    V::store(x + i + 6 * L, r6); V::store(x + i + 7 * L, r7);
  }
}

/// One pass of R = 1, 2 or 3 stages h, 2h, .. over [x, x + n): vectors 2^R at a time,
/// h apart (h >= lanes, a multiple of lanes).
template <class T, unsigned R>
inline void radix_pass(T* x, std::size_t n, std::size_t h, bool scale_it, T scale) {
  using V = vt<T>;
  constexpr std::size_t L = V::lanes;
  constexpr std::size_t K = std::size_t{1} << R;
  const typename V::v s = V::set1(scale);
  for (std::size_t blk = 0; blk < n; blk += K * h) {
    T* b = x + blk;
    for (std::size_t j = 0; j < h; j += L) {
      typename V::v r[K];
      for (std::size_t k = 0; k < K; ++k) r[k] = V::load(b + j + k * h);
      for (std::size_t d = 1; d < K; d *= 2)
        for (std::size_t k = 0; k < K; ++k)
          if ((k & d) == 0) butterfly<T>(r[k], r[k + d]);
      if (scale_it)
        for (std::size_t k = 0; k < K; ++k) r[k] = V::mul(r[k], s);
      for (std::size_t k = 0; k < K; ++k) V::store(b + j + k * h, r[k]);
    }
  }
}

/// Stages [s_begin, s_end) over [x, x + n) in passes of up to three stages, split as
/// evenly as possible (4 -> 2+2, 5 -> 3+2, 7 -> 3+2+2). The pass holding the last stage
/// multiplies by `scale` when scale_last.
template <class T>
inline void run_passes(T* x, std::size_t n, unsigned s_begin, unsigned s_end, bool scale_last, T scale) {
  unsigned left = s_end - s_begin;
  unsigned s = s_begin;
  while (left > 0) {
    const unsigned passes = (left + 2) / 3;
    const unsigned r = (left + passes - 1) / passes;
    const bool last = (r == left) && scale_last;
    const std::size_t h = std::size_t{1} << s;
    if (r == 3) radix_pass<T, 3>(x, n, h, last, scale);
    else if (r == 2) radix_pass<T, 2>(x, n, h, last, scale);
    else radix_pass<T, 1>(x, n, h, last, scale);
    s += r;
    left -= r;
  }
}

/// Smallest log2(n) fwht() accepts (n = 8 x lanes); smaller n use the reference.
template <class T>
inline constexpr unsigned min_log2 = vt<T>::log2_lanes + 3;

}  // namespace fwht_detail

/// Unnormalised Walsh-Hadamard transform of x[0 .. 2^log2n), then x *= scale unless
/// scale == 1. Precondition: log2n >= fwht_detail::min_log2<T> (checked by SBGQ_DASSERT).
/// Bit-identical to ref::fwht.
template <class T>
inline void fwht(T* x, unsigned log2n, T scale) {
  using namespace fwht_detail;
  SBGQ_DASSERT(log2n >= min_log2<T>);
  const std::size_t n = std::size_t{1} << log2n;
  const bool scaled = scale != T(1);
  const unsigned base = min_log2<T>;
  const std::size_t b1 = std::min(n, l1_block_bytes / sizeof(T));
  const std::size_t b2 = std::min(n, l2_block_bytes / sizeof(T));
  const unsigned lg1 = static_cast<unsigned>(std::countr_zero(b1));
  const unsigned lg2 = static_cast<unsigned>(std::countr_zero(b2));
  for (std::size_t i = 0; i < n; i += b1) {
    base_pass<T>(x + i, b1, scaled && lg1 == base && b1 == n, scale);
    run_passes<T>(x + i, b1, base, lg1, scaled && b1 == n, scale);
  }
  if (b1 < n)
    for (std::size_t i = 0; i < n; i += b2) run_passes<T>(x + i, b2, lg1, lg2, scaled && b2 == n, scale);
  if (b2 < n) run_passes<T>(x, n, lg2, log2n, scaled, scale);
}

/// Radix-2^R butterflies (R = 1, 2, 3) applied lane-wise to the 2^R rows x + k stride
/// (k < 2^R) of `count` values: stage d = 1, 2, 4 pairs rows k and k + d, then x *= scale
/// when scale_it. The FWHT of fwht.hpp run down the columns of a matrix (hadamard.hpp
/// apply_left): per column the same butterflies as the 1-D transform, so bit-identical.
/// Precondition: count % lanes == 0.
template <class T, unsigned R>
inline void rows_pass(T* x, std::size_t stride, std::size_t count, bool scale_it, T scale) {
  using V = fwht_detail::vt<T>;
  constexpr std::size_t L = V::lanes;
  constexpr std::size_t K = std::size_t{1} << R;
  SBGQ_DASSERT(count % L == 0);
  const typename V::v s = V::set1(scale);
  for (std::size_t c = 0; c < count; c += L) {
    typename V::v r[K];
    for (std::size_t k = 0; k < K; ++k) r[k] = V::load(x + k * stride + c);
    for (std::size_t d = 1; d < K; d *= 2)
      for (std::size_t k = 0; k < K; ++k)
        if ((k & d) == 0) fwht_detail::butterfly<T>(r[k], r[k + d]);
    if (scale_it)
      for (std::size_t k = 0; k < K; ++k) r[k] = V::mul(r[k], s);
    for (std::size_t k = 0; k < K; ++k) V::store(x + k * stride + c, r[k]);
  }
}

/// Columns hadamard_mix handles at once (two vectors: two independent add chains, and
/// the scalar work of reading a row's codes is shared by both).
template <class T>
inline constexpr std::size_t mix_columns = 2 * fwht_detail::vt<T>::lanes;

/// The Kronecker step of ref::hadamard_mix, mix_columns<T> columns at a time: x holds m
/// rows of `count` values, `stride` values apart; column b of the result is H_m (or its transpose, as encoded in
/// `code`) times column b, times scale unless scale == 1. code[i * (m / 4) + t] is the
/// signed combination of group t that row i uses (see ref::hadamard_mix). `work` has
/// room for mix_work_size<T>(m) values.
/// Preconditions: m % 4 == 0, count % mix_columns<T> == 0.
///
/// Cost per column and group of four rows: 14 add/sub + 8 negations for the 16 signed
/// combinations, then 1 add per output row: m/4 + 5.5 adds per value, against m for a
/// plain dense product.
template <class T>
inline void hadamard_mix(T* x, std::size_t m, std::size_t stride, std::size_t count, const std::uint8_t* code,
                         T scale, T* work) {
  using V = fwht_detail::vt<T>;
  using vec = typename V::v;
  constexpr std::size_t L = V::lanes, C = mix_columns<T>;
  SBGQ_DASSERT(m % 4 == 0 && count % C == 0);
  const std::size_t g = m / 4;
  const bool scaled = scale != T(1);
  const vec s = V::set1(scale);
  // The combinations are stored and reloaded once per output row: keep them 64-byte
  // aligned (loads split across cache lines made this step up to 1.8x slower).
  work = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(work) + 63) & ~std::uintptr_t{63});
  for (std::size_t b = 0; b < count; b += C) {
    // Signed sums of each group of four rows: c[idx] = ((u0 +- u1) +- u2) +- u3 with the
    // signs in idx bits 0..2 (set = minus); c[8 + idx] = -c[idx]. Entry k of group t is
    // at work + (16 t + k) C, its two vectors L apart.
    for (std::size_t t = 0; t < g; ++t) {
      for (std::size_t h = 0; h < C; h += L) {
        const T* u = x + 4 * t * stride + b + h;
        const vec u0 = V::load(u), u1 = V::load(u + stride), u2 = V::load(u + 2 * stride),
                  u3 = V::load(u + 3 * stride);
        const vec a0 = V::add(u0, u1), a1 = V::sub(u0, u1);                             // idx 0, 1
        const vec e0 = V::add(a0, u2), e1 = V::add(a1, u2), e2 = V::sub(a0, u2), e3 = V::sub(a1, u2);  // 0..3
        const vec c0 = V::add(e0, u3), c1 = V::add(e1, u3), c2 = V::add(e2, u3), c3 = V::add(e3, u3);
        const vec c4 = V::sub(e0, u3), c5 = V::sub(e1, u3), c6 = V::sub(e2, u3), c7 = V::sub(e3, u3);
        T* c = work + 16 * t * C + h;
        V::store(c + 0 * C, c0); V::store(c + 1 * C, c1); V::store(c + 2 * C, c2); V::store(c + 3 * C, c3);
        V::store(c + 4 * C, c4); V::store(c + 5 * C, c5); V::store(c + 6 * C, c6); V::store(c + 7 * C, c7);
        V::store(c + 8 * C, V::neg(c0)); V::store(c + 9 * C, V::neg(c1));
        V::store(c + 10 * C, V::neg(c2)); V::store(c + 11 * C, V::neg(c3));
        V::store(c + 12 * C, V::neg(c4)); V::store(c + 13 * C, V::neg(c5));
        V::store(c + 14 * C, V::neg(c6)); V::store(c + 15 * C, V::neg(c7));
      }
    }
    // Each output row: the sum over groups, left to right, of its combination. All the
    // inputs of these columns are in `work` now, so x is overwritten in place.
    for (std::size_t i = 0; i < m; ++i) {
      const std::uint8_t* ci = code + i * g;
      const T* ct = work + std::size_t{ci[0]} * C;
      vec acc0 = V::load(ct), acc1 = V::load(ct + L);
      for (std::size_t t = 1; t < g; ++t) {
        ct = work + (16 * t + ci[t]) * C;
        acc0 = V::add(acc0, V::load(ct));
        acc1 = V::add(acc1, V::load(ct + L));
      }
      if (scaled) {
        acc0 = V::mul(acc0, s);
        acc1 = V::mul(acc1, s);
      }
      V::store(x + i * stride + b, acc0);
      V::store(x + i * stride + b + L, acc1);
    }
  }
}

/// Values of scratch hadamard_mix needs for order m.
template <class T>
inline constexpr std::size_t mix_work_size(std::size_t m) {
  return 4 * m * mix_columns<T> + 64 / sizeof(T);  // + room to align to 64 bytes
}

/// Lanes per vector for T (hadamard_mix needs p % lanes == 0).
template <class T>
inline constexpr std::size_t lanes = fwht_detail::vt<T>::lanes;
