// Lane-parallel float/int vectors for the AVX-512 codec kernels (32 lanes in two registers).
//
// Internal: the AVX-512 twin of kernels/avx2/codec_vec.hpp (read that file's notes). The
// names and semantics are the same; 16 lanes per register, two registers per vector
// (lanes = 32), masks are __mmask16, so the shared kernel bodies
// (kernels/shared/*-inl.hpp) compile unchanged and run 16 blocks per register.
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
SBGQ_TARGET_AVX512_BEGIN
namespace avx512::cv {

/// Lanes per hardware register, and registers per vector: every vf/vi/vm holds `regs`
/// registers that each operator processes independently. Two registers give the
/// out-of-order core two independent dependency chains for every sequential per-lane
/// sum (the searches are latency-bound otherwise); lane i lives in register i / 16,
/// element i % 16.
inline constexpr int reg_lanes = 16;
inline constexpr int regs = 2;
inline constexpr int lanes = reg_lanes * regs;

#define SBGQ_CV_EACH for (int r_ = 0; r_ < regs; ++r_)

struct vf {
  __m512 v[regs];
  vf() = default;
  vf(float a) { SBGQ_CV_EACH v[r_] = _mm512_set1_ps(a); }  // NOLINT: broadcast, like a scalar constant
};
struct vi {
  __m512i v[regs];
  vi() = default;
  vi(int a) { SBGQ_CV_EACH v[r_] = _mm512_set1_epi32(a); }  // NOLINT
};
struct vm {
  __mmask16 k[regs];
};

#define SBGQ_CV_F(name, expr) \
  inline vf name(vf a, vf b) { vf o; SBGQ_CV_EACH o.v[r_] = expr; return o; }
SBGQ_CV_F(operator+, _mm512_add_ps(a.v[r_], b.v[r_]))
SBGQ_CV_F(operator-, _mm512_sub_ps(a.v[r_], b.v[r_]))
SBGQ_CV_F(operator*, _mm512_mul_ps(a.v[r_], b.v[r_]))
SBGQ_CV_F(operator/, _mm512_div_ps(a.v[r_], b.v[r_]))
#undef SBGQ_CV_F
inline vf operator-(vf a) {
  vf o;
  SBGQ_CV_EACH o.v[r_] = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v[r_]), _mm512_set1_epi32(INT32_MIN)));
  return o;
}
inline vf abs(vf a) {
  vf o;
  SBGQ_CV_EACH o.v[r_] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a.v[r_]), _mm512_set1_epi32(0x7fffffff)));
  return o;
}
inline vf sqrt(vf a) { vf o; SBGQ_CV_EACH o.v[r_] = _mm512_sqrt_ps(a.v[r_]); return o; }

#define SBGQ_CV_C(name, pred) \
  inline vm name(vf a, vf b) { vm o; SBGQ_CV_EACH o.k[r_] = _mm512_cmp_ps_mask(a.v[r_], b.v[r_], pred); return o; }
SBGQ_CV_C(operator<, _CMP_LT_OQ)
SBGQ_CV_C(operator>, _CMP_GT_OQ)
SBGQ_CV_C(operator<=, _CMP_LE_OQ)
SBGQ_CV_C(operator>=, _CMP_GE_OQ)
SBGQ_CV_C(operator==, _CMP_EQ_OQ)
SBGQ_CV_C(operator!=, _CMP_NEQ_UQ)  // C's != (true on NaN)
SBGQ_CV_C(nlt, _CMP_NLT_UQ)         // !(a < b), true on NaN
#undef SBGQ_CV_C
inline vm operator&(vm a, vm b) { vm o; SBGQ_CV_EACH o.k[r_] = static_cast<__mmask16>(a.k[r_] & b.k[r_]); return o; }
inline vm operator|(vm a, vm b) { vm o; SBGQ_CV_EACH o.k[r_] = static_cast<__mmask16>(a.k[r_] | b.k[r_]); return o; }
inline vm operator~(vm a) { vm o; SBGQ_CV_EACH o.k[r_] = static_cast<__mmask16>(~a.k[r_]); return o; }
inline bool any(vm a) { unsigned u = 0; SBGQ_CV_EACH u |= a.k[r_]; return u != 0; }

