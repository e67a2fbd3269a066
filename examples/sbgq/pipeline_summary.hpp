// Printing the pipeline's progress and report (sbgq pipeline, sbgq demo).
#pragma once

#include <cstdio>
#include <map>
#include <string>

#include "cli.hpp"
#include <sbgq/pipeline.hpp>

namespace sbgq::cli {

/// "[#######.............]  43%  quantize  layer 12/32  blk.12.ffn_up.weight  1m05s, ~1m26s left"
inline std::string format_pipeline_event(const pipeline_event& e) {
  const int width = 20, filled = static_cast<int>(e.fraction * width + 0.5);
  std::string bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(width - filled), '.') + "]";
  auto dur = [](double s) {
    char b[32];
    if (s >= 60) std::snprintf(b, sizeof b, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
    else std::snprintf(b, sizeof b, "%.1fs", s);
    return std::string(b);
  };
  char buf[320];
  std::string where = e.layer >= 0 && e.n_layers > 0 ? "layer " + std::to_string(std::min(e.layer + 1, e.n_layers)) + "/" +
                                                           std::to_string(e.n_layers)
                                                     : "globals";
  const std::string left = e.fraction > 0.02 && e.fraction < 1.0 ? ", ~" + dur(e.seconds / e.fraction * (1 - e.fraction)) + " left" : "";
  std::snprintf(buf, sizeof buf, "%s %3.0f%%  %-9s %-13s %-28s %s%s", bar.c_str(), 100.0 * e.fraction, e.stage.c_str(),
                where.c_str(), e.tensor.c_str(), dur(e.seconds).c_str(), left.c_str());
  return buf;
}

/// Summary of a pipeline report on stdout: types, size, error, stage times, notes.
inline void print_pipeline_summary(const pipeline_report& r, const std::string& out) {
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> by_type;  // elements, bytes
  double err_plain = 0, err = 0, weight = 0;
  for (const auto& t : r.tensors) {
    auto& x = by_type[std::string(type_name(t.type))];
    x.first += t.n_elements;
    x.second += t.bytes;
    if (std::isfinite(t.rel_error)) {
      err += t.rel_error * static_cast<double>(t.n_elements);
      err_plain += t.rel_error_plain * static_cast<double>(t.n_elements);
      weight += static_cast<double>(t.n_elements);
    }
  }
  std::printf("pipeline: wrote %s (recipe %s)\n", out.c_str(), r.recipe.c_str());
  std::printf("  %-8s %14s %12s %7s\n", "type", "weights", "size", "bpw");
  for (const auto& [name, x] : by_type)
    std::printf("  %-8s %14llu %12s %7.3f\n", name.c_str(), static_cast<unsigned long long>(x.first),
                human_bytes(static_cast<double>(x.second)).c_str(), x.first ? 8.0 * x.second / x.first : 0.0);
  std::printf("  total    %14llu %12s %7.3f   file %s\n", static_cast<unsigned long long>(r.n_elements),
              human_bytes(static_cast<double>(r.bytes)).c_str(), r.bits_per_weight(),
              human_bytes(static_cast<double>(r.file_size)).c_str());
  if (weight > 0)
    std::printf("  relative error, imatrix-diagonal weighting (size-weighted mean): plain rounding %.3e, written %.3e\n",
                err_plain / weight, err / weight);
  double obj_plain = 0, obj = 0;
  int n_gptq = 0;
  for (const auto& t : r.tensors)
    if (std::isfinite(t.objective) && std::isfinite(t.objective_plain)) {
      obj_plain += t.objective_plain;
      obj += t.objective;
      ++n_gptq;
    }
  if (n_gptq > 0 && obj_plain > 0)
    std::printf("  gptq: output error tr(dW X^T X dW^T) %.1f%% below plain rounding, summed over %d tensors\n",
                100.0 * (1.0 - obj / obj_plain), n_gptq);
  std::printf("  time %.1f s (", r.seconds);
  bool first = true;
  for (const auto& [k, v] : r.stage_seconds) {
    if (v < 0.005) continue;
    std::printf("%s%s %.1f s", first ? "" : ", ", k.c_str(), v);
    first = false;
  }
  std::printf("), peak RSS %s, %lld calibration tokens\n", human_bytes(static_cast<double>(r.peak_rss)).c_str(),
              static_cast<long long>(r.calibration_tokens));
  for (const auto& n : r.notes)
    if (n.rfind("layer ", 0) != 0) std::printf("  note: %s\n", n.c_str());
}

}  // namespace sbgq::cli
