// AVX2 kernels for the Walsh-Hadamard transforms of fwht.hpp and hadamard.hpp.
//
// Internal: included by fwht.hpp only. This file holds only the vector traits
// fwht_detail::vt<float> and vt<double> (8 float / 4 double lanes); the passes, the
// hadamard_mix step and the reason they are bit-identical to the scalar reference are
// in kernels/shared/fwht-inl.hpp, shared with the AVX-512 kernel, so the same code runs
// at both widths.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../../core/base.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX2_BEGIN
namespace avx2 {
namespace fwht_detail {

template <class T>
struct vt;

template <>
struct vt<float> {
  using v = __m256;
  static constexpr unsigned log2_lanes = 3;
  static constexpr std::size_t lanes = 8;
  static v load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, v a) { _mm256_storeu_ps(p, a); }
  static v add(v a, v b) { return _mm256_add_ps(a, b); }
  static v sub(v a, v b) { return _mm256_sub_ps(a, b); }
  static v mul(v a, v b) { return _mm256_mul_ps(a, b); }
  static v set1(float a) { return _mm256_set1_ps(a); }
  static v neg(v a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  // Stages h = 1, 2, 4 inside the register. Lane i gets partner i^h from the permute;
  // lanes with bit h set have their own value negated, so sw + x' is
  //   x[i+h] + x[i]  (= a + b)  on low lanes,  x[i-h] + (-x[i])  (= a - b)  on high lanes.
  static v in_register_stages(v x) {
    const v m1 = _mm256_setr_ps(0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f);
    const v m2 = _mm256_setr_ps(0.0f, 0.0f, -0.0f, -0.0f, 0.0f, 0.0f, -0.0f, -0.0f);
    const v m4 = _mm256_setr_ps(0.0f, 0.0f, 0.0f, 0.0f, -0.0f, -0.0f, -0.0f, -0.0f);
    x = _mm256_add_ps(_mm256_permute_ps(x, 0xB1), _mm256_xor_ps(x, m1));             // [1,0,3,2]
    x = _mm256_add_ps(_mm256_permute_ps(x, 0x4E), _mm256_xor_ps(x, m2));             // [2,3,0,1]
    x = _mm256_add_ps(_mm256_permute2f128_ps(x, x, 0x01), _mm256_xor_ps(x, m4));     // halves
    return x;
  }
};

template <>
struct vt<double> {
  using v = __m256d;
  static constexpr unsigned log2_lanes = 2;
  static constexpr std::size_t lanes = 4;
  static v load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, v a) { _mm256_storeu_pd(p, a); }
  static v add(v a, v b) { return _mm256_add_pd(a, b); }
  static v sub(v a, v b) { return _mm256_sub_pd(a, b); }
  static v mul(v a, v b) { return _mm256_mul_pd(a, b); }
  static v set1(double a) { return _mm256_set1_pd(a); }
  static v neg(v a) { return _mm256_xor_pd(a, _mm256_set1_pd(-0.0)); }
  // Stages h = 1, 2 (same trick as the float version).
  static v in_register_stages(v x) {
    const v m1 = _mm256_setr_pd(0.0, -0.0, 0.0, -0.0);
    const v m2 = _mm256_setr_pd(0.0, 0.0, -0.0, -0.0);
    x = _mm256_add_pd(_mm256_permute_pd(x, 0x5), _mm256_xor_pd(x, m1));            // [1,0,3,2]
    x = _mm256_add_pd(_mm256_permute2f128_pd(x, x, 0x01), _mm256_xor_pd(x, m2));    // halves
    return x;
  }
};

}  // namespace fwht_detail

#include "../shared/fwht-inl.hpp"

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
