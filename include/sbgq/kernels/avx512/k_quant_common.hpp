// AVX-512 instantiation of the K-quant search helpers (kernels/shared/k_quant_common-inl.hpp):
// H1 (make_qx_quants), H2 (make_q3_quants) and H3 (make_qkx_quants) on cv::lanes groups
// at once, one group per lane.
//
// Internal: included by kernels/avx512/q*_k.hpp only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../core/base.hpp"
#include "codec_vec.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {
#include "../shared/k_quant_common-inl.hpp"
}  // namespace avx512
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
