// sbgq imatrix MODEL -f TEXT -o OUT [--ctx 512] [--chunks N] [--output-format gguf|dat]
//                    [--in-file F]... [--process-output] [-t N]
#include <cstdio>
#include <string>
#include <vector>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include "model_args.hpp"
#include <sbgq/calibrate.hpp>

namespace sbgq::cli {

int cmd_imatrix(args& a) {
  std::string model, text, out = "imatrix.gguf", format;
  std::vector<std::string> in_files;
  calibration_options opt;
  opt.ctx = 512;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "-f" || f == "--file") text = a.value(f);
    else if (f == "-o" || f == "--output-file") out = a.value(f);
    else if (f == "-c" || f == "--ctx" || f == "--ctx-size") opt.ctx = a.integer(f, 16, 1 << 20);
    else if (f == "--chunks") opt.max_chunks = a.integer(f, 1, 1 << 30);
    else if (f == "--output-format") format = a.value(f);
    else if (f == "--in-file") in_files.push_back(a.value(f));
    else if (f == "--process-output") opt.process_output = true;
    else if (f == "-t" || f == "--threads") opt.n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else if (f == "-m" || f == "--model") model = a.value(f);
    else if (!f.empty() && f[0] == '-') throw usage_error{"unknown option '" + f + "'"};
    else if (model.empty()) model = f;
    else throw usage_error{"unexpected argument '" + f + "'"};
  }
  if (format.empty()) format = out.size() >= 4 && out.substr(out.size() - 4) == ".dat" ? "dat" : "gguf";
  if (format != "gguf" && format != "dat") throw usage_error{"--output-format: expected gguf or dat, found '" + format + "'"};
  if (model.empty() && in_files.empty()) throw usage_error{"missing MODEL (or --in-file files to merge)"};
  if (!model.empty() && text.empty()) throw usage_error{"missing -f TEXT"};
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
    std::fprintf(stderr, "imatrix: merged %s (%zu entries, %u chunks)\n", f.c_str(), other.entries.size(), other.chunk_count);
  }
  if (!model.empty()) {
    auto m = unwrap(open_model(model, opt.n_threads));
    const auto toks = tokenize_file_or_exit(*m, text);
    opt.dataset = text;
    const std::int64_t n_chunks = std::min<std::int64_t>(static_cast<std::int64_t>(toks.size()) / opt.ctx,
                                                         opt.max_chunks > 0 ? opt.max_chunks : (1LL << 40));
    std::fprintf(stderr, "imatrix: %s, %zu tokens, %lld chunks of %lld\n", model.c_str(), toks.size(),
                 static_cast<long long>(n_chunks), static_cast<long long>(opt.ctx));
    progress_display pg("imatrix");
    opt.progress = pg.callback();
    auto r = unwrap(collect_calibration(m->config, *m->provider, toks, opt));
    pg.done();
    unwrap(im.merge(r.im));
    if (im.chunk_size == 0) im.chunk_size = r.im.chunk_size;
  }
  unwrap(format == "gguf" ? write_imatrix_gguf(im, out) : write_imatrix_dat(im, out));
  std::printf("imatrix: wrote %s (%s, %zu entries, %u chunks), peak RSS %s\n", out.c_str(), format.c_str(),
              im.entries.size(), im.chunk_count, human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  return 0;
}

}  // namespace sbgq::cli
