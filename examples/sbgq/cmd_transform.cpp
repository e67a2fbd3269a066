// sbgq transform MODEL_DIR -o DIR --rotate hadamard|none [--seed S] [--gauge none|exact -f TEXT
//                [--gauge-type T] [--ctx N] [--chunks N]] [--dtype f32|bf16] [-t N]
#include <chrono>
#include <memory>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include "model_args.hpp"
#include <sbgq/transform/gauge.hpp>
#include <sbgq/engine/gauged_provider.hpp>
#include <sbgq/model/tokenizer.hpp>
#include <sbgq/hf_export.hpp>
#include <sbgq/transform/rotation.hpp>
#include <sbgq/model/weights.hpp>

namespace sbgq::cli {

int cmd_transform(parser& cmd, const words& w) {
  CLI::App& app = cmd.app();
  std::string model, out, rotate, gauge = "none", text, gauge_type_name, dtype_name;
  ggml_type gauge_type = ggml_type::q4_k;
  calibration_options calib;
  calib.ctx = 512;
  std::uint64_t seed = 0;
  int n_threads = 0;
  hf_export_options opt;
  app.add_option("-o,--outdir", out, "output checkpoint directory")->type_name("DIR");
  app.add_option("--rotate", rotate, "hadamard or none")->check(CLI::IsMember({"hadamard", "none"}));
  app.add_option("--gauge", gauge, "exact or none (default none)")->check(CLI::IsMember({"exact", "none"}));
  app.add_option("--gauge-type", gauge_type_name, "the quantized type the gauge is solved for (default q4_K)")->type_name("TYPE");
  app.add_option("-f,--file", text, "calibration text (for --gauge exact)")->type_name("TEXT");
  add_count(app, "-c,--ctx-size,--ctx", calib.ctx, 16, 1 << 20, "calibration chunk length in tokens");
  add_count(app, "--chunks", calib.max_chunks, 1, 1LL << 30, "calibrate on at most N chunks");
  add_count(app, "--seed", seed, 0, 1LL << 62, "rotation seed");
  app.add_option("--dtype", dtype_name, "f32 or bf16 (default bf16)")->check(CLI::IsMember({"f32", "bf16"}));
  add_threads(app, n_threads);
  app.add_option("model", model, "MODEL_DIR")->type_name("MODEL_DIR");
  cmd.parse(w);
  if (!gauge_type_name.empty()) {
    const auto ty = ggml_type_from_name(gauge_type_name);
    if (!ty || !is_quantized(*ty)) throw usage_error{"--gauge-type: expected a quantized ggml type, found '" + gauge_type_name + "'"};
    gauge_type = *ty;
  }
  if (dtype_name == "f32") opt.out_dtype = dtype::f32;
  else if (dtype_name == "bf16") opt.out_dtype = dtype::bf16;
  if (model.empty()) throw usage_error{"missing MODEL_DIR"};
  if (out.empty()) throw usage_error{"missing -o DIR"};
  if (rotate.empty()) throw usage_error{"missing --rotate hadamard|none"};
  if (gauge == "exact" && text.empty()) throw usage_error{"--gauge exact needs calibration text (-f TEXT)"};

  unwrap(check_hf_export_target(model, out));  // before the rotation and gauge work
  const auto t0 = std::chrono::steady_clock::now();
  const qwen35_config c = unwrap(load_qwen35_config(model));
  const safetensors_checkpoint ckpt = unwrap(safetensors_checkpoint::open(model));
  safetensors_weight_provider base(ckpt, c);
  unwrap(base.check_tensors());
  weight_provider* p = &base;
  std::unique_ptr<residual_rotation> q;
  std::unique_ptr<rotated_provider> rp;
  if (rotate == "hadamard") {
    q = std::make_unique<residual_rotation>(unwrap(residual_rotation::hadamard(static_cast<std::size_t>(c.hidden_size), seed)));
    rp = std::make_unique<rotated_provider>(base, c, *q, n_threads);
    p = rp.get();
  }
  std::unique_ptr<gauged_provider> gp;
  if (gauge == "exact") {
    const tokenizer tok = unwrap(tokenizer::load(model + "/tokenizer.json", static_cast<std::size_t>(c.vocab_size)));
    const auto ids = unwrap(tok.encode(read_text(text)));
    calib.n_threads = n_threads;
    gauge_options go;
    go.n_threads = n_threads;
    gp = unwrap(gauged_provider::create(c, *p, ids, calib, [&](const std::string&) { return gauge_type; }, go));
    p = gp.get();
  }
  progress_display pg("transform");
  opt.progress = pg.callback();
  unwrap(export_hf_checkpoint(model, c, *p, out, opt));
  pg.done();
  if (gp) fmt::print("gauge: {} scalings solved for {}\n", gp->notes().size(), type_name(gauge_type));
  fmt::print("wrote {}: rotation {} (seed {}, d = {}), {} tensors, in {:.2f} s, peak RSS {}\n", out, rotate, seed, c.hidden_size,
             opt.out_dtype == dtype::f32 ? "F32" : "BF16", seconds_since(t0), human_bytes(static_cast<double>(peak_rss_bytes())));
  return 0;
}

}  // namespace sbgq::cli
