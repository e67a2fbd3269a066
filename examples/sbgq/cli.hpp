// Small command-line helpers shared by the sbgq subcommands: an argument cursor with
// llama.cpp-style flags (-t/--threads N, -o FILE, --flag), progress lines on stderr, and
// error reporting. Not part of the library: it may print and exit.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sbgq/core/error.hpp>
#include <sbgq/core/mapped_file.hpp>
#include <sbgq/core/output_file.hpp>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

namespace sbgq::cli {

/// Thrown for a bad command line; main() prints it with the subcommand's usage.
struct usage_error {
  std::string message;
};

/// Walks argv: positional arguments and flags in any order.
class args {
 public:
  args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) items_.emplace_back(argv[i]);
  }
  bool empty() const { return pos_ >= items_.size(); }
  /// The next raw item (flag or positional).
  std::string next() { return items_[pos_++]; }
  std::string_view peek() const { return items_[pos_]; }
  /// The value following a flag; a usage_error if missing.
  std::string value(std::string_view flag) {
    if (empty()) throw usage_error{"option " + std::string(flag) + " needs a value"};
    return next();
  }
  long long integer(std::string_view flag, long long lo, long long hi) {
    const std::string v = value(flag);
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x < lo || x > hi)
      throw usage_error{"option " + std::string(flag) + ": expected an integer in [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "], found '" + v + "'"};
    return x;
  }
  double number(std::string_view flag) {
    const std::string v = value(flag);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0') throw usage_error{"option " + std::string(flag) + ": expected a number, found '" + v + "'"};
    return x;
  }

 private:
  std::vector<std::string> items_;
  std::size_t pos_ = 0;
};

/// Prints an sbgq error to stderr and returns exit code 1. Removes the temporary files of
/// outputs still open (std::exit, which follows, runs no destructors).
inline int fail(const sbgq::error& e) {
  sbgq::remove_temporary_outputs();
  std::fprintf(stderr, "sbgq: error: %s\n", e.message().c_str());
  return 1;
}

/// Unwraps a result or exits with its error.
template <class T>
T unwrap(result<T> r) {
  if (!r.has_value()) std::exit(fail(r.error()));
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

/// Seconds since `t0`.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Progress on stderr: rewrites one line on a terminal; otherwise prints plain lines, at
/// most one every `interval` seconds (plus any line marked final), so logs stay short.
class progress {
 public:
  explicit progress(double interval = 5.0)
      : tty_(::isatty(2) != 0), interval_(interval), t0_(std::chrono::steady_clock::now()) {}
  void line(const std::string& text, bool final = false) {
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", text.c_str());
      dirty_ = true;
    } else {
      const double now = elapsed();
      if (!final && printed_ && now - last_ < interval_) return;
      std::fprintf(stderr, "%s\n", text.c_str());
      last_ = now;
      printed_ = true;
    }
    std::fflush(stderr);
  }
  void done() {
    if (dirty_) std::fprintf(stderr, "\n");
    dirty_ = false;
  }
  double elapsed() const { return seconds_since(t0_); }
  ~progress() { done(); }

 private:
  bool tty_;
  double interval_;
  bool dirty_ = false;
  bool printed_ = false;
  double last_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

/// "1.23 GiB"-style byte counts.
inline std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

}  // namespace sbgq::cli
