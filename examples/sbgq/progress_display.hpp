// The one progress display of every sbgq subcommand: the library's progress_event on
// stderr. Notes become "sbgq TOOL: note: ..." lines; work becomes one status line
// "[#######.............]  43%  quantize  layer 12/32  blk.12.ffn_up.weight  q4_K  1m05s, ~1m26s left",
// rewritten in place on a terminal, at most every few seconds in a log.
#pragma once

#include <cstdio>
#include <string>

#include <sbgq/core/progress.hpp>

#include "cli.hpp"

namespace sbgq::cli {

/// "1m05s" / "4.2s".
inline std::string format_duration(double s) {
  char b[32];
  if (s >= 60) std::snprintf(b, sizeof b, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(b, sizeof b, "%.1fs", s);
  return b;
}

/// The status line of a work event (not a note).
inline std::string format_progress(const progress_event& e) {
  const int width = 20, filled = static_cast<int>(e.fraction * width + 0.5);
  std::string line = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                     std::string(static_cast<std::size_t>(width - filled), '.') + "]";
  char pct[16];
  std::snprintf(pct, sizeof pct, " %3.0f%%  ", 100.0 * e.fraction);
  line += pct;
  char stage[16];
  std::snprintf(stage, sizeof stage, "%-9s ", std::string(progress_stage_name(e.stage)).c_str());
  line += stage;
  if (e.n_layers > 0)
    line += e.layer >= 0 ? "layer " + std::to_string(std::min(e.layer + 1, e.n_layers)) + "/" + std::to_string(e.n_layers) + "  "
                         : "globals  ";
  else if (e.count > 0)
    line += "[" + std::to_string(std::min(e.index + 1, e.count)) + "/" + std::to_string(e.count) + "]  ";
  if (!e.tensor.empty()) line.append(e.tensor).append("  ");
  if (!e.detail.empty()) line.append(e.detail).append("  ");
  if (e.value == e.value) {  // a running figure (perplexity)
    char v[32];
    std::snprintf(v, sizeof v, "%.4f  ", e.value);
    line += v;
  }
  if (e.bytes > 0) line += human_bytes(static_cast<double>(e.bytes)) + "  ";
  line += format_duration(e.seconds);
  if (e.fraction > 0.02 && e.fraction < 1.0) line += ", ~" + format_duration(e.seconds / e.fraction * (1 - e.fraction)) + " left";
  return line;
}

/// Shows a driver's events; give `callback()` to the library's options.
class progress_display {
 public:
  explicit progress_display(std::string tool, double interval = 5.0, std::string indent = "")
      : tool_(std::move(tool)), indent_(std::move(indent)), line_(interval) {}

  void operator()(const progress_event& e) {
    if (e.stage == progress_stage::note) {
      line_.note(indent_ + "sbgq " + tool_ + ": note: " + std::string(e.message));
      return;
    }
    line_.line(indent_ + format_progress(e), e.stage == progress_stage::done);
  }
  progress_fn callback() {
    return [this](const progress_event& e) { (*this)(e); };
  }
  void done() { line_.done(); }
  double elapsed() const { return line_.elapsed(); }

 private:
  std::string tool_, indent_;
  progress line_;
};

}  // namespace sbgq::cli
