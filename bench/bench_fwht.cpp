// Walsh-Hadamard transform benchmarks (fwht.hpp, hadamard.hpp). Results: bench/RESULTS.md
// section "## FWHT".
//
//   fwht/<type>/<level>/<n>         one in-place transform, single thread, per kernel level
//   fwht/f32/radix2_autovec_avx2/<n> the textbook radix-2 loop compiled for AVX2 and left
//                                    to the compiler's auto-vectorizer (an -O3
//                                    -march=native plain loop), the in-run reference
//   hadamard/f32/<level>/<n>        hadamard_transform::forward for the Qwen3.5 widths
//   matrix/<op>/<rows>x<cols>/t<k>  apply_right / apply_left / apply_both on the 9B-sized
//                                   12288 x 4096 f32 matrix, k threads
//   stream/negate/<bytes>           in-place read+write sweep of the same matrix: the
//                                   memory-bandwidth reference for the matrix numbers
//
// Counters: GB/s = n x sizeof(T) bytes per transform per second (the vector's size, not
// the traffic), add_bound_frac = (n log2 n / 16 cycles at the measured core clock) / time,
// i.e. the fraction of Zen 3's two 256-bit FP add pipes (16 f32 lanes per cycle) used.
// The core clock is measured at start-up with a chain of dependent integer adds.
#include <benchmark/benchmark.h>

#include <ctime>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <sbgq/transform/fwht.hpp>
#include <sbgq/transform/hadamard.hpp>

#include "support/rng.hpp"

namespace {

using sbgq::simd_level;

// Textbook radix-2 loop, compiled with AVX2 enabled (as with -march=native) so the
// compiler's auto-vectorizer gets its chance. Same arithmetic as sbgq::ref::fwht.
__attribute__((target("avx2"))) __attribute__((noinline)) void radix2_autovec_avx2(float* x, std::size_t n) {
  for (std::size_t h = 1; h < n; h *= 2)
    for (std::size_t i = 0; i < n; i += 2 * h)
      for (std::size_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float s = static_cast<float>(1.0 / std::sqrt(double(n)));
  for (std::size_t i = 0; i < n; ++i) x[i] *= s;
}

/// Core clock in GHz: 2e8 dependent adds (1 cycle each on every x86-64 of the last
/// decade) timed in thread CPU time (the machine is shared), best of 5.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
double measure_core_ghz() {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::uint64_t v = 0;
    const double t0 = thread_seconds();
    for (int i = 0; i < 200'000'000; ++i) __asm__ volatile("add $1, %0" : "+r"(v));
    best = std::max(best, 0.2 / (thread_seconds() - t0));
  }
  return best;
}
double core_ghz = 0;

template <class T>
std::vector<T> data(std::size_t n) {
  sbgq::test::rng r(n);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(r.normal());
  return v;
}

/// n normal values in a 64-byte-aligned buffer (vectors that straddle cache lines cost
/// up to 1.5x; the transforms accept any alignment).
template <class T>
struct aligned_data {
  explicit aligned_data(std::size_t n) : storage(n + 64 / sizeof(T)) {
    auto addr = reinterpret_cast<std::uintptr_t>(storage.data());
    ptr = reinterpret_cast<T*>((addr + 63) & ~std::uintptr_t{63});
    const std::vector<T> v = data<T>(n);
    std::copy(v.begin(), v.end(), ptr);
    size = n;
  }
  std::span<T> span() { return {ptr, size}; }
  std::vector<T> storage;
  T* ptr = nullptr;
  std::size_t size = 0;
};

void set_counters(benchmark::State& st, std::size_t n, std::size_t elem_bytes) {
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n * elem_bytes));
  // Add/sub bound: n log2(n) lane-ops at 16 f32 lanes (8 f64) per cycle.
  const double lanes = elem_bytes == 4 ? 16.0 : 8.0;
  const double bound_cycles = static_cast<double>(n) * std::log2(static_cast<double>(n)) / lanes;
  st.counters["add_bound_frac"] = benchmark::Counter(bound_cycles / (core_ghz * 1e9) * static_cast<double>(st.iterations()),
                                                     benchmark::Counter::kIsRate);
}

template <class T>
void bm_fwht(benchmark::State& st, simd_level level, std::size_t n) {
  sbgq::simd_override cap(level);
  aligned_data<T> x(n);
  for (auto _ : st) {
    (void)sbgq::fwht(x.span());
    benchmark::DoNotOptimize(x.ptr);
    benchmark::ClobberMemory();
  }
  set_counters(st, n, sizeof(T));
}

void bm_radix2_autovec(benchmark::State& st, std::size_t n) {
  aligned_data<float> x(n);
  for (auto _ : st) {
    radix2_autovec_avx2(x.ptr, n);
    benchmark::DoNotOptimize(x.ptr);
    benchmark::ClobberMemory();
  }
  set_counters(st, n, sizeof(float));
}

