// Convert an HF Qwen3.5 checkpoint to GGUF and quantize it like llama-quantize Q4_K_M,
// as the README shows. Usage: example_quantize_to_gguf MODEL_DIR OUT_PREFIX
#include <cstdio>
#include <sbgq/sbgq.hpp>
#include <sbgq/quantize.hpp>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR OUT_PREFIX\n", argv[0]);
    return 2;
  }
  const std::string f16 = std::string(argv[2]) + "-f16.gguf", q4 = std::string(argv[2]) + "-Q4_K_M.gguf";
  auto rep = sbgq::convert_checkpoint(argv[1], f16);
  if (!rep) {
    std::fprintf(stderr, "%s\n", rep.error().message().c_str());
    return 1;
  }
  sbgq::quantize_options q;  // default policy: Q4_K_M, no imatrix
  auto out = sbgq::quantize_file(f16, q4, q);
  if (!out) {
    std::fprintf(stderr, "%s\n", out.error().message().c_str());
    return 1;
  }
  std::printf("%s: %.3f bits per weight\n", q4.c_str(), out->bits_per_weight());
  return 0;
}
