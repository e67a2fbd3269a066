// The streaming engine's quantizer and GGUF sink: each plan tensor encoded at its type
// (plain importance-weighted rounding, or GPTQ started from it) and written in file order,
// with a record of what was done for the report.
//
//   SBGQ_TRY(gguf_sink sink, gguf_sink::create(out_path));
//   ... metadata through sink.writer() ...
//   SBGQ_TRY_VOID(sink.declare(src.plan(), types));
//   SBGQ_TRY_VOID(sink.stream(src, 0, {}, enc));            // token_embd, in blocks of rows
//   SBGQ_TRY_VOID(sink.write(3, w.data(), rows, cols, im, &xtx, enc));  // a layer tensor
//   SBGQ_TRY(std::uint64_t size, sink.finish());
//
// Design goals:
//   - One encoder for every driver: F32 kept (checked finite: a NaN in a norm would poison
//     every output), everything else through quantize_rows with the tensor's importance, so
//     plain output is byte-identical to llama-quantize's; gptq reuses those plain bytes for
//     its reference objective instead of rounding twice.
//   - Errors name the tensor (and the first row of a block).
//   - Bounded memory: stream() encodes a global tensor in blocks of ~16 MB of f32.
// Non-goals: choosing types (quant/recipe.hpp), reading weights (engine/source.hpp).
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../codec/registry.hpp"
#include "../codec/rows.hpp"
#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../io/gguf.hpp"
#include "../quant/gptq.hpp"
#include "source.hpp"

SBGQ_BEGIN_NAMESPACE

enum class rounding_mode : std::uint8_t { plain, gptq };

/// How tensors are encoded.
struct encode_options {
  rounding_mode rounding = rounding_mode::plain;
  gptq_options gptq;  ///< with rounding = gptq (n_threads taken from here, below)
  int n_threads = 0;  ///< <= 0: all hardware threads
  bool measure = true;  ///< compute the records' weighted errors (costs a decode per row; gptq runs either way)
};

/// What happened to one tensor.
struct tensor_record {
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

namespace detail::engine {

/// Running sums of one tensor's encoding (blocks of a streamed tensor add up).
struct encode_sums {
  double err_plain = 0, err = 0, norm = 0;
  bool measured = false;  ///< the errors were computed (encode_options::measure)
};

/// Where an encoded block lies, for messages: the tensor and its first row in this call.
struct encode_place {
  const std::string& name;
  std::size_t row0 = 0;
  bool partial = false;  ///< a block of a streamed tensor (errors say which rows)
  std::string who() const { return "tensor '" + name + "'" + (partial ? ", rows from " + std::to_string(row0) : ""); }
};

/// ggml_validate_row_data on encoded rows: a non-finite fp16 scale (an input so large its
/// scale overflows) is refused, as llama.cpp refuses to write it.
inline result<void> check_encoded(ggml_type t, std::span<const std::byte> bytes, std::size_t cols, const encode_place& at,
                                  const char* component) {
  const std::size_t bad = first_invalid_block(t, bytes);
  if (bad == no_invalid_block) return {};
  const std::size_t per_block = is_quantized(t) ? block_size(t) : 1;
  const std::size_t row = bad * per_block / cols, blocks_per_row = cols / per_block;
  return error(error_code::not_finite, component,
               "tensor '" + at.name + "' -> " + std::string(type_name(t)) + ": block " +
                   std::to_string(at.row0 * blocks_per_row + bad) + " (row " + std::to_string(at.row0 + row) +
                   ") has a non-finite scale or value; quantized data validation failed");
}

/// Encodes rows x cols values at type t into `out` (then checked as llama.cpp checks rows
/// before writing them); see gguf_sink::write.
inline result<void> encode_rows(ggml_type t, const float* v, std::size_t rows, std::size_t cols, std::span<const float> im,
                                const Eigen::MatrixXf* h, const encode_options& o, std::vector<std::byte>& out,
                                std::vector<std::byte>& plain, encode_sums& sums, tensor_record& rec,
                                const encode_place& at, const char* component) {
  const std::string who = at.who();
  if (t == ggml_type::f32) {
    for (std::size_t r = 0; r < rows; ++r)
      SBGQ_TRY_VOID(in_context(detail::codec::check_finite("f32", std::span<const float>(v + r * cols, cols), r, "the weights"),
                               who + " (kept as f32)"));
    const auto bytes = std::as_bytes(std::span<const float>(v, rows * cols));
    out.assign(bytes.begin(), bytes.end());
    return {};
  }
  const codec_traits* ct = find_codec(t);
  if (!ct || !ct->quantize_row)
    return error(error_code::unsupported, component, who + ": no codec for " + std::string(type_name(t)));
  out.resize(rows * ct->row_bytes(cols));
  SBGQ_TRY_VOID(in_context(quantize_rows(t, v, rows, cols, im.empty() ? nullptr : im.data(), out, o.n_threads),
                           who + " -> " + std::string(type_name(t))));
  const bool gptq = h && o.rounding == rounding_mode::gptq && is_quantized(t) && gptq_supported(t);
  const bool measure = o.measure && is_quantized(t);
  if (measure) {
    SBGQ_TRY(const weighted_sums plain_sums, weighted_row_error(t, v, out, rows, cols, im));
    sums.measured = true;
    sums.err_plain += plain_sums.error;
    sums.norm += plain_sums.norm;
    if (!gptq) sums.err += plain_sums.error;
  }
  if (gptq) {
    plain.swap(out);
    out.resize(plain.size());
    gptq_options go = o.gptq;
    go.n_threads = o.n_threads;
    go.plain_bytes = plain;
    auto g = gptq_quantize(t, v, rows, cols, *h, im, out, go);
    if (!g) {
      error e = std::move(g).error();
      e.context = who + " (gptq): " + e.context;
      return e;
    }
    // Summed over the blocks of rows a streamed tensor is written in.
    rec.objective_plain = (std::isnan(rec.objective_plain) ? 0.0 : rec.objective_plain) + g->objective_plain;
    rec.objective = (std::isnan(rec.objective) ? 0.0 : rec.objective) + g->objective;
    if (measure) {
      SBGQ_TRY(const weighted_sums gptq_sums, weighted_row_error(t, v, out, rows, cols, im));
      sums.err += gptq_sums.error;
    }
  }
  return check_encoded(t, out, cols, at, component);
}

}  // namespace detail::engine

/// The rows x cols values `v` of tensor `name`, in place, as they read back after encoding at type t with
/// the options o (importance `im`, X^T X `h` for gptq): what the tensor becomes in the
/// file, for measuring its effect (engine/sensitivity.hpp). Errors: those of encoding.
inline result<void> encode_decode(ggml_type t, const std::string& name, float* v, std::size_t rows, std::size_t cols,
                                  std::span<const float> im, const Eigen::MatrixXf* h, encode_options o) {
  if (t == ggml_type::f32) return {};
  o.measure = false;
  std::vector<std::byte> out, plain;
  detail::engine::encode_sums sums;
  tensor_record rec;
  SBGQ_TRY_VOID(detail::engine::encode_rows(t, v, rows, cols, im, h, o, out, plain, sums, rec, {name}, "sensitivity"));
  return dequantize_rows(t, out, rows, cols, std::span<float>(v, rows * cols), o.n_threads);
}

/// A GGUF file being written by the engine (see the file comment). Movable.
class gguf_sink {
 public:
  /// Creates the output's temporary file (nothing is visible at `path` until finish()).
  /// `component` names the driver in the sink's errors ("pipeline", "quantize", ...).
  static result<gguf_sink> create(const std::string& path, const char* component = "pipeline") {
    SBGQ_TRY(gguf_writer w, gguf_writer::create(path));
    return gguf_sink(std::move(w), path, component);
  }

