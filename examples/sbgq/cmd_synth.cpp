// sbgq synth --preset tiny|0.8b|2b|4b|9b|27b -o DIR [--seed S] [--layers N] [--no-mtp] [-t N]
#include <cstdio>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include <sbgq/model/synth.hpp>

namespace sbgq::cli {

int cmd_synth(args& a) {
  synth_options opt;
  std::string out;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "--preset") opt.preset = a.value(f);
    else if (f == "-o" || f == "--outdir") out = a.value(f);
    else if (f == "--seed") opt.seed = static_cast<std::uint64_t>(a.integer(f, 0, (1LL << 62)));
    else if (f == "--layers") opt.layers = a.integer(f, 1, 1024);
    else if (f == "--no-mtp") opt.mtp = false;
    else if (f == "--shard-size-mb") opt.shard_bytes = static_cast<std::uint64_t>(a.integer(f, 1, 1 << 20)) << 20;
    else if (f == "-t" || f == "--threads") opt.n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else throw usage_error{"unknown option '" + f + "'"};
  }
  if (out.empty()) throw usage_error{"missing -o DIR"};
  if (opt.preset == "tiny" && opt.shard_bytes == (std::uint64_t{4} << 30)) opt.shard_bytes = 12u << 20;  // two shards, like the shared tiny model
  progress_display pg("synth");
  opt.progress = pg.callback();
  auto rep = unwrap(synthesize_checkpoint(out, opt));
  pg.done();
  std::printf("wrote %s: preset %s, %zu tensors in %zu shards, %s in %.1f s (%.2f GB/s), peak RSS %s\n", out.c_str(),
              opt.preset.c_str(), rep.n_tensors, rep.n_shards, human_bytes(static_cast<double>(rep.bytes)).c_str(), rep.seconds,
              static_cast<double>(rep.bytes) / 1e9 / (rep.seconds > 0 ? rep.seconds : 1),
              human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  return 0;
}

}  // namespace sbgq::cli
