// Constant codebooks used by the codecs. Included only by the codec headers that need
// them (STYLE.md section 6).
#pragma once

#include <array>
#include <cstdint>

#include "../core/base.hpp"

SBGQ_BEGIN_NAMESPACE

/// The IQ4_NL / IQ4_XS codebook kvalues_iq4nl (blocks doc section 8): 16 signed levels,
/// sorted ascending, used as raw integers (not divided by 127). It is asymmetric and
/// has no zero: the level nearest 0 is +1 at index 8, so an all-zero block decodes
/// index 8 with scale 0. The spacing grows away from zero (12, 12, 13, 15, ... 24):
/// a non-uniform grid fitted to roughly Gaussian weights.
inline constexpr std::array<std::int8_t, 16> kvalues_iq4nl = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static_assert(kvalues_iq4nl[8] == 1 && kvalues_iq4nl[0] == -127 && kvalues_iq4nl[15] == 113);

SBGQ_END_NAMESPACE
