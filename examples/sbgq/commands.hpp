// The table of sbgq subcommands.
#pragma once

#include <string>
#include <vector>

#include "cli.hpp"

namespace sbgq::cli {

/// The words after the subcommand name.
using words = std::vector<std::string>;

struct command {
  const char* name;
  const char* summary;
  const char* usage;
  int (*run)(parser&, const words&);
};

int cmd_inspect(parser&, const words&);
int cmd_demo(parser&, const words&);
int cmd_convert(parser&, const words&);
int cmd_imatrix(parser&, const words&);
int cmd_perplexity(parser&, const words&);
int cmd_synth(parser&, const words&);
int cmd_quantize(parser&, const words&);
int cmd_transform(parser&, const words&);
int cmd_pipeline(parser&, const words&);

inline const std::vector<command>& commands() {
  static const std::vector<command> table = {
      {"inspect", "print the metadata and tensor table of a GGUF or safetensors model",
       "PATH [--json] [--all]\n  PATH: a .gguf file, a .safetensors file, or a model directory", cmd_inspect},
      {"convert", "convert an HF Qwen3.5 checkpoint to GGUF, as llama.cpp's converter does",
       "MODEL_DIR -o OUT.gguf [--outtype f32|f16|bf16|q8_0] [--no-mtp] [--name NAME] [-t N]", cmd_convert},
      {"quantize", "quantize a GGUF model as llama-quantize does (same types, same bytes)",
       "[options] IN.gguf [OUT.gguf] TYPE [nthreads]\n"
       "  options: --imatrix FILE [--include-weights NAME... | --exclude-weights NAME...] [--tensor-type REGEX=TYPE]...\n"
       "  [--tensor-type-file FILE] [--output-tensor-type T] [--token-embedding-type T] [--override-kv KEY=TYPE:VALUE]...\n"
       "  [--pure] [--leave-output-tensor] [--allow-requantize] [--dry-run] [--show-types] [-t N]\n"
       "  TYPE: Q2_K Q3_K_S Q3_K_M Q3_K_L IQ4_NL IQ4_XS Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 F16 BF16 F32\n"
       "        (any case; Q3_K, Q4_K, Q5_K = the _M mixtures; or the llama_ftype number)\n"
       "  without OUT.gguf the output is ggml-model-TYPE.gguf next to IN.gguf, as llama-quantize names it",
       cmd_quantize},
      {"imatrix", "collect an importance matrix (llama.cpp's GGUF or .dat format) from calibration text",
       "[-m] MODEL -f TEXT [-o OUT] [-c 512] [--chunks N] [--output-format gguf|dat] [--in-file F]... [--process-output] [-t N]\n"
       "  MODEL: an HF checkpoint directory or a GGUF file; the output is GGUF unless --output-format dat", cmd_imatrix},
      {"perplexity", "perplexity (llama-perplexity's method) and KL-divergence against saved base logits",
       "[-m] MODEL -f TEXT [-c N] [--chunks N] [-b N] [--kl-divergence-base FILE] [-t N]\n"
       "  [-m] MODEL --kl-divergence-base FILE --kl-divergence [-t N]\n"
       "  --kl-divergence-base FILE alone saves the base model's logits (and tokens) to FILE;\n"
       "  with --kl-divergence it reads them and reports the KL-divergence against MODEL", cmd_perplexity},
      {"synth", "write a synthetic Qwen3.5 checkpoint in the HF layout (seeded, trained-like statistics)",
       "--preset tiny|0.8b|2b|4b|9b|27b -o DIR [--seed S] [--layers N] [--no-mtp] [--shard-size-mb N] [-t N]", cmd_synth},
      {"pipeline", "HF checkpoint -> quantized GGUF in one streamed run: rotate, calibrate, gauge, choose types, quantize",
       "MODEL_DIR -o OUT.gguf [--recipe NAME|FILE] [-f TEXT | --imatrix FILE] [-c N] [--chunks N]\n"
       "  [--rotate none|hadamard] [--seed S] [--gauge none|exact] [--rounding plain|gptq] [--target-bpw X]\n"
       "  [--no-mtp] [--name NAME] [-t N] [--report FILE]\n"
       "  recipes: llama-q4_k_m, llama-iq4_xs, ... (llama.cpp's mixtures), seed-iq4_xs, auto (with --target-bpw),\n"
       "           or a JSON file {\"default\": TYPE, \"rules\": [{\"match\": REGEX, \"type\": TYPE}, ...]}",
       cmd_pipeline},
      {"transform", "apply the exact transforms (rotation, gauge scalings) and write an HF checkpoint",
       "MODEL_DIR -o DIR --rotate hadamard|none [--seed S] [--gauge none|exact -f TEXT [--gauge-type T] [-c N]\n"
       "  [--chunks N]] [--dtype f32|bf16] [-t N]", cmd_transform},
      {"demo", "run the main job end to end on an embedded default", "[-o DIR] [-t N]", cmd_demo},
  };
  return table;
}

}  // namespace sbgq::cli
