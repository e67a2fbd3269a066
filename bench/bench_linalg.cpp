// The matrix kernels of linalg/ (gemm, syrk_lower, cholesky_lower) on the 9B's shapes,
// GFLOP/s next to the machine's FMA peak measured in the same run, at every SIMD level
// the CPU has, and Eigen's product (the library's generic build) as the reference.
//
// Peak: a loop of independent fused multiply-adds on registers (24 accumulators, enough to
// cover the FMA latency on two pipes), per level; counters peak_gflops and pct_of_peak.
// Shapes (9B: hidden 4096, FFN 12288, a group of 4 x 512 calibration tokens):
//   linear/<m>x<n>x<k>   y = x w^T (m tokens, n outputs, k inputs): the forward pass;
//   syrk/<n>x<k>         lower(H) += X^T X: the calibration's statistics;
//   lazy/288x<n>x256     a 288-row chunk of gptq's lazy update (rows x later columns x batch);
//   cholesky/<n>         the dampened H's factor.
// Names: <kernel>/<shape>/<level>; one thread unless the name says threads:2.
// Results go to bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "sbgq/linalg/cholesky.hpp"
#include "sbgq/linalg/gemm.hpp"
#include "support/rng.hpp"

#if SBGQ_X86_KERNELS
#include <immintrin.h>
#endif

namespace {

using sbgq::simd_level;

#if SBGQ_X86_KERNELS
SBGQ_TARGET_AVX2_FMA_BEGIN
__attribute__((noinline)) float fma_loop_avx2(std::size_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (std::size_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  return _mm256_cvtss_f32(s);
}
SBGQ_TARGET_END
SBGQ_TARGET_AVX512_BEGIN
__attribute__((noinline)) float fma_loop_avx512(std::size_t iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (std::size_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_cvtss_f32(s);
}
SBGQ_TARGET_AVX512_END
#endif

/// Peak f32 GFLOP/s (2 flops per fused multiply-add lane) of one thread at `level`; the
/// scalar level reports AVX2's (its FMAs are the same instruction without the lanes).
double peak_gflops(simd_level level) {
  static double cache[3] = {0, 0, 0};
  double& p = cache[static_cast<int>(level)];
  if (p > 0) return p;
#if SBGQ_X86_KERNELS
  const bool wide = level == simd_level::avx512;
  const std::size_t iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(wide ? fma_loop_avx512(iters) : fma_loop_avx2(iters));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, (wide ? 24.0 * 16 : 12.0 * 8) * 2.0 * static_cast<double>(iters) / s / 1e9);
  }
  p = best;
#endif
  return p;
}

void report(benchmark::State& state, double flops, simd_level level, int threads) {
  const double per = flops * static_cast<double>(state.iterations());
  state.counters["GFLOPs"] = benchmark::Counter(per / 1e9, benchmark::Counter::kIsRate);
  const double peak = peak_gflops(level == simd_level::scalar ? simd_level::avx2 : level) * threads;
  state.counters["peak_GFLOPs"] = peak;
  state.counters["pct_of_peak"] = benchmark::Counter(per / 1e9 / peak * 100.0, benchmark::Counter::kIsRate);
}

void bm_linear(benchmark::State& state, std::size_t m, std::size_t n, std::size_t k, int level_i, int threads) {
  const auto level = static_cast<simd_level>(level_i);
  const auto x = sbgq::test::rng(1).normals(m * k), w = sbgq::test::rng(2).normals(n * k);
  std::vector<float> y(m * n);
  const auto lk = static_cast<std::ptrdiff_t>(k), ln = static_cast<std::ptrdiff_t>(n);
  for (auto _ : state) {
    if (level_i < 0) {  // Eigen's product, as the generic build compiles it
      using mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      Eigen::Map<const mat> xm(x.data(), static_cast<Eigen::Index>(m), lk), wm(w.data(), ln, lk);
      Eigen::Map<mat> ym(y.data(), static_cast<Eigen::Index>(m), ln);
      ym.noalias() = xm * wm.transpose();
    } else {
      sbgq::gemm_parallel(level, m, n, k, 1.0f, {x.data(), lk, 1}, {w.data(), 1, lk}, 0.0f, {y.data(), ln, 1}, threads);
    }
    benchmark::DoNotOptimize(y.data());
  }
  report(state, 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k),
         level_i < 0 ? simd_level::avx2 : level, threads);
}

void bm_syrk(benchmark::State& state, std::size_t n, std::size_t k, int level_i, int threads) {
  const auto level = static_cast<simd_level>(level_i);
  const auto x = sbgq::test::rng(3).normals(k * n);
  Eigen::MatrixXf h = Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  for (auto _ : state) {
    sbgq::syrk_lower(level, n, k, 1.0f, {x.data(), static_cast<std::ptrdiff_t>(n), 1}, h.data(), n, threads);
    benchmark::DoNotOptimize(h.data());
  }
  report(state, static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(k), level, threads);
}

