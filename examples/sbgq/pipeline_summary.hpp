// Printing the pipeline's progress and report (sbgq pipeline, sbgq demo).
#pragma once

#include <cmath>
#include <map>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include <sbgq/pipeline.hpp>

namespace sbgq::cli {

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
  fmt::print("pipeline: wrote {} (recipe {})\n", out, r.recipe);
  fmt::print("  {:<8} {:>14} {:>12} {:>7}\n", "type", "weights", "size", "bpw");
  for (const auto& [name, x] : by_type)
    fmt::print("  {:<8} {:>14} {:>12} {:>7.3f}\n", name, x.first, human_bytes(static_cast<double>(x.second)),
               x.first ? 8.0 * static_cast<double>(x.second) / static_cast<double>(x.first) : 0.0);
  fmt::print("  total    {:>14} {:>12} {:>7.3f}   file {}\n", r.n_elements, human_bytes(static_cast<double>(r.bytes)),
             r.bits_per_weight(), human_bytes(static_cast<double>(r.file_size)));
  if (weight > 0)
    fmt::print("  relative error, imatrix-diagonal weighting (size-weighted mean): plain rounding {:.3e}, written {:.3e}\n",
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
    fmt::print("  gptq: output error tr(dW X^T X dW^T) {:.1f}% below plain rounding, summed over {} tensors\n",
               100.0 * (1.0 - obj / obj_plain), n_gptq);
  fmt::print("  time {:.1f} s (", r.seconds);
  bool first = true;
  for (const auto& [k, v] : r.stage_seconds) {
    if (v < 0.005) continue;
    fmt::print("{}{} {:.1f} s", first ? "" : ", ", k, v);
    first = false;
  }
  fmt::print("), peak RSS {}, {} calibration tokens\n", human_bytes(static_cast<double>(r.peak_rss)), r.calibration_tokens);
  for (const auto& n : r.notes) fmt::print("  note: {}\n", n);
  if (!r.layer_notes.empty()) fmt::print("  gauge: {} per-layer notes (in --report's layer_notes)\n", r.layer_notes.size());
}

}  // namespace sbgq::cli
