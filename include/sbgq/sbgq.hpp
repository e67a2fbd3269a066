// Umbrella header: everything public in sbgq. Light users can include single concept
// headers instead (error.hpp, dtype.hpp, tensor_view.hpp and fwd-free headers pull in
// neither Eigen nor simdjson).
#pragma once

#include "core/version.hpp"
#include "simd/cpu_features.hpp"
#include "simd/dispatch.hpp"

// core: errors, files, threads, progress, JSON
#include "core/base.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/json.hpp"
#include "core/mapped_file.hpp"
#include "core/name_pattern.hpp"
#include "core/output_file.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "core/tensor_view.hpp"

// io: file formats
#include "io/ggml_types.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "io/safetensors.hpp"

// codecs: block formats
#include "codec/registry.hpp"
#include "codec/rows.hpp"

// model: Qwen3.5
#include "model/forward.hpp"
#include "model/hf_checkpoint.hpp"
#include "model/layer_weights.hpp"
#include "model/model_config.hpp"
#include "model/model_source.hpp"
#include "model/qwen35_tensors.hpp"
#include "model/synth.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"

// exact transforms
#include "transform/fwht.hpp"
#include "transform/gauge.hpp"
#include "transform/hadamard.hpp"
#include "transform/rotation.hpp"

// choosing and rounding
#include "quant/gptq.hpp"
#include "quant/quant_policy.hpp"
#include "quant/recipe.hpp"
#include "quant/sensitivity_map.hpp"

// the streaming engine: source, calibration, gauge stage, measurement, sink
#include "engine/calibration.hpp"
#include "engine/embedding_weights.hpp"
#include "engine/gauged_provider.hpp"
#include "engine/measure.hpp"
#include "engine/sink.hpp"
#include "engine/source.hpp"

// drivers
#include "calibrate.hpp"
#include "convert.hpp"
#include "evaluate.hpp"
#include "hf_export.hpp"
#include "quantize.hpp"
#include "pipeline.hpp"
