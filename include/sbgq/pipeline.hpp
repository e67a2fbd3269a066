// The whole job: an HF Qwen3.5 checkpoint in, a quantized GGUF out, one layer at a time.
//
//   sbgq::pipeline_options o;
//   o.recipe = "llama-q4_k_m";               // or "seed-iq4_xs", "auto" + target_bpw, a JSON file
//   o.calibration_text = text;               // importance statistics come from our forward pass
//   o.rotate = sbgq::rotation_mode::hadamard; // optional exact transforms
//   auto report = sbgq::run_pipeline("Qwen3.5-9B", "out.gguf", o);
//
// Stages, each also usable alone through its own header:
//   read        safetensors.hpp / weights.hpp  (layer by layer, f32, GGUF conventions)
//   rotate      rotation.hpp                   (residual-stream Hadamard, norms folded)
//   calibrate   calibrate.hpp                  (calibration_session: imatrix, X^T X)
//   gauge       gauge.hpp                      (exact per-channel scalings, solved per layer)
//   choose      recipe.hpp                     (llama.cpp's mixtures, rules, auto budget)
//   quantize    codec/rows.hpp, gptq.hpp       (plain importance-weighted or GPTQ rounding)
//   write       gguf.hpp / convert.hpp         (llama.cpp's converter metadata and names)
//
// Streaming: the calibration tokens' hidden states stay in memory (n_tokens x hidden f32);
// layer l is loaded, calibrated through (every chunk), gauged, quantized, written and
// dropped before layer l+1 is loaded. The embedding and the LM head are read and written
// in blocks of rows. So peak memory is about one f32 layer, its X^T X matrices (gptq), the
// hidden states and a block of the head -- never the model.
//
// With every transform off and plain rounding, the tensors written are byte-identical to
// llama-quantize's for the same recipe and importance matrix (tests/test_pipeline.cpp
// checks it against llama_model_quantize).
//
// "auto" runs a first pass that measures, per tensor and candidate type, the
// importance-weighted squared error of plain rounding on a sample of rows, then picks the
// types (recipe.hpp, allocate_bits) under the bits-per-weight budget; the second pass is
// the normal streamed run. token_embd has no importance statistics, so it keeps a fixed
// type; the LM head is weighed by the final-norm statistics.
//
// Non-goals: MTP under rotation (it cannot stay exact; dropped with a notice), GPTQ for
// the LM head (its statistics exist only after the last layer, while the converter's
// order writes it first; it gets plain rounding).
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/base.hpp"
#include "calibrate.hpp"
#include "codec/registry.hpp"
#include "codec/rows.hpp"
#include "convert.hpp"
#include "core/error.hpp"
#include "model/forward.hpp"
#include "transform/gauge.hpp"
#include "io/gguf.hpp"
#include "quant/gptq.hpp"
#include "io/imatrix.hpp"
#include "core/mapped_file.hpp"
#include "model/model_config.hpp"
#include "core/output_file.hpp"
#include "quantize.hpp"
#include "model/qwen35_tensors.hpp"
#include "quant/recipe.hpp"
#include "transform/rotation.hpp"
#include "io/safetensors.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"

SBGQ_BEGIN_NAMESPACE

enum class rotation_mode : std::uint8_t { none, hadamard };
enum class rounding_mode : std::uint8_t { plain, gptq };

/// Where the pipeline is, for progress displays.
struct pipeline_event {
  std::string stage;         ///< "read", "measure", "calibrate", "gauge", "quantize", "write", "done"
  int layer = -1;            ///< current layer, -1 for globals
  int n_layers = 0;
  std::string tensor;        ///< current tensor, if any
  double seconds = 0;        ///< since the start
  double fraction = 0;       ///< of the whole run, 0..1 (estimated)
};

/// Everything the pipeline can be told, in one place.
struct pipeline_options {
  std::string recipe = "llama-q4_k_m";  ///< built-in name or JSON file (recipe.hpp)
  double target_bpw = 0;                ///< "auto": bits per weight of all tensor data
  std::string calibration_text;         ///< text for the importance statistics
  std::string calibration_name = "calibration text";  ///< recorded as the imatrix dataset
  /// Instead of calibration text: a ready importance matrix (must match the transformed
  /// model: with rotation, collect it from calibration text instead). gptq and gauge need text.
  const imatrix* importance = nullptr;
  std::int64_t ctx = 512;               ///< tokens per calibration chunk
  std::int64_t chunks = -1;             ///< -1: every whole chunk of the text
  /// Off by default: on the tiny model it did not lower KL-divergence (bench/RESULTS.md).
  rotation_mode rotate = rotation_mode::none;
  std::uint64_t seed = 0;               ///< random signs of the Hadamard rotation
  bool gauge = false;                   ///< exact per-channel scalings, solved per layer (off: gains within noise)
  gauge_options gauge_settings;         ///< with gauge: which scalings, the alpha grid
  /// gptq by default: it lowered KL-divergence for every recipe in the frontier table
  /// (bench/RESULTS.md); plain reproduces llama-quantize's bytes.
  rounding_mode rounding = rounding_mode::gptq;
  gptq_options gptq;                    ///< with rounding = gptq
  bool keep_mtp = true;                 ///< keep MTP tensors (as llama.cpp's converter); never with rotation
  std::string name;                     ///< general.name; default: the directory name
  int n_threads = 0;                    ///< <= 0: all hardware threads
  std::function<void(const pipeline_event&)> progress;
};

