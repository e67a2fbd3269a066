// Whole-file quantization: sbgq's quantize_file (include/sbgq/quantize.hpp) against
// llama.cpp's llama_model_quantize (the dlopen'ed oracle, libllama v0.5.0) on the same
// input file, ftype and thread count. Both write the same bytes (tests/test_quantize.cpp).
//
// Inputs (written once into the system temp directory):
//   tiny      the tiny Qwen3.5 model as F32 GGUF (our converter, MTP included; 11.5 M weights)
//   9b-layer  one Qwen3.5-9B DeltaNet layer's big matrices with random N(0, 0.02) BF16
//             values: attn_qkv 4096x8192, ssm_out 4096x4096, ffn_down 12288x4096
//             (100.7 M weights, 201 MB), under the tiny model's metadata with block_count 1
// Names: quantize/<input>/<TYPE>/<sbgq|llama.cpp>/threads:<n>. Bytes/s = input tensor
// bytes. Results go to bench/RESULTS.md ("## sbgq quantize").
#include <benchmark/benchmark.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sbgq/convert.hpp"
#include "sbgq/quantize.hpp"
#include "sbgq/simd/dispatch.hpp"
#include "support/oracle.hpp"
#include "support/rng.hpp"

namespace fs = std::filesystem;

namespace {

fs::path work_dir() {
  static const fs::path d = [] {
    fs::path p = fs::temp_directory_path() / "sbgq-bench-quantize";
    fs::create_directories(p);
    return p;
  }();
  return d;
}

const std::string& tiny_f32() {
  static const std::string p = [] {
    const std::string out = (work_dir() / "tiny-f32.gguf").string();
    sbgq::convert_options o;
    o.outtype = sbgq::ggml_type::f32;
    sbgq::convert_checkpoint(std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35", out, o).value();
    return out;
  }();
  return p;
}

const std::string& layer_9b() {
  static const std::string p = [] {
    const std::string out = (work_dir() / "layer-9b-bf16.gguf").string();
    auto tiny = sbgq::gguf_file::open(tiny_f32()).value();
    auto w = sbgq::gguf_writer::create(out).value();
    for (const auto& kv : tiny.metadata()) {
      if (kv.key.rfind("tokenizer.", 0) == 0) continue;
      sbgq::gguf_value v = kv.value;
      if (kv.key == "qwen35.block_count") v = sbgq::gguf_value(std::uint32_t{1});
      if (kv.key == "qwen35.nextn_predict_layers") v = sbgq::gguf_value(std::uint32_t{0});
      if (kv.key == "general.file_type") v = sbgq::gguf_value(std::uint32_t{32});
      w.add(kv.key, v).value();
    }
    const std::vector<std::pair<std::string, std::vector<std::int64_t>>> t = {
        {"blk.0.attn_qkv.weight", {4096, 8192}}, {"blk.0.ffn_down.weight", {12288, 4096}},
        {"blk.0.ssm_out.weight", {4096, 4096}}};
    for (const auto& [name, ne] : t) w.add_tensor(name, sbgq::ggml_type::bf16, ne).value();
    sbgq::test::rng r(7);
    for (std::size_t i = 0; i < t.size(); ++i) {
      const std::size_t n = static_cast<std::size_t>(t[i].second[0] * t[i].second[1]);
      std::vector<std::uint16_t> v(n);
      for (auto& x : v) x = sbgq::f32_to_bf16_bits(r.normal() * 0.02f);
      w.write_tensor_data(i, std::span<const std::uint16_t>(v)).value();
    }
    w.finish().value();
    return out;
  }();
  return p;
}

std::int64_t tensor_bytes(const std::string& path) {
  auto f = sbgq::gguf_file::open(path).value();
  std::int64_t n = 0;
  for (const auto& t : f.tensors()) n += static_cast<std::int64_t>(t.nbytes);
  return n;
}

struct input {
  const char* name;
  const std::string& (*path)();
};

void run_sbgq(benchmark::State& st, const input& in, sbgq::llama_ftype ft, int threads) {
  const std::string& src = in.path();
  const std::string out = (work_dir() / "out-sbgq.gguf").string();
  sbgq::quantize_options o;
  o.policy.ftype = ft;
  o.n_threads = threads;
  for (auto _ : st) sbgq::quantize_file(src, out, o).value();
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * tensor_bytes(src));
  fs::remove(out);
}

void run_llama(benchmark::State& st, const input& in, sbgq::llama_ftype ft, int threads) {
  const std::string& src = in.path();
  const std::string out = (work_dir() / "out-llama.gguf").string();
  auto& lib = sbgq::test::oracle();
  auto p = lib.llama_model_quantize_default_params();
  p.ftype = static_cast<std::int32_t>(ft);
  p.nthread = threads;
  for (auto _ : st)
    if (lib.llama_model_quantize(src.c_str(), out.c_str(), &p) != 0) st.SkipWithError("llama_model_quantize failed");
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * tensor_bytes(src));
  fs::remove(out);
}

}  // namespace

int main(int argc, char** argv) {
  static const input inputs[] = {{"tiny", tiny_f32}, {"9b-layer", layer_9b}};
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (const input& in : inputs)
    for (sbgq::llama_ftype ft : {sbgq::llama_ftype::mostly_q4_k_m, sbgq::llama_ftype::mostly_iq4_xs,
                                 sbgq::llama_ftype::mostly_q6_k, sbgq::llama_ftype::mostly_q8_0})
      for (int threads : {1, hw}) {
        const std::string base = std::string("quantize/") + in.name + "/" +
                                 std::string(sbgq::find_quant_preset(ft)->name) + "/";
        const std::string suffix = "/threads:" + std::to_string(threads);
        const int iters = std::string(in.name) == "tiny" ? 3 : 1;
        benchmark::RegisterBenchmark((base + "sbgq" + suffix).c_str(), [&in, ft, threads](benchmark::State& st) {
          run_sbgq(st, in, ft, threads);
        })->Iterations(iters)->Unit(benchmark::kMillisecond)->UseRealTime();
        benchmark::RegisterBenchmark((base + "llama.cpp" + suffix).c_str(), [&in, ft, threads](benchmark::State& st) {
          run_llama(st, in, ft, threads);
        })->Iterations(iters)->Unit(benchmark::kMillisecond)->UseRealTime();
      }
  benchmark::AddCustomContext("sbgq_simd_level", std::string(sbgq::simd_level_name(sbgq::active_simd_level())));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
