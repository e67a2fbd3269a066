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
int cmd_convert(args&);

inline const std::vector<command>& commands() {
  static const std::vector<command> table = {
      {"inspect", "print the metadata and tensor table of a GGUF or safetensors model",
       "PATH [--json]\n  PATH: a .gguf file, a .safetensors file, or a model directory", cmd_inspect},
      {"convert", "convert an HF Qwen3.5 checkpoint to GGUF, as llama.cpp's converter does",
       "MODEL_DIR -o OUT.gguf [--outtype f32|f16|bf16|q8_0] [--no-mtp] [--name NAME] [-t N]", cmd_convert},
      {"demo", "run the main job end to end on an embedded default", "[-o DIR] [-t N]", cmd_demo},
  };
  return table;
}

}  // namespace sbgq::cli
