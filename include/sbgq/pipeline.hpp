// The whole job: an HF Qwen3.5 checkpoint in, a quantized GGUF out, one layer at a time.
//
//   sbgq::pipeline_options o;
//   o.recipe = "llama-q4_k_m";               // or "seed-iq4_xs", "auto" + target_bpw, a JSON file
//   o.calibration_text = text;               // importance statistics come from our forward pass
//   o.rotate = sbgq::rotation_mode::hadamard; // optional exact transforms
//   auto report = sbgq::run_pipeline("Qwen3.5-9B", "out.gguf", o);
//
// Stages, each also usable alone through its own header:
//   read        engine/source.hpp     checkpoint_source: the checkpoint as the converter writes it
//   rotate      engine/source.hpp     rotated_source: residual-stream Hadamard, norms folded (a decorator)
//   calibrate   engine/calibration.hpp  calibration_session: imatrix and X^T X, layer by layer
//   gauge       engine/gauged_provider.hpp  gauge_layer: exact per-channel scalings, solved per layer
//   choose      quant/recipe.hpp, engine/measure.hpp  llama.cpp's mixtures, rules, auto budget
//   quantize    engine/sink.hpp       plain importance-weighted or GPTQ rounding
//   write       engine/sink.hpp, model/hf_checkpoint.hpp  GGUF with the converter's metadata
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
// "auto" runs a first pass that measures, per tensor and candidate type, what it costs
// (by default the KL-divergence the tensor alone causes, engine/sensitivity.hpp; or the
// importance-weighted squared error of plain rounding), then picks the types (recipe.hpp,
// allocate_bits) under a budget in bits per weight or in bytes for the whole file (the
// header and padding counted); the second pass is the normal streamed run. The report
// lists what was measured and the mix as a reusable rules recipe.
//
// With gptq the LM head is rounded under the X^T X of its input, the final-normed hidden
// states, and token_embd under column weights from every reader of the residual stream
// (engine/embedding_weights.hpp). Both exist only after the last layer, so these two are
// written after the layers, not where the converter puts them (GGUF readers find tensors
// by name). Plain rounding keeps the converter's order and llama-quantize's bytes.
//
// Non-goals: MTP under rotation (it cannot stay exact; dropped with a notice).
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/base.hpp"
#include "core/error.hpp"
#include "core/json.hpp"
#include "core/mapped_file.hpp"
#include "core/output_file.hpp"
#include "core/progress.hpp"
#include "engine/calibration.hpp"
#include "engine/embedding_weights.hpp"
#include "engine/gauged_provider.hpp"
#include "engine/measure.hpp"
#include "engine/sink.hpp"
#include "engine/source.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "model/hf_checkpoint.hpp"
#include "quant/gptq.hpp"
#include "quant/quant_policy.hpp"
#include "quant/recipe.hpp"
#include "transform/gauge.hpp"

SBGQ_BEGIN_NAMESPACE

enum class rotation_mode : std::uint8_t { none, hadamard };

/// What the "auto" recipe allocates bits by.
enum class auto_measure : std::uint8_t {
  automatic,     ///< output_kld when the model's f32 weights fit sensitivity_options::max_model_bytes, else weight_error
  weight_error,  ///< importance-weighted weight error of plain rounding (engine/measure.hpp)
  output_kld,    ///< measured KL-divergence of each tensor alone (engine/sensitivity.hpp)
};

/// Everything the pipeline can be told, in one place.
struct pipeline_options {
  std::string recipe = "llama-q4_k_m";  ///< built-in name or JSON file (recipe.hpp)
  double target_bpw = 0;                ///< "auto": bits per weight of all tensor data
  /// "auto", instead of target_bpw: the whole file in at most this many bytes (the number
  /// users think in: "fits in 8 GB"). The header and each tensor's alignment padding are
  /// counted before the tensor data gets the rest.
  std::uint64_t target_size = 0;
  /// "auto": what it allocates by. Measured KL-divergence gave llama.cpp's Q5_K_M quality at
  /// its Q4_K_M size on the tiny model (bench/RESULTS.md); it keeps the f32 model in memory.
  auto_measure measure = auto_measure::automatic;
  sensitivity_options sensitivity;      ///< with measure = output_kld: the token sample
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
  /// With gptq rounding (plain reproduces llama-quantize, which has none) and an untied
  /// head: token_embd's columns weighted by how much the readers of the residual stream
  /// amplify them (engine/embedding_weights.hpp), token_embd written after the layers,
  /// where those are known. Off by default: on the tiny model it moved mean KLD by less
  /// than one standard error (bench/RESULTS.md).
  bool weigh_embedding = false;
  /// Calibration through the quantized model: each layer's statistics (importance, X^T X)
  /// from the hidden states that the embedding and the layers before it produce as they
  /// were written (their dequantized values), as GPTQ runs layer after layer; plain:
  /// every layer's statistics from the f32 model. Costs a second forward pass of each
  /// layer and keeps the layer's values until it is done (bench/RESULTS.md).
  bool quantized_inputs = false;
  bool keep_mtp = true;                 ///< keep MTP tensors (as llama.cpp's converter); never with rotation
  std::string name;                     ///< general.name; default: the directory name
  int n_threads = 0;                    ///< <= 0: all hardware threads
  /// Stages read, measure, calibrate, gauge, quantize (per tensor), write; notes; done.
  progress_fn progress;
};

