// AVX-512 kernels for the Walsh-Hadamard transforms of fwht.hpp and hadamard.hpp.
//
// Internal: included by fwht.hpp only. This file holds only the vector traits
// fwht_detail::vt<float> and vt<double> (16 float / 8 double lanes); the passes, the
// hadamard_mix step and the reason they are bit-identical to the scalar reference are
// in kernels/shared/fwht-inl.hpp, shared with the AVX2 kernel, so the same code runs
// at both widths.
//
// What only this file has: the in-register stages for h = 8 (f32) and h = 4 (f64), built
// from the same lane-swap + sign-xor + add step with the 128-bit-lane shuffle
// (vshuff32x4 / vshuff64x2).
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
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {
namespace fwht_detail {

template <class T>
struct vt;

template <>
struct vt<float> {
  using v = __m512;
  static constexpr unsigned log2_lanes = 4;
  static constexpr std::size_t lanes = 16;
  static v load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, v a) { _mm512_storeu_ps(p, a); }
  static v add(v a, v b) { return _mm512_add_ps(a, b); }
  static v sub(v a, v b) { return _mm512_sub_ps(a, b); }
  static v mul(v a, v b) { return _mm512_mul_ps(a, b); }
  static v set1(float a) { return _mm512_set1_ps(a); }
  static v neg(v a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.0f)); }
  // Stages h = 1, 2, 4, 8 inside the register. Lane i gets partner i^h from the permute;
  // lanes with bit h set have their own value negated, so sw + x' is
  //   x[i+h] + x[i]  (= a + b)  on low lanes,  x[i-h] + (-x[i])  (= a - b)  on high lanes.
  // Sign masks: lane i is -0.0f when (i & h) != 0. The full-mask forms of the permutes
  // compile to the plain instructions; they avoid GCC 12's false -Wuninitialized on the
  // _mm512_undefined_ps() inside the unmasked intrinsics.
  static v in_register_stages(v x) {
    const v m1 = _mm512_castsi512_ps(_mm512_setr_epi32(0, ns, 0, ns, 0, ns, 0, ns, 0, ns, 0, ns, 0, ns, 0, ns));
    const v m2 = _mm512_castsi512_ps(_mm512_setr_epi32(0, 0, ns, ns, 0, 0, ns, ns, 0, 0, ns, ns, 0, 0, ns, ns));
    const v m4 = _mm512_castsi512_ps(_mm512_setr_epi32(0, 0, 0, 0, ns, ns, ns, ns, 0, 0, 0, 0, ns, ns, ns, ns));
    const v m8 = _mm512_castsi512_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, ns, ns, ns, ns, ns, ns, ns, ns));
    x = _mm512_add_ps(_mm512_mask_permute_ps(x, 0xFFFF, x, 0xB1), _mm512_xor_ps(x, m1));  // [1,0,3,2] per 128
    x = _mm512_add_ps(_mm512_mask_permute_ps(x, 0xFFFF, x, 0x4E), _mm512_xor_ps(x, m2));  // [2,3,0,1] per 128
    x = _mm512_add_ps(_mm512_mask_shuffle_f32x4(x, 0xFFFF, x, x, 0xB1), _mm512_xor_ps(x, m4));  // 128-bit [1,0,3,2]
    x = _mm512_add_ps(_mm512_mask_shuffle_f32x4(x, 0xFFFF, x, x, 0x4E), _mm512_xor_ps(x, m8));  // 256-bit halves
    return x;
  }
  static constexpr int ns = static_cast<int>(0x80000000u);
};

template <>
struct vt<double> {
  using v = __m512d;
  static constexpr unsigned log2_lanes = 3;
  static constexpr std::size_t lanes = 8;
  static v load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, v a) { _mm512_storeu_pd(p, a); }
  static v add(v a, v b) { return _mm512_add_pd(a, b); }
  static v sub(v a, v b) { return _mm512_sub_pd(a, b); }
  static v mul(v a, v b) { return _mm512_mul_pd(a, b); }
  static v set1(double a) { return _mm512_set1_pd(a); }
  static v neg(v a) { return _mm512_xor_pd(a, _mm512_set1_pd(-0.0)); }
  // Stages h = 1, 2, 4 (same trick as the float version).
  static v in_register_stages(v x) {
    const v m1 = _mm512_setr_pd(0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0);
    const v m2 = _mm512_setr_pd(0.0, 0.0, -0.0, -0.0, 0.0, 0.0, -0.0, -0.0);
    const v m4 = _mm512_setr_pd(0.0, 0.0, 0.0, 0.0, -0.0, -0.0, -0.0, -0.0);
    x = _mm512_add_pd(_mm512_mask_permute_pd(x, 0xFF, x, 0x55), _mm512_xor_pd(x, m1));  // [1,0] per 128
    x = _mm512_add_pd(_mm512_mask_shuffle_f64x2(x, 0xFF, x, x, 0xB1), _mm512_xor_pd(x, m2));  // 128-bit [1,0,3,2]
    x = _mm512_add_pd(_mm512_mask_shuffle_f64x2(x, 0xFF, x, x, 0x4E), _mm512_xor_pd(x, m4));  // 256-bit halves
    return x;
  }
};

}  // namespace fwht_detail

#include "../shared/fwht-inl.hpp"

}  // namespace avx512
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
