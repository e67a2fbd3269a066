// AVX2 kernels for Q4_K (codec/q4_k.hpp) and the Q4_K/Q5_K machinery that Q5_K's kernel
// reuses: quantize with one 32-weight sub-block per lane (body in
// kernels/shared/q4_k-inl.hpp, shared with AVX-512). The dequantizer is in
// kernels/shared/dequantize-inl.hpp (through dequantize.hpp).
//
// Internal: included by codec/q4_k.hpp only. Bit-identical to sbgq::ref (tests force
// each level and compare with the reference and with llama.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../../core/base.hpp"
#include "../../codec/blocks.hpp"
#include "../../codec/common.hpp"
#include "../../codec/k_quant_common.hpp"
#include "../../core/dtype.hpp"
#include "codec_vec.hpp"
#include "dequantize.hpp"
#include "k_quant_common.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX2_BEGIN
namespace avx2 {

#include "../shared/q4_k-inl.hpp"

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
