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
int cmd_imatrix(args&);
int cmd_perplexity(args&);
int cmd_synth(args&);
int cmd_quantize(args&);
int cmd_transform(args&);
int cmd_pipeline(args&);

inline const std::vector<command>& commands() {
  static const std::vector<command> table = {
      {"inspect", "print the metadata and tensor table of a GGUF or safetensors model",
       "PATH [--json]\n  PATH: a .gguf file, a .safetensors file, or a model directory", cmd_inspect},
      {"convert", "convert an HF Qwen3.5 checkpoint to GGUF, as llama.cpp's converter does",
       "MODEL_DIR -o OUT.gguf [--outtype f32|f16|bf16|q8_0] [--no-mtp] [--name NAME] [-t N]", cmd_convert},
      {"quantize", "quantize a GGUF model as llama-quantize does (same types, same bytes)",
       "IN.gguf OUT.gguf TYPE [--imatrix FILE] [--tensor-type REGEX=TYPE]... [--output-tensor-type T]\n"
       "  [--token-embedding-type T] [--pure] [--leave-output-tensor] [--allow-requantize] [--show-types]\n"
       "  [--dry-run] [-t N]\n"
       "  TYPE: Q2_K Q3_K_S Q3_K_M Q3_K_L IQ4_NL IQ4_XS Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 F16 BF16 F32\n"
       "        (any case; Q3_K, Q4_K, Q5_K = the _M mixtures; or the llama_ftype number)",
       cmd_quantize},
      {"imatrix", "collect an importance matrix (llama.cpp's GGUF or .dat format) from calibration text",
       "MODEL -f TEXT [-o OUT] [--ctx 512] [--chunks N] [--output-format gguf|dat] [--in-file F]... [--process-output] [-t N]\n"
       "  MODEL: an HF checkpoint directory or a GGUF file", cmd_imatrix},
      {"perplexity", "perplexity (llama-perplexity's method) and KL-divergence against saved base logits",
       "MODEL -f TEXT [--ctx N] [--chunks N] [--batch N] [--save-logits FILE] [--kl-divergence FILE] [-t N]", cmd_perplexity},
      {"synth", "write a synthetic Qwen3.5 checkpoint in the HF layout (seeded, trained-like statistics)",
       "--preset tiny|0.8b|2b|4b|9b|27b -o DIR [--seed S] [--layers N] [--no-mtp] [--shard-size-mb N] [-t N]", cmd_synth},
      {"pipeline", "HF checkpoint -> quantized GGUF in one streamed run: rotate, calibrate, gauge, choose types, quantize",
       "MODEL_DIR -o OUT.gguf [--recipe NAME|FILE] [-f TEXT | --imatrix FILE] [--ctx N] [--chunks N]\n"
       "  [--rotate none|hadamard] [--seed S] [--gauge none|exact] [--rounding plain|gptq] [--target-bpw X]\n"
       "  [--no-mtp] [--name NAME] [-t N] [--report FILE]\n"
       "  recipes: llama-q4_k_m, llama-iq4_xs, ... (llama.cpp's mixtures), seed-iq4_xs, auto (with --target-bpw),\n"
       "           or a JSON file {\"default\": TYPE, \"rules\": [{\"match\": REGEX, \"type\": TYPE}, ...]}",
       cmd_pipeline},
      {"transform", "apply the exact transforms (rotation, gauge scalings) and write an HF checkpoint",
       "MODEL_DIR -o DIR --rotate hadamard|none [--seed S] [--gauge none|exact -f TEXT [--gauge-type T] [--ctx N]\n"
       "  [--chunks N]] [--dtype f32|bf16] [-t N]", cmd_transform},
      {"demo", "run the main job end to end on an embedded default", "[-o DIR] [-t N]", cmd_demo},
  };
  return table;
}

}  // namespace sbgq::cli
