// Command-line helpers shared by the sbgq subcommands: argument parsing on CLI11 with
// llama.cpp's spellings (-t/--threads N, -o FILE, -m MODEL, --flag), the rejection of
// llama.cpp flags sbgq does not support, progress lines on stderr, and error reporting.
// Not part of the library (which never prints or exits): this is the only place that
// knows about CLI11 and {fmt}.
//
// Errors never exit past live objects: a bad command line throws usage_error (exit 2,
// with the command's usage), a library error throws failure (exit 1); both unwind to
// main(), so every output_file on the way removes its temporary file.
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <charconv>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

#include <sbgq/core/error.hpp>
#include <sbgq/core/mapped_file.hpp>
#include <sbgq/core/output_file.hpp>

namespace sbgq::cli {

/// Thrown for a bad command line; main() prints it with the subcommand's usage, exit 2.
struct usage_error {
  std::string message;
};

/// Thrown for an error of the library (or of a file the CLI reads); main() prints it, exit 1.
struct failure {
  sbgq::error err;
};

/// Thrown after --help was printed: main() returns 0.
struct help_shown {};

/// Unwraps a result or throws its error (caught in main, after the stack unwound).
template <class T>
T unwrap(result<T> r) {
  if (!r.has_value()) throw failure{std::move(r.error())};
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

/// A llama.cpp flag sbgq knows but does not implement: registered so that using it gives
/// a clear message instead of "not expected" (or, worse, another meaning).
struct unsupported_flag {
  CLI::Option* option;
  std::string why;
};

/// One subcommand's parser: a CLI::App plus the llama.cpp flags it refuses.
class parser {
 public:
  parser(std::string name, std::string summary) : app_(std::move(summary), "sbgq " + name) {
    app_.set_help_flag("-h,--help", "print this help and exit");
    app_.allow_windows_style_options(false);
    app_.option_defaults()->always_capture_default(false);
  }
  CLI::App& app() { return app_; }

  /// Registers llama.cpp flags (comma-separated spellings) that sbgq refuses with `why`;
  /// each spelling separately, so the message names the one used.
  void unsupported(const std::string& flags, bool takes_value, const std::string& why) {
    const std::string help = "llama.cpp's; not supported by sbgq";
    std::size_t start = 0;
    while (start <= flags.size()) {
      const std::size_t comma = std::min(flags.find(',', start), flags.size());
      const std::string flag = flags.substr(start, comma - start);
      start = comma + 1;
      CLI::Option* o = takes_value ? app_.add_option(flag, sink_, help) : app_.add_flag(flag, flag_sink_, help);
      o->group("llama.cpp options sbgq refuses");
      if (takes_value) o->allow_extra_args(false);
      refused_.push_back({o, why});
    }
  }

  /// The same for llama.cpp's multi-letter single-dash spellings (-ngl, -ofreq, ...),
  /// which CLI11 cannot declare: the word is refused before parsing.
  void unsupported_word(std::string word, std::string why) { refused_words_.emplace_back(std::move(word), std::move(why)); }

  /// Parses argv (the words after the subcommand name). Errors become usage_error; --help
  /// prints the help and throws help_shown.
  void parse(const std::vector<std::string>& words) {
    for (const auto& word : words) {
      if (word == "--") break;
      for (const auto& [bad, why] : refused_words_)
        if (word == bad || word.rfind(bad + "=", 0) == 0)
          throw usage_error{fmt::format("{}: llama.cpp's option is not supported by sbgq ({})", bad, why)};
    }
    std::vector<std::string> reversed(words.rbegin(), words.rend());  // CLI11's order
    try {
      app_.parse(reversed);
    } catch (const CLI::CallForHelp&) {
      fmt::print("{}", app_.help());
      throw help_shown{};
    } catch (const CLI::ParseError& e) {
      throw usage_error{e.what()};
    }
    for (const auto& r : refused_)
      if (r.option->count() > 0)
        throw usage_error{fmt::format("{}: llama.cpp's option is not supported by sbgq ({})", r.option->get_name(), r.why)};
  }

 private:
  CLI::App app_;
  std::vector<std::string> sink_;
  std::int64_t flag_sink_ = 0;
  std::vector<unsupported_flag> refused_;
  std::vector<std::pair<std::string, std::string>> refused_words_;
};

/// A count option (-t N, --ctx N, ...) checked against [lo, hi]; a bad value is a usage error.
template <class T>
CLI::Option* add_count(CLI::App& app, const std::string& flags, T& value, long long lo, long long hi, const std::string& help) {
  CLI::Validator integer_in(
      [lo, hi](std::string& v) -> std::string {
        long long x = 0;
        const char* end = v.data() + v.size();
        const auto [ptr, ec] = std::from_chars(v.data(), end, x);
        if (v.empty() || ec != std::errc() || ptr != end || x < lo || x > hi)
          return fmt::format("expected an integer in [{}, {}], found '{}'", lo, hi, v);
        return {};
      },
      "");
  return app.add_option(flags, value, help)->check(integer_in)->type_name("N")->allow_extra_args(false);
}

/// A byte size ("4.8G", "4800MB", "4.5GiB", "123456"): K, M, G, T (with or without a B,
/// any case) are powers of 1000, KiB, MiB, GiB, TiB powers of 1024, a bare number is bytes.
/// Empty when the text is none of these, or not a size from 1 byte to 2^62.
inline std::optional<std::uint64_t> parse_byte_size(std::string_view v) {
  double x = 0;
  const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc() || !(x > 0)) return std::nullopt;
  std::string unit(ptr, v.data() + v.size());
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'b') unit.pop_back();  // "gb" -> "g", "gib" -> "gi"
  static constexpr std::pair<const char*, double> units[] = {
      {"", 1.0},         {"b", 1.0},      {"k", 1e3},  {"m", 1e6},  {"g", 1e9},  {"t", 1e12},
      {"ki", 1024.0},    {"mi", 1048576.0}, {"gi", 1073741824.0}, {"ti", 1099511627776.0}};
  for (const auto& [name, scale] : units)
    if (unit == name) {
      const double bytes = std::floor(x * scale);
      if (!(bytes >= 1) || bytes > 4611686018427387904.0) return std::nullopt;
      return static_cast<std::uint64_t>(bytes);
    }
  return std::nullopt;
}