/// What happened to one tensor.
struct pipeline_tensor {
  std::string name;
  ggml_type type = ggml_type::f32;
  std::uint64_t n_elements = 0;
  std::uint64_t bytes = 0;
  bool used_imatrix = false;
  /// Importance-weighted relative error sum_j im_j dW_ij^2 / sum_j im_j W_ij^2 (uniform
  /// weights without statistics) of plain rounding and of what was written (they differ
  /// with gptq rounding), on the weights as quantized (after rotation and gauge). NaN
  /// when not quantized.
  double rel_error_plain = std::nan("");
  double rel_error = std::nan("");
  /// gptq only: tr(dW H dW^T) of plain rounding and of what was written.
  double objective_plain = std::nan("");
  double objective = std::nan("");
};

/// What the pipeline did (also written as JSON by pipeline_report_json).
struct pipeline_report {
  std::string recipe;
  std::vector<pipeline_tensor> tensors;  ///< in file order
  std::uint64_t n_elements = 0, bytes = 0, file_size = 0;
  std::int64_t calibration_tokens = 0;
  std::map<std::string, double> stage_seconds;  ///< read, measure, calibrate, gauge, quantize, write
  double seconds = 0;
  std::uint64_t peak_rss = 0;           ///< bytes, if the platform reports it
  std::vector<std::string> notes;
  double bits_per_weight() const noexcept {
    return n_elements ? static_cast<double>(bytes) * 8.0 / static_cast<double>(n_elements) : 0.0;
  }
};

namespace detail::pipe {

inline error fail(error_code c, std::string ctx) { return error(c, "pipeline", std::move(ctx)); }

/// Importance-weighted squared error and norm of rows [r0, r1) of W against its
/// quantized bytes (weights: per column, or empty for uniform).
inline std::pair<double, double> weighted_error(ggml_type t, const float* w, std::size_t rows, std::size_t cols,
                                                std::span<const std::byte> q, std::span<const float> im) {
  const codec_traits* ct = find_codec(t);
  std::vector<float> deq(cols);
  const std::size_t rb = ct->row_bytes(cols);
  double err = 0, norm = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    ct->dequantize_row(active_simd_level(), q.data() + r * rb, deq.data(), cols);
    const float* x = w + r * cols;
    for (std::size_t j = 0; j < cols; ++j) {
      const double wj = im.empty() ? 1.0 : static_cast<double>(im[j]);
      const double d = static_cast<double>(deq[j]) - static_cast<double>(x[j]);
      err += wj * d * d;
      norm += wj * static_cast<double>(x[j]) * static_cast<double>(x[j]);
    }
  }
  return {err, norm};
}

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
  const codec_traits* ct = find_codec(t);
  std::vector<std::byte> q(pick.size() * ct->row_bytes(cols));
  SBGQ_TRY_VOID(quantize_rows(t, sub.data(), pick.size(), cols, im.empty() ? nullptr : im.data(), q, n_threads));
  const auto [err, norm] = weighted_error(t, sub.data(), pick.size(), cols, q, im);
  (void)norm;
  return err * static_cast<double>(rows) / static_cast<double>(pick.size());
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

/// The model as the pipeline sees it: checkpoint, config, tokenizer, plan, providers.
struct model_context {
  std::string dir;
  qwen35_config cfg;
  safetensors_checkpoint ckpt;
  tokenizer tok;
  std::vector<tensor_plan> plan;        ///< the GGUF tensors to write, in order
  std::unique_ptr<safetensors_weight_provider> base;
  std::optional<residual_rotation> rotation;
  std::unique_ptr<rotated_provider> rotated;
  weight_provider* provider = nullptr;  ///< what the layers are read through
  std::int64_t n_mtp = 0;
  bool untied = false;                  ///< tied embeddings given their own head (rotation)
  int n_threads = 0;
};

inline result<std::unique_ptr<model_context>> open_context(const std::string& dir, const pipeline_options& opt,
                                                           std::vector<std::string>& notes) {
  auto m = std::make_unique<model_context>();
  m->dir = dir;
  m->n_threads = opt.n_threads;
  SBGQ_TRY(m->cfg, load_qwen35_config(dir));
  SBGQ_TRY(m->ckpt, safetensors_checkpoint::open(dir));
  SBGQ_TRY(m->tok, tokenizer::load(dir + "/tokenizer.json", static_cast<std::size_t>(m->cfg.vocab_size)));
  const bool has_lm_head = m->ckpt.contains("lm_head.weight");
  tensor_plan_options po;
  po.hf_prefix = m->ckpt.contains("model.language_model.embed_tokens.weight") ? "model.language_model." : "model.";
  po.tied = (m->cfg.tie_word_embeddings || !has_lm_head);
  const bool has_mtp = m->cfg.mtp_num_hidden_layers > 0 && m->ckpt.contains("mtp.fc.weight");
  po.include_mtp = has_mtp && opt.keep_mtp && opt.rotate == rotation_mode::none;
  if (has_mtp && opt.keep_mtp && !po.include_mtp)
    notes.push_back("MTP layers dropped: the residual-stream rotation cannot keep them exact (qwen35-model.md 4.d)");
  m->n_mtp = po.include_mtp ? m->cfg.mtp_num_hidden_layers : 0;
  m->base = std::make_unique<safetensors_weight_provider>(m->ckpt, m->cfg);
  m->provider = m->base.get();
  if (opt.rotate == rotation_mode::hadamard) {
    SBGQ_TRY(residual_rotation q, residual_rotation::hadamard(static_cast<std::size_t>(m->cfg.hidden_size), opt.seed));
    m->rotation = std::move(q);
    m->rotated = std::make_unique<rotated_provider>(*m->base, m->cfg, *m->rotation, opt.n_threads);
    m->provider = m->rotated.get();
    if (po.tied) {
      m->untied = true;
      notes.push_back("tied embeddings: the rotated model gets its own output head (output.weight)");
    }
  }
  m->plan = qwen35_tensor_plan(m->cfg, po);
  SBGQ_TRY(std::size_t n_left_out, check_unused_hf_tensors(m->ckpt, m->plan, m->cfg, po));
  (void)n_left_out;
  if (m->untied) {  // the head follows output_norm, as in an untied checkpoint's plan
    tensor_plan head = m->plan.front();
    head.gguf_name = "output.weight";
    head.hf_name = m->plan.front().hf_name;
    m->plan.insert(m->plan.begin() + 2, std::move(head));
  }
  return m;
}

