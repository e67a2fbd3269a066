// Calibration as a whole run, for llama-imatrix's job (sbgq imatrix): every layer of a
// model through a calibration_session (engine/calibration.hpp), the importance matrix
// and, if asked, each layer's X^T X handed to the caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "core/base.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "engine/calibration.hpp"
#include "model/forward.hpp"
#include "model/model_config.hpp"

SBGQ_BEGIN_NAMESPACE

/// Runs the chunks of `tokens` through the model layer by layer and collects the
/// importance matrix (and, with collect_xtx, X^T X per input space through
/// on_layer_done). Errors: those of calibration_session::start, the provider and the
/// forward pass.
inline result<calibration_result> collect_calibration(const qwen35_config& c, weight_provider& provider,
                                                      std::span<const std::int32_t> tokens,
                                                      const calibration_options& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  progress_reporter report(opt.progress);
  SBGQ_TRY(std::unique_ptr<calibration_session> s, calibration_session::start(c, provider, tokens, opt));
  for (int l = 0; l < static_cast<int>(c.num_hidden_layers); ++l) {
    SBGQ_TRY(layer_weights w, provider.load_layer(l));
    SBGQ_TRY_VOID(s->run_layer(l, w));
    if (opt.collect_xtx && opt.on_layer_done) opt.on_layer_done(l, s->xtx());
    s->clear_xtx();
    report(progress_event::at(progress_stage::calibrate,
                              static_cast<double>(l + 1) / static_cast<double>(c.num_hidden_layers))
               .in_layer(l, static_cast<int>(c.num_hidden_layers)));
  }
  if (opt.process_output) {
    SBGQ_TRY(global_weights g, provider.load_globals());
    SBGQ_TRY_VOID(s->run_output(g));
  }
  calibration_result res = s->finish();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

SBGQ_END_NAMESPACE
