// AVX-512 micro-kernel of the matrix product (linalg/gemm.hpp): the body is
// kernels/shared/gemm-inl.hpp, shared with the AVX2 kernel; this target supplies the
// 16-lane vector type and the tile shape, 12 x 32 (24 zmm accumulators, 2 B vectors and
// one broadcast: 27 of the 32 registers).
//
// Internal: included by linalg/gemm.hpp only. Bit-identical to sbgq::ref::gemm_micro.
#pragma once

#include <cstddef>

#include "../../core/base.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {

struct gemm_vec {
  using type = __m512;
  static constexpr int lanes = 16;
  static type zero() { return _mm512_setzero_ps(); }
  static type load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, type v) { _mm512_storeu_ps(p, v); }
  static type broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static type fmadd(type a, type b, type c) { return _mm512_fmadd_ps(a, b, c); }
  static type add(type a, type b) { return _mm512_add_ps(a, b); }
};

/// The tile shape of this level (rows of A per panel, vectors of B per panel).
inline constexpr int gemm_mr = 12, gemm_nv = 2;

#include "../shared/gemm-inl.hpp"

}  // namespace avx512
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
