// Umbrella header: everything public in sbgq.
#pragma once

#include "version.hpp"
#include "base.hpp"
#include "error.hpp"
#include "dtype.hpp"
#include "ggml_types.hpp"
#include "model_config.hpp"
#include "qwen35_tensors.hpp"
#include "parallel.hpp"
#include "mapped_file.hpp"
#include "output_file.hpp"
#include "simd/cpu_features.hpp"
#include "simd/dispatch.hpp"
