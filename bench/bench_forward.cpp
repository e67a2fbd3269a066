// Forward-pass throughput: our reference pass (include/sbgq/forward.hpp) against libllama
// decoding the same tokens of the same F32 GGUF of the tiny model, in the same run.
// Chunks of 512 tokens of data/eval.txt, logits for every token; all hardware threads
// (argument 0) and one thread (argument 1).
//   forward/ours/ctx512     n_seq chunks through embed + 8 layers + logits in one batch
//   forward/libllama/ctx512 the same chunks, one llama_decode of 512 tokens per chunk
// Items/s = tokens/s. Results go to bench/RESULTS.md ("## Forward pass").
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sbgq/model/forward.hpp"
#include "support/oracle.hpp"
#include "support/tiny_qwen35.hpp"

namespace {

constexpr int ctx = 512;
constexpr int n_chunks = 4;

int all_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

const std::string& gguf() {
  return sbgq::test::tiny_gguf(std::filesystem::temp_directory_path().string(), "bench-" + std::to_string(::getpid()));
}

const std::vector<std::int32_t>& tokens() {
  static const std::vector<std::int32_t> t = [] {
    sbgq::test::oracle_model vocab(gguf(), sbgq::test::oracle_model::options{512, 512, 1, true, true});
    std::string text = sbgq::test::detail_tiny::read_text(std::string(SBGQ_SHARED_DIR) + "/data/eval.txt");
    text.resize(64 * ctx * n_chunks);
    auto toks = vocab.tokenize(text, false);
    toks.resize(static_cast<std::size_t>(ctx * n_chunks));
    return toks;
  }();
  return t;
}

void bm_ours(benchmark::State& state) {
  const int nt = state.range(0) > 0 ? static_cast<int>(state.range(0)) : all_threads();
  const auto& m = sbgq::test::tiny();
  sbgq::test::tensor_map_provider p(m);
  auto g = p.load_globals().value();
  std::vector<sbgq::layer_weights> layers;
  for (int l = 0; l < m.config.num_hidden_layers; ++l) layers.push_back(p.load_layer(l).value());
  const auto& toks = tokens();
  // Each layer is applied to all chunks at once (the layer-streamed API).
  for (auto _ : state) {
    auto act = sbgq::embed(g, toks, n_chunks).value();
    for (int l = 0; l < m.config.num_hidden_layers; ++l)
      sbgq::run_layer(m.config, l, layers[static_cast<std::size_t>(l)], act, nullptr, nt).value();
    auto z = sbgq::logits(g, m.config, act, nullptr, nt).value();
    benchmark::DoNotOptimize(z.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(toks.size()));
  state.counters["threads"] = nt;
}

void bm_libllama(benchmark::State& state) {
  const int nt = state.range(0) > 0 ? static_cast<int>(state.range(0)) : all_threads();
  sbgq::test::oracle_model m(gguf(), sbgq::test::oracle_model::options{ctx, ctx, nt, false, true});
  const auto& toks = tokens();
  for (auto _ : state) {
    for (int c = 0; c < n_chunks; ++c) {
      m.clear();
      auto z = m.decode(std::vector<std::int32_t>(toks.begin() + c * ctx, toks.begin() + (c + 1) * ctx));
      benchmark::DoNotOptimize(z.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(toks.size()));
  state.counters["threads"] = nt;
}

}  // namespace

// Argument: threads (0 = all hardware threads).
BENCHMARK(bm_ours)->Name("forward/ours/ctx512")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_libllama)->Name("forward/libllama/ctx512")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