/// Rows [r0, r1) of a global matrix (token_embd or output) as the written model has them:
/// from the checkpoint, rotated (E Q; head W diag(g) Q) when rotating.
inline result<void> global_rows(model_context& m, const tensor_plan& e, std::size_t r0, std::size_t r1,
                                const vector_f32& output_norm, std::vector<float>& out) {
  const auto cols = static_cast<std::size_t>(e.ne[0]);
  out.resize((r1 - r0) * cols);
  const tensor_plan* src = &e;
  tensor_plan tmp;
  if (m.untied && e.gguf_name == "output.weight") {
    tmp = m.plan.front();  // token_embd's source
    src = &tmp;
  }
  SBGQ_TRY(tensor_view v, find_hf_tensor(m.ckpt, *src));
  SBGQ_TRY_VOID(to_f32(v, r0, r1, out));
  const std::size_t row_bytes = v.bytes.size() / static_cast<std::size_t>(e.rows());
  release_mapped_pages(v.bytes.subspan(r0 * row_bytes, (r1 - r0) * row_bytes));
  if (m.rotation) {
    Eigen::Map<matrix_f32> block(out.data(), static_cast<Eigen::Index>(r1 - r0), static_cast<Eigen::Index>(cols));
    matrix_f32 x = block;
    const bool head = e.gguf_name == "output.weight";
    SBGQ_TRY_VOID(m.rotation->rotate_readers(x, head ? &output_norm : nullptr, m.n_threads, e.gguf_name));
    block = x;
  }
  return {};
}

/// gguf_tensor_info of every plan entry (source type F32), for the type rules.
inline std::vector<gguf_tensor_info> plan_infos(const std::vector<tensor_plan>& plan) {
  std::vector<gguf_tensor_info> infos;
  for (const auto& e : plan) {
    gguf_tensor_info t;
    t.name = e.gguf_name;
    t.type = ggml_type::f32;
    t.n_dims = static_cast<std::uint32_t>(e.ne.size());
    for (std::size_t k = 0; k < e.ne.size(); ++k) t.ne[k] = e.ne[k];
    infos.push_back(std::move(t));
  }
  return infos;
}

inline model_facts facts_of(const model_context& m) {
  model_facts f;
  f.arch = "qwen35";
  f.n_layer = m.cfg.num_hidden_layers + m.n_mtp;
  f.n_head = m.cfg.num_attention_heads;
  f.n_head_kv = m.cfg.num_key_value_heads;
  return f;
}

/// Reports progress and accumulates stage times.
class stage_clock {
 public:
  stage_clock(const pipeline_options& o, pipeline_report& r) : opt_(o), rep_(r), t0_(now()), last_(t0_) {}
  void event(const std::string& stage, int layer, int n_layers, const std::string& tensor, double fraction) {
    const double t = now();
    rep_.stage_seconds[current_] += t - last_;
    last_ = t;
    current_ = stage;
    if (opt_.progress) {
      pipeline_event e;
      e.stage = stage;
      e.layer = layer;
      e.n_layers = n_layers;
      e.tensor = tensor;
      e.seconds = t - t0_;
      e.fraction = std::clamp(fraction, 0.0, 1.0);
      opt_.progress(e);
    }
  }
  double elapsed() const { return now() - t0_; }
  void stop() { event("done", -1, 0, "", 1.0); }

 private:
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  const pipeline_options& opt_;
  pipeline_report& rep_;
  double t0_, last_;
  std::string current_ = "read";
};

/// Importance weights of a tensor from the statistics (empty if none).
inline std::vector<float> weights_of(const imatrix* im, const std::string& name) {
  if (!im) return {};
  if (im->entries.find(name) == im->entries.end()) return {};
  return im->weights(name);
}

}  // namespace detail::pipe

namespace detail::pipe {

/// The per-tensor work of one run: types, statistics, quantization and the report.
class tensor_writer {
 public:
  tensor_writer(const pipeline_options& o, pipeline_report& r, gguf_writer& w) : opt_(o), rep_(r), w_(w) {}

