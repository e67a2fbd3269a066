// CPU feature detection: CPUID + XGETBV -> the feature bits sbgq's kernels need.
//
// AVX2 and AVX-512 need both the CPUID bit and the OS's consent to save the wider
// registers (XCR0), as in simdjson's isadetection.h; a CPU that reports AVX-512 under a
// kernel that does not enable the ZMM state must run the AVX2 path.
#pragma once

#include <cstdint>

#include "../core/base.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define SBGQ_HAVE_CPUID 1
#else
#define SBGQ_HAVE_CPUID 0
#endif

SBGQ_BEGIN_NAMESPACE

/// Feature bits of the running CPU (all false off x86-64).
struct cpu_features {
  bool avx2 = false;      ///< AVX2 + FMA + F16C + BMI2, with YMM state enabled by the OS
  bool avx512 = false;    ///< AVX-512 F/BW/VL/DQ, with ZMM state enabled by the OS
};

namespace detail {
#if SBGQ_HAVE_CPUID
inline std::uint64_t read_xcr0() noexcept {
  std::uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}
#endif
}  // namespace detail

/// Detects the features once per call (cheap, but callers should cache: see dispatch.hpp).
inline cpu_features detect_cpu_features() noexcept {
  cpu_features f;
#if SBGQ_HAVE_CPUID
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1u;
  const bool fma = (c >> 12) & 1u;
  const bool f16c = (c >> 29) & 1u;
  const bool avx = (c >> 28) & 1u;
  if (!osxsave || !avx) return f;
  const std::uint64_t xcr0 = detail::read_xcr0();
  const bool ymm_ok = (xcr0 & 0x6u) == 0x6u;     // SSE + AVX state
  const bool zmm_ok = (xcr0 & 0xe6u) == 0xe6u;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = (b >> 5) & 1u;
  const bool bmi2 = (b >> 8) & 1u;
  const bool avx512f = (b >> 16) & 1u;
  const bool avx512dq = (b >> 17) & 1u;
  const bool avx512bw = (b >> 30) & 1u;
  const bool avx512vl = (b >> 31) & 1u;
  f.avx2 = ymm_ok && avx2 && fma && f16c && bmi2;
  f.avx512 = f.avx2 && zmm_ok && avx512f && avx512dq && avx512bw && avx512vl;
#endif
  return f;
}

SBGQ_END_NAMESPACE
