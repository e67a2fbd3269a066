// sbgq: the command-line home of every stage (inspect, convert, quantize, perplexity,
// imatrix, synth, transform, pipeline, demo). Each subcommand lives in cmd_<name>.cpp.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>

#include "cli.hpp"
#include "commands.hpp"
#include <sbgq/core/output_file.hpp>
#include <sbgq/simd/dispatch.hpp>

namespace {
void print_help() {
  std::printf("usage: sbgq <command> [options]\n\ncommands:\n");
  for (const auto& c : sbgq::cli::commands()) std::printf("  %-12s %s\n", c.name, c.summary);
  std::printf("\n'sbgq <command> --help' shows a command's options. Version %s.\n", SBGQ_VERSION_STRING);
}
}  // namespace

int main(int argc, char** argv) {
  // Ctrl-C, kill, a lost terminal or the file-size limit must not leave OUT.tmp.XXXXXX behind.
  if (auto r = sbgq::install_output_cleanup_handlers(); !r) return sbgq::cli::fail(r.error());
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("sbgq %s\n", SBGQ_VERSION_STRING);
    return 0;
  }
  // The library ignores a value it does not know; a user who typed one wants to hear it.
  if (const char* e = std::getenv("SBGQ_SIMD")) {
    sbgq::simd_level l{};
    if (!sbgq::parse_simd_level(e, l)) {
      std::fprintf(stderr, "sbgq: SBGQ_SIMD='%s': expected scalar, avx2 or avx512\n", e);
      return 2;
    }
  }
  for (const auto& c : sbgq::cli::commands()) {
    if (std::string_view(argv[1]) != c.name) continue;
    sbgq::cli::args a(argc, argv, 2);
    if (!a.empty() && (a.peek() == "--help" || a.peek() == "-h")) {
      std::printf("usage: sbgq %s %s\n", c.name, c.usage);
      return 0;
    }
    try {
      return c.run(a);
    } catch (const sbgq::cli::usage_error& e) {
      std::fprintf(stderr, "sbgq %s: %s\nusage: sbgq %s %s\n", c.name, e.message.c_str(), c.name, c.usage);
      return 2;
    } catch (const sbgq::exception& e) {
      std::fprintf(stderr, "sbgq: error: %s\n", e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sbgq: error: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "sbgq: unknown command '%s'\n\n", argv[1]);
  print_help();
  return 2;
}