  /// Writes plan entry `index` (values: rows x cols f32, row-major) at type t.
  /// im: importance weights (or empty); h: X^T X of its input for gptq (or null).
  result<void> write(std::size_t index, const std::string& name, ggml_type t, const float* values, std::size_t rows,
                     std::size_t cols, std::span<const float> im, const Eigen::MatrixXd* h) {
    pipeline_tensor pt;
    pt.name = name;
    pt.type = t;
    pt.n_elements = static_cast<std::uint64_t>(rows) * cols;
    pt.used_imatrix = !im.empty();
    if (t == ggml_type::f32) {
      // Kept as it is (norms, ssm_a, ...): a NaN here would silently poison every output.
      for (std::size_t r = 0; r < rows; ++r)
        SBGQ_TRY_VOID(in_context(detail::codec::check_finite("f32", std::span<const float>(values + r * cols, cols), r, "the weights"),
                                 "tensor '" + name + "'"));
      SBGQ_TRY_VOID(w_.write_tensor_data(index, std::as_bytes(std::span<const float>(values, rows * cols))));
      pt.bytes = pt.n_elements * 4;
    } else {
      const codec_traits* ct = find_codec(t);
      if (!ct || !ct->quantize_row) return fail(error_code::unsupported, "tensor '" + name + "': no codec for " + std::string(type_name(t)));
      buf_.resize(rows * ct->row_bytes(cols));
      SBGQ_TRY_VOID(in_context(quantize_rows(t, values, rows, cols, im.empty() ? nullptr : im.data(), buf_, opt_.n_threads),
                               "tensor '" + name + "'"));
      if (is_quantized(t)) {
        const auto [err, nrm] = weighted_error(t, values, rows, cols, buf_, im);
        pt.rel_error = pt.rel_error_plain = nrm > 0 ? err / nrm : 0.0;
      }
      if (h && opt_.rounding == rounding_mode::gptq && gptq_supported(t)) {
        gptq_options go = opt_.gptq;
        go.n_threads = opt_.n_threads;
        auto r = gptq_quantize(t, values, rows, cols, *h, im, buf_, go);
        if (!r) {
          error e = std::move(r).error();
          e.context = "tensor '" + name + "' (gptq): " + e.context;
          return e;
        }
        const auto [err, nrm] = weighted_error(t, values, rows, cols, buf_, im);
        pt.rel_error = nrm > 0 ? err / nrm : 0.0;
        pt.objective_plain = r->objective_plain;
        pt.objective = r->objective;
      }
      SBGQ_TRY_VOID(w_.write_tensor_data(index, std::span<const std::byte>(buf_)));
      pt.bytes = buf_.size();
    }
    rep_.n_elements += pt.n_elements;
    rep_.bytes += pt.bytes;
    rep_.tensors.push_back(std::move(pt));
    return {};
  }

  /// A global matrix written in blocks of rows (never whole: a 9B head is 4 GB in f32).
  result<void> write_rows_streamed(model_context& m, std::size_t index, const tensor_plan& e, ggml_type t,
                                   const vector_f32& output_norm) {
    const auto rows = static_cast<std::size_t>(e.rows()), cols = static_cast<std::size_t>(e.ne[0]);
    const codec_traits* ct = find_codec(t);
    if (!ct || !ct->quantize_row) return fail(error_code::unsupported, "tensor '" + e.gguf_name + "': no codec for " + std::string(type_name(t)));
    pipeline_tensor pt;
    pt.name = e.gguf_name;
    pt.type = t;
    pt.n_elements = static_cast<std::uint64_t>(rows) * cols;
    const std::size_t block = std::max<std::size_t>(1, (std::size_t{1} << 22) / cols);
    std::vector<float> vals;
    double err = 0, nrm = 0;
    for (std::size_t r0 = 0; r0 < rows; r0 += block) {
      const std::size_t r1 = std::min(rows, r0 + block);
      SBGQ_TRY_VOID(global_rows(m, e, r0, r1, output_norm, vals));
      buf_.resize((r1 - r0) * ct->row_bytes(cols));
      SBGQ_TRY_VOID(in_context(quantize_rows(t, vals.data(), r1 - r0, cols, nullptr, buf_, opt_.n_threads),
                               "tensor '" + e.gguf_name + "', rows from " + std::to_string(r0)));
      if (is_quantized(t)) {
        const auto [e2, n2] = weighted_error(t, vals.data(), r1 - r0, cols, buf_, {});
        err += e2;
        nrm += n2;
      }
      SBGQ_TRY_VOID(w_.write_tensor_chunk(index, std::span<const std::byte>(buf_)));
      pt.bytes += buf_.size();
    }
    if (is_quantized(t)) pt.rel_error = pt.rel_error_plain = nrm > 0 ? err / nrm : 0.0;
    rep_.n_elements += pt.n_elements;
    rep_.bytes += pt.bytes;
    rep_.tensors.push_back(std::move(pt));
    return {};
  }

