// Power-of-two Walsh-Hadamard transform (fwht.hpp).
//
// Oracles: the definition H[i][j] = (-1)^popcount(i & j) evaluated densely in long double
// by the test itself; the scalar reference ref::fwht (the textbook loop) for the
// bit-for-bit comparison of every kernel level the CPU supports; algebraic identities
// (orthonormal H is an involution, norm preservation, unscaled H H = n I).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sbgq/transform/fwht.hpp>

#include "support/rng.hpp"

namespace {

using sbgq::simd_level;

/// Every level this CPU and build can run, and a MESSAGE naming the skipped ones.
std::vector<simd_level> runnable_levels() {
  std::vector<simd_level> v;
  std::string ran, skipped;
  for (simd_level l : {simd_level::scalar, simd_level::avx2, simd_level::avx512}) {
    if (l <= sbgq::supported_simd_level()) {
      v.push_back(l);
      ran += std::string(sbgq::simd_level_name(l)) + " ";
    } else {
      skipped += std::string(sbgq::simd_level_name(l)) + " ";
    }
  }
  static bool printed = false;
  if (!printed) {
    MESSAGE("fwht kernel levels run: " << ran << "| skipped (unsupported by this CPU/build): "
                                       << (skipped.empty() ? "none" : skipped));
    printed = true;
  }
  return v;
}

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed) {
  sbgq::test::rng r(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(r.normal());
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
double rel_l2(const std::vector<T>& got, const std::vector<long double>& want) {
  long double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const long double d = static_cast<long double>(got[i]) - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return static_cast<double>(std::sqrt(num / den));
}

double norm2(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

}  // namespace

TEST_SUITE("fwht") {

TEST_CASE_TEMPLATE("fwht equals the dense definition H[i][j] = (-1)^popcount(i&j)", T, float, double) {
  for (simd_level level : runnable_levels()) {
    CAPTURE(level);
    sbgq::simd_override cap(level);
    for (unsigned k = 0; k <= 10; ++k) {
      const std::size_t n = std::size_t{1} << k;
      CAPTURE(n);
      const std::vector<T> x = random_vector<T>(n, 100 + k);
      std::vector<long double> want(n);
      for (std::size_t i = 0; i < n; ++i) {
        long double s = 0;
        for (std::size_t j = 0; j < n; ++j) s += (std::popcount(i & j) & 1 ? -1.0L : 1.0L) * x[j];
        want[i] = s;
      }
      std::vector<T> y = x;
      REQUIRE(sbgq::fwht(std::span<T>(y), sbgq::fwht_norm::unscaled).has_value());
      // f32: each output is a sum of n terms in log2(n) rounded stages, error ~ k eps.
      const double tol = std::is_same_v<T, float> ? 2e-6 * (k + 1) : 1e-15 * (k + 1);
      CHECK(rel_l2(y, want) <= tol);
      y = x;
      REQUIRE(sbgq::fwht(std::span<T>(y)).has_value());
      for (auto& w : want) w /= std::sqrt(static_cast<long double>(n));
      CHECK(rel_l2(y, want) <= tol);
    }
  }
}

TEST_CASE_TEMPLATE("every kernel level is bit-identical to the scalar reference", T, float, double) {
  // n = 1 .. 2^20 (f32) / 2^19 (f64): crosses the base pass (8 lanes x 8), the radix-8/4/2
  // pass splits, the 16 KiB and 256 KiB cache blocks and the full sweeps. Misaligned
  // starts (offset 1 element) and special values (zeros, signed zeros, huge, tiny).
  const unsigned max_k = std::is_same_v<T, float> ? 20 : 19;
  for (simd_level level : runnable_levels()) {
    CAPTURE(level);
    for (unsigned k = 0; k <= max_k; ++k) {
      const std::size_t n = std::size_t{1} << k;
      CAPTURE(n);
      for (std::size_t offset : {std::size_t{0}, std::size_t{1}}) {
        if (k > 16 && offset == 1) continue;  // keep the run short
        std::vector<T> x = random_vector<T>(n, 7 * k + offset);
        if (n >= 8) {
          x[0] = T(0);
          x[1] = T(-0.0);
          x[2] = T(1e30);
          x[3] = T(1e-30);
          x[n - 1] = T(-3.5);
        }
        for (sbgq::fwht_norm norm : {sbgq::fwht_norm::orthonormal, sbgq::fwht_norm::unscaled}) {
          const T scale = norm == sbgq::fwht_norm::orthonormal ? static_cast<T>(1.0 / std::sqrt(double(n))) : T(1);
          std::vector<T> want = x;
          sbgq::ref::fwht<T>(want.data(), k, scale);
          std::vector<T> buf(n + offset);
          std::memcpy(buf.data() + offset, x.data(), n * sizeof(T));
          {
            sbgq::simd_override cap(level);
            REQUIRE(sbgq::fwht(std::span<T>(buf.data() + offset, n), norm).has_value());
          }
          std::vector<T> got(buf.begin() + static_cast<std::ptrdiff_t>(offset), buf.end());
          CHECK(same_bits(got, want));
        }
      }
    }
  }
}

TEST_CASE("f32 round trip and norm preservation up to n = 2^20") {
  for (simd_level level : runnable_levels()) {
    CAPTURE(level);
    sbgq::simd_override cap(level);
    for (unsigned k : {0u, 1u, 3u, 6u, 8u, 10u, 12u, 13u, 16u, 17u, 20u}) {
      const std::size_t n = std::size_t{1} << k;
      CAPTURE(n);
      const std::vector<float> x = random_vector<float>(n, 900 + k);
      std::vector<float> y = x;
      REQUIRE(sbgq::fwht(std::span<float>(y)).has_value());
      // Orthogonal: ||H x|| = ||x|| up to rounding (relative 1e-6).
      CHECK(std::abs(norm2(y) - norm2(x)) <= 1e-6 * norm2(x));
      REQUIRE(sbgq::fwht(std::span<float>(y)).has_value());
      double err = 0;
      for (std::size_t i = 0; i < n; ++i) err += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
      CHECK(std::sqrt(err) <= 1e-6 * norm2(x));
      // Unscaled twice = n x (exact up to rounding).
      std::vector<double> z(x.begin(), x.end());
      REQUIRE(sbgq::fwht(std::span<double>(z), sbgq::fwht_norm::unscaled).has_value());
      REQUIRE(sbgq::fwht(std::span<double>(z), sbgq::fwht_norm::unscaled).has_value());
      double e2 = 0;
      for (std::size_t i = 0; i < n; ++i) e2 = std::max(e2, std::abs(z[i] / double(n) - x[i]));
      CHECK(e2 <= 1e-12);
    }
  }
}

TEST_CASE("exact integer inputs: each level gives the exact integer transform") {
  // Small integers make every intermediate exact, so the result is known exactly: the
  // transform of a unit vector e_j is column j of H (entries +-1).
  for (simd_level level : runnable_levels()) {
    CAPTURE(level);
    sbgq::simd_override cap(level);
    const std::size_t n = 1024;
    for (std::size_t j : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{77}, std::size_t{1023}}) {
      std::vector<float> e(n, 0.0f);
      e[j] = 1.0f;
      REQUIRE(sbgq::fwht(std::span<float>(e), sbgq::fwht_norm::unscaled).has_value());
      int bad = 0;
      for (std::size_t i = 0; i < n; ++i) bad += e[i] != ((std::popcount(i & j) & 1) ? -1.0f : 1.0f);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("unsupported lengths give a clear error") {
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{12}, std::size_t{2560}}) {
    std::vector<float> x(n, 1.0f);
    auto r = sbgq::fwht(std::span<float>(x));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::unsupported);
    CHECK(r.error().message() == "[sbgq.fwht.unsupported] fwht needs a power-of-two length, got n = " +
                                     std::to_string(n) +
                                     " (use hadamard_transform from hadamard.hpp for n = m x 2^k)");
    CHECK(x == std::vector<float>(n, 1.0f));  // untouched
  }
  std::vector<double> d(6);
  CHECK(sbgq::fwht(std::span<double>(d)).error().code == sbgq::error_code::unsupported);
}

TEST_CASE("the AVX2 and AVX-512 kernels share their passes") {
  // The passes live once, in kernels/shared/fwht-inl.hpp; each target file holds only its
  // vector traits and includes the shared body, so the pass structure the AVX2 tests
  // exercise is the AVX-512 one by construction.
  auto read = [](const std::string& path) {
    std::ifstream f(path);
    REQUIRE(f.good());
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const std::string dir = std::string(SBGQ_TEST_DATA_DIR) + "/../../include/sbgq/kernels/";
  for (const char* target : {"avx2", "avx512"}) {
    CAPTURE(target);
    const std::string s = read(dir + target + "/fwht.hpp");
    CHECK(s.find("#include \"../shared/fwht-inl.hpp\"") != std::string::npos);
    CHECK(s.find("radix_pass") == std::string::npos);
  }
  CHECK(read(dir + "shared/fwht-inl.hpp").find("inline void radix_pass") != std::string::npos);
}

}  // TEST_SUITE
