// sbgq inspect PATH [--json]: metadata and tensor table of a GGUF or safetensors model.
#include "cli.hpp"
#include "commands.hpp"

namespace sbgq::cli {

int cmd_inspect(args& a) {
  throw usage_error{"not implemented yet"};
}

}  // namespace sbgq::cli
