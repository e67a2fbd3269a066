// The "auto" recipe's first pass: per quantizable tensor and candidate type, the
// importance-weighted squared error of plain rounding, measured on the model as it will be
// written (a source, transforms applied), then the choice of types under a bits-per-weight
// budget (quant/recipe.hpp, allocate_bits).
//
// What is measured: every decoder-layer matrix on a sample of at most 128 rows, weighed by
// its imatrix from a calibration pass; the LM head on 512 sampled rows, weighed by the
// final-normed hidden states' mean squares (its statistics, without running the head);
// token_embd and MTP tensors keep fixed types (the recipe's auto_token_embd and auto_mtp).
// choose_auto_types_by_output measures instead what the allocation needs: the mean
// KL-divergence each tensor alone causes at each candidate type, under the rounding that
// will be used (engine/sensitivity.hpp), token_embd and the head included.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../codec/registry.hpp"
#include "../codec/rows.hpp"
#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/progress.hpp"
#include "../io/imatrix.hpp"
#include "../model/forward.hpp"
#include "../quant/quant_policy.hpp"
#include "../quant/recipe.hpp"
#include "calibration.hpp"
#include "sensitivity.hpp"
#include "sink.hpp"
#include "source.hpp"

SBGQ_BEGIN_NAMESPACE

namespace detail::measure {

inline error fail(error_code c, std::string ctx) { return error(c, "pipeline", std::move(ctx)); }

/// Evenly spaced sample of at most n rows (all rows when fewer).
inline std::vector<std::size_t> sample_rows(std::size_t rows, std::size_t n) {
  std::vector<std::size_t> r;
  if (rows <= n) {
    for (std::size_t i = 0; i < rows; ++i) r.push_back(i);
  } else {
    for (std::size_t i = 0; i < n; ++i) r.push_back(i * rows / n);
  }
  return r;
}

/// Estimated importance-weighted squared error of plain rounding of W at type t, from a
/// sample of rows scaled to all rows.
inline result<double> estimate_error(ggml_type t, const float* w, std::size_t rows, std::size_t cols,
                                     std::span<const float> im, int n_threads) {
  const auto pick = sample_rows(rows, 128);
  std::vector<float> sub(pick.size() * cols);
  for (std::size_t i = 0; i < pick.size(); ++i) std::copy_n(w + pick[i] * cols, cols, sub.data() + i * cols);
  std::vector<std::byte> q(pick.size() * find_codec(t)->row_bytes(cols));
  SBGQ_TRY_VOID(quantize_rows(t, sub.data(), pick.size(), cols, im.empty() ? nullptr : im.data(), q, n_threads));
  SBGQ_TRY(const weighted_sums s, weighted_row_error(t, sub.data(), q, pick.size(), cols, im));
  return s.error * static_cast<double>(rows) / static_cast<double>(pick.size());
}

/// Per-column mean squares of the final-normed hidden states: the LM head's importance
/// statistics, without the head itself.
inline std::vector<float> head_statistics(const qwen35_config& c, const matrix_f32& hidden, const vector_f32& output_norm) {
  const auto d = static_cast<std::size_t>(c.hidden_size);
  std::vector<double> s(d, 0.0);
  std::vector<float> row(d);
  for (Eigen::Index r = 0; r < hidden.rows(); ++r) {
    detail::fwd::rms_norm(hidden.row(r).data(), output_norm.data(), c.hidden_size, static_cast<float>(c.rms_norm_eps), row.data());
    for (std::size_t j = 0; j < d; ++j) s[j] += static_cast<double>(row[j]) * row[j];
  }
  std::vector<float> out(d);
  for (std::size_t j = 0; j < d; ++j) out[j] = static_cast<float>(s[j] / std::max<Eigen::Index>(1, hidden.rows()));
  return out;
}

/// Importance weights of a tensor from the statistics (empty if none).
inline std::vector<float> weights_of(const imatrix* im, const std::string& name) {
  if (!im || im->entries.find(name) == im->entries.end()) return {};
  return im->weights(name);
}

/// The measuring loop: each layer of `src` read and calibrated in turn, then fn(i, l, w,
/// tensor) for each quantizable plan entry i of the layer (w: the layer's weights, which fn
/// may change and must restore), then the layer's X^T X dropped.
template <class Fn>
result<void> for_each_layer_tensor(tensor_source& src, calibration_session& session, progress_reporter& report, Fn&& fn) {
  const auto& plan = src.plan();
  const int n_layers = static_cast<int>(src.config().num_hidden_layers);
  for (int l = 0; l < n_layers; ++l) {
    report(progress_event::at(progress_stage::measure, 0.3 * l / n_layers).in_layer(l, n_layers));
    SBGQ_TRY(layer_weights w, src.layers().load_layer(l));
    SBGQ_TRY_VOID(session.run_layer(l, w));
    for (std::size_t i = 0; i < plan.size(); ++i) {
      const tensor_plan& e = plan[i];
      if (e.layer != l || e.is_mtp || !is_quantizable_tensor(e.desc())) continue;
      const auto ref = layer_tensor(w, e.gguf_name);
      if (!ref) return fail(error_code::internal, "no layer field for " + e.gguf_name);
      SBGQ_TRY_VOID(fn(i, l, w, *ref));
    }
    session.clear_xtx();
  }
  return {};
}

/// The measurements of one run: candidates per tensor, fixed types, the bits they take.
class cost_table {
 public:
  cost_table(const recipe& rc, const std::vector<tensor_plan>& plan, int n_threads)
      : rc_(rc), plan_(plan), types_(plan.size(), ggml_type::f32), cost_of_(plan.size(), npos), n_threads_(n_threads) {}