/// What happened to one tensor.
using pipeline_tensor = tensor_record;

/// What the pipeline did (also written as JSON by pipeline_report_json).
struct pipeline_report {
  std::string recipe;
  std::vector<pipeline_tensor> tensors;  ///< in file order
  std::uint64_t n_elements = 0, bytes = 0, file_size = 0;
  std::int64_t calibration_tokens = 0;
  std::map<std::string, double> stage_seconds;  ///< read, measure, calibrate, gauge, quantize, write
  double seconds = 0;
  std::uint64_t peak_rss = 0;           ///< bytes, if the platform reports it
  std::vector<std::string> notes;       ///< about the whole run
  std::vector<std::string> layer_notes; ///< the gauge solver's, "layer L: ..."
  /// The types written, as a rules recipe (JSON, quant/recipe.hpp) that reproduces them:
  /// `--recipe` takes it back, and users can edit it.
  std::string mix_recipe;
  /// "auto": what it measured per tensor (candidates, cost of each, the type chosen), and the
  /// unit: "kld" (mean KL-divergence of the tensor alone) or "weights" (importance-weighted
  /// squared error of plain rounding).
  std::vector<tensor_measurement> measured;
  std::string measure_unit;
  /// The importance statistics the run calibrated with (empty without calibration text;
  /// not in the JSON report).
  imatrix statistics;
  double bits_per_weight() const noexcept {
    return n_elements ? static_cast<double>(bytes) * 8.0 / static_cast<double>(n_elements) : 0.0;
  }
};

