// sbgq demo: the main job end to end on an embedded default, needing nothing but this
// program: synthesize a small Qwen3.5 checkpoint (the tiny preset: 8 hybrid layers in the
// real HF layout), convert it to GGUF as llama.cpp's converter does (the F16 base), then
// run the pipeline twice on the checkpoint -- once as llama.cpp would quantize it (recipe
// llama-q4_k_m, plain rounding: byte-identical to llama-quantize with the same imatrix)
// and once with the pipeline's defaults -- and measure what each costs: perplexity and
// KL-divergence against the base on generated evaluation text, and the pipeline's report.
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

int cmd_demo(parser& p, const words& w) {
  CLI::App& app = p.app();
  std::string dir = "sbgq-demo";
  int n_threads = 0;
  app.add_option("-o,--outdir", dir, "working directory (default sbgq-demo)")->type_name("DIR");
  add_threads(app, n_threads);
  p.parse(w);
  std::filesystem::create_directories(dir);
  progress_display pg("pipeline", 2.0, "   ");
  const std::string model_dir = dir + "/tiny-synth", base_gguf = dir + "/tiny-f16.gguf";
  const std::string llama_gguf = dir + "/tiny-Q4_K_M.gguf", sbgq_gguf = dir + "/tiny-sbgq.gguf";

  fmt::print("1. synthesize   {} (preset tiny, seed 0)\n", model_dir);
  synth_options so;
  so.n_threads = n_threads;
  so.shard_bytes = 12u << 20;
  auto syn = unwrap(synthesize_checkpoint(model_dir, so));
  fmt::print("   {} tensors in {} shards, {}, {:.2f} s\n", syn.n_tensors, syn.n_shards, human_bytes(static_cast<double>(syn.bytes)),
             syn.seconds);

  fmt::print("2. convert      {} (F16, as convert_hf_to_gguf.py: the evaluation base)\n", base_gguf);
  convert_options co;
  co.n_threads = n_threads;
  auto conv = unwrap(convert_checkpoint(model_dir, base_gguf, co));
  fmt::print("   {} tensors, {}, {:.2f} s\n", conv.n_tensors, human_bytes(static_cast<double>(conv.bytes_written)), conv.seconds);

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
  fmt::print("3. pipeline     {} (recipe llama-q4_k_m, plain rounding: what llama-quantize writes)\n", llama_gguf);
  auto rl = unwrap(run_pipeline(model_dir, llama_gguf, llama));
  pg.done();
  fmt::print("   {:.3f} bits per weight, {:.2f} s\n", rl.bits_per_weight(), rl.seconds);
  fmt::print("4. pipeline     {} (the defaults: recipe {}, rounding {}, rotation {}, gauge {})\n", sbgq_gguf, po.recipe,
             po.rounding == rounding_mode::gptq ? "gptq" : "plain", po.rotate == rotation_mode::hadamard ? "hadamard" : "none",
             po.gauge ? "exact" : "none");
  auto rs = unwrap(run_pipeline(model_dir, sbgq_gguf, po));
  pg.done();
  print_pipeline_summary(rs, sbgq_gguf);

  auto base = unwrap(open_model(base_gguf, n_threads));
  const auto eval = unwrap(base->tok.encode(generated_text(2, 6000)));
  fmt::print("5. evaluate     {} tokens, chunks of 128 (second half of each scored)\n", eval.size());
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

  fmt::print("\nreport (tiny synthetic model; random weights, so only the comparison means something)\n");
  fmt::print("  {:<10} {:>10} {:>8} {:>12} {:>12} {:>10} {:>9}\n", "model", "size", "bpw", "PPL", "mean KLD", "99% KLD", "same top");
  fmt::print("  {:<10} {:>10} {:>8} {:>12.3f} {:>12} {:>10} {:>9}\n", "F16", human_bytes(static_cast<double>(conv.bytes_written)), "16",
             ev_base.perplexity.ppl, "-", "-", "-");
  auto row = [&](const char* name, const pipeline_report& r, const evaluation& ev) {
    fmt::print("  {:<10} {:>10} {:>8.3f} {:>12.3f} {:>12.6f} {:>10.6f} {:>8.2f}%\n", name, human_bytes(static_cast<double>(r.file_size)),
               r.bits_per_weight(), ev.perplexity.ppl, ev.kld.kld_mean, ev.kld.kld_p99, 100.0 * ev.kld.same_top);
  };
  row("Q4_K_M", rl, ev_l);
  row("sbgq", rs, ev_s);
  fmt::print("  total {:.1f} s, peak RSS {}\n", pg.elapsed(), human_bytes(static_cast<double>(peak_rss_bytes())));
  return 0;
}

}  // namespace sbgq::cli
