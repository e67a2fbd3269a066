// AVX2 + FMA micro-kernel of the matrix product (linalg/gemm.hpp): the body is
// kernels/shared/gemm-inl.hpp, shared with the AVX-512 kernel; this target supplies the
// 8-lane vector type and the tile shape, 6 x 16 (12 ymm accumulators, 2 B vectors and
// one broadcast: 15 of the 16 registers).
//
// Internal: included by linalg/gemm.hpp only. Bit-identical to sbgq::ref::gemm_micro.
#pragma once

#include <cstddef>

#include "../../core/base.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX2_FMA_BEGIN
namespace avx2 {

struct gemm_vec {
  using type = __m256;
  static constexpr int lanes = 8;
  static type zero() { return _mm256_setzero_ps(); }
  static type load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, type v) { _mm256_storeu_ps(p, v); }
  static type broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static type fmadd(type a, type b, type c) { return _mm256_fmadd_ps(a, b, c); }
  static type add(type a, type b) { return _mm256_add_ps(a, b); }
};

/// The tile shape of this level (rows of A per panel, vectors of B per panel).
inline constexpr int gemm_mr = 6, gemm_nv = 2;

#include "../shared/gemm-inl.hpp"

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