 private:
  const pipeline_options& opt_;
  pipeline_report& rep_;
  gguf_writer& w_;
  std::vector<std::byte> buf_;
};

/// Scales X^T X by the gauge's input factors: H' = F H F.
inline void scale_xtx(std::map<std::string, Eigen::MatrixXd>& xtx, const gauge_result& g) {
  for (auto& [space, h] : xtx) {
    const auto it = g.input_scales.find(space);
    if (it == g.input_scales.end()) continue;
    const Eigen::Map<const Eigen::VectorXf> f(it->second.data(), static_cast<Eigen::Index>(it->second.size()));
    const Eigen::VectorXd fd = f.cast<double>();
    h = fd.asDiagonal() * h * fd.asDiagonal();
  }
}

/// Checks a given importance matrix against the model before any work (an entry of the
/// wrong size would be read past its end by the quantizer): every entry names a tensor of
/// the plan with ne[0] x ne[2] values, and its weights are usable (check_importance_weights).
inline result<void> check_given_importance(const imatrix& im, const std::vector<tensor_plan>& plan) {
  auto shape_of = [&](const std::string& n) -> std::pair<std::int64_t, std::int64_t> {
    for (const auto& e : plan)
      if (e.gguf_name == n) return {e.ne[0], e.ne.size() > 2 ? e.ne[2] : 1};
    return {-1, 1};
  };
  SBGQ_TRY_VOID(check_imatrix_against(im, shape_of));
  for (const auto& [name, e] : im.entries) SBGQ_TRY_VOID(check_importance_weights(name, im.weights(name)));
  return {};
}

/// The type of every plan entry under a llama-preset or rules recipe.
inline result<std::vector<ggml_type>> plan_types(const recipe& rc, const model_context& m, bool has_imatrix) {
  const auto infos = plan_infos(m.plan);
  return recipe_types(rc, facts_of(m), infos, has_imatrix);
}

}  // namespace detail::pipe

/// Measures, per quantizable tensor and candidate type, the importance-weighted error of
/// plain rounding (a first pass over the model), then chooses types for the budget.
/// Returns the type of every plan entry. Exposed for tests and for callers who want to
/// inspect the choice; run_pipeline calls it for recipe "auto".
inline result<std::vector<ggml_type>> choose_auto_types(detail::pipe::model_context& m, const recipe& rc,
                                                        double target_bpw, std::span<const std::int32_t> tokens,
                                                        const pipeline_options& opt, detail::pipe::stage_clock& clock,
                                                        std::vector<std::string>& notes) {
  namespace dp = detail::pipe;
  if (!(target_bpw > 0)) return dp::fail(error_code::invalid_argument, "recipe 'auto' needs a target bits per weight (--target-bpw)");
  const auto infos = dp::plan_infos(m.plan);
  std::vector<ggml_type> types(m.plan.size(), ggml_type::f32);
  std::vector<tensor_cost> costs;
  std::vector<std::size_t> cost_of(m.plan.size(), static_cast<std::size_t>(-1));
  double fixed_bits = 0, total_elems = 0;
  for (const auto& e : m.plan) total_elems += static_cast<double>(e.numel());

  calibration_options copt;
  copt.ctx = opt.ctx;
  copt.max_chunks = opt.chunks;
  copt.n_threads = opt.n_threads;
  SBGQ_TRY(std::unique_ptr<calibration_session> session, calibration_session::start(m.cfg, *m.provider, tokens, copt));
  const int n_layers = static_cast<int>(m.cfg.num_hidden_layers);

  auto add_candidates = [&](std::size_t i, const float* w, std::size_t rows, std::size_t cols,
                            std::span<const float> im) -> result<void> {
    tensor_cost tc;
    tc.n_elements = static_cast<std::uint64_t>(rows) * cols;
    std::vector<ggml_type> cand;
    for (ggml_type t : rc.candidates)
      if (cols % static_cast<std::size_t>(block_size(t)) == 0) cand.push_back(t);
    std::sort(cand.begin(), cand.end(), [](ggml_type a, ggml_type b) {
      return type_size(a) * 1.0 / block_size(a) < type_size(b) * 1.0 / block_size(b);
    });
    if (cand.empty()) {
      SBGQ_TRY(types[i], detail::qp::shape_fallback(infos[i], ggml_type::q8_0));
      fixed_bits += static_cast<double>(row_size(types[i], cols)) * 8.0 * static_cast<double>(rows);
      return {};
    }
    for (ggml_type t : cand) {
      SBGQ_TRY(double err, dp::estimate_error(t, w, rows, cols, im, opt.n_threads));
      tc.types.push_back(t);
      tc.error.push_back(err);
    }
    cost_of[i] = costs.size();
    costs.push_back(std::move(tc));
    return {};
  };

  for (int l = 0; l < n_layers; ++l) {
    clock.event("measure", l, n_layers, "", 0.3 * l / n_layers);
    SBGQ_TRY(layer_weights w, m.provider->load_layer(l));
    SBGQ_TRY_VOID(session->run_layer(l, w));
    for (std::size_t i = 0; i < m.plan.size(); ++i) {
      const tensor_plan& e = m.plan[i];
      if (e.layer != l || e.is_mtp) continue;
      if (!is_quantizable_tensor(infos[i])) continue;
      const auto ref = layer_tensor(w, e.gguf_name);
      if (!ref) return dp::fail(error_code::internal, "no layer field for " + e.gguf_name);
      const auto im = dp::weights_of(&session->stats(), e.gguf_name);
      SBGQ_TRY_VOID(add_candidates(i, ref->data, ref->rows, ref->cols, im));
    }
    session->clear_xtx();
  }
  // Globals and MTP: the head weighed by the final-norm statistics, from a sample of
  // rows; token_embd and MTP at fixed types.
  SBGQ_TRY(global_weights gnorm, [&]() -> result<global_weights> {
    global_weights g;
    SBGQ_TRY(detail::named_values v, m.base->values("output_norm.weight"));
    g.output_norm = Eigen::Map<const vector_f32>(v.values.data(), static_cast<Eigen::Index>(v.values.size()));
    return g;
  }());
  vector_f32 head_gain = gnorm.output_norm;
  if (m.rotation) head_gain.setOnes();
  const std::vector<float> head_im = dp::head_statistics(m.cfg, session->hidden().hidden, head_gain);
  for (std::size_t i = 0; i < m.plan.size(); ++i) {
    const tensor_plan& e = m.plan[i];
    if (e.layer >= 0 && !e.is_mtp) continue;
    if (!is_quantizable_tensor(infos[i])) continue;
    const auto cols = static_cast<std::size_t>(e.ne[0]);
    if (e.gguf_name == "output.weight") {
      const auto rows = static_cast<std::size_t>(e.rows());
      const auto pick = dp::sample_rows(rows, 512);
      std::vector<float> sample(pick.size() * cols), one;
      for (std::size_t k = 0; k < pick.size(); ++k) {
        SBGQ_TRY_VOID(dp::global_rows(m, e, pick[k], pick[k] + 1, gnorm.output_norm, one));
        std::copy(one.begin(), one.end(), sample.begin() + static_cast<std::ptrdiff_t>(k * cols));
      }
      const std::size_t before = costs.size();
      SBGQ_TRY_VOID(add_candidates(i, sample.data(), pick.size(), cols, head_im));
      if (costs.size() > before) {  // scale the sample's error and size to the whole head
        costs.back().n_elements = static_cast<std::uint64_t>(rows) * cols;
        for (double& x : costs.back().error) x *= static_cast<double>(rows) / static_cast<double>(pick.size());
      }
      continue;
    }
    const ggml_type fixed = e.gguf_name == "token_embd.weight" ? rc.auto_token_embd : ggml_type::q8_0;
    SBGQ_TRY(types[i], detail::qp::shape_fallback(infos[i], fixed));
    fixed_bits += static_cast<double>(row_size(types[i], cols)) * 8.0 * static_cast<double>(e.rows());
  }
  for (std::size_t i = 0; i < m.plan.size(); ++i)
    if (!is_quantizable_tensor(infos[i])) fixed_bits += 32.0 * static_cast<double>(m.plan[i].numel());
  const double budget = target_bpw * total_elems - fixed_bits;
  const auto pick = allocate_bits(costs, budget);
  double used = fixed_bits;
  for (std::size_t i = 0; i < m.plan.size(); ++i)
    if (cost_of[i] != static_cast<std::size_t>(-1)) {
      const auto& tc = costs[cost_of[i]];
      types[i] = tc.types[pick[cost_of[i]]];
      used += static_cast<double>(row_size(types[i], static_cast<std::uint64_t>(m.plan[i].ne[0]))) * 8.0 *
              static_cast<double>(m.plan[i].rows());
    }
  char buf[200];
  std::snprintf(buf, sizeof buf, "auto: target %.3f bits per weight, chose %.3f (%zu tensors measured)", target_bpw,
                used / total_elems, costs.size());
  notes.push_back(buf);
  if (used > target_bpw * total_elems * 1.0001) notes.push_back("auto: even the cheapest types exceed the target");
  return types;
}