  /// For metadata, before declare().
  gguf_writer& writer() noexcept { return w_; }

  /// Declares every tensor of the plan at its type (types[i] for plan[i]).
  result<void> declare(const std::vector<tensor_plan>& plan, const std::vector<ggml_type>& types) {
    if (plan.size() != types.size())
      return error(error_code::internal, component_, "one type per planned tensor expected");
    plan_ = plan;
    types_ = types;
    for (std::size_t i = 0; i < plan.size(); ++i) SBGQ_TRY_VOID(w_.add_tensor(plan[i].gguf_name, types[i], plan[i].ne));
    return {};
  }

  /// Encodes and writes plan entry i whole: `v` is rows x cols f32 (row-major), `im` its
  /// importance weights (empty: none), `h` the X^T X of its input for gptq (or null).
  result<void> write(std::size_t i, const float* v, std::size_t rows, std::size_t cols, std::span<const float> im,
                     const Eigen::MatrixXf* h, const encode_options& o) {
    tensor_record rec = begin(i, im);
    detail::engine::encode_sums sums;
    const ggml_type t = types_[i];
    SBGQ_TRY_VOID(detail::engine::encode_rows(t, v, rows, cols, t == ggml_type::f32 ? std::span<const float>{} : im, h, o,
                                              buf_, plain_, sums, rec, {rec.name}, component_));
    SBGQ_TRY_VOID(w_.write_tensor_chunk(i, std::span<const std::byte>(buf_)));
    end(std::move(rec), sums, buf_.size());
    return {};
  }

