// Calibration, the engine's statistics stage: runs calibration text through the reference forward pass, one layer at a
// time over every chunk, and collects the importance matrix llama-imatrix would collect
// (imatrix.md section 1), optionally with the full second-moment matrices X^T X that
// error-compensating rounding needs.
//
// Design goals:
//   - Layer-streamed: the hidden states of all chunks (n_chunks * ctx * d floats) stay in
//     memory; layer l runs over every chunk (in groups of `group_chunks`, which bounds the
//     intermediate buffers) before layer l+1 is loaded, so a 9B model needs the memory of
//     one layer plus the hidden states, never the whole model.
//   - Same statistics as llama-imatrix: every token of every chunk, per weight matrix the
//     column sums of x^2 in f32 and the row count; the LM head only with process_output.
//   - X^T X in f64 per input space, shared by the matrices that read the same input
//     (attn_qkv/attn_gate/ssm_beta/ssm_alpha; attn_q/k/v; ffn_gate/up), keyed by the first
//     matrix's name, so one layer's H matrices are in memory at a time when the caller
//     consumes them in on_layer_done.
// Non-goals: MoE routing, KV-cache reuse across chunks (each chunk starts empty, as
// llama-imatrix clears the cache per chunk).
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/progress.hpp"
#include "../model/forward.hpp"
#include "../io/imatrix.hpp"
#include "../linalg/gemm.hpp"
#include "../model/model_config.hpp"

SBGQ_BEGIN_NAMESPACE

/// Options of collect_calibration.
struct calibration_options {
  std::int64_t ctx = 512;          ///< tokens per chunk (llama-imatrix -c)
  std::int64_t max_chunks = -1;    ///< -1: every whole chunk of the text
  std::int64_t group_chunks = 4;   ///< chunks per run_layer call (bounds scratch memory)
  int n_threads = 0;               ///< <= 0: all hardware threads; results do not depend on it
  bool process_output = false;     ///< also collect output.weight (llama-imatrix --process-output)
  bool collect_xtx = false;        ///< also accumulate X^T X (f32, lower triangle) per input space
  std::string dataset;             ///< recorded in imatrix.datasets
  /// Stage calibrate after each layer: layer = the layer done, n_layers.
  progress_fn progress;
  /// Called when layer l is complete with that layer's X^T X matrices (only with
  /// collect_xtx); the caller may move them out. They are dropped afterwards.
  std::function<void(int, std::map<std::string, Eigen::MatrixXf>&)> on_layer_done;
};

/// What collect_calibration measured.
struct calibration_result {
  imatrix im;
  std::int64_t n_chunks = 0;
  std::int64_t n_tokens = 0;
  double seconds = 0;
};

namespace detail {

class calibration_observer : public observer {
 public:
  calibration_observer(imatrix& im, const calibration_options& opt) : im_(im), opt_(opt) {}
  void on_linear(int layer, std::string_view tensor, const matrix_f32& x) override {
    if (!status_) return;
    if (layer < 0 && !opt_.process_output) return;
    const std::string name(tensor);
    auto r = im_.accumulate(name, x.data(), x.rows(), x.cols());
    if (!r) {
      status_ = std::move(r).error();
      return;
    }
    if (opt_.collect_xtx && layer >= 0) {
      const std::string space = sbgq::input_space_of(name);  // readers of one input share X^T X
      if (space != name) return;  // the same X was already added under its space
      auto& h = xtx_[space];
      if (h.size() == 0) h = Eigen::MatrixXf::Zero(x.cols(), x.cols());
      // X^T X (its lower triangle), accumulated per group of chunks.
      const auto d = static_cast<std::size_t>(x.cols());
      syrk_lower(active_simd_level(), d, static_cast<std::size_t>(x.rows()), 1.0f, {x.data(), x.cols(), 1}, h.data(), d,
                 opt_.n_threads);
    }
  }
  result<void> status() const { return status_; }
  std::map<std::string, Eigen::MatrixXf>& xtx() { return xtx_; }

 private:
  imatrix& im_;
  const calibration_options& opt_;
  std::map<std::string, Eigen::MatrixXf> xtx_;
  result<void> status_;
};

}  // namespace detail

