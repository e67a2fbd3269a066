// Which kernel level runs: scalar, AVX2 or AVX-512.
//
// The level is the minimum of (a) what the CPU supports, (b) the compile-time cap
// SBGQ_MAX_SIMD_LEVEL, (c) the environment variable SBGQ_SIMD=scalar|avx2|avx512 read
// once at first use, and (d) any active sbgq::simd_override, an RAII cap that tests and
// applications use to force a lower level. Concept headers switch on
// active_simd_level() once per call that receives whole arrays, never per block.
//
// Thread-safety: detection is a function-local static (thread-safe initialisation).
// The override is a process-wide atomic: set it before starting parallel work.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "../core/base.hpp"
#include "cpu_features.hpp"

SBGQ_BEGIN_NAMESPACE

/// Kernel levels, ordered: a higher level implies the lower ones.
enum class simd_level : int { scalar = 0, avx2 = 1, avx512 = 2 };

constexpr std::string_view simd_level_name(simd_level l) noexcept {
  switch (l) {
    case simd_level::scalar: return "scalar";
    case simd_level::avx2: return "avx2";
    case simd_level::avx512: return "avx512";
  }
  return "?";
}

/// Parses "scalar", "avx2" or "avx512"; returns false for anything else.
constexpr bool parse_simd_level(std::string_view s, simd_level& out) noexcept {
  if (s == "scalar") { out = simd_level::scalar; return true; }
  if (s == "avx2") { out = simd_level::avx2; return true; }
  if (s == "avx512") { out = simd_level::avx512; return true; }
  return false;
}

/// The best level this CPU and this build support (ignores SBGQ_SIMD and overrides).
inline simd_level supported_simd_level() noexcept {
  static const simd_level level = [] {
#if SBGQ_X86_KERNELS
    const cpu_features f = detect_cpu_features();
    int l = f.avx512 ? 2 : (f.avx2 ? 1 : 0);
    if (l > SBGQ_MAX_SIMD_LEVEL) l = SBGQ_MAX_SIMD_LEVEL;
    return static_cast<simd_level>(l);
#else
    return simd_level::scalar;
#endif
  }();
  return level;
}

namespace detail {
/// The level after applying SBGQ_SIMD (read once). An unknown value is ignored.
inline simd_level env_simd_level() noexcept {
  static const simd_level level = [] {
    simd_level l = supported_simd_level();
    if (const char* e = std::getenv("SBGQ_SIMD")) {
      simd_level want{};
      if (parse_simd_level(e, want) && want < l) l = want;
    }
    return l;
  }();
  return level;
}
inline std::atomic<int>& simd_cap() noexcept {
  static std::atomic<int> cap{2};
  return cap;
}
}  // namespace detail

/// The level kernels use now.
inline simd_level active_simd_level() noexcept {
  const int env = static_cast<int>(detail::env_simd_level());
  const int cap = detail::simd_cap().load(std::memory_order_relaxed);
  return static_cast<simd_level>(env < cap ? env : cap);
}

/// RAII cap on the kernel level; it can only lower the level, never raise it above what
/// the CPU supports. Nested overrides restore the previous cap on destruction.
class simd_override {
 public:
  explicit simd_override(simd_level max_level) noexcept
      : previous_(detail::simd_cap().exchange(static_cast<int>(max_level))) {}
  ~simd_override() { detail::simd_cap().store(previous_); }
  simd_override(const simd_override&) = delete;
  simd_override& operator=(const simd_override&) = delete;

 private:
  int previous_;
};

SBGQ_END_NAMESPACE
