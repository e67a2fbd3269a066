// Lane-parallel float/int vectors for the AVX-512 codec kernels (16 lanes).
//
// Internal: the AVX-512 twin of kernels/avx2/codec_vec.hpp (read that file's notes). The
// names and semantics are the same; lanes = 16 and masks are __mmask16, so the shared
// kernel bodies (kernels/shared/*-inl.hpp) compile unchanged and run 16 blocks per vector.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../base.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX512_BEGIN
namespace avx512::cv {

inline constexpr int lanes = 16;

struct vf {
  __m512 v;
  vf() = default;
  explicit vf(__m512 a) : v(a) {}
  vf(float a) : v(_mm512_set1_ps(a)) {}  // NOLINT: broadcast, like a scalar constant
};
struct vi {
  __m512i v;
  vi() = default;
  explicit vi(__m512i a) : v(a) {}
  vi(int a) : v(_mm512_set1_epi32(a)) {}  // NOLINT
};
struct vm {
  __mmask16 k;
};

inline vf operator+(vf a, vf b) { return vf(_mm512_add_ps(a.v, b.v)); }
inline vf operator-(vf a, vf b) { return vf(_mm512_sub_ps(a.v, b.v)); }
inline vf operator*(vf a, vf b) { return vf(_mm512_mul_ps(a.v, b.v)); }
inline vf operator/(vf a, vf b) { return vf(_mm512_div_ps(a.v, b.v)); }
inline vf operator-(vf a) {
  return vf(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN))));
}
inline vf abs(vf a) {
  return vf(_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(0x7fffffff))));
}
inline vf sqrt(vf a) { return vf(_mm512_sqrt_ps(a.v)); }

inline vm operator<(vf a, vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline vm operator>(vf a, vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline vm operator<=(vf a, vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline vm operator>=(vf a, vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline vm operator==(vf a, vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
inline vm operator!=(vf a, vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_NEQ_UQ)}; }
inline vm nlt(vf a, vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_NLT_UQ)}; }
inline vm operator&(vm a, vm b) { return {static_cast<__mmask16>(a.k & b.k)}; }
inline vm operator|(vm a, vm b) { return {static_cast<__mmask16>(a.k | b.k)}; }
inline vm operator~(vm a) { return {static_cast<__mmask16>(~a.k)}; }
inline bool any(vm a) { return a.k != 0; }

inline vf select(vm m, vf a, vf b) { return vf(_mm512_mask_blend_ps(m.k, b.v, a.v)); }
inline vi select(vm m, vi a, vi b) { return vi(_mm512_mask_blend_epi32(m.k, b.v, a.v)); }

inline vi operator+(vi a, vi b) { return vi(_mm512_add_epi32(a.v, b.v)); }
inline vi operator-(vi a, vi b) { return vi(_mm512_sub_epi32(a.v, b.v)); }
inline vi operator&(vi a, vi b) { return vi(_mm512_and_si512(a.v, b.v)); }
inline vi operator|(vi a, vi b) { return vi(_mm512_or_si512(a.v, b.v)); }
inline vi operator<<(vi a, int s) { return vi(_mm512_slli_epi32(a.v, static_cast<unsigned>(s))); }
inline vi min(vi a, vi b) { return vi(_mm512_min_epi32(a.v, b.v)); }
inline vi max(vi a, vi b) { return vi(_mm512_max_epi32(a.v, b.v)); }
inline vm operator==(vi a, vi b) { return {_mm512_cmpeq_epi32_mask(a.v, b.v)}; }
inline vm operator>(vi a, vi b) { return {_mm512_cmpgt_epi32_mask(a.v, b.v)}; }
inline vi inc_if(vi k, vm m) { return vi(_mm512_mask_add_epi32(k.v, m.k, k.v, _mm512_set1_epi32(1))); }
inline vf to_float(vi k) { return vf(_mm512_cvtepi32_ps(k.v)); }

inline vi nearest_int(vf v) {
  const __m512i bits = _mm512_castps_si512(_mm512_add_ps(v.v, _mm512_set1_ps(12582912.0f)));
  return vi(_mm512_sub_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000)));
}

inline vi lane_index() { return vi(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)); }

inline vf gather(const float* p, int stride) {
  const __m512i idx = _mm512_mullo_epi32(lane_index().v, _mm512_set1_epi32(stride));
  return vf(_mm512_i32gather_ps(idx, p, 4));
}

struct table16 {
  __m512 t;
  explicit table16(const float* p) : t(_mm512_loadu_ps(p)) {}
  vf operator[](vi k) const { return vf(_mm512_permutexvar_ps(k.v, t)); }
};

inline void store(float* p, vf a) { _mm512_storeu_ps(p, a.v); }
inline void store(std::int32_t* p, vi a) { _mm512_storeu_si512(p, a.v); }
inline vf load(const float* p) { return vf(_mm512_loadu_ps(p)); }

}  // namespace avx512::cv
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
