// sbgq: the command-line home of every stage (inspect, convert, quantize, perplexity,
// imatrix, synth, transform, pipeline, demo). Each subcommand lives in cmd_<name>.cpp and
// parses its own options (cli.hpp); errors are exceptions caught here, after the stack
// has unwound (so no output's temporary file is left behind).
#include <cstdlib>
#include <exception>
#include <string_view>

#include "cli.hpp"
#include "commands.hpp"
#include <sbgq/core/output_file.hpp>
#include <sbgq/simd/dispatch.hpp>

namespace {
void print_help() {
  fmt::print("usage: sbgq <command> [options]\n\ncommands:\n");
  for (const auto& c : sbgq::cli::commands()) fmt::print("  {:<12} {}\n", c.name, c.summary);
  fmt::print("\n'sbgq <command> --help' shows a command's options. Version {}.\n", SBGQ_VERSION_STRING);
}

int run(const sbgq::cli::command& c, const sbgq::cli::words& w) {
  using namespace sbgq::cli;
  parser p(c.name, c.summary);
  p.app().footer(fmt::format("usage: sbgq {} {}", c.name, c.usage));
  try {
    return c.run(p, w);
  } catch (const help_shown&) {
    return 0;
  } catch (const usage_error& e) {
    sbgq::remove_temporary_outputs();
    fmt::print(stderr, "sbgq {}: {}\nusage: sbgq {} {}\n", c.name, e.message, c.name, c.usage);
    return 2;
  } catch (const failure& e) {
    return fail(e.err);
  } catch (const std::exception& e) {
    sbgq::remove_temporary_outputs();
    fmt::print(stderr, "sbgq: error: {}\n", e.what());
    return 1;
  }
}
}  // namespace

int main(int argc, char** argv) {
  // Ctrl-C, kill, a lost terminal or the file-size limit must not leave OUT.tmp.XXXXXX behind.
  if (auto r = sbgq::install_output_cleanup_handlers(); !r) return sbgq::cli::fail(r.error());
  const std::string_view first = argc >= 2 ? argv[1] : "";
  if (argc < 2 || first == "--help" || first == "-h" || first == "help") {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  if (first == "--version") {
    fmt::print("sbgq {}\n", SBGQ_VERSION_STRING);
    return 0;
  }
  // The library ignores a value it does not know; a user who typed one wants to hear it.
  if (const char* e = std::getenv("SBGQ_SIMD")) {
    sbgq::simd_level l{};
    if (!sbgq::parse_simd_level(e, l)) {
      fmt::print(stderr, "sbgq: SBGQ_SIMD='{}': expected scalar, avx2 or avx512\n", e);
      return 2;
    }
  }
  for (const auto& c : sbgq::cli::commands())
    if (first == c.name) return run(c, sbgq::cli::words(argv + 2, argv + argc));
  fmt::print(stderr, "sbgq: unknown command '{}'\n\n", first);
  print_help();
  return 2;
}
