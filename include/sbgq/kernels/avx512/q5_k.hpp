// AVX-512 kernels for Q5_K (codec/q5_k.hpp): quantize (Q4_K's lane-parallel search of
// kernels/avx512/q4_k.hpp with nmax 31; body in kernels/shared/q5_k-inl.hpp). The
// dequantizer is in kernels/shared/dequantize-inl.hpp (through dequantize.hpp).
//
// Internal: included by codec/q5_k.hpp only. Bit-identical to sbgq::ref.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../../core/base.hpp"
#include "../../codec/blocks.hpp"
#include "../../codec/k_quant_common.hpp"
#include "../../core/dtype.hpp"
#include "dequantize.hpp"
#include "q4_k.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {

#include "../shared/q5_k-inl.hpp"

}  // namespace avx512
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