namespace detail::pipe {

inline error fail(error_code c, std::string ctx) { return error(c, "pipeline", std::move(ctx)); }

/// Options that cannot work together, before any work.
inline result<void> check_options(const pipeline_options& opt, const recipe& rc) {
  if (opt.calibration_text.empty() && (opt.gauge || opt.rounding == rounding_mode::gptq || rc.kind == recipe_kind::automatic))
    return fail(error_code::invalid_argument,
                std::string(opt.gauge ? "the gauge" : opt.rounding == rounding_mode::gptq ? "gptq rounding" : "the auto recipe") +
                    " needs calibration text (X^T X and per-layer statistics come from our forward pass; an "
                    "importance matrix holds only their diagonal): give calibration text, or plain rounding with "
                    "a llama-preset or rules recipe");
  if (rc.kind == recipe_kind::automatic && (opt.target_bpw > 0) == (opt.target_size > 0))
    return fail(error_code::invalid_argument,
                std::string("recipe 'auto' needs ") + (opt.target_bpw > 0 ? "either" : "a budget:") +
                    " a target bits per weight (--target-bpw) or a target file size (--target-size)" +
                    (opt.target_bpw > 0 ? ", not both" : ""));
  if (opt.quantized_inputs && opt.calibration_text.empty())
    return fail(error_code::invalid_argument,
                "calibration through the quantized model (quantized inputs) needs calibration text");
  if (opt.quantized_inputs && opt.weigh_embedding)
    return fail(error_code::invalid_argument,
                "quantized inputs and embedding weights cannot be combined: the first layer's inputs are "
                "token_embd as written, and embedding weights write it after the layers");
  if (opt.importance && opt.rotate != rotation_mode::none)
    return fail(error_code::invalid_argument,
                "a given importance matrix does not describe the rotated model: pass calibration text instead");
  return {};
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

/// llama.cpp's view of the model for its type rules.
inline model_facts facts_of(const qwen35_config& c, std::int64_t n_mtp) {
  model_facts f;
  f.arch = "qwen35";
  f.n_layer = c.num_hidden_layers + n_mtp;
  f.n_head = c.num_attention_heads;
  f.n_head_kv = c.num_key_value_heads;
  return f;
}

/// The type of every plan entry under a llama-preset or rules recipe.
inline result<std::vector<ggml_type>> plan_types(const recipe& rc, const std::vector<tensor_plan>& plan,
                                                 const model_facts& facts, bool has_imatrix) {
  std::vector<tensor_desc> descs;
  for (const auto& e : plan) descs.push_back(e.desc());
  return recipe_types(rc, facts, descs, has_imatrix);
}

/// The file's metadata: the converter's keys (untied when the source has its own head),
/// then sbgq's record of the transforms and llama-quantize's imatrix provenance keys.
inline result<void> write_header(gguf_writer& w, const hf_model& m, const tensor_source& src, const recipe& rc,
                                 const pipeline_options& opt, std::int64_t n_chunks, bool auto_by_output) {
  const std::uint64_t n_params = plan_n_params(src.plan());  // with the head a rotation adds
  qwen35_config cfg = m.cfg;
  if (src.find("output.weight")) cfg.tie_word_embeddings = false;
  SBGQ_TRY_VOID(add_qwen35_metadata(w, cfg, m.tok, m.dir, opt.name.empty() ? m.default_name() : opt.name, n_params,
                                    static_cast<std::uint32_t>(rc.ftype), m.n_mtp()));
  SBGQ_TRY_VOID(w.add("sbgq.recipe", rc.name));
  if (rc.kind == recipe_kind::automatic) {  // the budget (the mix itself is every tensor's type)
    SBGQ_TRY_VOID(w.add("sbgq.auto.measure", std::string(auto_by_output ? "kld" : "weights")));
    if (opt.target_size > 0) SBGQ_TRY_VOID(w.add("sbgq.auto.target_size", gguf_value(opt.target_size)));
    else SBGQ_TRY_VOID(w.add("sbgq.auto.target_bpw", gguf_value(opt.target_bpw)));
  }
  SBGQ_TRY_VOID(w.add("sbgq.rotation", std::string(opt.rotate == rotation_mode::hadamard ? "hadamard" : "none")));
  if (opt.rotate == rotation_mode::hadamard) SBGQ_TRY_VOID(w.add("sbgq.rotation.seed", gguf_value(opt.seed)));
  SBGQ_TRY_VOID(w.add("sbgq.gauge", std::string(opt.gauge ? "exact" : "none")));
  SBGQ_TRY_VOID(w.add("sbgq.rounding", std::string(opt.rounding == rounding_mode::gptq ? "gptq" : "plain")));
  if (!opt.calibration_text.empty()) {
    SBGQ_TRY_VOID(w.add("quantize.imatrix.dataset", opt.calibration_name));
    SBGQ_TRY_VOID(w.add("quantize.imatrix.chunks_count", gguf_value(static_cast<std::int32_t>(n_chunks))));
  }
  return {};
}

/// The bits per weight of tensor data (cost_table::choose's budget) that keep the whole
/// file within `target_size` bytes: the header, which the metadata in `w` and the plan's
/// names fix before any type is chosen, and each tensor's worst-case alignment padding are
/// taken off first. Errors: invalid_argument when that leaves no room for the tensor data.
inline result<double> bpw_for_file_size(std::uint64_t target_size, const gguf_writer& w,
                                        const std::vector<tensor_plan>& plan) {
  std::vector<tensor_desc> descs;
  std::uint64_t n_elements = 0;
  for (const auto& e : plan) {
    descs.push_back(e.desc());
    n_elements += static_cast<std::uint64_t>(e.numel());
  }
  const std::uint64_t overhead = w.header_bytes(descs) + (w.metadata_alignment() - 1) * plan.size();
  if (target_size <= overhead || n_elements == 0)
    return fail(error_code::invalid_argument, "--target-size " + std::to_string(target_size) +
                                                  " bytes leaves no room for the tensor data: the header and padding take " +
                                                  std::to_string(overhead));
  return static_cast<double>(target_size - overhead) * 8.0 / static_cast<double>(n_elements);
}

/// Whether "auto" allocates by measured KL-divergence (else by weight error), noted when
/// the model is too large for it. Errors: invalid_argument when output_kld was asked for
/// a model whose f32 weights exceed the limit.
inline result<bool> auto_by_output(const pipeline_options& opt, const std::vector<tensor_plan>& plan,
                                   const std::function<void(std::string)>& note) {
  const auto f32_bytes = 4 * plan_n_params(plan);
  const bool fits = f32_bytes <= opt.sensitivity.max_model_bytes;
  if (opt.measure == auto_measure::output_kld && !fits)
    return fail(error_code::invalid_argument,
                "--auto-measure kld keeps the model's f32 weights in memory (" + std::to_string(f32_bytes >> 20) +
                    " MiB, limit " + std::to_string(opt.sensitivity.max_model_bytes >> 20) +
                    " MiB); use --auto-measure weights for a model of this size");
  if (opt.measure == auto_measure::automatic && !fits)
    note("auto: the model is too large for measured KL-divergence (f32 weights " + std::to_string(f32_bytes >> 20) +
         " MiB); allocating by importance-weighted weight error");
  return opt.measure == auto_measure::output_kld || (opt.measure == auto_measure::automatic && fits);
}

/// The order tensors are written in: the plan's, except that the global tensors named in
/// `late` (in that order) move to just after the last decoder-layer tensor, for statistics
/// that exist only once every layer has been seen.
inline void write_order(const std::vector<tensor_plan>& plan, const std::vector<ggml_type>& types,
                        std::span<const std::string_view> late, std::vector<tensor_plan>& wplan,
                        std::vector<ggml_type>& wtypes) {
  std::vector<std::size_t> order, moved;
  for (std::string_view name : late)
    for (std::size_t i = 0; i < plan.size(); ++i)
      if (plan[i].gguf_name == name && plan[i].layer < 0) moved.push_back(i);
  std::size_t last_layer = plan.size();
  for (std::size_t i = 0; i < plan.size(); ++i)
    if (plan[i].layer >= 0 && !plan[i].is_mtp) last_layer = i;
  if (last_layer == plan.size()) moved.clear();
  for (std::size_t i = 0; i < plan.size(); ++i) {
    if (std::find(moved.begin(), moved.end(), i) == moved.end()) order.push_back(i);
    if (i == last_layer) order.insert(order.end(), moved.begin(), moved.end());
  }
  wplan.clear();
  wtypes.clear();
  for (std::size_t i : order) {
    wplan.push_back(plan[i]);
    wtypes.push_back(types[i]);
  }
}

/// The LM head's part of the embedding's column weights: its rows read in blocks, the
/// final norm's gain, the mean square of the hidden states after the last layer.
inline result<void> add_head_to(embedding_weights& ew, tensor_source& src, const calibration_session& session) {
  const tensor_plan* head = src.find("output.weight");
  if (!head) return {};
  const auto rows = static_cast<std::size_t>(head->rows()), cols = static_cast<std::size_t>(head->ne[0]);
  const std::size_t block = std::max<std::size_t>(1, (std::size_t{1} << 22) / std::max<std::size_t>(cols, 1));
  std::vector<float> buf;
  for (std::size_t r0 = 0; r0 < rows; r0 += block) {
    const std::size_t r1 = std::min(rows, r0 + block);
    SBGQ_TRY_VOID(src.rows(*head, r0, r1, buf));
    ew.add_head_rows(buf.data(), r1 - r0);
  }
  SBGQ_TRY(const vector_f32 gain, src.vector("output_norm.weight"));
  ew.finish_head(gain, embedding_weights::mean_square(session.hidden().hidden));
  return {};
}

/// Quantized inputs: the calibration's embedded rows as token_embd reads back from the file
/// (its rows are encoded one by one without statistics, so the rows looked up are encoded
/// exactly as the whole tensor is).
inline result<void> embed_as_written(calibration_session& session, const std::vector<tensor_plan>& wplan,
                                     const std::vector<ggml_type>& wtypes, const encode_options& enc) {
  for (std::size_t i = 0; i < wplan.size(); ++i) {
    if (wplan[i].gguf_name != "token_embd.weight") continue;
    const ggml_type t = wtypes[i];
    return session.replace_inputs([&](matrix_f32& x) {
      return encode_decode(t, "token_embd.weight", x.data(), static_cast<std::size_t>(x.rows()),
                           static_cast<std::size_t>(x.cols()), {}, nullptr, enc);
    });
  }
  return fail(error_code::internal, "no token_embd.weight in the plan");
}

/// The layer loop's state: the current layer's weights after calibration and the gauge,
/// and the statistics its tensors are quantized with.
class layer_stage {
 public:
  layer_stage(tensor_source& src, calibration_session* session, const pipeline_options& opt,
              const std::vector<tensor_plan>& plan, const std::vector<ggml_type>& types, progress_reporter& report,
              std::vector<std::string>& notes, embedding_weights* embd = nullptr)
      : src_(src), session_(session), opt_(opt), plan_(plan), types_(types), report_(report), notes_(notes), embd_(embd) {}

  /// Makes layer l current: read, calibrated over every chunk, gauged.
  result<void> enter(int l, double fraction) {
    SBGQ_TRY_VOID(leave());
    const int n = static_cast<int>(src_.config().num_hidden_layers);
    if (session_) session_->clear_xtx();
    report_(progress_event::at(progress_stage::read, fraction).in_layer(l, n));
    w_ = layer_weights{};
    SBGQ_TRY(w_, src_.layers().load_layer(l));
    layer_ = l;
    if (!session_) return {};
    report_(progress_event::at(progress_stage::calibrate, fraction).in_layer(l, n));
    if (opt_.quantized_inputs) {  // the states move on in leave(), through the layer as written
      SBGQ_TRY_VOID(session_->observe_layer(l, w_));
      pending_ = true;
    } else {
      const double ms_in = embd_ ? embedding_weights::mean_square(session_->hidden().hidden) : 0.0;
      SBGQ_TRY_VOID(session_->run_layer(l, w_));
      if (embd_) embd_->add_layer(w_, ms_in, embedding_weights::mean_square(session_->hidden().hidden));
    }
    if (!opt_.gauge) return {};
    report_(progress_event::at(progress_stage::gauge, fraction).in_layer(l, n));
    gauge_options go = opt_.gauge_settings;
    go.n_threads = opt_.n_threads;
    const auto type_of_tensor = [&](const std::string& name) { return type_of(name); };
    return gauge_layer(src_.config(), l, w_, *session_, type_of_tensor, go, notes_);
  }
  int layer() const noexcept { return layer_; }

  /// With quantized inputs: once every tensor of the current layer is written, moves the
  /// hidden states through the layer as written. Otherwise (and when done) nothing.
  result<void> leave() {
    if (!pending_) return {};
    pending_ = false;
    for (const written_tensor& t : written_) {  // the layer as the file holds it
      const auto* k = find_layer_tensor_kind(layer_tensor_suffix(t.name));
      if (!k || !k->matrix) return fail(error_code::internal, "no layer matrix for " + t.name);
      matrix_f32& m = w_.*(k->matrix);
      m.resize(static_cast<Eigen::Index>(t.rows), static_cast<Eigen::Index>(t.cols));
      SBGQ_TRY_VOID(dequantize_rows(t.type, t.bytes, t.rows, t.cols, std::span<float>(m.data(), t.rows * t.cols),
                                    opt_.n_threads));
    }
    written_.clear();
    SBGQ_TRY_VOID(session_->advance_layer(layer_, w_));
    w_ = layer_weights{};
    return {};
  }

  /// Plan entry i of the current layer: its values, importance and X^T X, written to the sink.
  result<void> write(gguf_sink& sink, std::size_t i, const encode_options& enc) {
    const tensor_plan& e = plan_[i];
    const auto ref = layer_tensor(w_, e.gguf_name);
    if (!ref) return fail(error_code::internal, "no layer field for " + e.gguf_name);
    const imatrix* stats = session_ ? &session_->stats() : opt_.importance;
    const auto im = types_[i] == ggml_type::f32 ? std::vector<float>{} : detail::measure::weights_of(stats, e.gguf_name);
    const Eigen::MatrixXf* h = nullptr;
    if (session_ && opt_.rounding == rounding_mode::gptq) {
      const auto it = session_->xtx().find(input_space_of(e.gguf_name));
      if (it != session_->xtx().end()) h = &it->second;
    }
    SBGQ_TRY_VOID(sink.write(i, ref->data, ref->rows, ref->cols, im, h, enc));
    // Peak memory: the tensor's f32 values, and its X^T X once no later tensor of this
    // layer reads the same input, are not needed any more -- unless the hidden states go
    // on through the layer as written: then its values become those the file holds.
    // Until then its bytes (a fraction of its f32 size) wait beside the layer, which keeps
    // the peak of a layer's gptq where it was.
    if (!pending_ || types_[i] != ggml_type::f32) {  // f32 tensors stay as they are
      if (pending_) {
        const auto b = sink.last_written();
        written_.push_back({e.gguf_name, types_[i], ref->rows, ref->cols, std::vector<std::byte>(b.begin(), b.end())});
      }
      release_layer_tensor(w_, e.gguf_name);
    }
    if (h) {
      const std::string space = input_space_of(e.gguf_name);
      bool later = false;
      for (std::size_t j = i + 1; j < plan_.size() && plan_[j].layer == e.layer && !later; ++j)
        later = !plan_[j].is_mtp && input_space_of(plan_[j].gguf_name) == space;
      if (!later) session_->xtx().erase(space);
    }
    return {};
  }

 private:
  ggml_type type_of(const std::string& name) const {
    for (std::size_t k = 0; k < plan_.size(); ++k)
      if (plan_[k].gguf_name == name) return types_[k];
    return ggml_type::f32;
  }
  tensor_source& src_;
  calibration_session* session_;
  const pipeline_options& opt_;
  const std::vector<tensor_plan>& plan_;
  const std::vector<ggml_type>& types_;
  progress_reporter& report_;
  std::vector<std::string>& notes_;
  embedding_weights* embd_;
  layer_weights w_;
  int layer_ = -1;
  bool pending_ = false;  ///< quantized inputs: layer_'s states not yet moved on
  struct written_tensor {
    std::string name;
    ggml_type type;
    std::size_t rows, cols;
    std::vector<std::byte> bytes;
  };
  std::vector<written_tensor> written_;  ///< quantized inputs: the current layer's tensors as written
};

}  // namespace detail::pipe

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
  progress_reporter report(opt.progress);
  report(progress_event::at(progress_stage::read));
  SBGQ_TRY(recipe rc, load_recipe(opt.recipe));
  rep.recipe = rc.name;
  SBGQ_TRY_VOID(dp::check_options(opt, rc));
  // The output is checked and its temporary file made before the work: a bad path fails now.
  SBGQ_TRY_VOID(check_output_not_input(out_path, {model_dir}, "pipeline"));
  SBGQ_TRY(gguf_sink sink, gguf_sink::create(out_path));
  auto note = [&](std::string text) {
    report.note(text);
    rep.notes.push_back(std::move(text));
  };

