// sbgq pipeline MODEL_DIR -o OUT.gguf [--recipe NAME|FILE] [-f calib.txt | --imatrix FILE]
//   [--ctx N --chunks N] [--rotate none|hadamard] [--seed S] [--gauge none|exact]
//   [--rounding plain|gptq] [--target-bpw X] [--threads N] [--report FILE]
#include <cstdio>
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

namespace sbgq::cli {

int cmd_pipeline(args& a) {
  std::string model, out, text, imatrix_path, report_path;
  pipeline_options o;
  bool rounding_given = false;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "-o" || f == "--output") out = a.value(f);
    else if (f == "--recipe") o.recipe = a.value(f);
    else if (f == "-f" || f == "--file") text = a.value(f);
    else if (f == "--imatrix") imatrix_path = a.value(f);
    else if (f == "-c" || f == "--ctx" || f == "--ctx-size") o.ctx = a.integer(f, 16, 1 << 20);
    else if (f == "--chunks") o.chunks = a.integer(f, 1, 1 << 30);
    else if (f == "--rotate") {
      const std::string v = a.value(f);
      if (v == "none") o.rotate = rotation_mode::none;
      else if (v == "hadamard") o.rotate = rotation_mode::hadamard;
      else throw usage_error{"--rotate: expected none or hadamard, found '" + v + "'"};
    } else if (f == "--seed") o.seed = static_cast<std::uint64_t>(a.integer(f, 0, (1LL << 62)));
    else if (f == "--gauge") {
      const std::string v = a.value(f);
      if (v == "none") o.gauge = false;
      else if (v == "exact") o.gauge = true;
      else throw usage_error{"--gauge: expected none or exact, found '" + v + "'"};
    } else if (f == "--rounding") {
      const std::string v = a.value(f);
      rounding_given = true;
      if (v == "plain") o.rounding = rounding_mode::plain;
      else if (v == "gptq") o.rounding = rounding_mode::gptq;
      else throw usage_error{"--rounding: expected plain or gptq, found '" + v + "'"};
    } else if (f == "--target-bpw") {
      o.target_bpw = std::stod(a.value(f));
      if (!(o.target_bpw > 1.0 && o.target_bpw < 33.0)) throw usage_error{"--target-bpw: expected a number between 1 and 33"};
    } else if (f == "--no-mtp") o.keep_mtp = false;
    else if (f == "--name") o.name = a.value(f);
    else if (f == "-t" || f == "--threads") o.n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else if (f == "--report") report_path = a.value(f);
    else if (!f.empty() && f[0] == '-') throw usage_error{"unknown option '" + f + "'"};
    else if (model.empty()) model = f;
    else throw usage_error{"unexpected argument '" + f + "'"};
  }
  if (model.empty()) throw usage_error{"missing MODEL_DIR"};
  if (out.empty()) throw usage_error{"missing -o OUT.gguf"};
  if (!text.empty() && !imatrix_path.empty()) throw usage_error{"give either -f TEXT or --imatrix FILE, not both"};
  if (o.target_bpw > 0 && o.recipe == "llama-q4_k_m") o.recipe = "auto";
  // Every output is checked, and the report's temporary file made, before the work: a bad
  // --report path fails now, not after hours (run_pipeline checks -o the same way).
  const std::vector<std::string> inputs = {model, text, imatrix_path};
  unwrap(check_output_not_input(out, inputs, "pipeline"));
  std::optional<output_file> report;
  if (!report_path.empty()) {
    unwrap(check_output_not_input(report_path, inputs, "pipeline"));
    report = unwrap(output_file::create(report_path));
    std::error_code ec1, ec2;
    const auto report_real = std::filesystem::weakly_canonical(report->target(), ec1);
    const auto out_real = std::filesystem::weakly_canonical(out, ec2);
    if (!ec1 && !ec2 && report_real == out_real)
      return fail(error(error_code::invalid_argument, "pipeline",
                        "--report '" + report_path + "' and -o '" + out + "' are the same file"));
  }
  imatrix im;
  if (!text.empty()) {
    o.calibration_text = read_text_or_exit(text);
    o.calibration_name = text;
  } else if (!imatrix_path.empty()) {
    im = unwrap(read_imatrix(imatrix_path));
    o.importance = &im;
    // gptq (the default) needs X^T X, which only calibration text gives: an importance
    // matrix alone means plain rounding, said once rather than refused.
    if (!rounding_given && o.rounding == rounding_mode::gptq) {
      o.rounding = rounding_mode::plain;
      std::fprintf(stderr, "note: --imatrix without -f: plain rounding (gptq needs calibration text, -f TEXT)\n");
    }
  }
  progress_display pg("pipeline", 2.0);
  o.progress = pg.callback();
  auto rep = unwrap(run_pipeline(model, out, o));
  pg.done();
  print_pipeline_summary(rep, out);
  if (report) {
    const std::string json = pipeline_report_json(rep);
    unwrap(report->write(std::as_bytes(std::span<const char>(json.data(), json.size()))));
    unwrap(report->commit());
    std::printf("report: %s\n", report_path.c_str());
  }
  return 0;
}

}  // namespace sbgq::cli
