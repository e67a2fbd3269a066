// sbgq synth --preset tiny|0.8b|2b|4b|9b|27b -o DIR [--seed S] [--layers N] [--no-mtp] [-t N]
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include <sbgq/model/synth.hpp>

namespace sbgq::cli {

int cmd_synth(parser& p, const words& w) {
  CLI::App& app = p.app();
  synth_options opt;
  std::string out;
  std::int64_t shard_mb = 0;
  app.add_option("--preset", opt.preset, "tiny, 0.8b, 2b, 4b, 9b or 27b")->type_name("NAME");
  app.add_option("-o,--outdir", out, "output directory")->type_name("DIR");
  add_count(app, "--seed", opt.seed, 0, 1LL << 62, "random seed");
  add_count(app, "--layers", opt.layers, 1, 1024, "number of layers (default: the preset's)");
  app.add_flag_callback("--no-mtp", [&] { opt.mtp = false; }, "leave out the MTP block");
  add_count(app, "--shard-size-mb", shard_mb, 1, 1 << 20, "safetensors shard size in MiB");
  add_threads(app, opt.n_threads);
  p.parse(w);
  if (shard_mb > 0) opt.shard_bytes = static_cast<std::uint64_t>(shard_mb) << 20;
  if (out.empty()) throw usage_error{"missing -o DIR"};
  if (opt.preset == "tiny" && opt.shard_bytes == (std::uint64_t{4} << 30)) opt.shard_bytes = 12u << 20;  // two shards, like the shared tiny model
  progress_display pg("synth");
  opt.progress = pg.callback();
  auto rep = unwrap(synthesize_checkpoint(out, opt));
  pg.done();
  fmt::print("wrote {}: preset {}, {} tensors in {} shards, {} in {:.1f} s ({:.2f} GB/s), peak RSS {}\n", out, opt.preset,
             rep.n_tensors, rep.n_shards, human_bytes(static_cast<double>(rep.bytes)), rep.seconds,
             static_cast<double>(rep.bytes) / 1e9 / (rep.seconds > 0 ? rep.seconds : 1), human_bytes(static_cast<double>(peak_rss_bytes())));
  return 0;
}

}  // namespace sbgq::cli
