// The table of sbgq subcommands.
#pragma once

#include <vector>

#include "cli.hpp"

namespace sbgq::cli {

struct command {
  const char* name;
  const char* summary;
  const char* usage;
  int (*run)(args&);
};

int cmd_inspect(args&);
int cmd_demo(args&);

inline const std::vector<command>& commands() {
  static const std::vector<command> table = {
      {"inspect", "print the metadata and tensor table of a GGUF or safetensors model",
       "PATH [--json]\n  PATH: a .gguf file, a .safetensors file, or a model directory", cmd_inspect},
      {"demo", "run the main job end to end on an embedded default", "[-o DIR] [-t N]", cmd_demo},
  };
  return table;
}

}  // namespace sbgq::cli
