// sbgq demo: the main job end to end on the embedded default. It grows with the pipeline;
// for now it inspects the tiny model that ships beside the project.
#include <cstdio>
#include <string>

#include "cli.hpp"
#include "commands.hpp"
#include <sbgq/model_config.hpp>
#include <sbgq/qwen35_tensors.hpp>

namespace sbgq::cli {

int cmd_demo(args& a) {
  std::string model = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "-m" || f == "--model") model = a.value(f);
    else throw usage_error{"unknown option '" + f + "'"};
  }
  auto cfg = unwrap(load_qwen35_config(model));
  std::printf("model %s: d=%lld, %lld layers (%lld full attention), vocab %lld\n", model.c_str(),
              static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.num_hidden_layers),
              static_cast<long long>(cfg.num_full_attention_layers()), static_cast<long long>(cfg.vocab_size));
  const auto plan = qwen35_tensor_plan(cfg, {});
  std::printf("GGUF tensors: %zu\n", plan.size());
  return 0;
}

}  // namespace sbgq::cli
