// The streaming engine's source: the model being written, as the plan of its GGUF tensors
// and their values on demand, in the written model's conventions (GGUF names, the
// converter's transforms, transforms such as the rotation already applied).
//
//   hf_model m = hf_model::open(dir, keep_mtp).value();
//   checkpoint_source src(m);                                 // values as the converter writes them
//   auto rot = rotated_source::create(src, seed, threads).value();  // a pure decorator
//   rot->rows(*rot->find("token_embd.weight"), 0, 128, buf);  // the rotated embedding's first rows
//   rot->layers().load_layer(3);                              // layer 3, rotated
//
// The interface is layered: a row_source (plan + rows, what a GGUF file offers the
// quantizer, gguf_source.hpp) and a tensor_source (a model: + the forward pass's layers).
// Two ways into a model, matching the two shapes of work:
//   - rows(): any tensor outside the decoder layers (token_embd, output_norm, output, MTP)
//     in blocks of rows, so a 9B embedding (4 GB in f32) is never whole in memory;
//   - layers(): the forward pass's weight_provider of the same model, a layer at a time,
//     for calibration, the gauge and the quantizer.
// Transforms are decorators: they take a source and are one, and they may change the plan
// (the rotation unties a tied head by adding output.weight after output_norm.weight).
// Non-goals: random access into layer tensors through rows() (load the layer).
#pragma once

#include <Eigen/Dense>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/mapped_file.hpp"
#include "../model/forward.hpp"
#include "../model/hf_checkpoint.hpp"
#include "../model/model_config.hpp"
#include "../model/qwen35_tensors.hpp"
#include "../model/weights.hpp"
#include "../transform/rotation.hpp"

SBGQ_BEGIN_NAMESPACE

/// Tensors as the engine reads them: a plan (the GGUF tensors, in the source's order) and
/// their values as f32 rows on demand. A GGUF file (gguf_source.hpp) is one; a model the
/// forward pass can run is a tensor_source.
class row_source {
 public:
  virtual ~row_source() = default;
  /// The GGUF tensors, in file order.
  virtual const std::vector<tensor_plan>& plan() const = 0;
  /// Rows [r0, r1) of plan entry `e` (rows = the product of ne[1..]), f32, row-major with
  /// ne[0] values per row, into `out` (resized). Rows must be asked for in increasing order
  /// within a tensor (sources may release what lies behind).
  virtual result<void> rows(const tensor_plan& e, std::size_t r0, std::size_t r1, std::vector<float>& out) = 0;

  /// The plan entry named `gguf_name`, or null.
  const tensor_plan* find(std::string_view gguf_name) const noexcept {
    for (const auto& e : plan())
      if (e.gguf_name == gguf_name) return &e;
    return nullptr;
  }
};

/// A model as the engine reads it (see the file comment): rows() serves the tensors
/// outside the decoder layers.
class tensor_source : public row_source {
 public:
  /// The same model for the forward pass, layer by layer.
  virtual weight_provider& layers() = 0;
  virtual const qwen35_config& config() const = 0;

  /// A whole small tensor (a norm) as a vector.
  result<vector_f32> vector(std::string_view gguf_name) {
    const tensor_plan* e = find(gguf_name);
    if (!e) return error(error_code::not_found, "source", "no tensor '" + std::string(gguf_name) + "' in the plan");
    std::vector<float> v;
    SBGQ_TRY_VOID(rows(*e, 0, static_cast<std::size_t>(e->rows()), v));
    return vector_f32(Eigen::Map<const vector_f32>(v.data(), static_cast<Eigen::Index>(v.size())));
  }
};

/// An HF checkpoint (hf_model, not owned) as the converter writes it: values read from
/// the mapped shards with the plan's transforms, mapped pages released behind the reader.
class checkpoint_source : public tensor_source {
 public:
  explicit checkpoint_source(const hf_model& m, bool reorder_v_heads = true)
      : m_(m), provider_(m.ckpt, m.cfg), reorder_(reorder_v_heads) {}

  const std::vector<tensor_plan>& plan() const override { return m_.plan; }
  weight_provider& layers() override { return provider_; }
  const qwen35_config& config() const override { return m_.cfg; }

