#include <sbgq/sbgq.hpp>
int odr_b() { return sbgq::to_f16(2.0f).bits == 0x4000 && sbgq::active_simd_level() == sbgq::active_simd_level() ? 0 : 1; }
