// Weight providers for the forward pass: a GGUF file of any supported tensor type
// (dequantized on the fly) or an HF safetensors checkpoint (converted on the fly with the
// converter's transforms). Both load one layer at a time, so a caller that drops a layer's
// weights after running it needs the memory of one layer, not of the model.
//
// Both hand out weights in the forward pass's convention (GGUF names, gains, tiled
// V heads), so the same evaluation code runs on the base model and on quantized files.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "../core/base.hpp"
#include "../codec/rows.hpp"
#include "hf_checkpoint.hpp"
#include "../core/error.hpp"
#include "forward.hpp"
#include "../io/gguf.hpp"
#include "../core/mapped_file.hpp"
#include "model_config.hpp"
#include "qwen35_tensors.hpp"
#include "../io/safetensors.hpp"

SBGQ_BEGIN_NAMESPACE

namespace detail {

/// f32 values of a tensor by GGUF name, with its ne (ne[0] fastest).
struct named_values {
  std::vector<float> values;
  std::vector<std::int64_t> ne;
};
using value_getter = std::function<result<named_values>(const std::string& gguf_name)>;

inline result<matrix_f32> as_matrix(const value_getter& get, const std::string& name) {
  SBGQ_TRY(named_values v, get(name));
  if (v.ne.size() != 2)
    return error(error_code::bad_shape, "weights", "tensor '" + name + "' has " + std::to_string(v.ne.size()) + " dimensions, expected 2");
  return matrix_f32(Eigen::Map<const matrix_f32>(v.values.data(), v.ne[1], v.ne[0]));
}
inline result<vector_f32> as_vector(const value_getter& get, const std::string& name) {
  SBGQ_TRY(named_values v, get(name));
  return vector_f32(Eigen::Map<const vector_f32>(v.values.data(), static_cast<Eigen::Index>(v.values.size())));
}

inline result<void> check_token_id(std::span<const std::int32_t> ids, std::size_t i, std::int64_t vocab) {
  if (ids[i] < 0 || ids[i] >= vocab)
    return error(error_code::bad_value, "forward", "token " + std::to_string(i) + ": id " + std::to_string(ids[i]) +
                                                       " outside the vocabulary [0, " + std::to_string(vocab) + ")");
  return {};
}

/// Fills the weights of layer l (of kind `kind`) from a getter: every tensor the table
/// of layer tensors (layer_weights.hpp) gives a layer of that kind, in table order.
inline result<layer_weights> load_layer_with(const value_getter& get, layer_kind kind, int l) {
  const std::string b = "blk." + std::to_string(l) + ".";
  layer_weights w;
  w.kind = kind;
  for (const layer_tensor_kind& t : qwen35_layer_tensors) {
    if (!t.in(kind)) continue;
    const std::string name = b + std::string(t.gguf);
    if (t.matrix) {
      SBGQ_TRY(w.*(t.matrix), as_matrix(get, name));
    } else {
      SBGQ_TRY(w.*(t.vector), as_vector(get, name));
    }
  }
  return w;
}

inline result<global_weights> load_globals_with(const value_getter& get, bool has_output) {
  global_weights g;
  SBGQ_TRY(g.token_embd, as_matrix(get, "token_embd.weight"));
  SBGQ_TRY(g.output_norm, as_vector(get, "output_norm.weight"));
  if (has_output) {
    SBGQ_TRY(g.output, as_matrix(get, "output.weight"));
  }
  return g;
}

}  // namespace detail

/// Weights from a GGUF file (F32, F16, BF16 or any codec sbgq reads), dequantized per
/// tensor on demand. The file stays memory-mapped; loaded layers are plain f32 copies.
class gguf_weight_provider : public weight_provider {
 public:
  gguf_weight_provider(const gguf_file& f, const qwen35_config& c, int n_threads = 0)
      : f_(f), c_(c), n_threads_(n_threads) {}

  result<global_weights> load_globals() override {
    return detail::load_globals_with(getter(), f_.find_tensor("output.weight") != nullptr);
  }
  result<layer_weights> load_layer(int l) override {
    if (l < 0 || l >= static_cast<int>(c_.num_hidden_layers))
      return error(error_code::invalid_argument, "weights", "layer " + std::to_string(l) + " out of range");
    return detail::load_layer_with(getter(), c_.layer_types[static_cast<std::size_t>(l)], l);
  }

