// sbgq demo: the main job end to end on an embedded default, needing nothing but this
// program: synthesize a small Qwen3.5 checkpoint (the tiny preset: 8 hybrid layers in the
// real HF layout), convert it to GGUF as llama.cpp's converter does, collect an importance
// matrix from generated calibration text, quantize it to Q4_K_M exactly as llama-quantize
// would, and measure what quantization cost: perplexity of base and quantized model and the
// KL-divergence between them on generated evaluation text. It grows with the pipeline.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include <sbgq/calibrate.hpp>
#include <sbgq/convert.hpp>
#include <sbgq/evaluate.hpp>
#include <sbgq/model_source.hpp>
#include <sbgq/quantize.hpp>
#include <sbgq/synth.hpp>

namespace sbgq::cli {

namespace {
/// Seeded text of the synthetic vocabulary's words (the calibration and evaluation data).
std::string generated_text(std::uint64_t seed, std::size_t n_words) {
  static constexpr const char* words[] = {"the", "model", "and", "weight", "of", "layer", "people", "time", "is",
                                          "quantize", "which", "their", "through", "because", "years", "first"};
  detail::synth::rng g(seed);
  std::string t;
  for (std::size_t i = 0; i < n_words; ++i) {
    t += words[g.next() % std::size(words)];
    t += (i % 13 == 12) ? ".\n" : " ";
  }
  return t;
}
}  // namespace

int cmd_demo(args& a) {
  std::string dir = "sbgq-demo";
  int n_threads = 0;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "-o" || f == "--outdir") dir = a.value(f);
    else if (f == "-t" || f == "--threads") n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else throw usage_error{"unknown option '" + f + "'"};
  }
  std::filesystem::create_directories(dir);
  progress pg;
  const std::string model_dir = dir + "/tiny-synth", base_gguf = dir + "/tiny-f16.gguf", quant_gguf = dir + "/tiny-Q4_K_M.gguf";

  std::printf("1. synthesize   %s (preset tiny, seed 0)\n", model_dir.c_str());
  synth_options so;
  so.n_threads = n_threads;
  so.shard_bytes = 12u << 20;
  auto syn = unwrap(synthesize_checkpoint(model_dir, so));
  std::printf("   %zu tensors in %zu shards, %s, %.2f s\n", syn.n_tensors, syn.n_shards,
              human_bytes(static_cast<double>(syn.bytes)).c_str(), syn.seconds);

  std::printf("2. convert      %s (F16, as convert_hf_to_gguf.py)\n", base_gguf.c_str());
  convert_options co;
  co.n_threads = n_threads;
  auto conv = unwrap(convert_checkpoint(model_dir, base_gguf, co));
  std::printf("   %zu tensors, %s, %.2f s\n", conv.n_tensors, human_bytes(static_cast<double>(conv.bytes_written)).c_str(),
              conv.seconds);

  auto base = unwrap(open_model(base_gguf, n_threads));
  const auto calib = unwrap(base->tok.encode(generated_text(1, 6000)));
  const auto eval = unwrap(base->tok.encode(generated_text(2, 6000)));

  std::printf("3. imatrix      %zu calibration tokens, chunks of 128\n", calib.size());
  calibration_options ca;
  ca.ctx = 128;
  ca.n_threads = n_threads;
  ca.dataset = "generated";
  auto cal = unwrap(collect_calibration(base->config, *base->provider, calib, ca));
  std::printf("   %zu entries from %lld chunks, %.2f s\n", cal.im.entries.size(), static_cast<long long>(cal.n_chunks), cal.seconds);

  std::printf("4. quantize     %s (Q4_K_M with the imatrix, as llama-quantize)\n", quant_gguf.c_str());
  quantize_options qo;
  qo.importance = &cal.im;
  qo.imatrix_file = "generated";
  qo.n_threads = n_threads;
  auto q = unwrap(quantize_file(base_gguf, quant_gguf, qo));
  std::printf("   %s, %.3f bits per weight, %.2f s\n", human_bytes(static_cast<double>(q.file_size)).c_str(), q.bits_per_weight(),
              q.seconds);

  std::printf("5. evaluate     %zu tokens, chunks of 128 (second half of each scored)\n", eval.size());
  evaluate_options eo;
  eo.ctx = 128;
  eo.n_threads = n_threads;
  const std::string logits_path = dir + "/base.logits";
  const std::int64_t n_chunks = static_cast<std::int64_t>(eval.size()) / eo.ctx;
  auto writer = unwrap(base_logits_writer::create(logits_path, base->config.vocab_size, eo.ctx,
                                                  std::span<const std::int32_t>(eval.data(), static_cast<std::size_t>(n_chunks * eo.ctx))));
  auto ev_base = unwrap(evaluate(base->config, *base->provider, eval, eo, &writer, nullptr));
  unwrap(writer.commit());
  auto quant = unwrap(open_model(quant_gguf, n_threads));
  auto base_file = unwrap(base_logits_file::open(logits_path));
  auto ev_q = unwrap(evaluate(quant->config, *quant->provider, eval, eo, nullptr, &base_file));
  pg.done();

  std::printf("\nreport (tiny synthetic model; random weights, so only the comparison means something)\n");
  std::printf("  %-10s %10s %8s %12s %12s %10s %9s\n", "model", "size", "bpw", "PPL", "mean KLD", "99% KLD", "same top");
  std::printf("  %-10s %10s %8.3f %12.3f %12s %10s %9s\n", "F16", human_bytes(static_cast<double>(conv.bytes_written)).c_str(),
              8.0 * static_cast<double>(q.bytes_in) / static_cast<double>(q.n_elements), ev_base.perplexity.ppl, "-", "-", "-");
  std::printf("  %-10s %10s %8.3f %12.3f %12.6f %10.6f %8.2f%%\n", "Q4_K_M", human_bytes(static_cast<double>(q.file_size)).c_str(),
              q.bits_per_weight(), ev_q.perplexity.ppl, ev_q.kld.kld_mean, ev_q.kld.kld_p99, 100.0 * ev_q.kld.same_top);
  std::printf("  total %.1f s, peak RSS %s\n", pg.elapsed(), human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  return 0;
}

}  // namespace sbgq::cli
