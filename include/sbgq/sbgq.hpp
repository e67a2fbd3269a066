// Umbrella header: everything public in sbgq. Light users can include single concept
// headers instead (error.hpp, dtype.hpp, tensor_view.hpp and fwd-free headers pull in
// neither Eigen nor simdjson).
#pragma once

#include "core/version.hpp"
#include "core/base.hpp"
#include "core/error.hpp"
#include "core/dtype.hpp"
#include "io/ggml_types.hpp"
#include "core/parallel.hpp"
#include "core/mapped_file.hpp"
#include "core/output_file.hpp"
#include "simd/cpu_features.hpp"
#include "simd/dispatch.hpp"

// files
#include "core/tensor_view.hpp"
#include "io/safetensors.hpp"
#include "io/gguf.hpp"

// model
#include "model/model_config.hpp"
#include "model/layer_weights.hpp"
#include "model/qwen35_tensors.hpp"
#include "model/tokenizer.hpp"
#include "model/forward.hpp"
#include "model/weights.hpp"
#include "evaluate.hpp"
#include "model/model_source.hpp"
#include "calibrate.hpp"

// transforms and quantization
#include "transform/fwht.hpp"
#include "transform/hadamard.hpp"
#include "codec/registry.hpp"
#include "codec/rows.hpp"
#include "io/imatrix.hpp"
#include "convert.hpp"
#include "core/name_pattern.hpp"
#include "quant/quant_policy.hpp"
#include "quantize.hpp"
#include "model/synth.hpp"
#include "transform/rotation.hpp"
#include "transform/gauge.hpp"
#include "quant/gptq.hpp"
#include "hf_export.hpp"
#include "quant/recipe.hpp"

// the whole job
#include "pipeline.hpp"