  /// Decodes only the embedding rows asked for.
  result<matrix_f32> embedding_rows(std::span<const std::int32_t> ids) override {
    const gguf_tensor_info* t = f_.find_tensor("token_embd.weight");
    if (!t || t->n_dims != 2) return error(error_code::not_found, "weights", "no 2-D tensor 'token_embd.weight' in the GGUF file");
    SBGQ_TRY(std::span<const std::byte> bytes, f_.tensor_data("token_embd.weight"));
    const auto cols = static_cast<std::size_t>(t->ne[0]);
    const auto row_bytes = static_cast<std::size_t>(row_size(t->type, cols));
    matrix_f32 out(static_cast<Eigen::Index>(ids.size()), static_cast<Eigen::Index>(cols));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      SBGQ_TRY_VOID(detail::check_token_id(ids, i, t->ne[1]));
      const auto r = static_cast<std::size_t>(ids[i]);
      SBGQ_TRY_VOID(dequantize_rows(t->type, bytes.subspan(r * row_bytes, row_bytes), 1, cols,
                                    std::span<float>(out.row(static_cast<Eigen::Index>(i)).data(), cols), 1));
    }
    return out;
  }

  /// The f32 values of one tensor (GGUF order).
  result<detail::named_values> values(const std::string& name) const {
    const gguf_tensor_info* t = f_.find_tensor(name);
    if (!t) return error(error_code::not_found, "weights", "tensor '" + name + "' is not in the GGUF file");
    detail::named_values v;
    v.ne.assign(t->ne.begin(), t->ne.begin() + t->n_dims);
    const auto cols = static_cast<std::size_t>(t->ne[0]);
    const auto rows = static_cast<std::size_t>(t->n_elements()) / (cols ? cols : 1);
    v.values.resize(rows * cols);
    SBGQ_TRY(std::span<const std::byte> bytes, f_.tensor_data(name));
    SBGQ_TRY_VOID(dequantize_rows(t->type, bytes, rows, cols, v.values, n_threads_));
    return v;
  }

 private:
  detail::value_getter getter() const {
    return [this](const std::string& n) { return values(n); };
  }
  const gguf_file& f_;
  const qwen35_config& c_;
  int n_threads_;
};

/// Weights from an HF checkpoint, converted tensor by tensor with the converter's
/// transforms (the forward pass then sees exactly what a converted F32 GGUF holds). The
/// mapped pages of a tensor are released once it is converted (peak memory is the f32
/// copies the caller holds, not the checkpoint).
class safetensors_weight_provider : public weight_provider {
 public:
  safetensors_weight_provider(const safetensors_checkpoint& ckpt, const qwen35_config& c) : ckpt_(ckpt), c_(c) {
    tensor_plan_options po = hf_plan_options(ckpt, c, false);
    for (auto& e : qwen35_tensor_plan(c, po)) plan_.push_back(std::move(e));
    has_output_ = !po.tied;
    po_ = std::move(po);
  }

  /// Checks that the checkpoint holds no tensor this provider would silently ignore
  /// (check_unused_hf_tensors: a layer past num_hidden_layers, an unknown name); the
  /// vision tower and the MTP block are left out. Call once after construction.
  result<void> check_tensors() const {
    SBGQ_TRY(std::size_t n_left_out, check_unused_hf_tensors(ckpt_, plan_, c_, po_));
    (void)n_left_out;
    return {};
  }

  result<global_weights> load_globals() override { return detail::load_globals_with(getter(), has_output_); }
  result<layer_weights> load_layer(int l) override {
    if (l < 0 || l >= static_cast<int>(c_.num_hidden_layers))
      return error(error_code::invalid_argument, "weights", "layer " + std::to_string(l) + " out of range");
    return detail::load_layer_with(getter(), c_.layer_types[static_cast<std::size_t>(l)], l);
  }
  /// Converts only the embedding rows asked for (token_embd has no transform).
  result<matrix_f32> embedding_rows(std::span<const std::int32_t> ids) override {
    const tensor_plan& e = plan_.front();  // token_embd.weight, first in the plan
    SBGQ_TRY(tensor_view src, find_hf_tensor(ckpt_, e));
    const auto cols = static_cast<std::size_t>(e.ne[0]);
    matrix_f32 out(static_cast<Eigen::Index>(ids.size()), static_cast<Eigen::Index>(cols));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      SBGQ_TRY_VOID(detail::check_token_id(ids, i, e.ne[1]));
      const auto r = static_cast<std::uint64_t>(ids[i]);
      SBGQ_TRY_VOID(to_f32(src, r, r + 1, std::span<float>(out.row(static_cast<Eigen::Index>(i)).data(), cols)));
      const std::size_t row_bytes = src.bytes.size() / static_cast<std::size_t>(e.ne[1]);
      release_mapped_pages(src.bytes.subspan(static_cast<std::size_t>(r) * row_bytes, row_bytes));
    }
    return out;
  }

  /// The GGUF-convention f32 values of one tensor.
  result<detail::named_values> values(const std::string& gguf_name) const {
    for (const auto& e : plan_)
      if (e.gguf_name == gguf_name) {
        SBGQ_TRY(std::vector<float> v, load_gguf_values(ckpt_, e, c_));
        // The f32 copy is what the caller keeps: drop the mapped source pages, or a pass
        // over a 9B checkpoint would leave all 18 GB of it counted in our resident set.
        if (auto src = find_hf_tensor(ckpt_, e)) release_mapped_pages(src->bytes);
        return detail::named_values{std::move(v), e.ne};
      }
    return error(error_code::not_found, "weights", "no tensor '" + gguf_name + "' in the model's plan");
  }
  const std::vector<tensor_plan>& plan() const noexcept { return plan_; }

 private:
  detail::value_getter getter() const {
    return [this](const std::string& n) { return values(n); };
  }
  const safetensors_checkpoint& ckpt_;
  const qwen35_config& c_;
  std::vector<tensor_plan> plan_;
  tensor_plan_options po_;
  bool has_output_ = true;
};

SBGQ_END_NAMESPACE