  /// Measures every candidate of plan entry i (values rows x cols, possibly a sample of
  /// `scale_rows` rows); with no candidate dividing the row, a fixed fallback type.
  result<void> measure(std::size_t i, const float* w, std::size_t rows, std::size_t cols, std::span<const float> im,
                       std::size_t scale_rows = 0) {
    const std::vector<ggml_type> cand = candidates(cols);
    if (cand.empty()) return fix(i, ggml_type::q8_0);
    tensor_cost tc;
    tc.n_elements = static_cast<std::uint64_t>(rows) * cols;
    for (ggml_type t : cand) {
      SBGQ_TRY(double err, estimate_error(t, w, rows, cols, im, n_threads_));
      tc.types.push_back(t);
      tc.error.push_back(err);
    }
    if (scale_rows > 0) {  // a sample: scale its error and size to the whole tensor
      tc.n_elements = static_cast<std::uint64_t>(scale_rows) * cols;
      for (double& x : tc.error) x *= static_cast<double>(scale_rows) / static_cast<double>(rows);
    }
    cost_of_[i] = costs_.size();
    costs_.push_back(std::move(tc));
    return {};
  }
  /// The recipe's candidate types a row of `cols` values can take, cheapest first.
  std::vector<ggml_type> candidates(std::size_t cols) const {
    std::vector<ggml_type> cand;
    for (ggml_type t : rc_.candidates)
      if (cols % static_cast<std::size_t>(block_size(t)) == 0) cand.push_back(t);
    std::sort(cand.begin(), cand.end(), [](ggml_type a, ggml_type b) {
      return type_size(a) * 1.0 / block_size(a) < type_size(b) * 1.0 / block_size(b);
    });
    return cand;
  }
  /// Plan entry i with costs measured by the caller (types cheapest first, one cost each).
  void set(std::size_t i, tensor_cost tc) {
    cost_of_[i] = costs_.size();
    costs_.push_back(std::move(tc));
  }
  /// Plan entry i at a fixed type (its shape fallback).
  result<void> fix(std::size_t i, ggml_type t) {
    SBGQ_TRY(types_[i], detail::qp::shape_fallback(plan_[i].desc(), t));
    fixed_bits_ += bits(i);
    return {};
  }
  /// Plan entry i kept as it is (F32).
  void keep(std::size_t i) { fixed_bits_ += 32.0 * static_cast<double>(plan_[i].numel()); }

  /// Chooses for `target_bpw` bits per weight of all tensor data; notes what it did, and
  /// lists what was measured in `measured` (if given).
  std::vector<ggml_type> choose(double target_bpw, std::vector<std::string>& notes,
                                std::vector<tensor_measurement>* measured = nullptr) {
    double total = 0;
    for (const auto& e : plan_) total += static_cast<double>(e.numel());
    const auto pick = allocate_bits(costs_, target_bpw * total - fixed_bits_);
    double used = fixed_bits_;
    for (std::size_t i = 0; i < plan_.size(); ++i)
      if (cost_of_[i] != npos) {
        types_[i] = costs_[cost_of_[i]].types[pick[cost_of_[i]]];
        used += bits(i);
      }
    char buf[200];
    std::snprintf(buf, sizeof buf, "auto: target %.3f bits per weight, chose %.3f (%zu tensors measured)", target_bpw,
                  used / total, costs_.size());
    notes.push_back(buf);
    if (used > target_bpw * total * 1.0001) notes.push_back("auto: even the cheapest types exceed the target");
    if (measured)
      for (std::size_t i = 0; i < plan_.size(); ++i)
        if (cost_of_[i] != npos) {
          const tensor_cost& c = costs_[cost_of_[i]];
          measured->push_back({plan_[i].gguf_name, c.types, c.error, types_[i]});
        }
    return types_;
  }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  double bits(std::size_t i) const {
    return static_cast<double>(row_size(types_[i], static_cast<std::uint64_t>(plan_[i].ne[0]))) * 8.0 *
           static_cast<double>(plan_[i].rows());
  }
  const recipe& rc_;
  const std::vector<tensor_plan>& plan_;
  std::vector<ggml_type> types_;
  std::vector<tensor_cost> costs_;
  std::vector<std::size_t> cost_of_;
  double fixed_bits_ = 0;
  int n_threads_;
};

}  // namespace detail::measure

