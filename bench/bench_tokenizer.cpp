// Tokenizer benchmarks (tokenizer.hpp) on the shared corpora, with llama.cpp's
// llama_tokenize on the same text as the in-run reference.
//
//   tokenizer/encode/<file>        sbgq::tokenizer::encode of the whole file, one call
//   tokenizer/encode_lines/<file>  one encode call per line (the per-call word cache
//                                  then helps much less)
//   llama/tokenize/<file>          llama_tokenize(parse_special = true) of the whole file
//                                  on a vocab-only GGUF built from the same tokenizer.json
//   tokenizer/load                 tokenizer::load of the tiny model's tokenizer.json
//
// Counters: bytes_per_second (MB/s of input text), items_per_second (tokens/s).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sbgq/model/tokenizer.hpp>

#include "support/oracle.hpp"
#include "support/vocab_gguf.hpp"

namespace {

const std::string shared_dir = SBGQ_SHARED_DIR;
const std::string model_dir = shared_dir + "/models/tiny-qwen35";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const sbgq::tokenizer& tok() {
  static const sbgq::tokenizer t = sbgq::tokenizer::load(model_dir + "/tokenizer.json").value();
  return t;
}

void encode_whole(benchmark::State& state, const std::string& file) {
  const std::string text = read_file(shared_dir + "/data/" + file);
  std::size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok().encode(text).value();
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n_tokens));
}

void encode_lines(benchmark::State& state, const std::string& file) {
  const std::string text = read_file(shared_dir + "/data/" + file);
  std::vector<std::string> lines;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t nl = text.find('\n', pos);
    nl = nl == std::string::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl;
  }
  std::size_t n_tokens = 0;
  for (auto _ : state) {
    n_tokens = 0;
    for (const auto& l : lines) {
      auto ids = tok().encode(l).value();
      n_tokens += ids.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n_tokens));
}

void llama_whole(benchmark::State& state, const std::string& file) {
  static std::unique_ptr<sbgq::test::oracle_model> model = [] {
    const std::string path = (std::filesystem::temp_directory_path() / "sbgq-bench-tiny-qwen35-vocab.gguf").string();
    sbgq::test::write_vocab_gguf(model_dir, path);
    sbgq::test::oracle_model::options opt;
    opt.vocab_only = true;
    return std::make_unique<sbgq::test::oracle_model>(path, opt);
  }();
  const std::string text = read_file(shared_dir + "/data/" + file);
  std::size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = model->tokenize(text, true);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n_tokens));
}

void load(benchmark::State& state) {
  for (auto _ : state) {
    auto t = sbgq::tokenizer::load(model_dir + "/tokenizer.json");
    benchmark::DoNotOptimize(t.has_value());
  }
}

}  // namespace

BENCHMARK_CAPTURE(encode_whole, eval, std::string("eval.txt"))->Name("tokenizer/encode/eval.txt")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_whole, calib, std::string("calib.txt"))->Name("tokenizer/encode/calib.txt")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_lines, eval, std::string("eval.txt"))->Name("tokenizer/encode_lines/eval.txt")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(llama_whole, eval, std::string("eval.txt"))->Name("llama/tokenize/eval.txt")->Unit(benchmark::kMillisecond);
BENCHMARK(load)->Name("tokenizer/load")->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
