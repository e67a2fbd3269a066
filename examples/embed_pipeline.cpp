// Embedding the pipeline in another program: HF checkpoint + calibration text -> GGUF.
// Usage: example_embed_pipeline MODEL_DIR CALIB.txt OUT.gguf
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sbgq/pipeline.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL_DIR CALIB.txt OUT.gguf\n", argv[0]);
    return 2;
  }
  std::stringstream text;
  text << std::ifstream(argv[2], std::ios::binary).rdbuf();

  sbgq::pipeline_options o;
  o.recipe = "llama-q4_k_m";
  o.calibration_text = text.str();
  o.ctx = 256;
  o.chunks = 8;
  o.rounding = sbgq::rounding_mode::gptq;
  o.progress = [](const sbgq::progress_event& e) {
    if (e.stage == sbgq::progress_stage::calibrate) std::fprintf(stderr, "\rlayer %d/%d", e.layer + 1, e.n_layers);
  };
  auto rep = sbgq::run_pipeline(argv[1], argv[3], o);
  if (!rep) {
    std::fprintf(stderr, "\n%s\n", rep.error().message().c_str());
    return 1;
  }
  std::printf("\n%s: %.3f bits per weight, %.1f s\n", argv[3], rep->bits_per_weight(), rep->seconds);
  return 0;
}
