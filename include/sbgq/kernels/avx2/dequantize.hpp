// AVX2 dequantizers of every codec (Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS): the body is
// kernels/shared/dequantize-inl.hpp, shared with the AVX-512 kernels; this target supplies
// only the 16-byte -> 16-float stores of codec_vec.hpp.
//
// Internal: included by kernels/avx2/<codec>.hpp only. Bit-identical to sbgq::ref.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../../codec/blocks.hpp"
#include "../../codec/k_quant_common.hpp"
#include "../../codec/tables.hpp"
#include "../../core/base.hpp"
#include "../../core/dtype.hpp"
#include "codec_vec.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX2_BEGIN
namespace avx2 {
#include "../shared/dequantize-inl.hpp"
}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