/// m ? a : b per lane.
inline vf select(vm m, vf a, vf b) { vf o; SBGQ_CV_EACH o.v[r_] = _mm512_mask_blend_ps(m.k[r_], b.v[r_], a.v[r_]); return o; }
inline vi select(vm m, vi a, vi b) { vi o; SBGQ_CV_EACH o.v[r_] = _mm512_mask_blend_epi32(m.k[r_], b.v[r_], a.v[r_]); return o; }

#define SBGQ_CV_I(name, expr) \
  inline vi name(vi a, vi b) { vi o; SBGQ_CV_EACH o.v[r_] = expr; return o; }
SBGQ_CV_I(operator+, _mm512_add_epi32(a.v[r_], b.v[r_]))
SBGQ_CV_I(operator-, _mm512_sub_epi32(a.v[r_], b.v[r_]))
SBGQ_CV_I(operator&, _mm512_and_si512(a.v[r_], b.v[r_]))
SBGQ_CV_I(operator|, _mm512_or_si512(a.v[r_], b.v[r_]))
SBGQ_CV_I(min, _mm512_min_epi32(a.v[r_], b.v[r_]))
SBGQ_CV_I(max, _mm512_max_epi32(a.v[r_], b.v[r_]))
#undef SBGQ_CV_I
inline vi operator<<(vi a, int s) {
  vi o;
  SBGQ_CV_EACH o.v[r_] = _mm512_sll_epi32(a.v[r_], _mm_cvtsi32_si128(s));
  return o;
}
inline vm operator==(vi a, vi b) { vm o; SBGQ_CV_EACH o.k[r_] = _mm512_cmpeq_epi32_mask(a.v[r_], b.v[r_]); return o; }
inline vm operator>(vi a, vi b) { vm o; SBGQ_CV_EACH o.k[r_] = _mm512_cmpgt_epi32_mask(a.v[r_], b.v[r_]); return o; }
/// k + 1 on the lanes where m holds.
inline vi inc_if(vi k, vm m) {
  vi o;
  SBGQ_CV_EACH o.v[r_] = _mm512_mask_add_epi32(k.v[r_], m.k[r_], k.v[r_], _mm512_set1_epi32(1));
  return o;
}
/// static_cast<float>(int), exact for |k| < 2^24.
inline vf to_float(vi k) { vf o; SBGQ_CV_EACH o.v[r_] = _mm512_cvtepi32_ps(k.v[r_]); return o; }

/// detail::codec::nearest_int lane by lane: the same 1.5 * 2^23 add and mantissa bits,
/// including its garbage outside |v| < 2^22 (the hardware add is the same IEEE add the
/// scalar code uses, so even those bits agree).
inline vi nearest_int(vf v) {
  vi o;
  SBGQ_CV_EACH {
    const __m512i bits = _mm512_castps_si512(_mm512_add_ps(v.v[r_], _mm512_set1_ps(12582912.0f)));
    o.v[r_] = _mm512_sub_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000));
  }
  return o;
}

/// Lane i gets p[i * stride] (stride in floats).
inline vf gather(const float* p, int stride) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(stride));
  vf o;
  SBGQ_CV_EACH o.v[r_] = _mm512_i32gather_ps(idx, p + r_ * reg_lanes * stride, 4);
  return o;
}

/// A 16-entry float table (t[0..15]) indexed per lane by k in 0..15.
struct table16 {
  __m512 t;
  explicit table16(const float* p) : t(_mm512_loadu_ps(p)) {}
  vf operator[](vi k) const { vf o; SBGQ_CV_EACH o.v[r_] = _mm512_permutexvar_ps(k.v[r_], t); return o; }
};

inline void store(float* p, vf a) { SBGQ_CV_EACH _mm512_storeu_ps(p + r_ * reg_lanes, a.v[r_]); }
inline void store(std::int32_t* p, vi a) { SBGQ_CV_EACH _mm512_storeu_si512(p + r_ * reg_lanes, a.v[r_]); }
inline vf load(const float* p) { vf o; SBGQ_CV_EACH o.v[r_] = _mm512_loadu_ps(p + r_ * reg_lanes); return o; }

/// out[0..15] = d * float(v[k]) for the 16 signed bytes of v (the dequantizers' store).
inline void store_scaled_i8(float* out, __m128i v, float d) {
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v))));
}
/// out[0..15] = d * float(v[k]) - m for the 16 unsigned bytes of v.
inline void store_affine_u8(float* out, __m128i v, float d, float m) {
  const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
  _mm512_storeu_ps(out, _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d), q), _mm512_set1_ps(m)));
}

#undef SBGQ_CV_EACH

}  // namespace avx512::cv
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