/// A byte size option (parse_byte_size); a bad value is a usage error.
inline CLI::Option* add_size(CLI::App& app, const std::string& flags, std::uint64_t& value, const std::string& help) {
  return app
      .add_option_function<std::string>(
          flags,
          [&value, flags](const std::string& v) {
            const auto b = parse_byte_size(v);
            if (!b)
              throw usage_error{fmt::format("{}: expected a size such as 4.8G, 4800MB or 4.5GiB (G = 10^9 bytes, "
                                            "GiB = 2^30), found '{}'", flags, v)};
            value = *b;
          },
          help)
      ->type_name("SIZE")
      ->allow_extra_args(false);
}

/// The thread count option every command has (llama.cpp's -t/--threads).
inline CLI::Option* add_threads(CLI::App& app, int& n) {
  return add_count(app, "-t,--threads", n, 1, 1024, "worker threads (default: all hardware threads)");
}

/// Prints an sbgq error to stderr and returns exit code 1. Removes the temporary files of
/// outputs still open (normally already gone: the stack has unwound).
inline int fail(const sbgq::error& e) {
  sbgq::remove_temporary_outputs();
  fmt::print(stderr, "sbgq: error: {}\n", e.message());
  return 1;
}

/// Seconds since `t0`.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Progress on stderr: rewrites one line on a terminal; otherwise prints plain lines, at
/// most one every `interval` seconds (plus any line marked final), so logs stay short.
/// Every progress display of the CLI goes through this class; the per-command lambdas
/// only format a line.
class progress {
 public:
  explicit progress(double interval = 5.0)
      : tty_(::isatty(2) != 0), interval_(interval), t0_(std::chrono::steady_clock::now()) {}
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  void line(const std::string& text, bool final = false) {
    if (tty_) {
      fmt::print(stderr, "\r\033[K{}", text);
      dirty_ = true;
    } else {
      const double now = elapsed();
      if (!final && printed_ && now - last_ < interval_) return;
      fmt::print(stderr, "{}\n", text);
      last_ = now;
      printed_ = true;
    }
    std::fflush(stderr);
  }
  /// A message between progress lines (ends the current terminal line first).
  void note(const std::string& text) {
    done();
    fmt::print(stderr, "{}\n", text);
  }
  void done() {
    if (dirty_) fmt::print(stderr, "\n");
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
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.2f} {}", b, units[u]);
}

}  // namespace sbgq::cli