/// Calibration one layer at a time, for callers that do more per layer than collect
/// (the pipeline transforms and quantizes layer l between its calibration and layer
/// l+1's). Holds the hidden states of every chunk. Not copyable or movable (the observer
/// refers to the statistics); create with start().
///
///   auto s = calibration_session::start(config, provider, tokens, opt);
///   for (int l = 0; l < n_layers; ++l) {
///     auto w = provider.load_layer(l);
///     (*s)->run_layer(l, *w);         // every chunk through layer l
///     use((*s)->stats(), (*s)->xtx()); // statistics so far, this layer's X^T X
///     (*s)->clear_xtx();
///   }
class calibration_session {
 public:
  calibration_session(const calibration_session&) = delete;
  calibration_session& operator=(const calibration_session&) = delete;

  /// Embeds the chunks of `tokens` (only their embedding rows are read). Errors:
  /// invalid_argument (fewer tokens than one chunk, ctx < 16 -- llama-imatrix ignores
  /// batches under 16 rows), and those of the provider.
  static result<std::unique_ptr<calibration_session>> start(const qwen35_config& c, weight_provider& provider,
                                                            std::span<const std::int32_t> tokens,
                                                            const calibration_options& opt) {
    const std::int64_t ctx = opt.ctx;
    if (ctx < 16 || static_cast<std::int64_t>(tokens.size()) < ctx)
      return error(error_code::invalid_argument, "calibrate",
                   "calibration needs ctx >= 16 and at least ctx = " + std::to_string(ctx) + " tokens, got " +
                       std::to_string(tokens.size()));
    std::unique_ptr<calibration_session> s(new calibration_session(c, opt));
    std::int64_t n_chunks = static_cast<std::int64_t>(tokens.size()) / ctx;
    if (opt.max_chunks > 0) n_chunks = std::min(n_chunks, opt.max_chunks);
    s->res_.n_chunks = n_chunks;
    s->res_.n_tokens = n_chunks * ctx;
    s->res_.im.chunk_size = static_cast<std::uint32_t>(ctx);
    s->res_.im.chunk_count = static_cast<std::uint32_t>(n_chunks);
    if (!opt.dataset.empty()) s->res_.im.datasets.push_back(opt.dataset);
    SBGQ_TRY(matrix_f32 rows, provider.embedding_rows(tokens.first(static_cast<std::size_t>(s->res_.n_tokens))));
    SBGQ_TRY(s->all_, embed_rows(std::move(rows), n_chunks));
    return s;
  }

  /// Runs every chunk through layer l (layers in order, each once), accumulating its
  /// statistics (and X^T X with collect_xtx).
  result<void> run_layer(int l, const layer_weights& w) {
    for_each_group([&](activations& part) { return sbgq::run_layer(c_, l, w, part, &obs_, opt_.n_threads); }, true);
    return status_;
  }

  /// Layer l's statistics without moving the hidden states on: with advance_layer() after
  /// it, the states that leave layer l can come from other weights (its quantized ones)
  /// than those its statistics were taken with.
  result<void> observe_layer(int l, const layer_weights& w) {
    for_each_group([&](activations& part) { return sbgq::run_layer(c_, l, w, part, &obs_, opt_.n_threads); }, false);
    return status_;
  }

  /// Moves the hidden states through layer l with weights `w`, collecting nothing.
  result<void> advance_layer(int l, const layer_weights& w) {
    for_each_group([&](activations& part) { return sbgq::run_layer(c_, l, w, part, nullptr, opt_.n_threads); }, true);
    return status_;
  }

  /// Replaces the embedded rows before the first layer (e.g. by the rows as they read back
  /// from the file): f(hidden) may change values, not the shape.
  template <class F>
  result<void> replace_inputs(F&& f) {
    const Eigen::Index r = all_.hidden.rows(), c = all_.hidden.cols();
    SBGQ_TRY_VOID(f(all_.hidden));
    if (all_.hidden.rows() != r || all_.hidden.cols() != c)
      return error(error_code::internal, "calibrate", "replace_inputs changed the shape of the hidden states");
    return {};
  }

  /// The LM head's statistics (output.weight, or token_embd.weight when tied): only the
  /// final norm and the head are read. Call after the last layer.
  result<void> run_output(const global_weights& g) {
    for_each_group(
        [&](activations& part) -> result<void> {
          SBGQ_TRY(matrix_f32 z, logits(g, c_, part, &obs_, opt_.n_threads));
          (void)z;
          return {};
        },
        false);
    return status_;
  }

