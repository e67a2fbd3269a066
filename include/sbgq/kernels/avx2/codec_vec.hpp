// Lane-parallel float/int vectors for the AVX2 codec kernels (16 lanes in two registers).
//
// Internal: included by kernels/avx2/<codec>.hpp only. The codec kernels vectorize
// *across* blocks: lane i runs the scalar reference's search for block (or sub-block) i,
// operation for operation, so every lane produces the reference's bits (algorithms doc
// section 16). These wrappers give the shared kernel bodies (kernels/shared/*-inl.hpp)
// operators that read like the reference: `sumqx = sumqx + w * q * x` is
// ((w*q)*x) then the add, one rounding each, exactly as the scalar code (no FMA: the
// target region leaves it out, and the library builds with -ffp-contract=off).
//
// kernels/avx512/codec_vec.hpp defines the same names with 16 lanes per register (32 per
// vector; masks there are __mmask16 instead of all-ones float lanes); everything written
// against these names compiles unchanged for both targets.
//
// Why two registers per vector: the searches are chains of sequential per-lane sums
// (sum += w*x*l for l = 0..31, then a division, then the next candidate), so one
// register's worth of blocks leaves the core waiting on add latency (Q4_K plain: 183 ms
// with two registers vs 293 ms with one, same run conditions; the IQ4 searches, which
// are throughput-bound, run at the same speed either way).
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

#include "../../core/base.hpp"

// Kernel helpers that must be inlined into their loops (a call would pass the vectors
// through memory): GCC's heuristics give up on the larger ones.
#ifndef SBGQ_CV_INLINE
#if defined(__GNUC__) || defined(__clang__)
#define SBGQ_CV_INLINE inline __attribute__((always_inline))
#else
#define SBGQ_CV_INLINE inline
#endif
#endif

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX2_BEGIN
namespace avx2::cv {

/// Lanes per hardware register, and registers per vector: every vf/vi/vm holds `regs`
/// registers that each operator processes independently. Two registers give the
/// out-of-order core two independent dependency chains for every sequential per-lane
/// sum (the searches are latency-bound otherwise); lane i lives in register i / 8,
/// element i % 8.
inline constexpr int reg_lanes = 8;
inline constexpr int regs = 2;
inline constexpr int lanes = reg_lanes * regs;

#define SBGQ_CV_EACH for (int r_ = 0; r_ < regs; ++r_)

struct vf {
  __m256 v[regs];
  vf() = default;
  vf(float a) { SBGQ_CV_EACH v[r_] = _mm256_set1_ps(a); }  // NOLINT: broadcast, like a scalar constant
};
struct vi {
  __m256i v[regs];
  vi() = default;
  vi(int a) { SBGQ_CV_EACH v[r_] = _mm256_set1_epi32(a); }  // NOLINT
};
struct vm {
  __m256 v[regs];  // all-ones lanes are true
};

#define SBGQ_CV_F(name, expr) \
  inline vf name(vf a, vf b) { vf o; SBGQ_CV_EACH o.v[r_] = expr; return o; }
SBGQ_CV_F(operator+, _mm256_add_ps(a.v[r_], b.v[r_]))
SBGQ_CV_F(operator-, _mm256_sub_ps(a.v[r_], b.v[r_]))
SBGQ_CV_F(operator*, _mm256_mul_ps(a.v[r_], b.v[r_]))
SBGQ_CV_F(operator/, _mm256_div_ps(a.v[r_], b.v[r_]))
#undef SBGQ_CV_F
inline vf operator-(vf a) { vf o; SBGQ_CV_EACH o.v[r_] = _mm256_xor_ps(a.v[r_], _mm256_set1_ps(-0.0f)); return o; }
inline vf abs(vf a) { vf o; SBGQ_CV_EACH o.v[r_] = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v[r_]); return o; }
inline vf sqrt(vf a) { vf o; SBGQ_CV_EACH o.v[r_] = _mm256_sqrt_ps(a.v[r_]); return o; }

#define SBGQ_CV_C(name, pred) \
  inline vm name(vf a, vf b) { vm o; SBGQ_CV_EACH o.v[r_] = _mm256_cmp_ps(a.v[r_], b.v[r_], pred); return o; }
SBGQ_CV_C(operator<, _CMP_LT_OQ)
SBGQ_CV_C(operator>, _CMP_GT_OQ)
SBGQ_CV_C(operator<=, _CMP_LE_OQ)
SBGQ_CV_C(operator>=, _CMP_GE_OQ)
SBGQ_CV_C(operator==, _CMP_EQ_OQ)
SBGQ_CV_C(operator!=, _CMP_NEQ_UQ)  // C's != (true on NaN)
SBGQ_CV_C(nlt, _CMP_NLT_UQ)         // !(a < b), true on NaN
#undef SBGQ_CV_C
inline vm operator&(vm a, vm b) { vm o; SBGQ_CV_EACH o.v[r_] = _mm256_and_ps(a.v[r_], b.v[r_]); return o; }
inline vm operator|(vm a, vm b) { vm o; SBGQ_CV_EACH o.v[r_] = _mm256_or_ps(a.v[r_], b.v[r_]); return o; }
inline vm operator~(vm a) {
  vm o;
  SBGQ_CV_EACH o.v[r_] = _mm256_xor_ps(a.v[r_], _mm256_castsi256_ps(_mm256_set1_epi32(-1)));
  return o;
}
inline bool any(vm a) { int u = 0; SBGQ_CV_EACH u |= _mm256_movemask_ps(a.v[r_]); return u != 0; }

