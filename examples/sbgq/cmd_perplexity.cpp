// sbgq perplexity [-m] MODEL -f TEXT [-c N] [--chunks N] [-b N] [--kl-divergence-base FILE] [-t N]
// sbgq perplexity [-m] MODEL --kl-divergence-base FILE --kl-divergence [-t N]
//
// llama-perplexity's meanings: --kl-divergence-base FILE alone saves the model's logits
// (with the tokens and the context length) to FILE while computing the perplexity; with
// the --kl-divergence flag FILE is read instead, its tokens are evaluated, and the
// KL-divergence report compares MODEL with the saved base. -b N is the batch size in
// tokens: N >= ctx evaluates N / ctx chunks together (as llama-perplexity's n_seq).
#include <optional>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include "model_args.hpp"
#include <sbgq/evaluate.hpp>

namespace sbgq::cli {

int cmd_perplexity(parser& p, const words& w) {
  CLI::App& app = p.app();
  std::string model_flag, text, save, base;
  std::vector<std::string> pos;
  bool kld = false;
  std::int64_t n_batch = 0;
  evaluate_options opt;
  app.add_option("-m,--model", model_flag, "the model: a GGUF file or an HF checkpoint directory")->type_name("MODEL");
  app.add_option("-f,--file", text, "text to evaluate")->type_name("TEXT");
  add_count(app, "-c,--ctx-size,--ctx", opt.ctx, 4, 1 << 20, "chunk length in tokens (default 512)");
  add_count(app, "--chunks", opt.max_chunks, 1, 1LL << 30, "evaluate at most N chunks (default: all)");
  add_count(app, "-b,--batch-size", n_batch, 1, 1LL << 30, "batch size in tokens: N >= ctx evaluates N/ctx chunks together");
  app.add_option("--kl-divergence-base", base,
                 "base logits: saved to FILE, or read from it with --kl-divergence")->type_name("FILE");
  app.add_flag("--kl-divergence", kld, "report the KL-divergence against the logits in --kl-divergence-base");
  app.add_option("--save-logits", save, "save the logits to FILE, as --kl-divergence-base alone (sbgq only)")->type_name("FILE");
  add_threads(app, opt.n_threads);
  app.add_option("model", pos, "MODEL (or -m MODEL)");
  p.unsupported("--hellaswag,--hellaswag-tasks,--winogrande,--winogrande-tasks,--multiple-choice,--multiple-choice-tasks", false,
                "sbgq perplexity computes perplexity and KL-divergence only");
  p.unsupported("--ppl-stride,--ppl-output-type", true, "sbgq scores the second half of each chunk, as llama-perplexity's default");
  p.unsupported("--gpu-layers,--n-gpu-layers", true, "sbgq runs on the CPU");
  p.unsupported_word("-ngl", "sbgq runs on the CPU");
  p.parse(w);

  std::string model = model_flag;
  if (!pos.empty()) {
    if (!model.empty() || pos.size() > 1) {
      const std::string extra = model.empty() ? pos[1] : pos[0];
      if (kld)
        throw usage_error{"unexpected argument '" + extra + "': --kl-divergence is a flag (llama-perplexity's meaning); "
                          "the base logits file goes with --kl-divergence-base FILE"};
      throw usage_error{"unexpected argument '" + extra + "'"};
    }
    model = pos[0];
  }
  if (model.empty()) throw usage_error{"missing MODEL (or -m MODEL)"};
  if (kld && base.empty()) throw usage_error{"--kl-divergence needs --kl-divergence-base FILE (the saved base logits)"};
  if (kld && !save.empty()) throw usage_error{"--save-logits saves base logits; with --kl-divergence the base is read"};
  if (!kld && !base.empty()) {
    if (!save.empty() && save != base) throw usage_error{"--save-logits and --kl-divergence-base name two different files"};
    save = base;  // llama-perplexity: --kl-divergence-base without --kl-divergence saves
    base.clear();
  }
  if (n_batch > 0) {
    if (n_batch >= opt.ctx && n_batch % opt.ctx != 0)
      throw usage_error{"-b " + std::to_string(n_batch) + ": the batch size must be at most the context size (" +
                        std::to_string(opt.ctx) + ") or a multiple of it"};
    opt.batch_chunks = std::max<std::int64_t>(1, n_batch / opt.ctx);
  }

  auto m = unwrap(open_model(model, opt.n_threads));
  std::vector<std::int32_t> toks;
  std::optional<base_logits_file> base_file;
  if (kld) {
    if (!text.empty()) fmt::print(stderr, "perplexity: note: -f {} is not read: the tokens come from {}\n", text, base);
    base_file.emplace(unwrap(base_logits_file::open(base)));
    toks.assign(base_file->tokens().begin(), base_file->tokens().end());
    opt.ctx = base_file->ctx();
    if (opt.max_chunks < 0) opt.max_chunks = base_file->n_chunks();
  } else {
    if (text.empty()) throw usage_error{"missing -f TEXT"};
    toks = tokenize_file(*m, text);
  }
  std::int64_t n_chunks = static_cast<std::int64_t>(toks.size()) / opt.ctx;
  if (opt.max_chunks > 0) n_chunks = std::min(n_chunks, opt.max_chunks);
  std::optional<base_logits_writer> writer;
  if (!save.empty())
    writer.emplace(unwrap(base_logits_writer::create(save, m->config.vocab_size, opt.ctx,
                                                     std::span<const std::int32_t>(toks.data(), static_cast<std::size_t>(n_chunks * opt.ctx)))));
  fmt::print(stderr, "perplexity: {}, {} tokens, {} chunks of {}, scoring the second half of each\n", model, toks.size(), n_chunks,
             opt.ctx);
  progress_display pg("perplexity");
  opt.progress = pg.callback();
  auto ev = unwrap(evaluate(m->config, *m->provider, toks, opt, writer ? &*writer : nullptr, base_file ? &*base_file : nullptr));
  pg.done();
  if (writer) {
    unwrap(writer->commit());
    fmt::print(stderr, "perplexity: saved the logits to {}\n", save);
  }
  fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f} ({} chunks of {} tokens)\n", ev.perplexity.ppl, ev.perplexity.ppl_error,
             ev.perplexity.n_chunks, opt.ctx);
  if (base_file) fmt::print("{}", format_kld_report(ev.kld));
  fmt::print("peak RSS {}, {:.1f} s\n", human_bytes(static_cast<double>(peak_rss_bytes())), pg.elapsed());
  return 0;
}

}  // namespace sbgq::cli