  /// X^T X (f32, lower triangle) of the LM head's input -- the hidden states after the
  /// final norm with gain `output_norm` -- for gptq of the head. Call after the last layer.
  /// Normalises one group of chunks at a time, so it needs one group's rows beside the
  /// result (hidden x hidden). Same bits for any thread count (syrk_lower).
  Eigen::MatrixXf head_xtx(const vector_f32& output_norm) const {
    const auto d = static_cast<std::size_t>(c_.hidden_size);
    Eigen::MatrixXf h = Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(d));
    const Eigen::Index rows = all_.hidden.rows();
    const Eigen::Index step = std::max<Eigen::Index>(1, opt_.ctx * std::max<std::int64_t>(1, opt_.group_chunks));
    matrix_f32 x;
    const float eps = static_cast<float>(c_.rms_norm_eps);
    for (Eigen::Index r0 = 0; r0 < rows; r0 += step) {
      const Eigen::Index n = std::min(step, rows - r0);
      x.resize(n, static_cast<Eigen::Index>(d));
      for (Eigen::Index r = 0; r < n; ++r)
        detail::fwd::rms_norm(all_.hidden.row(r0 + r).data(), output_norm.data(), c_.hidden_size, eps, x.row(r).data());
      syrk_lower(active_simd_level(), d, static_cast<std::size_t>(n), 1.0f, {x.data(), static_cast<std::ptrdiff_t>(d), 1},
                 h.data(), d, opt_.n_threads);
    }
    return h;
  }

  /// The importance weights that go with an X^T X of this session's tokens: its diagonal
  /// over the tokens, the mean square of each input column (as an imatrix entry holds).
  std::vector<float> mean_squares(const Eigen::MatrixXf& xtx) const {
    std::vector<float> im(static_cast<std::size_t>(xtx.rows()));
    const auto n = static_cast<float>(std::max<std::int64_t>(1, res_.n_tokens));
    for (Eigen::Index j = 0; j < xtx.rows(); ++j) im[static_cast<std::size_t>(j)] = xtx(j, j) / n;
    return im;
  }

  /// Statistics of every layer run so far.
  imatrix& stats() noexcept { return res_.im; }
  /// X^T X of the layers run since the last clear_xtx(), keyed by input space.
  std::map<std::string, Eigen::MatrixXf>& xtx() noexcept { return obs_.xtx(); }
  void clear_xtx() { obs_.xtx().clear(); }
  /// Hidden states of every chunk (after the layers run so far).
  const activations& hidden() const noexcept { return all_; }
  std::int64_t n_chunks() const noexcept { return res_.n_chunks; }
  std::int64_t n_tokens() const noexcept { return res_.n_tokens; }
  /// The result so far (moves the statistics out).
  calibration_result finish() { return std::move(res_); }

 private:
  calibration_session(const qwen35_config& c, const calibration_options& opt)
      : c_(c), opt_(opt), obs_(res_.im, opt_) {}

  /// f over every group of chunks; write_back: keep what f made of the hidden states.
  template <class F>
  void for_each_group(F&& f, bool write_back) {
    if (!status_) return;
    const std::int64_t ctx = opt_.ctx, n = res_.n_chunks;
    const std::int64_t group = std::max<std::int64_t>(1, opt_.group_chunks);
    for (std::int64_t s0 = 0; s0 < n; s0 += group) {
      const std::int64_t ns = std::min(group, n - s0);
      part_.n_seq = ns;
      part_.n_tok = ctx;
      part_.hidden = all_.hidden.middleRows(s0 * ctx, ns * ctx);
      if (auto r = f(part_); !r) {
        status_ = std::move(r).error();
        return;
      }
      if (auto r = obs_.status(); !r) {
        status_ = std::move(r).error();
        return;
      }
      if (write_back) all_.hidden.middleRows(s0 * ctx, ns * ctx) = part_.hidden;
    }
  }

  const qwen35_config& c_;
  calibration_options opt_;
  calibration_result res_;
  detail::calibration_observer obs_;
  activations all_, part_;
  result<void> status_;
};

SBGQ_END_NAMESPACE