  /// Encodes and writes plan entry i read from `src` in blocks of rows. `im`: empty, ne[0]
  /// importance weights, or ne[0] x ne[2] (one slice per matrix of a 3-D tensor of stacked
  /// experts, as llama-imatrix collects them). `h`: X^T X of its input for gptq (rows are
  /// independent under gptq, so each block is rounded alone), or null for plain rounding.
  result<void> stream(row_source& src, std::size_t i, std::span<const float> im, const encode_options& o,
                      const Eigen::MatrixXf* h = nullptr) {
    const tensor_plan& e = plan_[i];
    tensor_record rec = begin(i, im);
    detail::engine::encode_sums sums;
    const auto rows = static_cast<std::size_t>(e.rows()), cols = static_cast<std::size_t>(e.ne[0]);
    const std::size_t per_matrix = e.ne.size() > 1 ? static_cast<std::size_t>(e.ne[1]) : rows;
    const std::size_t n_slices = e.ne.size() > 2 ? static_cast<std::size_t>(e.ne[2]) : 1;
    if (!im.empty() && im.size() != cols && im.size() != cols * n_slices)
      return error(error_code::size_mismatch, component_,
                   "tensor '" + rec.name + "': " + std::to_string(im.size()) + " importance weights, expected " +
                       std::to_string(cols) + (n_slices > 1 ? " or " + std::to_string(cols * n_slices) : ""));
    const std::size_t block = std::max<std::size_t>(1, (std::size_t{1} << 22) / std::max<std::size_t>(cols, 1));  // ~16 MB
    gptq_factor_cache factor;  // gptq: every block of this tensor under the one H, factored once
    encode_options ob = o;
    ob.gptq.factor_cache = &factor;
    std::uint64_t bytes = 0;
    for (std::size_t m0 = 0; m0 < rows; m0 += per_matrix) {  // matrices (one for a 2-D tensor)
      const std::size_t slice = (m0 / per_matrix) % n_slices;
      const std::span<const float> w = im.size() > cols ? im.subspan(slice * cols, cols) : im;
      const std::size_t m1 = std::min(rows, m0 + per_matrix);
      for (std::size_t r0 = m0; r0 < m1; r0 += block) {
        const std::size_t r1 = std::min(m1, r0 + block);
        SBGQ_TRY_VOID(src.rows(e, r0, r1, vals_));
        const detail::engine::encode_place at{rec.name, r0, rows > r1 - r0};
        SBGQ_TRY_VOID(
            detail::engine::encode_rows(types_[i], vals_.data(), r1 - r0, cols, w, h, ob, buf_, plain_, sums, rec, at, component_));
        SBGQ_TRY_VOID(w_.write_tensor_chunk(i, std::span<const std::byte>(buf_)));
        bytes += buf_.size();
      }
    }
    end(std::move(rec), sums, bytes);
    return {};
  }

  /// Writes plan entry i as the stored bytes of a tensor kept at its type `t` (declared with
  /// it), after the check llama.cpp makes of rows it writes: a NaN in a norm would poison
  /// every output.
  result<void> copy(std::size_t i, ggml_type t, std::span<const std::byte> data) {
    if (t != types_[i])
      return error(error_code::internal, component_, "tensor '" + plan_[i].gguf_name + "' declared at another type");
    if (const std::size_t bad = first_invalid_block(t, data); bad != no_invalid_block)
      return error(error_code::not_finite, component_,
                   "tensor '" + plan_[i].gguf_name + "' (kept as " + std::string(type_name(t)) + "): " +
                       (is_quantized(t) ? "block " : "value ") + std::to_string(bad) + " is not finite in the input");
    tensor_record rec = begin(i, {});
    SBGQ_TRY_VOID(w_.write_tensor_chunk(i, data));
    end(std::move(rec), {}, data.size());
    return {};
  }

  /// Completes the file (atomically renamed into place); returns its size.
  result<std::uint64_t> finish() {
    SBGQ_TRY_VOID(w_.finish());
    std::error_code ec;
    const auto size = std::filesystem::file_size(path_, ec);
    return ec ? std::uint64_t{0} : static_cast<std::uint64_t>(size);
  }

  /// The encoded bytes of the tensor write() wrote last (valid until the next write or stream).
  std::span<const std::byte> last_written() const noexcept { return buf_; }

  const std::vector<tensor_record>& records() const noexcept { return records_; }
  std::uint64_t n_elements() const noexcept { return n_elements_; }
  std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  gguf_sink(gguf_writer w, std::string path, const char* component)
      : w_(std::move(w)), path_(std::move(path)), component_(component) {}
  tensor_record begin(std::size_t i, std::span<const float> im) const {
    tensor_record rec;
    rec.name = plan_[i].gguf_name;
    rec.type = types_[i];
    rec.n_elements = static_cast<std::uint64_t>(plan_[i].numel());
    rec.used_imatrix = !im.empty() && types_[i] != ggml_type::f32;
    return rec;
  }
  void end(tensor_record rec, const detail::engine::encode_sums& s, std::uint64_t bytes) {
    rec.bytes = bytes;
    if (is_quantized(rec.type) && s.measured) {
      rec.rel_error_plain = s.norm > 0 ? s.err_plain / s.norm : 0.0;
      rec.rel_error = s.norm > 0 ? s.err / s.norm : 0.0;
    }
    n_elements_ += rec.n_elements;
    bytes_ += rec.bytes;
    records_.push_back(std::move(rec));
  }

  gguf_writer w_;
  std::string path_;
  const char* component_;
  std::vector<tensor_plan> plan_;
  std::vector<ggml_type> types_;
  std::vector<tensor_record> records_;
  std::uint64_t n_elements_ = 0, bytes_ = 0;
  std::vector<std::byte> buf_, plain_;
  std::vector<float> vals_;
};

SBGQ_END_NAMESPACE