/// m ? a : b per lane (a bit blend: -0.0 and NaN payloads pass through untouched).
inline vf select(vm m, vf a, vf b) { vf o; SBGQ_CV_EACH o.v[r_] = _mm256_blendv_ps(b.v[r_], a.v[r_], m.v[r_]); return o; }
inline vi select(vm m, vi a, vi b) {
  vi o;
  SBGQ_CV_EACH o.v[r_] = _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(b.v[r_]), _mm256_castsi256_ps(a.v[r_]), m.v[r_]));
  return o;
}

#define SBGQ_CV_I(name, expr) \
  inline vi name(vi a, vi b) { vi o; SBGQ_CV_EACH o.v[r_] = expr; return o; }
SBGQ_CV_I(operator+, _mm256_add_epi32(a.v[r_], b.v[r_]))
SBGQ_CV_I(operator-, _mm256_sub_epi32(a.v[r_], b.v[r_]))
SBGQ_CV_I(operator&, _mm256_and_si256(a.v[r_], b.v[r_]))
SBGQ_CV_I(operator|, _mm256_or_si256(a.v[r_], b.v[r_]))
SBGQ_CV_I(min, _mm256_min_epi32(a.v[r_], b.v[r_]))
SBGQ_CV_I(max, _mm256_max_epi32(a.v[r_], b.v[r_]))
#undef SBGQ_CV_I
inline vi operator<<(vi a, int s) {
  vi o;
  SBGQ_CV_EACH o.v[r_] = _mm256_sll_epi32(a.v[r_], _mm_cvtsi32_si128(s));
  return o;
}
inline vm operator==(vi a, vi b) {
  vm o;
  SBGQ_CV_EACH o.v[r_] = _mm256_castsi256_ps(_mm256_cmpeq_epi32(a.v[r_], b.v[r_]));
  return o;
}
inline vm operator>(vi a, vi b) {
  vm o;
  SBGQ_CV_EACH o.v[r_] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(a.v[r_], b.v[r_]));
  return o;
}
/// k + 1 on the lanes where m holds (all-ones is -1 as an integer).
inline vi inc_if(vi k, vm m) {
  vi o;
  SBGQ_CV_EACH o.v[r_] = _mm256_sub_epi32(k.v[r_], _mm256_castps_si256(m.v[r_]));
  return o;
}
/// static_cast<float>(int), exact for |k| < 2^24.
inline vf to_float(vi k) { vf o; SBGQ_CV_EACH o.v[r_] = _mm256_cvtepi32_ps(k.v[r_]); return o; }

/// detail::codec::nearest_int lane by lane: the same 1.5 * 2^23 add and mantissa bits,
/// including its garbage outside |v| < 2^22 (the hardware add is the same IEEE add the
/// scalar code uses, so even those bits agree).
inline vi nearest_int(vf v) {
  vi o;
  SBGQ_CV_EACH {
    const __m256i bits = _mm256_castps_si256(_mm256_add_ps(v.v[r_], _mm256_set1_ps(12582912.0f)));
    o.v[r_] = _mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
  }
  return o;
}

/// Lane i gets p[i * stride] (stride in floats).
inline vf gather(const float* p, int stride) {
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
  vf o;
  SBGQ_CV_EACH o.v[r_] = _mm256_i32gather_ps(p + r_ * reg_lanes * stride, idx, 4);
  return o;
}

/// A 16-entry float table (t[0..15]) indexed per lane by k in 0..15: two 8-entry
/// permutes, blended on bit 3 of k (moved to the sign bit).
struct table16 {
  __m256 lo, hi;
  explicit table16(const float* t) : lo(_mm256_loadu_ps(t)), hi(_mm256_loadu_ps(t + 8)) {}
  vf operator[](vi k) const {
    vf o;
    SBGQ_CV_EACH {
      const __m256 a = _mm256_permutevar8x32_ps(lo, k.v[r_]);
      const __m256 b = _mm256_permutevar8x32_ps(hi, k.v[r_]);
      o.v[r_] = _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(k.v[r_], 28)));
    }
    return o;
  }
};

inline void store(float* p, vf a) { SBGQ_CV_EACH _mm256_storeu_ps(p + r_ * reg_lanes, a.v[r_]); }
inline void store(std::int32_t* p, vi a) {
  SBGQ_CV_EACH _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + r_ * reg_lanes), a.v[r_]);
}
inline vf load(const float* p) { vf o; SBGQ_CV_EACH o.v[r_] = _mm256_loadu_ps(p + r_ * reg_lanes); return o; }

/// out[0..15] = d * float(v[k]) for the 16 signed bytes of v (the dequantizers' store;
/// two 8-lane halves).
inline void store_scaled_i8(float* out, __m128i v, float d) {
  const __m256 dv = _mm256_set1_ps(d);
  _mm256_storeu_ps(out, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))));
}
/// out[0..15] = d * float(v[k]) - m for the 16 unsigned bytes of v.
inline void store_affine_u8(float* out, __m128i v, float d, float m) {
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  _mm256_storeu_ps(out, _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))), mv));
  _mm256_storeu_ps(out + 8,
                   _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)))), mv));
}

#undef SBGQ_CV_EACH

}  // namespace avx2::cv
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
