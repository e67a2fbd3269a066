// odr_a.cpp and odr_b.cpp include everything and call the same inline functions; linking
// them into one binary catches definitions that differ between TUs or are not inline.
#include <sbgq/sbgq.hpp>
int odr_a() { return sbgq::to_f16(2.0f).bits == 0x4000 && sbgq::active_simd_level() == sbgq::active_simd_level() ? 0 : 1; }