  // -- read: the checkpoint as the converter writes it, rotated if asked (MTP cannot be)
  const bool rotate = opt.rotate == rotation_mode::hadamard;
  SBGQ_TRY(const hf_model m, hf_model::open(model_dir, opt.keep_mtp && !rotate));
  if (m.has_mtp && opt.keep_mtp && rotate)
    note("MTP layers dropped: the residual-stream rotation cannot keep them exact (qwen35-model.md 4.d)");
  checkpoint_source base(m);
  std::unique_ptr<rotated_source> rotated;
  if (rotate) {
    SBGQ_TRY(rotated, rotated_source::create(base, opt.seed, opt.n_threads));
    if (rotated->untied()) note("tied embeddings: the rotated model gets its own output head (output.weight)");
  }
  tensor_source& src = rotated ? static_cast<tensor_source&>(*rotated) : base;
  const std::vector<tensor_plan>& plan = src.plan();
  if (opt.importance) SBGQ_TRY_VOID(dp::check_given_importance(*opt.importance, plan));

  std::vector<std::int32_t> tokens;
  const bool have_text = !opt.calibration_text.empty();
  if (have_text) {
    SBGQ_TRY(tokens, m.tok.encode(opt.calibration_text));
    if (static_cast<std::int64_t>(tokens.size()) < opt.ctx)
      return dp::fail(error_code::invalid_argument, "the calibration text has " + std::to_string(tokens.size()) +
                                                        " tokens, fewer than one chunk of " + std::to_string(opt.ctx));
  }
  calibration_options copt;
  copt.ctx = opt.ctx;
  copt.max_chunks = opt.chunks;
  copt.n_threads = opt.n_threads;
  copt.dataset = opt.calibration_name;

