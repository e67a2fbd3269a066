// Lane-parallel float/int vectors for the AVX2 codec kernels (8 lanes).
//
// Internal: included by kernels/avx2/<codec>.hpp only. The codec kernels vectorize
// *across* blocks: lane i runs the scalar reference's search for block (or sub-block) i,
// operation for operation, so every lane produces the reference's bits (algorithms doc
// section 16). These wrappers give the shared kernel bodies (kernels/shared/*-inl.hpp)
// operators that read like the reference: `sumqx = sumqx + w * q * x` is
// ((w*q)*x) then the add, one rounding each, exactly as the scalar code (no FMA: the
// target region leaves it out, and the library builds with -ffp-contract=off).
//
// kernels/avx512/codec_vec.hpp defines the same names for 16 lanes (masks there are
// __mmask16 instead of all-ones float lanes); everything written against these names
// compiles unchanged for both targets.
//
// IEEE details the kernels rely on:
//   - _mm256_div_ps / _mm256_sqrt_ps are correctly rounded, like '/' and sqrtf;
//   - ordered compares (_CMP_LT_OQ, ...) are false on NaN, like C's <, >, ==;
//     nlt() is the unordered "!(a < b)", true on NaN, as the scalar negation;
//   - select(m, a, b) is a bit blend, so -0.0 and NaN payloads pass through untouched;
//   - integer -> float conversions of the small integers used here are exact.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../base.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX2_BEGIN
namespace avx2::cv {

inline constexpr int lanes = 8;

struct vf {
  __m256 v;
  vf() = default;
  explicit vf(__m256 a) : v(a) {}
  vf(float a) : v(_mm256_set1_ps(a)) {}  // NOLINT: broadcast, like a scalar constant
};
struct vi {
  __m256i v;
  vi() = default;
  explicit vi(__m256i a) : v(a) {}
  vi(int a) : v(_mm256_set1_epi32(a)) {}  // NOLINT
};
struct vm {
  __m256 v;  // all-ones lanes are true
};

inline vf operator+(vf a, vf b) { return vf(_mm256_add_ps(a.v, b.v)); }
inline vf operator-(vf a, vf b) { return vf(_mm256_sub_ps(a.v, b.v)); }
inline vf operator*(vf a, vf b) { return vf(_mm256_mul_ps(a.v, b.v)); }
inline vf operator/(vf a, vf b) { return vf(_mm256_div_ps(a.v, b.v)); }
inline vf operator-(vf a) { return vf(_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))); }
inline vf abs(vf a) { return vf(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)); }
inline vf sqrt(vf a) { return vf(_mm256_sqrt_ps(a.v)); }

inline vm operator<(vf a, vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline vm operator>(vf a, vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline vm operator<=(vf a, vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline vm operator>=(vf a, vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline vm operator==(vf a, vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
inline vm operator!=(vf a, vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ)}; }  // C's != (true on NaN)
/// !(a < b), true when either is NaN (the scalar negation of an ordered compare).
inline vm nlt(vf a, vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_NLT_UQ)}; }
inline vm operator&(vm a, vm b) { return {_mm256_and_ps(a.v, b.v)}; }
inline vm operator|(vm a, vm b) { return {_mm256_or_ps(a.v, b.v)}; }
inline vm operator~(vm a) { return {_mm256_xor_ps(a.v, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))}; }
inline bool any(vm a) { return _mm256_movemask_ps(a.v) != 0; }

/// m ? a : b per lane.
inline vf select(vm m, vf a, vf b) { return vf(_mm256_blendv_ps(b.v, a.v, m.v)); }
inline vi select(vm m, vi a, vi b) {
  return vi(_mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b.v), _mm256_castsi256_ps(a.v), m.v)));
}

inline vi operator+(vi a, vi b) { return vi(_mm256_add_epi32(a.v, b.v)); }
inline vi operator-(vi a, vi b) { return vi(_mm256_sub_epi32(a.v, b.v)); }
inline vi operator&(vi a, vi b) { return vi(_mm256_and_si256(a.v, b.v)); }
inline vi operator|(vi a, vi b) { return vi(_mm256_or_si256(a.v, b.v)); }
inline vi operator<<(vi a, int s) { return vi(_mm256_slli_epi32(a.v, s)); }
inline vi min(vi a, vi b) { return vi(_mm256_min_epi32(a.v, b.v)); }
inline vi max(vi a, vi b) { return vi(_mm256_max_epi32(a.v, b.v)); }
inline vm operator==(vi a, vi b) { return {_mm256_castsi256_ps(_mm256_cmpeq_epi32(a.v, b.v))}; }
inline vm operator>(vi a, vi b) { return {_mm256_castsi256_ps(_mm256_cmpgt_epi32(a.v, b.v))}; }
/// k + 1 on the lanes where m holds (all-ones is -1 as an integer).
inline vi inc_if(vi k, vm m) { return vi(_mm256_sub_epi32(k.v, _mm256_castps_si256(m.v))); }
/// static_cast<float>(int), exact for |k| < 2^24.
inline vf to_float(vi k) { return vf(_mm256_cvtepi32_ps(k.v)); }

/// detail::codec::nearest_int lane by lane: the same 1.5 * 2^23 add and mantissa bits,
/// including its garbage outside |v| < 2^22 (the hardware add is the same IEEE add the
/// scalar code uses, so even those bits agree).
inline vi nearest_int(vf v) {
  const __m256i bits = _mm256_castps_si256(_mm256_add_ps(v.v, _mm256_set1_ps(12582912.0f)));
  return vi(_mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000)));
}

/// 0, 1, .., lanes-1.
inline vi lane_index() { return vi(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }

/// Lane i gets p[i * stride] (stride in floats).
inline vf gather(const float* p, int stride) {
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
  return vf(_mm256_i32gather_ps(p, idx, 4));
}

/// A 16-entry float table (t[0..15]) indexed per lane by k in 0..15.
struct table16 {
  __m256 lo, hi;
  explicit table16(const float* t) : lo(_mm256_loadu_ps(t)), hi(_mm256_loadu_ps(t + 8)) {}
  vf operator[](vi k) const {
    const __m256 a = _mm256_permutevar8x32_ps(lo, k.v);
    const __m256 b = _mm256_permutevar8x32_ps(hi, k.v);
    return vf(_mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(k.v, 28))));  // bit 3 -> sign
  }
};

inline void store(float* p, vf a) { _mm256_storeu_ps(p, a.v); }
inline void store(std::int32_t* p, vi a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a.v); }
inline vf load(const float* p) { return vf(_mm256_loadu_ps(p)); }

}  // namespace avx2::cv
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
