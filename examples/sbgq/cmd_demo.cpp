// sbgq demo: the main job end to end on an embedded default, needing nothing but this
// program: synthesize a small Qwen3.5 checkpoint (the tiny preset: 8 hybrid layers in the
// real HF layout), convert it to GGUF as llama.cpp's converter does (the F16 base), then
// run the pipeline twice on the checkpoint -- once as llama.cpp would quantize it (recipe
// llama-q4_k_m, plain rounding: byte-identical to llama-quantize with the same imatrix)
// and once with the pipeline's defaults -- and measure what each costs: perplexity and
// KL-divergence against the base on generated evaluation text, and the pipeline's report.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "pipeline_summary.hpp"
#include <sbgq/convert.hpp>
#include <sbgq/evaluate.hpp>
#include <sbgq/model/model_source.hpp>
#include <sbgq/pipeline.hpp>
#include <sbgq/model/synth.hpp>

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
  progress_display pg("pipeline", 2.0, "   ");
  const std::string model_dir = dir + "/tiny-synth", base_gguf = dir + "/tiny-f16.gguf";
  const std::string llama_gguf = dir + "/tiny-Q4_K_M.gguf", sbgq_gguf = dir + "/tiny-sbgq.gguf";

  std::printf("1. synthesize   %s (preset tiny, seed 0)\n", model_dir.c_str());
  synth_options so;
  so.n_threads = n_threads;
  so.shard_bytes = 12u << 20;
  auto syn = unwrap(synthesize_checkpoint(model_dir, so));
  std::printf("   %zu tensors in %zu shards, %s, %.2f s\n", syn.n_tensors, syn.n_shards,
              human_bytes(static_cast<double>(syn.bytes)).c_str(), syn.seconds);

  std::printf("2. convert      %s (F16, as convert_hf_to_gguf.py: the evaluation base)\n", base_gguf.c_str());
  convert_options co;
  co.n_threads = n_threads;
  auto conv = unwrap(convert_checkpoint(model_dir, base_gguf, co));
  std::printf("   %zu tensors, %s, %.2f s\n", conv.n_tensors, human_bytes(static_cast<double>(conv.bytes_written)).c_str(),
              conv.seconds);

  pipeline_options po;  // the pipeline's defaults
  po.calibration_text = generated_text(1, 6000);
  po.calibration_name = "generated";
  po.ctx = 128;
  po.n_threads = n_threads;
  po.progress = pg.callback();
  pipeline_options llama = po;
  llama.recipe = "llama-q4_k_m";
  llama.rotate = rotation_mode::none;
  llama.gauge = false;
  llama.rounding = rounding_mode::plain;
  std::printf("3. pipeline     %s (recipe llama-q4_k_m, plain rounding: what llama-quantize writes)\n", llama_gguf.c_str());
  auto rl = unwrap(run_pipeline(model_dir, llama_gguf, llama));
  pg.done();
  std::printf("   %.3f bits per weight, %.2f s\n", rl.bits_per_weight(), rl.seconds);
  std::printf("4. pipeline     %s (the defaults: recipe %s, rounding %s, rotation %s, gauge %s)\n", sbgq_gguf.c_str(),
              po.recipe.c_str(), po.rounding == rounding_mode::gptq ? "gptq" : "plain",
              po.rotate == rotation_mode::hadamard ? "hadamard" : "none", po.gauge ? "exact" : "none");
  auto rs = unwrap(run_pipeline(model_dir, sbgq_gguf, po));
  pg.done();
  print_pipeline_summary(rs, sbgq_gguf);

  auto base = unwrap(open_model(base_gguf, n_threads));
  const auto eval = unwrap(base->tok.encode(generated_text(2, 6000)));
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
  auto base_file = unwrap(base_logits_file::open(logits_path));
  auto eval_file = [&](const std::string& path) {
    auto m = unwrap(open_model(path, n_threads));
    return unwrap(evaluate(m->config, *m->provider, eval, eo, nullptr, &base_file));
  };
  const auto ev_l = eval_file(llama_gguf), ev_s = eval_file(sbgq_gguf);

  std::printf("\nreport (tiny synthetic model; random weights, so only the comparison means something)\n");
  std::printf("  %-10s %10s %8s %12s %12s %10s %9s\n", "model", "size", "bpw", "PPL", "mean KLD", "99% KLD", "same top");
  std::printf("  %-10s %10s %8s %12.3f %12s %10s %9s\n", "F16", human_bytes(static_cast<double>(conv.bytes_written)).c_str(), "16",
              ev_base.perplexity.ppl, "-", "-", "-");
  auto row = [&](const char* name, const pipeline_report& r, const evaluation& ev) {
    std::printf("  %-10s %10s %8.3f %12.3f %12.6f %10.6f %8.2f%%\n", name, human_bytes(static_cast<double>(r.file_size)).c_str(),
                r.bits_per_weight(), ev.perplexity.ppl, ev.kld.kld_mean, ev.kld.kld_p99, 100.0 * ev.kld.same_top);
  };
  row("Q4_K_M", rl, ev_l);
  row("sbgq", rs, ev_s);
  std::printf("  total %.1f s, peak RSS %s\n", pg.elapsed(), human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  return 0;
}

}  // namespace sbgq::cli