  // -- header metadata first: it does not depend on the types, and a size budget counts it
  const bool is_auto = rc.kind == recipe_kind::automatic;
  bool by_output = false;
  if (is_auto) {
    SBGQ_TRY(by_output, dp::auto_by_output(opt, plan, note));
  }
  const std::int64_t n_chunks = std::min<std::int64_t>(static_cast<std::int64_t>(tokens.size()) / opt.ctx,
                                                       opt.chunks > 0 ? opt.chunks : (std::int64_t{1} << 40));
  SBGQ_TRY_VOID(dp::write_header(sink.writer(), m, src, rc, opt, n_chunks, by_output));

  // -- choose
  std::vector<ggml_type> types;
  if (is_auto) {
    double target_bpw = opt.target_bpw;
    if (opt.target_size > 0) {
      SBGQ_TRY(target_bpw, dp::bpw_for_file_size(opt.target_size, sink.writer(), plan));
    }
    if (by_output) {
      sensitivity_options so = opt.sensitivity;
      so.ctx = opt.ctx;
      so.n_threads = opt.n_threads;
      const encode_options enc{opt.rounding, opt.gptq, opt.n_threads};
      SBGQ_TRY(types, choose_auto_types_by_output(src, rc, target_bpw, tokens, copt, enc, so, report, rep.notes,
                                                  &rep.measured));
    } else {
      SBGQ_TRY(types, choose_auto_types(src, rc, target_bpw, tokens, copt, report, rep.notes, &rep.measured));
    }
    rep.measure_unit = by_output ? "kld" : "weights";
  } else {
    const bool has_imatrix = have_text || (opt.importance && !opt.importance->entries.empty());
    SBGQ_TRY(types, dp::plan_types(rc, plan, dp::facts_of(m.cfg, m.n_mtp()), has_imatrix));
  }
  // With gptq, the head waits for its statistics: written after the last layer.
  std::vector<tensor_plan> wplan;
  std::vector<ggml_type> wtypes;
  // With embedding weights, token_embd waits for every layer's readers likewise (untied
  // heads only: a tied embedding is the head too).
  const bool head_gptq = have_text && opt.rounding == rounding_mode::gptq;
  const bool untied = src.find("output.weight") != nullptr;
  std::unique_ptr<embedding_weights> embd;
  if (head_gptq && opt.weigh_embedding && untied) {
    embd = std::make_unique<embedding_weights>(static_cast<std::size_t>(m.cfg.hidden_size));
    note("token_embd: columns weighted by the readers of the residual stream (written after the layers)");
  }
  std::vector<std::string_view> late;
  if (head_gptq) late.push_back("output.weight");
  if (embd) late.push_back("token_embd.weight");
  dp::write_order(plan, types, late, wplan, wtypes);
  SBGQ_TRY_VOID(sink.declare(wplan, wtypes));
  {
    std::vector<tensor_desc> descs;
    for (const auto& e : plan) descs.push_back(e.desc());
    rep.mix_recipe = mix_recipe_json(rc.name + "-mix", descs, types);
  }

