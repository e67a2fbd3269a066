// sbgq convert MODEL_DIR -o OUT.gguf [--outtype f32|f16|bf16|q8_0] [--no-mtp] [--name NAME] [-t N]
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include <sbgq/convert.hpp>

namespace sbgq::cli {

int cmd_convert(parser& p, const words& w) {
  CLI::App& app = p.app();
  std::string model, out, outtype;
  convert_options opt;
  app.add_option("-o,--outfile", out, "output GGUF file")->type_name("OUT.gguf");
  app.add_option("--outtype", outtype, "f32, f16, bf16 or q8_0 (default f16, as convert_hf_to_gguf.py)")->type_name("TYPE");
  app.add_flag_callback("--no-mtp", [&] { opt.include_mtp = false; }, "leave out the MTP block");
  app.add_option("--name", opt.name, "general.name")->type_name("NAME");
  add_threads(app, opt.n_threads);
  app.add_option("model", model, "MODEL_DIR")->type_name("MODEL_DIR");
  p.parse(w);
  if (!outtype.empty()) {
    auto ty = ggml_type_from_name(outtype);
    if (!ty || (*ty != ggml_type::f32 && *ty != ggml_type::f16 && *ty != ggml_type::bf16 && *ty != ggml_type::q8_0))
      throw usage_error{"--outtype: expected f32, f16, bf16 or q8_0, found '" + outtype + "'"};
    opt.outtype = *ty;
  }
  if (model.empty()) throw usage_error{"missing MODEL_DIR"};
  if (out.empty()) throw usage_error{"missing -o OUT.gguf"};
  progress_display pg("convert");
  opt.progress = pg.callback();
  auto rep = unwrap(convert_checkpoint(model, out, opt));
  pg.done();
  fmt::print("wrote {}: {} tensors, {} ({} read) in {:.2f} s, {:.2f} GB/s read, peak RSS {}\n", out, rep.n_tensors,
             human_bytes(static_cast<double>(rep.bytes_written)), human_bytes(static_cast<double>(rep.bytes_read)), rep.seconds,
             static_cast<double>(rep.bytes_read) / 1e9 / (rep.seconds > 0 ? rep.seconds : 1),
             human_bytes(static_cast<double>(peak_rss_bytes())));
  return 0;
}

}  // namespace sbgq::cli
