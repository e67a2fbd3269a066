// Forward-pass throughput: our reference pass (include/sbgq/forward.hpp) against libllama
// decoding the same tokens of the same F32 GGUF of the tiny model, in the same run.
// Chunks of 512 tokens of data/eval.txt, logits for every token; all hardware threads
// (argument 0) and one thread (argument 1).
//   forward/ours/ctx512     n_seq chunks through embed + 8 layers + logits in one batch
//   forward/libllama/ctx512 the same chunks, one llama_decode of 512 tokens per chunk
// With SBGQ_BENCH_GGUF=<a qwen35 GGUF> and SBGQ_BENCH_MODEL_DIR=<its HF directory> (for the
// config), also the calibration's workload on that model (e.g. the 9B-shaped synthetic
// checkpoint converted to F32):
//   prefill/ours/ctx512      4 chunks of 512 tokens through embed + every layer, one layer
//                            at a time over all chunks (the pipeline's calibration pass,
//                            without its statistics), no logits
//   prefill/libllama/ctx512  the same chunks, one llama_decode each with the logits of the
//                            last token only (llama-bench's prompt processing)
// Items/s = tokens/s. Results go to bench/RESULTS.md ("## Forward pass").
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sbgq/io/gguf.hpp"
#include "sbgq/model/forward.hpp"
#include "sbgq/model/model_config.hpp"
#include "sbgq/model/weights.hpp"
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

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

/// The tokens of the prefill benchmarks: fixed ids below the vocabulary size.
std::vector<std::int32_t> prefill_tokens(std::int64_t vocab) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(ctx * n_chunks));
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<std::int32_t>((i * 7919 + 13) % static_cast<std::size_t>(vocab));
  return t;
}

void bm_prefill_ours(benchmark::State& state) {
  const int nt = state.range(0) > 0 ? static_cast<int>(state.range(0)) : all_threads();
  const auto cfg = sbgq::load_qwen35_config(env("SBGQ_BENCH_MODEL_DIR")).value();
  const auto file = sbgq::gguf_file::open(env("SBGQ_BENCH_GGUF")).value();
  sbgq::gguf_weight_provider p(file, cfg, nt);
  std::vector<sbgq::layer_weights> layers;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) layers.push_back(p.load_layer(l).value());
  const auto toks = prefill_tokens(cfg.vocab_size);
  const auto emb = p.embedding_rows(toks).value();
  for (auto _ : state) {
    state.PauseTiming();
    auto act = sbgq::embed_rows(emb, n_chunks).value();
    state.ResumeTiming();
    for (int l = 0; l < cfg.num_hidden_layers; ++l)
      sbgq::run_layer(cfg, l, layers[static_cast<std::size_t>(l)], act, nullptr, nt).value();
    benchmark::DoNotOptimize(act.hidden.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(toks.size()));
  state.counters["threads"] = nt;
  state.counters["layers"] = cfg.num_hidden_layers;
}

void bm_prefill_libllama(benchmark::State& state) {
  const int nt = state.range(0) > 0 ? static_cast<int>(state.range(0)) : all_threads();
  sbgq::test::oracle_model m(env("SBGQ_BENCH_GGUF"), sbgq::test::oracle_model::options{ctx, ctx, nt, false, true});
  const auto toks = prefill_tokens(m.n_vocab());
  for (auto _ : state)
    for (int c = 0; c < n_chunks; ++c) {
      m.clear();
      m.prefill(std::vector<std::int32_t>(toks.begin() + c * ctx, toks.begin() + (c + 1) * ctx));
    }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(toks.size()));
  state.counters["threads"] = nt;
}

const int prefill_registered = [] {
  if (!env("SBGQ_BENCH_GGUF") || !env("SBGQ_BENCH_MODEL_DIR")) return 0;
  for (auto [name, fn] : {std::pair{"prefill/ours/ctx512", &bm_prefill_ours}, std::pair{"prefill/libllama/ctx512", &bm_prefill_libllama}})
    benchmark::RegisterBenchmark(name, fn)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
  return 1;
}();

}  // namespace

// Argument: threads (0 = all hardware threads).
BENCHMARK(bm_ours)->Name("forward/ours/ctx512")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_libllama)->Name("forward/libllama/ctx512")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
