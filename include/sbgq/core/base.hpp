// Basic macros shared by every sbgq header: debug assertions, restrict, exceptions
// detection and the target regions that let one header hold scalar, AVX2 and AVX-512
// code compiled whatever the user's -m flags are (see STYLE.md section 2).
#pragma once

#include <cstdio>
#include <cstdlib>

#include "version.hpp"

// ---- exceptions ---------------------------------------------------------------------
#ifndef SBGQ_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define SBGQ_EXCEPTIONS 1
#else
#define SBGQ_EXCEPTIONS 0
#endif
#endif

// ---- debug assertions -----------------------------------------------------------------
// Kernels trust their inputs; their preconditions are checked only in debug builds.
// SBGQ_DASSERT aborts with the failing expression. It never fires in release builds
// unless SBGQ_ENABLE_DASSERT is defined.
#if !defined(SBGQ_ENABLE_DASSERT) && !defined(NDEBUG)
#define SBGQ_ENABLE_DASSERT 1
#endif
#if defined(SBGQ_ENABLE_DASSERT) && SBGQ_ENABLE_DASSERT
#define SBGQ_DASSERT(cond)                                                              \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: sbgq assertion failed: %s\n", __FILE__, __LINE__,    \
                   #cond);                                                              \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)
#else
#define SBGQ_DASSERT(cond) ((void)0)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SBGQ_RESTRICT __restrict__
#define SBGQ_LIKELY(x) __builtin_expect(!!(x), 1)
#define SBGQ_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SBGQ_NOINLINE __attribute__((noinline))
#else
#define SBGQ_RESTRICT
#define SBGQ_LIKELY(x) (x)
#define SBGQ_UNLIKELY(x) (x)
#define SBGQ_NOINLINE
#endif

// ---- x86 kernels ----------------------------------------------------------------------
// SBGQ_X86_KERNELS is 1 when the compiler can emit AVX2/AVX-512 code inside a target
// region (GCC >= 11, clang >= 12) on x86-64. The user can opt out with
// -DSBGQ_MAX_SIMD_LEVEL=0 (scalar), 1 (AVX2) or 2 (AVX-512, the default).
#ifndef SBGQ_MAX_SIMD_LEVEL
#define SBGQ_MAX_SIMD_LEVEL 2
#endif
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    SBGQ_MAX_SIMD_LEVEL > 0
#define SBGQ_X86_KERNELS 1
#else
#define SBGQ_X86_KERNELS 0
#endif

// Target regions: code between SBGQ_TARGET_AVX2_BEGIN / _END (or the AVX-512 pair) is
// compiled for that ISA regardless of -m flags. Include every std and intrinsics header
// *before* opening a region. Lambdas inside a region inherit the target under clang's
// attribute push; under GCC's pragma they do too.
//
// The regions deliberately leave out "fma": with FMA enabled, GCC (in gnu++ mode, the
// CMake default) and clang contract a*b+c -- even written with _mm256_mul_ps and
// _mm256_add_ps -- into one fused operation with a different rounding, which would break
// the bit-exactness of the codecs with llama.cpp. Code that wants FMA calls it explicitly
// inside SBGQ_TARGET_AVX2_FMA_BEGIN.
#if SBGQ_X86_KERNELS
#if defined(__clang__)
#define SBGQ_TARGET_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,f16c,bmi,bmi2,popcnt\"))), apply_to = function)")
#define SBGQ_TARGET_AVX512_BEGIN                                                                           \
  _Pragma(                                                                                                 \
      "clang attribute push(__attribute__((target(\"avx2,f16c,bmi,bmi2,popcnt,avx512f,avx512bw,avx512vl,avx512dq\"))), apply_to = function)")
#define SBGQ_TARGET_AVX2_FMA_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c,bmi,bmi2,popcnt\"))), apply_to = function)")
#define SBGQ_TARGET_END _Pragma("clang attribute pop")
#define SBGQ_TARGET_AVX512_END _Pragma("clang attribute pop")
#else
#define SBGQ_TARGET_AVX2_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,f16c,bmi,bmi2,popcnt\")")
// The AVX-512 region also silences a GCC 12 false positive: _mm512_undefined_ps() et al.
// initialise a variable with itself, and after inlining -W(maybe-)uninitialized reports
// it (GCC bug 105593, fixed in 13). Close it with SBGQ_TARGET_AVX512_END.
#define SBGQ_TARGET_AVX512_BEGIN                                                                      \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")              \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") _Pragma("GCC push_options")        \
          _Pragma("GCC target(\"avx2,f16c,bmi,bmi2,popcnt,avx512f,avx512bw,avx512vl,avx512dq\")")
#define SBGQ_TARGET_AVX2_FMA_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c,bmi,bmi2,popcnt\")")
#define SBGQ_TARGET_END _Pragma("GCC pop_options")
#define SBGQ_TARGET_AVX512_END _Pragma("GCC pop_options") _Pragma("GCC diagnostic pop")
#endif
#endif
