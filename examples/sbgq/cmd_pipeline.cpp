// sbgq pipeline MODEL_DIR -o OUT.gguf [--recipe NAME|FILE] [-f calib.txt | --imatrix FILE]
//   [--ctx N --chunks N] [--rotate none|hadamard] [--seed S] [--gauge none|exact]
//   [--rounding plain|gptq] [--target-bpw X | --target-size SIZE] [--recipe-out FILE] [--sensitivity-svg FILE] [--embedding-weights] [--auto-measure kld|weights] [--sensitivity-chunks N] [--threads N] [--report FILE]
#include <filesystem>
#include <optional>
#include <string>

#include "cli.hpp"
#include "commands.hpp"
#include "model_args.hpp"
#include "pipeline_summary.hpp"
#include <sbgq/io/imatrix.hpp>
#include <sbgq/core/output_file.hpp>
#include <sbgq/pipeline.hpp>
#include <sbgq/quant/sensitivity_map.hpp>

namespace sbgq::cli {

int cmd_pipeline(parser& p, const words& w) {
  CLI::App& app = p.app();
  std::string model, out, text, imatrix_path, report_path, recipe_out_path, svg_path, rotate, gauge, rounding, measure;
  pipeline_options o;
  app.add_option("-o,--output", out, "output GGUF file")->type_name("OUT.gguf");
  app.add_option("--recipe", o.recipe, "llama-<preset>, seed-iq4_xs, auto, or a JSON file (default llama-q4_k_m)")->type_name("NAME|FILE");
  app.add_option("-f,--file", text, "calibration text")->type_name("TEXT");
  app.add_option("--imatrix", imatrix_path, "importance matrix instead of calibration text")->type_name("FILE");
  add_count(app, "-c,--ctx-size,--ctx", o.ctx, 16, 1 << 20, "calibration chunk length in tokens");
  add_count(app, "--chunks", o.chunks, 1, 1LL << 30, "calibrate on at most N chunks");
  app.add_option("--rotate", rotate, "none or hadamard")->check(CLI::IsMember({"none", "hadamard"}));
  add_count(app, "--seed", o.seed, 0, 1LL << 62, "rotation seed");
  app.add_option("--gauge", gauge, "none or exact")->check(CLI::IsMember({"none", "exact"}));
  app.add_option("--rounding", rounding, "plain or gptq (default gptq)")->check(CLI::IsMember({"plain", "gptq"}));
  app.add_option("--target-bpw", o.target_bpw, "bits per weight for the auto recipe")->check(CLI::Range(1.0001, 32.9999))->type_name("X");
  add_size(app, "--target-size", o.target_size, "file size for the auto recipe (4.8G = 4.8e9 bytes, 4.5GiB = 4.5 x 2^30)");
  app.add_option("--auto-measure", measure, "what auto allocates by: kld (each tensor's measured effect; default for models whose f32 weights fit 2 GiB) or weights")
      ->check(CLI::IsMember({"kld", "weights"}));
  add_count(app, "--sensitivity-chunks", o.sensitivity.chunks, 1, 1 << 20, "auto-measure kld: calibration chunks to measure on");
  app.add_flag_callback("--no-mtp", [&] { o.keep_mtp = false; }, "leave out the MTP block");
  app.add_flag_callback("--embedding-weights", [&] { o.weigh_embedding = true; },
                        "gptq: weigh token_embd's columns by the readers of the residual stream (experimental)");
  app.add_flag_callback("--quantized-inputs", [&] { o.quantized_inputs = true; },
                        "each layer's statistics from the hidden states of the layers before it as quantized");
  app.add_option("--name", o.name, "general.name")->type_name("NAME");
  add_threads(app, o.n_threads);
  app.add_option("--report", report_path, "write the per-tensor report as JSON")->type_name("FILE");
  app.add_option("--sensitivity-svg", svg_path, "auto: draw what was measured per layer and tensor role (SVG)")->type_name("FILE");
  app.add_option("--recipe-out", recipe_out_path, "write the types chosen as a JSON recipe (reusable with --recipe)")->type_name("FILE");
  app.add_option("model", model, "MODEL_DIR")->type_name("MODEL_DIR");
  p.parse(w);
  if (rotate == "hadamard") o.rotate = rotation_mode::hadamard;
  else if (rotate == "none") o.rotate = rotation_mode::none;
  if (gauge == "exact") o.gauge = true;
  else if (gauge == "none") o.gauge = false;
  if (measure == "kld") o.measure = auto_measure::output_kld;
  else if (measure == "weights") o.measure = auto_measure::weight_error;
  const bool rounding_given = !rounding.empty();
  if (rounding == "plain") o.rounding = rounding_mode::plain;
  else if (rounding == "gptq") o.rounding = rounding_mode::gptq;
  if (model.empty()) throw usage_error{"missing MODEL_DIR"};
  if (out.empty()) throw usage_error{"missing -o OUT.gguf"};
  if (!text.empty() && !imatrix_path.empty()) throw usage_error{"give either -f TEXT or --imatrix FILE, not both"};
  if (o.target_bpw > 0 && o.target_size > 0) throw usage_error{"give either --target-bpw or --target-size, not both"};
  if ((o.target_bpw > 0 || o.target_size > 0) && o.recipe == "llama-q4_k_m") o.recipe = "auto";
  if (!svg_path.empty() && o.recipe != "auto") throw usage_error{"--sensitivity-svg draws what the auto recipe measures: give --recipe auto"};
  // Every output is checked, and the side outputs' temporary files made, before the work: a
  // bad --report path fails now, not after hours (run_pipeline checks -o the same way).
  const std::vector<std::string> inputs = {model, text, imatrix_path};
  unwrap(check_output_not_input(out, inputs, "pipeline"));
  // The side outputs (--report, --recipe-out) likewise, and none may be -o or each other.
  std::vector<std::string> taken = {out};
  auto side_output = [&](const std::string& path, const char* flag) -> std::optional<output_file> {
    if (path.empty()) return std::nullopt;
    unwrap(check_output_not_input(path, inputs, "pipeline"));
    output_file f = unwrap(output_file::create(path));
    std::error_code ec1;
    const auto real = std::filesystem::weakly_canonical(f.target(), ec1);
    for (const std::string& other : taken) {
      std::error_code ec2;
      const auto other_real = std::filesystem::weakly_canonical(other, ec2);
      if (!ec1 && !ec2 && real == other_real)
        throw failure{error(error_code::invalid_argument, "pipeline",
                            std::string(flag) + " '" + path + "' and '" + other + "' are the same file")};
    }
    taken.push_back(path);
    return f;
  };
  std::optional<output_file> report = side_output(report_path, "--report");
  std::optional<output_file> recipe_out = side_output(recipe_out_path, "--recipe-out");
  std::optional<output_file> svg = side_output(svg_path, "--sensitivity-svg");
  imatrix im;
  if (!text.empty()) {
    o.calibration_text = read_text(text);
    o.calibration_name = text;
  } else if (!imatrix_path.empty()) {
    im = unwrap(read_imatrix(imatrix_path));
    o.importance = &im;
    // gptq (the default) needs X^T X, which only calibration text gives: an importance
    // matrix alone means plain rounding, said once rather than refused.
    if (!rounding_given && o.rounding == rounding_mode::gptq) {
      o.rounding = rounding_mode::plain;
      fmt::print(stderr, "note: --imatrix without -f: plain rounding (gptq needs calibration text, -f TEXT)\n");
    }
  }
  progress_display pg("pipeline", 2.0);
  o.progress = pg.callback();
  auto rep = unwrap(run_pipeline(model, out, o));
  pg.done();
  print_pipeline_summary(rep, out);
  if (recipe_out) {
    unwrap(recipe_out->write(std::as_bytes(std::span<const char>(rep.mix_recipe.data(), rep.mix_recipe.size()))));
    unwrap(recipe_out->commit());
    fmt::print("recipe: {}\n", recipe_out_path);
  }
  if (svg) {
    const std::string picture = sensitivity_svg(rep.measured, rep.measure_unit);
    unwrap(svg->write(std::as_bytes(std::span<const char>(picture.data(), picture.size()))));
    unwrap(svg->commit());
    fmt::print("sensitivity map: {}\n", svg_path);
  }
  if (report) {
    const std::string json = pipeline_report_json(rep);
    unwrap(report->write(std::as_bytes(std::span<const char>(json.data(), json.size()))));
    unwrap(report->commit());
    fmt::print("report: {}\n", report_path);
  }
  return 0;
}

}  // namespace sbgq::cli
