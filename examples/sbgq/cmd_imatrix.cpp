// sbgq imatrix [-m] MODEL -f TEXT [-o OUT] [-c 512] [--chunk N] [--chunks N]
//              [--output-format gguf|dat] [--in-file F]... [--process-output] [-t N]
//
// llama-imatrix's meanings: the output is GGUF (default imatrix.gguf) unless
// --output-format dat, whatever its name; --in-file files are merged (alone: converted);
// --chunk N skips the first N chunks, --chunks N stops after N.
#include <string>
#include <vector>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include "model_args.hpp"
#include <sbgq/calibrate.hpp>

namespace sbgq::cli {

int cmd_imatrix(parser& p, const words& w) {
  CLI::App& app = p.app();
  std::string model_flag, text, out = "imatrix.gguf", format = "gguf";
  std::vector<std::string> pos, in_files;
  std::int64_t skip_chunks = 0;
  bool no_ppl = false;
  calibration_options opt;
  opt.ctx = 512;
  app.add_option("-m,--model", model_flag, "the model: an HF checkpoint directory or a GGUF file")->type_name("MODEL");
  app.add_option("-f,--file", text, "calibration text")->type_name("TEXT");
  app.add_option("-o,--output-file", out, "output file (default imatrix.gguf)")->type_name("OUT");
  app.add_option("--output-format", format, "gguf (default) or dat (llama.cpp's legacy format)")
      ->check(CLI::IsMember({"gguf", "dat"}))->type_name("gguf|dat");
  add_count(app, "-c,--ctx-size,--ctx", opt.ctx, 16, 1 << 20, "chunk length in tokens (default 512)");
  add_count(app, "--chunk,--from-chunk", skip_chunks, 0, 1LL << 30, "skip the first N chunks");
  add_count(app, "--chunks", opt.max_chunks, 1, 1LL << 30, "process at most N chunks (default: all)");
  app.add_option("--in-file", in_files, "an imatrix (GGUF or .dat) to merge in (repeatable)")->type_name("F")->allow_extra_args(false);
  app.add_flag("--process-output", opt.process_output, "also collect output.weight");
  app.add_flag("--no-ppl", no_ppl, "do not compute perplexity (sbgq never does)");
  add_threads(app, opt.n_threads);
  app.add_option("model", pos, "MODEL (or -m MODEL)");
  p.unsupported("--output-frequency,--save-frequency", true, "sbgq writes the imatrix once, at the end");
  p.unsupported_word("-ofreq", "sbgq writes the imatrix once, at the end");
  p.unsupported("--show-statistics", false, "sbgq inspect shows the entries of an imatrix GGUF");
  p.unsupported("--parse-special", false, "sbgq tokenizes the text as plain text");
  p.unsupported("--nextn", false, "sbgq does not collect the MTP layer");
  p.unsupported("-b,--batch-size", true, "sbgq evaluates whole chunks");
  p.unsupported_word("-ub", "sbgq evaluates whole chunks");
  p.unsupported("--gpu-layers,--n-gpu-layers", true, "sbgq runs on the CPU");
  p.unsupported_word("-ngl", "sbgq runs on the CPU");
  p.parse(w);

  std::string model = model_flag;
  if (!pos.empty()) {
    if (!model.empty() || pos.size() > 1) throw usage_error{"unexpected argument '" + (model.empty() ? pos[1] : pos[0]) + "'"};
    model = pos[0];
  }
  if (model.empty() && in_files.empty()) throw usage_error{"missing MODEL (or --in-file files to merge)"};
  if (!model.empty() && text.empty()) throw usage_error{"missing -f TEXT"};
  if (format == "gguf" && out.size() >= 4 && out.compare(out.size() - 4, 4, ".dat") == 0)
    fmt::print(stderr, "imatrix: note: writing GGUF to {} (llama-imatrix's default; --output-format dat writes the legacy format)\n",
               out);
  {  // the output is written after the whole collection: check it can be, now
    std::vector<std::string> inputs = in_files;
    inputs.push_back(model);
    inputs.push_back(text);
    unwrap(check_output_not_input(out, inputs, "imatrix"));
    unwrap(output_file::create(out)).abandon();
  }

  imatrix im;
  for (const auto& f : in_files) {
    auto other = unwrap(read_imatrix(f));
    unwrap(im.merge(other));
    fmt::print(stderr, "imatrix: merged {} ({} entries, {} chunks)\n", f, other.entries.size(), other.chunk_count);
  }
  if (!model.empty()) {
    auto m = unwrap(open_model(model, opt.n_threads));
    auto toks = tokenize_file(*m, text);
    if (skip_chunks > 0) {  // llama-imatrix --chunk: needs two chunks left after the skipped ones
      if ((skip_chunks + 2) * opt.ctx >= static_cast<std::int64_t>(toks.size()))
        throw failure{error(error_code::invalid_argument, "imatrix",
                            fmt::format("--chunk {}: {} tokens leave too few for chunks of {} after skipping", skip_chunks,
                                        toks.size(), opt.ctx))};
      toks.erase(toks.begin(), toks.begin() + skip_chunks * opt.ctx);
    }
    opt.dataset = text;
    const std::int64_t n_chunks = std::min<std::int64_t>(static_cast<std::int64_t>(toks.size()) / opt.ctx,
                                                         opt.max_chunks > 0 ? opt.max_chunks : (1LL << 40));
    fmt::print(stderr, "imatrix: {}, {} tokens, {} chunks of {}\n", model, toks.size(), n_chunks, opt.ctx);
    progress_display pg("imatrix");
    opt.progress = pg.callback();
    auto r = unwrap(collect_calibration(m->config, *m->provider, toks, opt));
    pg.done();
    unwrap(im.merge(r.im));
    if (im.chunk_size == 0) im.chunk_size = r.im.chunk_size;
  }
  unwrap(format == "gguf" ? write_imatrix_gguf(im, out) : write_imatrix_dat(im, out));
  fmt::print("imatrix: wrote {} ({}, {} entries, {} chunks), peak RSS {}\n", out, format, im.entries.size(), im.chunk_count,
             human_bytes(static_cast<double>(peak_rss_bytes())));
  return 0;
}

}  // namespace sbgq::cli