void bm_lazy(benchmark::State& state, std::size_t n, int level_i) {
  const auto level = static_cast<simd_level>(level_i);
  const std::size_t m = 288, k = 256;
  const auto dm = sbgq::test::rng(4).normals(m * k);
  const std::vector<float> rs(n * n, 0.01f);
  std::vector<float> t(m * n, 0.0f);
  const auto ln = static_cast<std::ptrdiff_t>(n);
  for (auto _ : state) {
    // B(t, j) = rs(t, j) of a column-major factor with leading dimension n (as gptq reads it).
    sbgq::gemm(level, m, n - k, k, 1.0f, {dm.data(), static_cast<std::ptrdiff_t>(k), 1}, {rs.data() + k * n, 1, ln}, 1.0f,
               {t.data(), ln, 1});
    benchmark::DoNotOptimize(t.data());
  }
  report(state, 2.0 * static_cast<double>(m) * static_cast<double>(n - k) * static_cast<double>(k), level, 1);
}

void bm_cholesky(benchmark::State& state, std::size_t n, int level_i, int threads) {
  const auto level = static_cast<simd_level>(level_i);
  const auto ni = static_cast<Eigen::Index>(n);
  Eigen::MatrixXf a0(ni, ni);
  for (Eigen::Index j = 0; j < ni; ++j)  // the AR(1) covariance of bench_gptq, dampened
    for (Eigen::Index i = 0; i < ni; ++i) a0(i, j) = std::pow(0.98f, static_cast<float>(std::abs(i - j))) + (i == j ? 0.01f : 0.0f);
  Eigen::MatrixXf a;
  for (auto _ : state) {
    state.PauseTiming();
    a = a0;
    state.ResumeTiming();
    if (!sbgq::cholesky_lower(a, threads, level)) state.SkipWithError("not positive definite");
    benchmark::DoNotOptimize(a.data());
  }
  // n^3 / 6 multiply-adds: n^3 / 3 flops.
  report(state, static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / 3.0, level, threads);
}

void register_all() {
  std::vector<std::pair<int, std::string>> lv;
  for (auto l : {simd_level::scalar, simd_level::avx2, simd_level::avx512})
    if (l <= sbgq::supported_simd_level()) lv.emplace_back(static_cast<int>(l), std::string(sbgq::simd_level_name(l)));
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto reg = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);
  };
  struct lin {
    std::size_t m, n, k;
  };
  for (lin s : {lin{2048, 4096, 4096}, lin{2048, 12288, 4096}, lin{2048, 4096, 12288}}) {
    const std::string shape = std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
    reg("linear/" + shape + "/eigen", [=](benchmark::State& st) { bm_linear(st, s.m, s.n, s.k, -1, 1); });
    for (auto& [l, name] : lv) {
      if (l == 0 && s.n > 4096) continue;  // the scalar reference is slow; one shape is enough
      reg("linear/" + shape + "/" + name, [=](benchmark::State& st) { bm_linear(st, s.m, s.n, s.k, l, 1); });
    }
    if (all > 1)
      reg("linear/" + shape + "/" + lv.back().second + "/threads:" + std::to_string(all),
          [=, l = lv.back().first](benchmark::State& st) { bm_linear(st, s.m, s.n, s.k, l, all); });
  }
  for (std::size_t n : {4096, 12288}) {
    for (auto& [l, name] : lv)
      if (l > 0) reg("syrk/" + std::to_string(n) + "x2048/" + name, [=](benchmark::State& st) { bm_syrk(st, n, 2048, l, 1); });
    for (auto& [l, name] : lv)
      if (l > 0) reg("lazy/288x" + std::to_string(n) + "x256/" + name, [=](benchmark::State& st) { bm_lazy(st, n, l); });
  }
  for (std::size_t n : {4096, 12288})
    for (auto& [l, name] : lv) {
      if (l == 0 || (n > 4096 && l != lv.back().first)) continue;
      reg("cholesky/" + std::to_string(n) + "/" + name, [=](benchmark::State& st) { bm_cholesky(st, n, l, 1); });
      if (all > 1 && l == lv.back().first)
        reg("cholesky/" + std::to_string(n) + "/" + name + "/threads:" + std::to_string(all),
            [=](benchmark::State& st) { bm_cholesky(st, n, l, all); });
    }
}

const int registered = (register_all(), 0);

}  // namespace

BENCHMARK_MAIN();