  // -- stream, in file order: globals in blocks of rows; each layer read, calibrated,
  //    gauged, then its tensors quantized and written; MTP last, plain
  std::unique_ptr<calibration_session> session;
  if (have_text) {
    copt.collect_xtx = opt.rounding == rounding_mode::gptq;
    report(progress_event::at(progress_stage::calibrate, 0.3).in_layer(0, static_cast<int>(m.cfg.num_hidden_layers)));
    SBGQ_TRY(session, calibration_session::start(m.cfg, src.layers(), tokens, copt));
    rep.calibration_tokens = session->n_tokens();
  }
  const encode_options enc{opt.rounding, opt.gptq, opt.n_threads};
  if (opt.quantized_inputs) SBGQ_TRY_VOID(dp::embed_as_written(*session, wplan, wtypes, enc));
  dp::layer_stage stage(src, session.get(), opt, wplan, wtypes, report, rep.layer_notes, embd.get());
  const int n_layers = static_cast<int>(m.cfg.num_hidden_layers);
  bool after_layers = false;
  for (std::size_t i = 0; i < wplan.size(); ++i) {
    const tensor_plan& e = wplan[i];
    const bool in_layer = e.layer >= 0 && !e.is_mtp;
    after_layers = after_layers || in_layer;
    const double fraction = in_layer ? 0.3 + 0.7 * e.layer / std::max(1, n_layers) : after_layers ? 0.99 : 0.3;
    if (in_layer && e.layer != stage.layer()) SBGQ_TRY_VOID(stage.enter(e.layer, fraction));
    if (!in_layer && after_layers) SBGQ_TRY_VOID(stage.leave());
    report(progress_event::at(progress_stage::quantize, fraction)
               .item(i, wplan.size())
               .in_layer(in_layer ? e.layer : -1, n_layers)
               .on(e.gguf_name, type_name(wtypes[i])));
    if (in_layer) {
      SBGQ_TRY_VOID(stage.write(sink, i, enc));
    } else if (head_gptq && e.gguf_name == "output.weight" && wtypes[i] != ggml_type::f32) {
      // The head under the X^T X of the final-normed hidden states; their mean squares
      // (its diagonal over the tokens) are its importance weights.
      SBGQ_TRY(const vector_f32 gain, src.vector("output_norm.weight"));
      const Eigen::MatrixXf h = session->head_xtx(gain);
      SBGQ_TRY_VOID(sink.stream(src, i, session->mean_squares(h), enc, &h));
    } else if (embd && e.gguf_name == "token_embd.weight" && wtypes[i] != ggml_type::f32) {
      SBGQ_TRY_VOID(dp::add_head_to(*embd, src, *session));
      SBGQ_TRY_VOID(sink.stream(src, i, embd->weights(), enc));
    } else {
      SBGQ_TRY_VOID(sink.stream(src, i, {}, enc));
    }
  }
  SBGQ_TRY_VOID(stage.leave());
  if (session) rep.statistics = session->finish().im;
  report(progress_event::at(progress_stage::write, 0.99).in_layer(-1, n_layers));
  SBGQ_TRY(rep.file_size, sink.finish());
  if (opt.target_size > 0 && rep.file_size > opt.target_size)
    note("auto: the file is " + std::to_string(rep.file_size) + " bytes, over the target of " +
         std::to_string(opt.target_size) + ": even the cheapest types do not fit");
  rep.tensors = sink.records();
  rep.n_elements = sink.n_elements();
  rep.bytes = sink.bytes();
  report.finish();
  rep.stage_seconds = report.stage_seconds();
  rep.seconds = report.elapsed();
  rep.peak_rss = peak_rss_bytes();
  return rep;
}

