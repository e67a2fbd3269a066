// The one doctest main of the test suite. Prints the kernel level in force, so a CI log
// shows which SIMD level each run really exercised.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <sbgq/simd/dispatch.hpp>

int main(int argc, char** argv) {
  std::printf("sbgq tests: cpu supports %s, active level %s\n",
              std::string(sbgq::simd_level_name(sbgq::supported_simd_level())).c_str(),
              std::string(sbgq::simd_level_name(sbgq::active_simd_level())).c_str());
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
