// Seeded, platform-independent random numbers for tests and benchmarks.
//
// std::normal_distribution differs between standard libraries, so tests that must be
// reproducible everywhere use this splitmix64 + Box-Muller generator instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace sbgq::test {

class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next_u64() {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint32_t next_u32() { return static_cast<std::uint32_t>(next_u64() >> 32); }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  float uniform(float lo, float hi) { return lo + static_cast<float>(uniform()) * (hi - lo); }
  /// Standard normal (Box-Muller).
  float normal() {
    const double u1 = uniform() + 0x1.0p-60, u2 = uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  std::vector<float> normals(std::size_t n, float sigma = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal() * sigma;
    return v;
  }

 private:
  std::uint64_t s_;
};

}  // namespace sbgq::test
