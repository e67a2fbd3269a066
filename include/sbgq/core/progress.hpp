// Progress of long work, one event type for every driver (convert, quantize, calibrate,
// evaluate, synth, hf_export, pipeline), so a display is written once.
//
//   opt.progress = [](const sbgq::progress_event& e) {
//     if (e.stage == sbgq::progress_stage::note) std::fprintf(stderr, "note: %.*s\n", ...);
//     else draw_bar(e.fraction);
//   };
//
// Design goals:
//   - Typed: notices to the user are events of stage `note` carrying the text, and the end
//     of a run is stage `done`; nobody compares strings or parses prefixes.
//   - Cheap: string fields are views valid only during the call; drivers emit at most one
//     event per tensor, layer or chunk.
//   - Drivers keep their stage times with progress_reporter, which also stamps `seconds`.
// Non-goals: cancellation (a callback cannot stop a run), throttling (displays do that).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base.hpp"

SBGQ_BEGIN_NAMESPACE

/// What a driver is doing.
enum class progress_stage : std::uint8_t {
  read,       ///< opening inputs, loading weights
  measure,    ///< auto recipe: measuring errors per type
  calibrate,  ///< running calibration text through a layer
  gauge,      ///< solving exact scalings of a layer
  quantize,   ///< encoding a tensor
  write,      ///< writing a tensor or finishing a file
  evaluate,   ///< perplexity / KL-divergence chunks
  note,       ///< a notice for the user (`message`); no work is implied
  done,       ///< the run finished successfully
};

/// The stage's name as displays and reports print it ("quantize").
constexpr std::string_view progress_stage_name(progress_stage s) noexcept {
  switch (s) {
    case progress_stage::read: return "read";
    case progress_stage::measure: return "measure";
    case progress_stage::calibrate: return "calibrate";
    case progress_stage::gauge: return "gauge";
    case progress_stage::quantize: return "quantize";
    case progress_stage::write: return "write";
    case progress_stage::evaluate: return "evaluate";
    case progress_stage::note: return "note";
    case progress_stage::done: return "done";
  }
  return "?";
}

/// One progress report. Fields a driver does not know keep their defaults.
struct progress_event {
  progress_stage stage = progress_stage::read;
  std::size_t index = 0;        ///< 0-based item of the stage (tensor, layer, chunk) ...
  std::size_t count = 0;        ///< ... of this many (0: unknown)
  int layer = -1;               ///< layer-streamed drivers: the current layer, -1 for globals
  int n_layers = 0;
  std::string_view tensor;      ///< the current tensor's name, if any
  std::string_view detail;      ///< a short description of the step ("f16 -> q4_K")
  std::string_view message;     ///< stage note: the notice
  double value = std::nan("");  ///< a running figure (evaluate: the running perplexity)
  std::uint64_t bytes = 0;      ///< output bytes written so far, when known
  double seconds = 0;           ///< since the start of the run
  double fraction = 0;          ///< of the whole run, 0..1 (estimated)

  /// report(progress_event::at(progress_stage::quantize, 0.4).item(i, n).on(name, "q4_K"));
  static progress_event at(progress_stage s, double fraction = 0) {
    progress_event e;
    e.stage = s;
    e.fraction = fraction;
    return e;
  }
  progress_event& item(std::size_t i, std::size_t n) {
    index = i;
    count = n;
    return *this;
  }
  progress_event& in_layer(int l, int n) {
    layer = l;
    n_layers = n;
    return *this;
  }
  progress_event& on(std::string_view name, std::string_view what = {}) {
    tensor = name;
    detail = what;
    return *this;
  }
  progress_event& with_value(double v) {
    value = v;
    return *this;
  }
  progress_event& with_bytes(std::uint64_t b) {
    bytes = b;
    return *this;
  }
};

/// A progress callback; empty for none.
using progress_fn = std::function<void(const progress_event&)>;

/// The driver's side: stamps events with the elapsed time, adds each stage's time to
/// stage_seconds (the time from one event to the next counts for the earlier stage; notes
/// do not change the stage) and forwards them to the user's callback, if any.
class progress_reporter {
 public:
  explicit progress_reporter(const progress_fn& fn) : fn_(fn), t0_(now()), last_(t0_) {}

  void operator()(progress_event e) {
    const double t = now();
    if (e.stage != progress_stage::note) {
      stage_seconds_[std::string(progress_stage_name(current_))] += t - last_;
      last_ = t;
      current_ = e.stage;
    }
    e.seconds = t - t0_;
    e.fraction = std::clamp(e.fraction, 0.0, 1.0);
    if (fn_) fn_(e);
  }
  /// A notice for the user.
  void note(std::string_view message) {
    progress_event e;
    e.stage = progress_stage::note;
    e.message = message;
    (*this)(e);
  }
  /// Ends the run: closes the current stage and reports `done`.
  void finish() {
    progress_event e;
    e.stage = progress_stage::done;
    e.fraction = 1.0;
    (*this)(e);
  }
  double elapsed() const { return now() - t0_; }
  /// Seconds per stage name, for reports (stage `done` excluded).
  std::map<std::string, double> stage_seconds() const {
    auto s = stage_seconds_;
    s.erase(std::string(progress_stage_name(progress_stage::done)));
    return s;
  }

 private:
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  const progress_fn& fn_;
  double t0_, last_;
  progress_stage current_ = progress_stage::read;
  std::map<std::string, double> stage_seconds_;
};

SBGQ_END_NAMESPACE
