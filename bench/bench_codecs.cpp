// Codec throughput: sbgq's quantize/dequantize (codec/rows.hpp, one thread) next to
// llama.cpp's functions (the dlopen'ed oracle) on the same data, in the same binary.
//
// Data: a 4096 x 4096 f32 matrix, N(0, 0.02) with 8 outlier columns (x 25), and a
// squared-activation-like importance vector. Names:
//   quantize/<fmt>/<plain|imatrix>/<level>    sbgq at one kernel level (simd_override)
//   quantize/<fmt>/<plain|imatrix>/llama.cpp  ggml_quantize_chunk on the whole matrix
//   dequantize/<fmt>/<level>                  sbgq dequantize_rows
//   dequantize/<fmt>/llama.cpp                dequantize_row_<fmt> over the matrix
//   dequantize/<fmt>/<level|llama.cpp>/row_in_cache  the same rows decoded one at a time
//                                              into one 16 KiB buffer (what a consumer that
//                                              decodes a row and uses it sees; the full-matrix
//                                              rows above are bound by DRAM write bandwidth)
// plus, with the suffix /all_threads, the best supported level and llama.cpp on every
// hardware thread (sbgq: quantize_rows/dequantize_rows with n_threads = 0; llama.cpp:
// the same row ranges through sbgq::parallel_for, one ggml_quantize_chunk /
// dequantize_row_<fmt> call per range, as llama-quantize splits work into chunks).
// Bytes/s = f32 bytes consumed (quantize) or produced (dequantize). Only levels the CPU
// supports are registered. Results go to bench/RESULTS.md ("## Codecs").
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sbgq/codec/rows.hpp"
#include "sbgq/core/parallel.hpp"
#include "sbgq/simd/dispatch.hpp"
#include "support/oracle.hpp"
#include "support/rng.hpp"

namespace {

constexpr std::size_t rows = 4096, cols = 4096;

const std::vector<float>& matrix() {
  static const std::vector<float> x = [] {
    sbgq::test::rng r(42);
    std::vector<float> v(rows * cols);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const std::size_t c = i % cols;
      const bool outlier_col = c % 512 == 77;  // 8 outlier columns
      v[i] = r.normal() * (outlier_col ? 0.5f : 0.02f);
    }
    return v;
  }();
  return x;
}

const std::vector<float>& importance() {
  static const std::vector<float> w = [] {
    sbgq::test::rng r(43);
    std::vector<float> v(cols);
    for (std::size_t c = 0; c < cols; ++c) {
      const float a = r.normal() * (c % 512 == 77 ? 20.0f : 1.0f);
      v[c] = a * a + 1e-3f;
    }
    return v;
  }();
  return w;
}

std::int64_t f32_bytes() { return static_cast<std::int64_t>(rows * cols * sizeof(float)); }

void bm_quantize_ours(benchmark::State& state, sbgq::ggml_type t, bool imatrix, sbgq::simd_level level, int threads) {
  const auto& x = matrix();
  std::vector<std::byte> dst(rows * sbgq::row_size(t, cols));
  sbgq::simd_override cap(level);
  for (auto _ : state) {
    auto r = sbgq::quantize_rows(t, x.data(), rows, cols, imatrix ? importance().data() : nullptr, dst, threads);
    if (!r.has_value()) state.SkipWithError(r.error().message().c_str());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * f32_bytes());
}

void bm_quantize_oracle(benchmark::State& state, sbgq::ggml_type t, bool imatrix, int threads) {
  auto& o = sbgq::test::oracle();
  const auto& x = matrix();
  std::vector<std::uint8_t> dst(rows * sbgq::row_size(t, cols));
  for (auto _ : state) {
    sbgq::parallel_for(rows, 16, threads, [&](std::size_t r0, std::size_t r1) {
      o.ggml_quantize_chunk(static_cast<int>(t), x.data(), dst.data(), static_cast<std::int64_t>(r0 * cols),
                            static_cast<std::int64_t>(r1 - r0), cols, imatrix ? importance().data() : nullptr);
    });
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * f32_bytes());
}

std::vector<std::byte> quantized(sbgq::ggml_type t) {
  std::vector<std::byte> q(rows * sbgq::row_size(t, cols));
  sbgq::quantize_rows(t, matrix().data(), rows, cols, nullptr, q, 0).value();
  return q;
}

void bm_dequantize_ours(benchmark::State& state, sbgq::ggml_type t, sbgq::simd_level level, int threads) {
  const auto q = quantized(t);
  std::vector<float> y(rows * cols);
  sbgq::simd_override cap(level);
  for (auto _ : state) {
    auto r = sbgq::dequantize_rows(t, q, rows, cols, y, threads);
    if (!r.has_value()) state.SkipWithError(r.error().message().c_str());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * f32_bytes());
}

