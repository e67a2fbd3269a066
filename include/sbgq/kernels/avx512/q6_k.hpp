// AVX-512 kernels for Q6_K (codec/q6_k.hpp): quantize with one 16-weight sub-block per lane
// (body in kernels/shared/q6_k-inl.hpp, shared with AVX2). The dequantizer is in
// kernels/shared/dequantize-inl.hpp (through dequantize.hpp).
//
// Internal: included by codec/q6_k.hpp only. Bit-identical to sbgq::ref.
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
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {

#include "../shared/q6_k-inl.hpp"

}  // namespace avx512
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
