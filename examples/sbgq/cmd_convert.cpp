// sbgq convert MODEL_DIR -o OUT.gguf [--outtype f32|f16|bf16|q8_0] [--no-mtp] [--name NAME] [-t N]
#include <cstdio>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include <sbgq/convert.hpp>

namespace sbgq::cli {

int cmd_convert(args& a) {
  std::string model, out;
  convert_options opt;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "-o" || f == "--outfile") out = a.value(f);
    else if (f == "--outtype") {
      const std::string t = a.value(f);
      auto ty = ggml_type_from_name(t);
      if (!ty || (*ty != ggml_type::f32 && *ty != ggml_type::f16 && *ty != ggml_type::bf16 && *ty != ggml_type::q8_0))
        throw usage_error{"--outtype: expected f32, f16, bf16 or q8_0, found '" + t + "'"};
      opt.outtype = *ty;
    } else if (f == "--no-mtp") opt.include_mtp = false;
    else if (f == "--name") opt.name = a.value(f);
    else if (f == "-t" || f == "--threads") opt.n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else if (!f.empty() && f[0] == '-') throw usage_error{"unknown option '" + f + "'"};
    else if (model.empty()) model = f;
    else throw usage_error{"unexpected argument '" + f + "'"};
  }
  if (model.empty()) throw usage_error{"missing MODEL_DIR"};
  if (out.empty()) throw usage_error{"missing -o OUT.gguf"};
  progress_display pg("convert");
  opt.progress = pg.callback();
  auto rep = unwrap(convert_checkpoint(model, out, opt));
  pg.done();
  std::printf("wrote %s: %zu tensors, %s (%s read) in %.2f s, %.2f GB/s read, peak RSS %s\n", out.c_str(), rep.n_tensors,
              human_bytes(static_cast<double>(rep.bytes_written)).c_str(), human_bytes(static_cast<double>(rep.bytes_read)).c_str(),
              rep.seconds, static_cast<double>(rep.bytes_read) / 1e9 / (rep.seconds > 0 ? rep.seconds : 1),
              human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  return 0;
}

}  // namespace sbgq::cli