void bm_dequantize_oracle(benchmark::State& state, sbgq::ggml_type t, int threads) {
  auto& o = sbgq::test::oracle();
  const auto q = quantized(t);
  std::vector<float> y(rows * cols);
  void (*fn)(const void*, float*, std::int64_t) = nullptr;
  switch (t) {
    case sbgq::ggml_type::q8_0: fn = o.dequantize_row_q8_0; break;
    case sbgq::ggml_type::q2_k: fn = o.dequantize_row_q2_K; break;
    case sbgq::ggml_type::q3_k: fn = o.dequantize_row_q3_K; break;
    case sbgq::ggml_type::q4_k: fn = o.dequantize_row_q4_K; break;
    case sbgq::ggml_type::q5_k: fn = o.dequantize_row_q5_K; break;
    case sbgq::ggml_type::q6_k: fn = o.dequantize_row_q6_K; break;
    case sbgq::ggml_type::iq4_nl: fn = o.dequantize_row_iq4_nl; break;
    case sbgq::ggml_type::iq4_xs: fn = o.dequantize_row_iq4_xs; break;
    default: state.SkipWithError("no oracle dequantizer"); return;
  }
  for (auto _ : state) {
    const std::size_t rb = sbgq::row_size(t, cols);
    sbgq::parallel_for(rows, 16, threads, [&](std::size_t r0, std::size_t r1) {
      fn(q.data() + r0 * rb, y.data() + r0 * cols, static_cast<std::int64_t>((r1 - r0) * cols));
    });
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * f32_bytes());
}

void bm_dequantize_row_in_cache(benchmark::State& state, sbgq::ggml_type t, int level_or_oracle) {
  const auto q = quantized(t);
  std::vector<float> y(cols);
  const std::size_t rb = sbgq::row_size(t, cols);
  const sbgq::codec_traits* codec = sbgq::find_codec(t);
  void (*fn)(const void*, float*, std::int64_t) = nullptr;
  if (level_or_oracle < 0) {
    auto& o = sbgq::test::oracle();
    switch (t) {
      case sbgq::ggml_type::q8_0: fn = o.dequantize_row_q8_0; break;
      case sbgq::ggml_type::q2_k: fn = o.dequantize_row_q2_K; break;
      case sbgq::ggml_type::q3_k: fn = o.dequantize_row_q3_K; break;
      case sbgq::ggml_type::q4_k: fn = o.dequantize_row_q4_K; break;
      case sbgq::ggml_type::q5_k: fn = o.dequantize_row_q5_K; break;
      case sbgq::ggml_type::q6_k: fn = o.dequantize_row_q6_K; break;
      case sbgq::ggml_type::iq4_nl: fn = o.dequantize_row_iq4_nl; break;
      case sbgq::ggml_type::iq4_xs: fn = o.dequantize_row_iq4_xs; break;
      default: state.SkipWithError("no oracle dequantizer"); return;
    }
  }
  const auto level = static_cast<sbgq::simd_level>(std::max(level_or_oracle, 0));
  for (auto _ : state) {
    for (std::size_t r = 0; r < rows; ++r) {
      if (fn != nullptr)
        fn(q.data() + r * rb, y.data(), static_cast<std::int64_t>(cols));
      else
        codec->dequantize_row(level, q.data() + r * rb, y.data(), cols);
      benchmark::DoNotOptimize(y.data());
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * f32_bytes());
}

void register_all() {
  using sbgq::ggml_type;
  const ggml_type types[] = {ggml_type::q8_0, ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k,
                             ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_nl, ggml_type::iq4_xs};
  std::vector<sbgq::simd_level> levels;
  for (auto l : {sbgq::simd_level::scalar, sbgq::simd_level::avx2, sbgq::simd_level::avx512})
    if (l <= sbgq::supported_simd_level()) levels.push_back(l);
  const sbgq::simd_level best = levels.back();
  const std::string best_name(sbgq::simd_level_name(best));
  auto reg = [](const std::string& name, auto fn, auto... args) {
    benchmark::RegisterBenchmark(name.c_str(), fn, args...)->Unit(benchmark::kMillisecond)->UseRealTime();
  };
  for (ggml_type t : types) {
    const std::string fmt(sbgq::type_name(t));
    const bool has_imatrix = sbgq::find_codec(t)->uses_weights;
    for (bool im : {false, true}) {
      if (im && !has_imatrix) continue;
      const std::string base = "quantize/" + fmt + (im ? "/imatrix/" : "/plain/");
      for (auto l : levels) reg(base + std::string(sbgq::simd_level_name(l)), bm_quantize_ours, t, im, l, 1);
      reg(base + "llama.cpp", bm_quantize_oracle, t, im, 1);
      reg(base + best_name + "/all_threads", bm_quantize_ours, t, im, best, 0);
      reg(base + "llama.cpp/all_threads", bm_quantize_oracle, t, im, 0);
    }
    const std::string dbase = "dequantize/" + fmt + "/";
    for (auto l : levels) reg(dbase + std::string(sbgq::simd_level_name(l)), bm_dequantize_ours, t, l, 1);
    reg(dbase + "llama.cpp", bm_dequantize_oracle, t, 1);
    for (auto l : levels) reg(dbase + std::string(sbgq::simd_level_name(l)) + "/row_in_cache", bm_dequantize_row_in_cache, t, static_cast<int>(l));
    reg(dbase + "llama.cpp/row_in_cache", bm_dequantize_row_in_cache, t, -1);
    reg(dbase + best_name + "/all_threads", bm_dequantize_ours, t, best, 0);
    reg(dbase + "llama.cpp/all_threads", bm_dequantize_oracle, t, 0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("sbgq_supported_simd_level", std::string(sbgq::simd_level_name(sbgq::supported_simd_level())));
  benchmark::AddCustomContext("sbgq_version", SBGQ_VERSION_STRING);
  benchmark::AddCustomContext("matrix", "4096x4096 f32, N(0,0.02) + 8 outlier columns");
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
