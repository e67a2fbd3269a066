// AVX2 kernels for Q3_K (codec/q3_k.hpp): quantize with one 16-weight sub-block per lane
// (body in kernels/shared/q3_k-inl.hpp, shared with AVX-512). The dequantizer is in
// kernels/shared/dequantize-inl.hpp (through dequantize.hpp).
//
// Internal: included by codec/q3_k.hpp only. Bit-identical to sbgq::ref.
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

#include "../shared/q3_k-inl.hpp"

}  // namespace avx2
SBGQ_TARGET_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