/// Measures, per quantizable tensor of `src` and candidate type of the automatic recipe
/// `rc`, the importance-weighted error of plain rounding (a calibration pass over every
/// layer with options `copt`), then chooses types for `target_bpw`. Returns the type of
/// every plan entry; notes what it chose, and lists the costs in `measured` (if given). Errors: invalid_argument (no target), those of
/// calibration, the source and the codecs.
inline result<std::vector<ggml_type>> choose_auto_types(tensor_source& src, const recipe& rc, double target_bpw,
                                                        std::span<const std::int32_t> tokens, const calibration_options& copt,
                                                        progress_reporter& report, std::vector<std::string>& notes,
                                                        std::vector<tensor_measurement>* measured = nullptr) {
  namespace dm = detail::measure;
  if (!(target_bpw > 0)) return dm::fail(error_code::invalid_argument, "recipe 'auto' needs a target bits per weight (--target-bpw)");
  const auto& plan = src.plan();
  const qwen35_config& cfg = src.config();
  dm::cost_table costs(rc, plan, copt.n_threads);
  SBGQ_TRY(std::unique_ptr<calibration_session> session, calibration_session::start(cfg, src.layers(), tokens, copt));
  SBGQ_TRY_VOID(dm::for_each_layer_tensor(src, *session, report, [&](std::size_t i, int, layer_weights&, layer_tensor_ref ref) {
    return costs.measure(i, ref.data, ref.rows, ref.cols, dm::weights_of(&session->stats(), plan[i].gguf_name));
  }));
  // Globals and MTP: the head weighed by the final-norm statistics, from a sample of rows;
  // token_embd and MTP at fixed types.
  SBGQ_TRY(const vector_f32 gain, src.vector("output_norm.weight"));
  const std::vector<float> head_im = dm::head_statistics(cfg, session->hidden().hidden, gain);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const tensor_plan& e = plan[i];
    if (e.layer >= 0 && !e.is_mtp) continue;
    if (!is_quantizable_tensor(e.desc())) {
      costs.keep(i);
      continue;
    }
    if (e.gguf_name == "output.weight") {
      const auto rows = static_cast<std::size_t>(e.rows()), cols = static_cast<std::size_t>(e.ne[0]);
      const auto pick = dm::sample_rows(rows, 512);
      std::vector<float> sample(pick.size() * cols), one;
      for (std::size_t k = 0; k < pick.size(); ++k) {
        SBGQ_TRY_VOID(src.rows(e, pick[k], pick[k] + 1, one));
        std::copy(one.begin(), one.end(), sample.begin() + static_cast<std::ptrdiff_t>(k * cols));
      }
      SBGQ_TRY_VOID(costs.measure(i, sample.data(), pick.size(), cols, head_im, rows));
      continue;
    }
    SBGQ_TRY_VOID(costs.fix(i, e.gguf_name == "token_embd.weight" ? rc.auto_token_embd : rc.auto_mtp));
  }
  for (std::size_t i = 0; i < plan.size(); ++i)
    if (plan[i].layer >= 0 && !plan[i].is_mtp && !is_quantizable_tensor(plan[i].desc())) costs.keep(i);
  return costs.choose(target_bpw, notes, measured);
}

