// The layer stages between reading a layer and quantizing it, shared by the pipeline and
// by `sbgq transform`: calibration of the layer (engine/calibration.hpp), then the exact
// gauge scalings solved from its statistics (transform/gauge.hpp), with the statistics
// (imatrix, X^T X) rescaled to describe the transformed layer.
#pragma once

#include <Eigen/Dense>

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../model/forward.hpp"
#include "../model/model_config.hpp"
#include "../transform/gauge.hpp"
#include "calibration.hpp"

SBGQ_BEGIN_NAMESPACE

/// Scales X^T X by the gauge's input factors: H' = F H F.
inline void scale_xtx(std::map<std::string, Eigen::MatrixXf>& xtx, const gauge_result& g) {
  for (auto& [space, h] : xtx) {
    const auto it = g.input_scales.find(space);
    if (it == g.input_scales.end()) continue;
    const std::vector<float>& f = it->second;
    for (Eigen::Index j = 0; j < h.cols(); ++j)
      for (Eigen::Index i = 0; i < h.rows(); ++i)
        h(i, j) = static_cast<float>(static_cast<double>(h(i, j)) * f[static_cast<std::size_t>(i)] * f[static_cast<std::size_t>(j)]);
  }
}

/// Solves and applies the gauge of layer `l`, whose calibration `s` has just run
/// (s.run_layer(l, w)): w is transformed in place, s's imatrix and X^T X (if collected)
/// rescaled to the transformed inputs, and the solver's notes appended to `notes`,
/// prefixed "layer L: ". `type_of` gives each tensor's target type.
inline result<void> gauge_layer(const qwen35_config& c, int l, layer_weights& w, calibration_session& s,
                                const std::function<ggml_type(const std::string&)>& type_of, const gauge_options& opt,
                                std::vector<std::string>& notes) {
  SBGQ_TRY(gauge_result g, solve_gauge(c, l, w, s.stats(), type_of, opt));
  scale_imatrix_inputs(s.stats(), g);
  scale_xtx(s.xtx(), g);
  for (auto& note : g.notes) notes.push_back("layer " + std::to_string(l) + ": " + note);
  return {};
}

/// A weight_provider that applies solved gauge scalings as layers are loaded, for
/// writing a gauged checkpoint (sbgq transform --gauge exact) or feeding one to another
/// consumer. Layers must be loaded in order 0, 1, ...: each is first run through every
/// calibration chunk (a calibration_session over the inner provider's embeddings), and
/// its statistics solve the scales for the target types `type_of` gives. The inner
/// provider (not owned) may be a rotated_provider.
class gauged_provider : public weight_provider {
 public:
  static result<std::unique_ptr<gauged_provider>> create(const qwen35_config& c, weight_provider& inner,
                                                         std::span<const std::int32_t> tokens,
                                                         const calibration_options& calib,
                                                         std::function<ggml_type(const std::string&)> type_of,
                                                         const gauge_options& opt) {
    std::unique_ptr<gauged_provider> p(new gauged_provider(c, inner, std::move(type_of), opt));
    SBGQ_TRY(p->session_, calibration_session::start(c, inner, tokens, calib));
    return p;
  }

  result<global_weights> load_globals() override { return inner_.load_globals(); }
  result<matrix_f32> embedding_rows(std::span<const std::int32_t> ids) override { return inner_.embedding_rows(ids); }
  result<layer_weights> load_layer(int l) override {
    if (l != next_)
      return error(error_code::invalid_argument, "gauge",
                   "gauged_provider loads layers in order: asked for layer " + std::to_string(l) + ", next is " +
                       std::to_string(next_));
    SBGQ_TRY(layer_weights w, inner_.load_layer(l));
    SBGQ_TRY_VOID(session_->run_layer(l, w));
    session_->clear_xtx();
    SBGQ_TRY_VOID(gauge_layer(c_, l, w, *session_, type_of_, opt_, notes_));
    ++next_;
    return w;
  }
  /// What the solver chose, layer after layer.
  const std::vector<std::string>& notes() const noexcept { return notes_; }

 private:
  gauged_provider(const qwen35_config& c, weight_provider& inner, std::function<ggml_type(const std::string&)> type_of,
                  const gauge_options& opt)
      : c_(c), inner_(inner), type_of_(std::move(type_of)), opt_(opt) {}
  const qwen35_config& c_;
  weight_provider& inner_;
  std::function<ggml_type(const std::string&)> type_of_;
  gauge_options opt_;
  std::unique_ptr<calibration_session> session_;
  int next_ = 0;
  std::vector<std::string> notes_;
};

SBGQ_END_NAMESPACE
