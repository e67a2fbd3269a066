// Umbrella header: everything public in sbgq. Light users can include single concept
// headers instead (error.hpp, dtype.hpp, tensor_view.hpp and fwd-free headers pull in
// neither Eigen nor simdjson).
#pragma once

#include "version.hpp"
#include "base.hpp"
#include "error.hpp"
#include "dtype.hpp"
#include "ggml_types.hpp"
#include "parallel.hpp"
#include "mapped_file.hpp"
#include "output_file.hpp"
#include "simd/cpu_features.hpp"
#include "simd/dispatch.hpp"

// files
#include "tensor_view.hpp"
#include "safetensors.hpp"
#include "gguf.hpp"

// model
#include "model_config.hpp"
#include "layer_weights.hpp"
#include "qwen35_tensors.hpp"
#include "tokenizer.hpp"
#include "forward.hpp"
#include "weights.hpp"
#include "evaluate.hpp"
#include "model_source.hpp"
#include "calibrate.hpp"

// transforms and quantization
#include "fwht.hpp"
#include "hadamard.hpp"
#include "codec/registry.hpp"
#include "codec/rows.hpp"
#include "imatrix.hpp"
#include "convert.hpp"
#include "name_pattern.hpp"
#include "quant_policy.hpp"
#include "quantize.hpp"
#include "synth.hpp"
#include "rotation.hpp"
#include "gauge.hpp"
#include "gptq.hpp"
#include "hf_export.hpp"
#include "recipe.hpp"

// the whole job
#include "pipeline.hpp"