/// The report as JSON (for --report): totals, stage times, notes and every tensor.
inline std::string pipeline_report_json(const pipeline_report& r) {
  json_writer j;
  j.begin_object();
  j.key("recipe").value(r.recipe);
  j.key("n_elements").value(r.n_elements);
  j.key("tensor_bytes").value(r.bytes);
  j.key("file_size").value(r.file_size);
  j.key("bits_per_weight").value(r.bits_per_weight());
  j.key("calibration_tokens").value(r.calibration_tokens);
  j.key("seconds").value(r.seconds);
  j.key("peak_rss_bytes").value(r.peak_rss);
  j.key("stage_seconds").begin_object(json_layout::inline_);
  for (const auto& [k, v] : r.stage_seconds) j.key(k).value(v);
  j.end_object();
  j.key("notes").begin_array();
  for (const auto& n : r.notes) j.value(n);
  j.end_array();
  j.key("layer_notes").begin_array(json_layout::lines);
  for (const auto& n : r.layer_notes) j.value(n);
  j.end_array();
  if (!r.measured.empty()) {  // auto: what each tensor's candidates cost
    j.key("auto").begin_object();
    j.key("unit").value(r.measure_unit);
    j.key("tensors").begin_array(json_layout::lines);
    for (const auto& m : r.measured) {
      j.begin_object(json_layout::inline_);
      j.key("name").value(m.name).key("chosen").value(type_name(m.chosen));
      j.key("types").begin_array();
      for (ggml_type t : m.types) j.value(type_name(t));
      j.end_array();
      j.key("cost").begin_array();
      for (double c : m.cost) j.value(c);
      j.end_array();
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.key("tensors").begin_array(json_layout::lines);
  for (const auto& t : r.tensors) {
    j.begin_object(json_layout::inline_);
    j.key("name").value(t.name).key("type").value(type_name(t.type)).key("n_elements").value(t.n_elements);
    j.key("bytes").value(t.bytes).key("imatrix").value(t.used_imatrix);
    j.key("rel_error_plain").value(t.rel_error_plain).key("rel_error").value(t.rel_error);
    j.key("objective_plain").value(t.objective_plain).key("objective").value(t.objective);
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return std::move(j).str();
}

SBGQ_END_NAMESPACE