/// Runs the whole pipeline (see the file comment): reads the HF checkpoint in
/// `model_dir`, writes the GGUF at `out_path` atomically. Errors: those of every stage,
/// each naming the stage and tensor; invalid_argument for inconsistent options (no
/// calibration text and no importance matrix for gauge/gptq/auto, a rotation with a
/// given importance matrix; out_path a file of model_dir or not a regular file, checked
/// before any work, as are the output's directory and name). No output file exists after an error.
inline result<pipeline_report> run_pipeline(const std::string& model_dir, const std::string& out_path,
                                            const pipeline_options& opt) {
  namespace dp = detail::pipe;
  pipeline_report rep;
  dp::stage_clock clock(opt, rep);
  clock.event("read", -1, 0, "", 0.0);
  SBGQ_TRY(recipe rc, load_recipe(opt.recipe));
  rep.recipe = rc.name;
  const bool have_text = !opt.calibration_text.empty();
  if (!have_text && (opt.gauge || opt.rounding == rounding_mode::gptq || rc.kind == recipe_kind::automatic))
    return dp::fail(error_code::invalid_argument,
                    std::string(opt.gauge ? "the gauge" : opt.rounding == rounding_mode::gptq ? "gptq rounding" : "the auto recipe") +
                        " needs calibration text (X^T X and per-layer statistics come from our forward pass; an "
                        "importance matrix holds only their diagonal): give calibration text, or plain rounding with "
                        "a llama-preset or rules recipe");
  if (opt.importance && opt.rotate != rotation_mode::none)
    return dp::fail(error_code::invalid_argument,
                    "a given importance matrix does not describe the rotated model: pass calibration text instead");
  // The output is checked and its temporary file made before the work: a bad path fails now.
  SBGQ_TRY_VOID(check_output_not_input(out_path, {model_dir}, "pipeline"));
  SBGQ_TRY(gguf_writer w, gguf_writer::create(out_path));
  SBGQ_TRY(std::unique_ptr<dp::model_context> mp, dp::open_context(model_dir, opt, rep.notes));
  dp::model_context& m = *mp;
  const int n_layers = static_cast<int>(m.cfg.num_hidden_layers);
  if (opt.importance) SBGQ_TRY_VOID(dp::check_given_importance(*opt.importance, m.plan));

  std::vector<std::int32_t> tokens;
  if (have_text) {
    SBGQ_TRY(tokens, m.tok.encode(opt.calibration_text));
    if (static_cast<std::int64_t>(tokens.size()) < opt.ctx)
      return dp::fail(error_code::invalid_argument, "the calibration text has " + std::to_string(tokens.size()) +
                                                        " tokens, fewer than one chunk of " + std::to_string(opt.ctx));
  }

  // -- types
  std::vector<ggml_type> types;
  const bool has_imatrix = have_text || (opt.importance && !opt.importance->entries.empty());
  if (rc.kind == recipe_kind::automatic) {
    SBGQ_TRY(types, choose_auto_types(m, rc, opt.target_bpw, tokens, opt, clock, rep.notes));
  } else {
    SBGQ_TRY(types, dp::plan_types(rc, m, has_imatrix));
  }

  // -- header
  std::uint64_t n_params = 0;
  for (const auto& e : m.plan)
    if (!e.is_mtp) n_params += static_cast<std::uint64_t>(e.numel());
  std::string name = opt.name;
  if (name.empty()) name = std::filesystem::path(model_dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(model_dir).lexically_normal().parent_path().filename().string();
  qwen35_config cfg_out = m.cfg;
  if (m.untied) cfg_out.tie_word_embeddings = false;
  SBGQ_TRY_VOID(add_qwen35_metadata(w, cfg_out, m.tok, model_dir, name, n_params, static_cast<std::uint32_t>(rc.ftype), m.n_mtp));
  SBGQ_TRY_VOID(w.add("sbgq.recipe", rc.name));
  SBGQ_TRY_VOID(w.add("sbgq.rotation", std::string(opt.rotate == rotation_mode::hadamard ? "hadamard" : "none")));
  if (opt.rotate == rotation_mode::hadamard) SBGQ_TRY_VOID(w.add("sbgq.rotation.seed", gguf_value(opt.seed)));
  SBGQ_TRY_VOID(w.add("sbgq.gauge", std::string(opt.gauge ? "exact" : "none")));
  SBGQ_TRY_VOID(w.add("sbgq.rounding", std::string(opt.rounding == rounding_mode::gptq ? "gptq" : "plain")));
  if (have_text) {
    SBGQ_TRY_VOID(w.add("quantize.imatrix.dataset", opt.calibration_name));
    const std::int64_t n_chunks = std::min<std::int64_t>(static_cast<std::int64_t>(tokens.size()) / opt.ctx,
                                                         opt.chunks > 0 ? opt.chunks : (std::int64_t{1} << 40));
    SBGQ_TRY_VOID(w.add("quantize.imatrix.chunks_count", gguf_value(static_cast<std::int32_t>(n_chunks))));
  }
  for (std::size_t i = 0; i < m.plan.size(); ++i) {
    SBGQ_TRY(std::size_t index, w.add_tensor(m.plan[i].gguf_name, types[i], m.plan[i].ne));
    (void)index;
  }
  dp::tensor_writer tw(opt, rep, w);

  // -- globals (converter order: token_embd, output_norm, output)
  SBGQ_TRY(detail::named_values onorm, m.base->values("output_norm.weight"));
  const vector_f32 output_norm = Eigen::Map<const vector_f32>(onorm.values.data(), static_cast<Eigen::Index>(onorm.values.size()));
  std::size_t i = 0;
  for (; i < m.plan.size() && m.plan[i].layer < 0; ++i) {
    const tensor_plan& e = m.plan[i];
    clock.event("quantize", -1, n_layers, e.gguf_name, 0.3);
    if (e.gguf_name == "output_norm.weight") {
      vector_f32 g = output_norm;
      if (m.rotation) g.setOnes();
      SBGQ_TRY_VOID(tw.write(i, e.gguf_name, ggml_type::f32, g.data(), 1, static_cast<std::size_t>(g.size()), {}, nullptr));
    } else {
      SBGQ_TRY_VOID(tw.write_rows_streamed(m, i, e, types[i], output_norm));
    }
  }

  // -- layers: calibrate, gauge, quantize, write
  std::unique_ptr<calibration_session> session;
  calibration_options copt;
  copt.ctx = opt.ctx;
  copt.max_chunks = opt.chunks;
  copt.n_threads = opt.n_threads;
  copt.collect_xtx = opt.rounding == rounding_mode::gptq;
  copt.dataset = opt.calibration_name;
  if (have_text) {
    clock.event("calibrate", 0, n_layers, "", 0.3);
    SBGQ_TRY(session, calibration_session::start(m.cfg, *m.provider, tokens, copt));
    rep.calibration_tokens = session->n_tokens();
  }
  auto type_of = [&](const std::string& n) {
    for (std::size_t k = 0; k < m.plan.size(); ++k)
      if (m.plan[k].gguf_name == n) return types[k];
    return ggml_type::f32;
  };
  for (int l = 0; l < n_layers; ++l) {
    const double frac = 0.3 + 0.7 * l / std::max(1, n_layers);
    clock.event("read", l, n_layers, "", frac);
    SBGQ_TRY(layer_weights lw, m.provider->load_layer(l));
    const imatrix* stats = opt.importance;
    if (session) {
      clock.event("calibrate", l, n_layers, "", frac);
      SBGQ_TRY_VOID(session->run_layer(l, lw));
      stats = &session->stats();
      if (opt.gauge) {
        clock.event("gauge", l, n_layers, "", frac);
        gauge_options go = opt.gauge_settings;
        go.n_threads = opt.n_threads;
        SBGQ_TRY(gauge_result g, solve_gauge(m.cfg, l, lw, session->stats(), type_of, go));
        scale_imatrix_inputs(session->stats(), g);
        dp::scale_xtx(session->xtx(), g);
        for (auto& note : g.notes) rep.notes.push_back("layer " + std::to_string(l) + ": " + note);
      }
    }
    for (; i < m.plan.size() && m.plan[i].layer == l && !m.plan[i].is_mtp; ++i) {
      const tensor_plan& e = m.plan[i];
      clock.event("quantize", l, n_layers, e.gguf_name, frac);
      const auto ref = layer_tensor(lw, e.gguf_name);
      if (!ref) return dp::fail(error_code::internal, "no layer field for " + e.gguf_name);
      const auto im = types[i] == ggml_type::f32 ? std::vector<float>{} : dp::weights_of(stats, e.gguf_name);
      const Eigen::MatrixXd* h = nullptr;
      if (session && copt.collect_xtx) {
        const auto it = session->xtx().find(input_space_of(e.gguf_name));
        if (it != session->xtx().end()) h = &it->second;
      }
      SBGQ_TRY_VOID(tw.write(i, e.gguf_name, types[i], ref->data, ref->rows, ref->cols, im, h));
    }
    if (session) session->clear_xtx();
  }
  // -- MTP (unrotated only): straight from the checkpoint, plain rounding, no statistics
  for (; i < m.plan.size(); ++i) {
    const tensor_plan& e = m.plan[i];
    clock.event("quantize", n_layers, n_layers, e.gguf_name, 0.99);
    SBGQ_TRY(std::vector<float> v, load_gguf_values(m.ckpt, e, m.cfg));
    if (auto src = find_hf_tensor(m.ckpt, e)) release_mapped_pages(src->bytes);
    SBGQ_TRY_VOID(tw.write(i, e.gguf_name, types[i], v.data(), static_cast<std::size_t>(e.rows()),
                           static_cast<std::size_t>(e.ne[0]), {}, nullptr));
  }
  clock.event("write", -1, n_layers, "", 0.99);
  SBGQ_TRY_VOID(w.finish());
  std::error_code ec;
  rep.file_size = std::filesystem::file_size(out_path, ec);
  clock.stop();
  rep.seconds = clock.elapsed();
  rep.peak_rss = peak_rss_bytes();
  return rep;
}

/// The report as JSON (for --report): totals, stage times, notes and every tensor.
inline std::string pipeline_report_json(const pipeline_report& r) {
  std::string o = "{\n";
  auto num = [](double x) {
    if (!std::isfinite(x)) return std::string("null");
    char b[64];
    std::snprintf(b, sizeof b, "%.9g", x);
    return std::string(b);
  };
  auto str = [](const std::string& s) {
    std::string q = "\"";
    for (char ch : s) {
      if (ch == '"' || ch == '\\') q += '\\';
      if (static_cast<unsigned char>(ch) < 0x20) {
        char b[8];
        std::snprintf(b, sizeof b, "\\u%04x", ch);
        q += b;
        continue;
      }
      q += ch;
    }
    return q + "\"";
  };
  o += "  \"recipe\": " + str(r.recipe) + ",\n";
  o += "  \"n_elements\": " + std::to_string(r.n_elements) + ",\n";
  o += "  \"tensor_bytes\": " + std::to_string(r.bytes) + ",\n";
  o += "  \"file_size\": " + std::to_string(r.file_size) + ",\n";
  o += "  \"bits_per_weight\": " + num(r.bits_per_weight()) + ",\n";
  o += "  \"calibration_tokens\": " + std::to_string(r.calibration_tokens) + ",\n";
  o += "  \"seconds\": " + num(r.seconds) + ",\n";
  o += "  \"peak_rss_bytes\": " + std::to_string(r.peak_rss) + ",\n";
  o += "  \"stage_seconds\": {";
  bool first = true;
  for (const auto& [k, v] : r.stage_seconds) {
    o += (first ? "" : ", ") + str(k) + ": " + num(v);
    first = false;
  }
  o += "},\n  \"notes\": [";
  for (std::size_t k = 0; k < r.notes.size(); ++k) o += (k ? ", " : "") + str(r.notes[k]);
  o += "],\n  \"tensors\": [\n";
  for (std::size_t k = 0; k < r.tensors.size(); ++k) {
    const auto& t = r.tensors[k];
    o += "    {\"name\": " + str(t.name) + ", \"type\": " + str(std::string(type_name(t.type))) +
         ", \"n_elements\": " + std::to_string(t.n_elements) + ", \"bytes\": " + std::to_string(t.bytes) +
         ", \"imatrix\": " + (t.used_imatrix ? "true" : "false") +
         ", \"rel_error_plain\": " + num(t.rel_error_plain) + ", \"rel_error\": " + num(t.rel_error) +
         ", \"objective_plain\": " + num(t.objective_plain) + ", \"objective\": " + num(t.objective) + "}" +
         (k + 1 < r.tensors.size() ? ",\n" : "\n");
  }
  o += "  ]\n}\n";
  return o;
}


SBGQ_END_NAMESPACE