  /// Row-local tensors (no transform) are converted straight from the mapping, only the
  /// rows asked for; transformed ones (V-head reorders, gains) are converted whole once
  /// and kept until their last row has been handed out.
  result<void> rows(const tensor_plan& e, std::size_t r0, std::size_t r1, std::vector<float>& out) override {
    const auto cols = static_cast<std::size_t>(e.ne[0]), n_rows = static_cast<std::size_t>(e.rows());
    if (r0 > r1 || r1 > n_rows)
      return error(error_code::invalid_argument, "source",
                   e.gguf_name + ": rows [" + std::to_string(r0) + ", " + std::to_string(r1) + ") of " + std::to_string(n_rows));
    out.resize((r1 - r0) * cols);
    SBGQ_TRY(tensor_view src, find_hf_tensor(m_.ckpt, e));
    if (e.transform == tensor_transform::none) {
      SBGQ_TRY_VOID(to_f32(src, r0, r1, out));
      const std::size_t row_bytes = src.bytes.size() / n_rows;
      release_mapped_pages(src.bytes.subspan(r0 * row_bytes, (r1 - r0) * row_bytes));
      return {};
    }
    if (cached_name_ != e.gguf_name) {
      SBGQ_TRY(cached_, load_gguf_values(m_.ckpt, e, m_.cfg, reorder_));
      cached_name_ = e.gguf_name;
      release_mapped_pages(src.bytes);
    }
    std::copy(cached_.begin() + static_cast<std::ptrdiff_t>(r0 * cols), cached_.begin() + static_cast<std::ptrdiff_t>(r1 * cols),
              out.begin());
    if (r1 == n_rows) {
      cached_name_.clear();
      std::vector<float>().swap(cached_);
    }
    return {};
  }

 private:
  const hf_model& m_;
  safetensors_weight_provider provider_;
  bool reorder_;
  std::string cached_name_;
  std::vector<float> cached_;
};

/// The residual-stream rotation (rotation.hpp) as a decorator of another source: token_embd
/// E Q, the head W diag(g_f) Q, output_norm all ones, layers rotated as they load. A tied
/// model gets its own head (output.weight after output_norm.weight in the plan, made from
/// token_embd), since only the head takes the final norm's gain. The inner plan must not
/// hold MTP tensors (they cannot stay exact under the rotation, qwen35-model.md 4.d).
class rotated_source : public tensor_source {
 public:
  /// Errors: those of residual_rotation::hadamard and of reading output_norm; invalid_argument
  /// for an inner plan with MTP tensors.
  static result<std::unique_ptr<rotated_source>> create(tensor_source& inner, std::uint64_t seed, int n_threads = 0) {
    for (const auto& e : inner.plan())
      if (e.is_mtp)
        return error(error_code::invalid_argument, "rotation", "the MTP tensor '" + e.gguf_name + "' cannot be rotated exactly");
    SBGQ_TRY(residual_rotation q, residual_rotation::hadamard(static_cast<std::size_t>(inner.config().hidden_size), seed));
    SBGQ_TRY(vector_f32 gain, inner.vector("output_norm.weight"));
    return std::unique_ptr<rotated_source>(new rotated_source(inner, std::move(q), std::move(gain), n_threads));
  }

  rotated_source(const rotated_source&) = delete;  // the provider points into this object
  rotated_source& operator=(const rotated_source&) = delete;

  const std::vector<tensor_plan>& plan() const override { return plan_; }
  weight_provider& layers() override { return provider_; }
  const qwen35_config& config() const override { return inner_.config(); }
  /// True when the inner model was tied and this one has its own head.
  bool untied() const noexcept { return untied_; }
  const residual_rotation& rotation() const noexcept { return q_; }

  result<void> rows(const tensor_plan& e, std::size_t r0, std::size_t r1, std::vector<float>& out) override {
    const bool head = e.gguf_name == "output.weight", embd = e.gguf_name == "token_embd.weight";
    if (e.gguf_name == "output_norm.weight") {
      out.assign((r1 - r0) * static_cast<std::size_t>(e.ne[0]), 1.0f);
      return {};
    }
    if (!head && !embd) return inner_.rows(e, r0, r1, out);
    const tensor_plan* from = head && untied_ ? inner_.find("token_embd.weight") : &e;
    SBGQ_TRY_VOID(inner_.rows(*from, r0, r1, out));
    const auto cols = static_cast<Eigen::Index>(e.ne[0]);
    Eigen::Map<matrix_f32> block(out.data(), static_cast<Eigen::Index>(r1 - r0), cols);
    matrix_f32 x = block;
    SBGQ_TRY_VOID(q_.rotate_readers(x, head ? &gain_ : nullptr, n_threads_, e.gguf_name));
    block = x;
    return {};
  }

 private:
  rotated_source(tensor_source& inner, residual_rotation q, vector_f32 gain, int n_threads)
      : inner_(inner), q_(std::move(q)), gain_(std::move(gain)), n_threads_(n_threads),
        provider_(inner.layers(), inner.config(), q_, n_threads) {
    plan_ = inner.plan();
    if (!inner.find("output.weight")) {
      untied_ = true;
      tensor_plan head = *inner.find("token_embd.weight");
      head.gguf_name = "output.weight";
      auto at = plan_.begin();
      while (at != plan_.end() && at->gguf_name != "output_norm.weight") ++at;
      plan_.insert(at == plan_.end() ? at : at + 1, std::move(head));
    }
  }
  tensor_source& inner_;
  residual_rotation q_;
  vector_f32 gain_;  ///< the inner model's output_norm, folded into the head
  int n_threads_;
  rotated_provider provider_;
  std::vector<tensor_plan> plan_;
  bool untied_ = false;
};

SBGQ_END_NAMESPACE
