// sbgq transform MODEL_DIR -o DIR --rotate hadamard|none [--seed S] [--gauge none|exact -f TEXT
//                [--gauge-type T] [--ctx N] [--chunks N]] [--dtype f32|bf16] [-t N]
#include <chrono>
#include <cstdio>
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

int cmd_transform(args& a) {
  std::string model, out, rotate, gauge = "none", text;
  ggml_type gauge_type = ggml_type::q4_k;
  calibration_options calib;
  calib.ctx = 512;
  std::uint64_t seed = 0;
  int n_threads = 0;
  hf_export_options opt;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "-o" || f == "--outdir") out = a.value(f);
    else if (f == "--rotate") {
      rotate = a.value(f);
      if (rotate != "hadamard" && rotate != "none") throw usage_error{"--rotate: expected hadamard or none, found '" + rotate + "'"};
    } else if (f == "--gauge") {
      gauge = a.value(f);
      if (gauge != "exact" && gauge != "none") throw usage_error{"--gauge: expected exact or none, found '" + gauge + "'"};
    } else if (f == "--gauge-type") {
      const std::string t = a.value(f);
      const auto ty = ggml_type_from_name(t);
      if (!ty || !is_quantized(*ty)) throw usage_error{"--gauge-type: expected a quantized ggml type, found '" + t + "'"};
      gauge_type = *ty;
    } else if (f == "-f" || f == "--file") text = a.value(f);
    else if (f == "-c" || f == "--ctx") calib.ctx = a.integer(f, 16, 1 << 20);
    else if (f == "--chunks") calib.max_chunks = a.integer(f, 1, 1 << 30);
    else if (f == "--seed") seed = static_cast<std::uint64_t>(a.integer(f, 0, (1LL << 62)));
    else if (f == "--dtype") {
      const std::string t = a.value(f);
      if (t == "f32") opt.out_dtype = dtype::f32;
      else if (t == "bf16") opt.out_dtype = dtype::bf16;
      else throw usage_error{"--dtype: expected f32 or bf16, found '" + t + "'"};
    } else if (f == "-t" || f == "--threads") n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else if (!f.empty() && f[0] == '-') throw usage_error{"unknown option '" + f + "'"};
    else if (model.empty()) model = f;
    else throw usage_error{"unexpected argument '" + f + "'"};
  }
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
    const auto ids = unwrap(tok.encode(read_text_or_exit(text)));
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
  if (gp) std::printf("gauge: %zu scalings solved for %s\n", gp->notes().size(), type_name(gauge_type).data());
  std::printf("wrote %s: rotation %s (seed %llu, d = %lld), %s tensors, in %.2f s, peak RSS %s\n", out.c_str(), rotate.c_str(),
              static_cast<unsigned long long>(seed), static_cast<long long>(c.hidden_size),
              opt.out_dtype == dtype::f32 ? "F32" : "BF16", seconds_since(t0),
              human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  return 0;
}

}  // namespace sbgq::cli
