// AVX-512 kernels for IQ4_NL and IQ4_XS (codec/iq4.hpp): quantize (16 blocks of 32 per
// register, one per lane; the body is kernels/shared/iq4-inl.hpp, shared with AVX2).
// The dequantizers are in kernels/shared/dequantize-inl.hpp (through dequantize.hpp).
//
// Internal: included by codec/iq4.hpp only. Bit-identical to sbgq::ref (the tests in
// tests/codec/test_codec_kernels.cpp force each level and compare with the reference
// and with llama.cpp).
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
#include "../../codec/tables.hpp"
#include "../../core/dtype.hpp"
#include "codec_vec.hpp"
#include "dequantize.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>

SBGQ_BEGIN_NAMESPACE
SBGQ_TARGET_AVX512_BEGIN
namespace avx512 {

#include "../shared/iq4-inl.hpp"

}  // namespace avx512
SBGQ_TARGET_AVX512_END
SBGQ_END_NAMESPACE

#endif  // SBGQ_X86_KERNELS
