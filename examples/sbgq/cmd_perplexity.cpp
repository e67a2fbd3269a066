// sbgq perplexity MODEL -f TEXT [--ctx N] [--chunks N] [--batch N] [--save-logits FILE]
//                                [--kl-divergence FILE] [-t N]
#include <cstdio>
#include <memory>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include "model_args.hpp"
#include <sbgq/evaluate.hpp>

namespace sbgq::cli {

int cmd_perplexity(args& a) {
  std::string model, text, save, base;
  evaluate_options opt;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "-f" || f == "--file") text = a.value(f);
    else if (f == "-c" || f == "--ctx" || f == "--ctx-size") opt.ctx = a.integer(f, 4, 1 << 20);
    else if (f == "--chunks") opt.max_chunks = a.integer(f, 1, 1 << 30);
    else if (f == "-b" || f == "--batch") opt.batch_chunks = a.integer(f, 1, 1 << 16);
    else if (f == "--save-logits" || f == "--kl-divergence-base") save = a.value(f);
    else if (f == "--kl-divergence") base = a.value(f);
    else if (f == "-t" || f == "--threads") opt.n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else if (f == "-m" || f == "--model") model = a.value(f);
    else if (!f.empty() && f[0] == '-') throw usage_error{"unknown option '" + f + "'"};
    else if (model.empty()) model = f;
    else throw usage_error{"unexpected argument '" + f + "'"};
  }
  if (model.empty()) throw usage_error{"missing MODEL"};
  auto m = unwrap(open_model(model, opt.n_threads));
  std::vector<std::int32_t> toks;
  std::optional<base_logits_file> base_file;
  if (!base.empty()) {
    base_file.emplace(unwrap(base_logits_file::open(base)));
    toks.assign(base_file->tokens().begin(), base_file->tokens().end());
    opt.ctx = base_file->ctx();
    if (opt.max_chunks < 0) opt.max_chunks = base_file->n_chunks();
  } else {
    if (text.empty()) throw usage_error{"missing -f TEXT"};
    toks = tokenize_file_or_exit(*m, text);
  }
  std::int64_t n_chunks = static_cast<std::int64_t>(toks.size()) / opt.ctx;
  if (opt.max_chunks > 0) n_chunks = std::min(n_chunks, opt.max_chunks);
  std::optional<base_logits_writer> writer;
  if (!save.empty())
    writer.emplace(unwrap(base_logits_writer::create(save, m->config.vocab_size, opt.ctx,
                                                     std::span<const std::int32_t>(toks.data(), static_cast<std::size_t>(n_chunks * opt.ctx)))));
  std::fprintf(stderr, "perplexity: %s, %zu tokens, %lld chunks of %lld, scoring the second half of each\n", model.c_str(),
               toks.size(), static_cast<long long>(n_chunks), static_cast<long long>(opt.ctx));
  progress_display pg("perplexity");
  opt.progress = pg.callback();
  auto ev = unwrap(evaluate(m->config, *m->provider, toks, opt, writer ? &*writer : nullptr, base_file ? &*base_file : nullptr));
  pg.done();
  if (writer) unwrap(writer->commit());
  std::printf("Final estimate: PPL = %.4f +/- %.5f (%lld chunks of %lld tokens)\n", ev.perplexity.ppl, ev.perplexity.ppl_error,
              static_cast<long long>(ev.perplexity.n_chunks), static_cast<long long>(opt.ctx));
  if (base_file) std::printf("%s", format_kld_report(ev.kld).c_str());
  std::printf("peak RSS %s, %.1f s\n", human_bytes(static_cast<double>(peak_rss_bytes())).c_str(), pg.elapsed());
  return 0;
}

}  // namespace sbgq::cli
