// A user program built against the package: includes the umbrella header and checks a
// value it can verify independently (f16 of 1.0 is 0x3C00 by the IEEE definition).
#include <sbgq/sbgq.hpp>

#include <cstdio>

int main() {
  const auto h = sbgq::to_f16(1.0f);
  std::printf("sbgq %s, simd %s, f16(1) = 0x%04x\n", SBGQ_VERSION_STRING,
              std::string(sbgq::simd_level_name(sbgq::active_simd_level())).c_str(), h.bits);
  return h.bits == 0x3C00 ? 0 : 1;
}