void bm_hadamard(benchmark::State& st, simd_level level, std::size_t n) {
  sbgq::simd_override cap(level);
  auto t = sbgq::hadamard_transform::create(n).value();
  aligned_data<float> x(n);
  for (auto _ : st) {
    (void)t.forward(x.span());
    benchmark::DoNotOptimize(x.ptr);
    benchmark::ClobberMemory();
  }
  set_counters(st, n, sizeof(float));
  st.counters["m"] = static_cast<double>(t.dense_order());
}

constexpr std::size_t mat_rows = 12288, mat_cols = 4096;
std::vector<float>& matrix() {
  static std::vector<float> w = data<float>(mat_rows * mat_cols);
  return w;
}

void bm_matrix(benchmark::State& st, int which, int threads) {
  auto qr = sbgq::hadamard_transform::create(mat_cols).value();
  auto ql = sbgq::hadamard_transform::create(mat_rows).value();
  std::vector<float>& w = matrix();
  for (auto _ : st) {
    if (which == 0) (void)sbgq::apply_right(qr, std::span<float>(w), mat_rows, mat_cols, threads);
    if (which == 1) (void)sbgq::apply_left(ql, std::span<float>(w), mat_rows, mat_cols, threads);
    if (which == 2) (void)sbgq::apply_both(ql, qr, std::span<float>(w), mat_rows, mat_cols, threads);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(w.size() * sizeof(float)));
}

void bm_stream(benchmark::State& st) {
  std::vector<float>& w = matrix();
  for (auto _ : st) {
    float* p = w.data();
    for (std::size_t i = 0; i < w.size(); ++i) p[i] = -p[i];
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(w.size() * sizeof(float)));
}

double min_of(const std::vector<double>& v) {
  double m = v.empty() ? 0 : v[0];
  for (double x : v) m = std::min(m, x);
  return m;
}

void register_all() {
  std::vector<simd_level> levels;
  for (simd_level l : {simd_level::scalar, simd_level::avx2, simd_level::avx512})
    if (l <= sbgq::supported_simd_level()) levels.push_back(l);
  std::vector<std::size_t> pow2;
  for (std::size_t n = 256; n <= 65536; n *= 2) pow2.push_back(n);
  pow2.push_back(std::size_t{1} << 20);
  for (std::size_t n : pow2) {
    for (simd_level l : levels) {
      benchmark::RegisterBenchmark(("fwht/f32/" + std::string(sbgq::simd_level_name(l)) + "/" + std::to_string(n)).c_str(),
                                   [l, n](benchmark::State& st) { bm_fwht<float>(st, l, n); })
          ->ComputeStatistics("min", min_of);
    }
    benchmark::RegisterBenchmark(("fwht/f32/radix2_autovec_avx2/" + std::to_string(n)).c_str(),
                                 [n](benchmark::State& st) { bm_radix2_autovec(st, n); })
        ->ComputeStatistics("min", min_of);
  }
  for (std::size_t n : {std::size_t{1024}, std::size_t{4096}, std::size_t{65536}})
    for (simd_level l : levels)
      benchmark::RegisterBenchmark(("fwht/f64/" + std::string(sbgq::simd_level_name(l)) + "/" + std::to_string(n)).c_str(),
                                   [l, n](benchmark::State& st) { bm_fwht<double>(st, l, n); })
          ->ComputeStatistics("min", min_of);
  for (std::size_t n : {1024, 2048, 2560, 3584, 4096, 5120, 6144, 8192, 9216, 12288, 16384, 17408, 32768})
    for (simd_level l : levels)
      benchmark::RegisterBenchmark(("hadamard/f32/" + std::string(sbgq::simd_level_name(l)) + "/" + std::to_string(n)).c_str(),
                                   [l, n](benchmark::State& st) { bm_hadamard(st, l, n); })
          ->ComputeStatistics("min", min_of);
  const char* ops[] = {"apply_right", "apply_left", "apply_both"};
  const std::string shape = std::to_string(mat_rows) + "x" + std::to_string(mat_cols);
  for (int which = 0; which < 3; ++which)
    for (int threads : {1, 2})
      benchmark::RegisterBenchmark(("matrix/" + std::string(ops[which]) + "/" + shape + "/t" + std::to_string(threads)).c_str(),
                                   [which, threads](benchmark::State& st) { bm_matrix(st, which, threads); })
          ->Unit(benchmark::kMillisecond)
          ->MinTime(1.0)
          ->UseRealTime();
  benchmark::RegisterBenchmark(("stream/negate/" + shape).c_str(), bm_stream)->Unit(benchmark::kMillisecond)->MinTime(1.0);
}

}  // namespace

int main(int argc, char** argv) {
  core_ghz = measure_core_ghz();
  benchmark::AddCustomContext("sbgq_simd_level", std::string(sbgq::simd_level_name(sbgq::active_simd_level())));
  benchmark::AddCustomContext("sbgq_version", SBGQ_VERSION_STRING);
  benchmark::AddCustomContext("measured_core_GHz", std::to_string(core_ghz));
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
