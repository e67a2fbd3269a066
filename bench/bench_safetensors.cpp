// safetensors throughput: header validation, checkpoint open, and row conversion to f32.
//
//   parse/header/<n>          safetensors_file::parse on an in-memory image whose header
//                             lists n tensors (data section empty-sized tensors excluded:
//                             every tensor is 4 x 256 bf16); bytes/s = header bytes
//   open/tiny-qwen35          safetensors_checkpoint::open on the 2-shard tiny model
//                             (index + 2 mmaps + 124 entries)
//   to_f32/<dtype>            to_f32 over a 4096 x 4096 tensor; bytes/s = source bytes
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sbgq/io/safetensors.hpp"
#include "support/rng.hpp"

namespace {

// A file image: header with n tensors "model.layers.<i>.weight" of BF16 [4, 256], then data.
std::vector<std::byte> synthetic_image(std::size_t n) {
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::uint64_t off = 0;
  for (std::size_t i = 0; i < n; ++i) {
    h += ",\"model.layers." + std::to_string(i) + ".weight\":{\"dtype\":\"BF16\",\"shape\":[4,256],\"data_offsets\":[" +
         std::to_string(off) + "," + std::to_string(off + 2048) + "]}";
    off += 2048;
  }
  h += "}";
  while ((8 + h.size()) % 8) h += ' ';
  std::vector<std::byte> img(8 + h.size() + off);
  const std::uint64_t len = h.size();
  std::memcpy(img.data(), &len, 8);
  std::memcpy(img.data() + 8, h.data(), h.size());
  return img;
}

void parse_header(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto img = synthetic_image(n);
  std::uint64_t header = 0;
  for (auto _ : state) {
    auto f = sbgq::safetensors_file::parse(img);
    if (!f) state.SkipWithError(f.error().message().c_str());
    header = f->header_size();
    benchmark::DoNotOptimize(f);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * header));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(parse_header)->Name("parse/header")->Arg(100)->Arg(10000)->Unit(benchmark::kMicrosecond);

void open_tiny(benchmark::State& state) {
  const std::string dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";
  for (auto _ : state) {
    auto c = sbgq::safetensors_checkpoint::open(dir);
    if (!c) state.SkipWithError(c.error().message().c_str());
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(open_tiny)->Name("open/tiny-qwen35")->Unit(benchmark::kMicrosecond);

template <sbgq::dtype T>
void to_f32(benchmark::State& state) {
  constexpr std::size_t rows = 4096, cols = 4096;
  const std::size_t es = sbgq::dtype_size(T);
  std::vector<std::byte> src(rows * cols * es);
  sbgq::test::rng r(1);
  // Finite values of the type: random bits with the top exponent bit cleared.
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::byte>(r.next_u32() & ((i % es == es - 1) ? 0x3f : 0xff));
  const sbgq::tensor_view v{"x", T, {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)}, src, 0};
  std::vector<float> out(rows * cols);
  for (auto _ : state) {
    if (!sbgq::to_f32(v, out)) state.SkipWithError("to_f32 failed");
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * src.size()));
}
BENCHMARK(to_f32<sbgq::dtype::bf16>)->Name("to_f32/BF16")->Unit(benchmark::kMillisecond);
BENCHMARK(to_f32<sbgq::dtype::f16>)->Name("to_f32/F16")->Unit(benchmark::kMillisecond);
BENCHMARK(to_f32<sbgq::dtype::f32>)->Name("to_f32/F32")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