/// Like choose_auto_types, but the cost of each candidate type of each quantizable tensor
/// (layer matrices, the head and token_embd; MTP tensors get the recipe's auto_mtp) is the mean
/// KL-divergence of the model with only that tensor quantized at that type -- encoded with
/// `enc` as the pipeline's sink will (gptq with the calibration's X^T X for layer matrices
/// and an untied head; plain for token_embd) --
/// against the unquantized model, on the sample `so` of the calibration tokens. The
/// allocation then minimises the summed effect under the budget (the effects add up:
/// bench/RESULTS.md, "Error budget"). Errors: as choose_auto_types, and those of the
/// sensitivity pass.
inline result<std::vector<ggml_type>> choose_auto_types_by_output(tensor_source& src, const recipe& rc, double target_bpw,
                                                                  std::span<const std::int32_t> tokens,
                                                                  calibration_options copt, const encode_options& enc,
                                                                  const sensitivity_options& so, progress_reporter& report,
                                                                  std::vector<std::string>& notes,
                                                                  std::vector<tensor_measurement>* measured = nullptr) {
  namespace dm = detail::measure;
  if (!(target_bpw > 0)) return dm::fail(error_code::invalid_argument, "recipe 'auto' needs a target bits per weight (--target-bpw)");
  const auto& plan = src.plan();
  const qwen35_config& cfg = src.config();
  dm::cost_table costs(rc, plan, copt.n_threads);
  copt.collect_xtx = enc.rounding == rounding_mode::gptq;
  SBGQ_TRY(std::unique_ptr<calibration_session> session, calibration_session::start(cfg, src.layers(), tokens, copt));
  SBGQ_TRY(std::unique_ptr<output_sensitivity> sens, output_sensitivity::start(cfg, src.layers(), tokens, so));
  // Each candidate of one tensor: encoded and decoded in place, measured, then restored.
  auto measure = [&](std::size_t i, float* data, std::size_t rows, std::size_t cols, std::span<const float> im,
                     const Eigen::MatrixXf* h, const auto& kld) -> result<void> {
    const std::vector<ggml_type> cand = costs.candidates(cols);
    if (cand.empty()) return costs.fix(i, ggml_type::q8_0);
    const std::vector<float> saved(data, data + rows * cols);
    tensor_cost tc;
    tc.n_elements = static_cast<std::uint64_t>(rows) * cols;
    for (ggml_type t : cand) {
      std::copy(saved.begin(), saved.end(), data);
      SBGQ_TRY_VOID(encode_decode(t, plan[i].gguf_name, data, rows, cols, im, h, enc));
      SBGQ_TRY(const double d, kld());
      tc.types.push_back(t);
      tc.error.push_back(d);
    }
    std::copy(saved.begin(), saved.end(), data);
    costs.set(i, std::move(tc));
    return {};
  };
  SBGQ_TRY_VOID(dm::for_each_layer_tensor(src, *session, report, [&](std::size_t i, int l, layer_weights& w, layer_tensor_ref ref) {
    const Eigen::MatrixXf* h = nullptr;
    if (copt.collect_xtx)
      if (auto it = session->xtx().find(input_space_of(plan[i].gguf_name)); it != session->xtx().end()) h = &it->second;
    const auto im = dm::weights_of(&session->stats(), plan[i].gguf_name);
    return measure(i, ref.data, ref.rows, ref.cols, im, h, [&] { return sens->kld_with_layer(l, w); });
  }));
  // The globals, encoded as the sink writes them: token_embd with plain rounding and no
  // statistics; an untied head under gptq with the X^T X of the final-normed hidden states
  // (its diagonal over the tokens as importance), plain without statistics otherwise.
  global_weights g = sens->globals();
  Eigen::MatrixXf head_h;
  std::vector<float> head_im;
  if (copt.collect_xtx && g.output.size() != 0) {
    SBGQ_TRY(const vector_f32 gain, src.vector("output_norm.weight"));
    head_h = session->head_xtx(gain);
    head_im = session->mean_squares(head_h);
  }
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const tensor_plan& e = plan[i];
    if (e.layer >= 0 && !e.is_mtp) continue;
    if (!is_quantizable_tensor(e.desc())) {
      costs.keep(i);
      continue;
    }
    const bool head = e.gguf_name == "output.weight", embd = e.gguf_name == "token_embd.weight";
    if (!(head && g.output.size() != 0) && !embd) {  // the MTP block
      SBGQ_TRY_VOID(costs.fix(i, rc.auto_mtp));
      continue;
    }
    report(progress_event::at(progress_stage::measure, 0.3).on(e.gguf_name));
    matrix_f32& m = head ? g.output : g.token_embd;
    const bool head_gptq = head && head_h.size() != 0;
    SBGQ_TRY_VOID(measure(i, m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols()),
                          head_gptq ? std::span<const float>(head_im) : std::span<const float>{},
                          head_gptq ? &head_h : nullptr, [&] { return sens->kld_with_globals(g, embd); }));
  }
  for (std::size_t i = 0; i < plan.size(); ++i)
    if (plan[i].layer >= 0 && !plan[i].is_mtp && !is_quantizable_tensor(plan[i].desc())) costs.keep(i);
  notes.push_back("auto: costs are the measured mean KL-divergence of each tensor alone, on " +
                  std::to_string(sens->n_tokens()) + " calibration tokens");
  return costs.choose(target_bpw, notes, measured);
}

SBGQ_END_NAMESPACE
