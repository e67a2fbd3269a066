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
  bool measure = true;  ///< compute the records' weighted errors (costs a decode per row)
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
};

/// Encodes rows x cols values at type t into `out`; see gguf_sink::write.
inline result<void> encode_rows(ggml_type t, const float* v, std::size_t rows, std::size_t cols, std::span<const float> im,
                                const Eigen::MatrixXd* h, const encode_options& o, std::vector<std::byte>& out,
                                std::vector<std::byte>& plain, encode_sums& sums, tensor_record& rec,
                                const std::string& who) {
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
    return error(error_code::unsupported, "pipeline", who + ": no codec for " + std::string(type_name(t)));
  out.resize(rows * ct->row_bytes(cols));
  SBGQ_TRY_VOID(in_context(quantize_rows(t, v, rows, cols, im.empty() ? nullptr : im.data(), out, o.n_threads), who));
  if (!is_quantized(t) || !o.measure) return {};
  SBGQ_TRY(const weighted_sums plain_sums, weighted_row_error(t, v, out, rows, cols, im));
  sums.err_plain += plain_sums.error;
  sums.norm += plain_sums.norm;
  if (!(h && o.rounding == rounding_mode::gptq && gptq_supported(t))) {
    sums.err += plain_sums.error;
    return {};
  }
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
  SBGQ_TRY(const weighted_sums gptq_sums, weighted_row_error(t, v, out, rows, cols, im));
  sums.err += gptq_sums.error;
  rec.objective_plain = g->objective_plain;
  rec.objective = g->objective;
  return {};
}

}  // namespace detail::engine

/// A GGUF file being written by the engine (see the file comment). Movable.
class gguf_sink {
 public:
  /// Creates the output's temporary file (nothing is visible at `path` until finish()).
  static result<gguf_sink> create(const std::string& path) {
    SBGQ_TRY(gguf_writer w, gguf_writer::create(path));
    return gguf_sink(std::move(w), path);
  }

  /// For metadata, before declare().
  gguf_writer& writer() noexcept { return w_; }

  /// Declares every tensor of the plan at its type (types[i] for plan[i]).
  result<void> declare(const std::vector<tensor_plan>& plan, const std::vector<ggml_type>& types) {
    if (plan.size() != types.size())
      return error(error_code::internal, "pipeline", "one type per planned tensor expected");
    plan_ = plan;
    types_ = types;
    for (std::size_t i = 0; i < plan.size(); ++i) SBGQ_TRY_VOID(w_.add_tensor(plan[i].gguf_name, types[i], plan[i].ne));
    return {};
  }

  /// Encodes and writes plan entry i whole: `v` is rows x cols f32 (row-major), `im` its
  /// importance weights (empty: none), `h` the X^T X of its input for gptq (or null).
  result<void> write(std::size_t i, const float* v, std::size_t rows, std::size_t cols, std::span<const float> im,
                     const Eigen::MatrixXd* h, const encode_options& o) {
    tensor_record rec = begin(i, im);
    detail::engine::encode_sums sums;
    const ggml_type t = types_[i];
    SBGQ_TRY_VOID(detail::engine::encode_rows(t, v, rows, cols, t == ggml_type::f32 ? std::span<const float>{} : im, h, o,
                                              buf_, plain_, sums, rec, "tensor '" + rec.name + "'"));
    SBGQ_TRY_VOID(w_.write_tensor_chunk(i, std::span<const std::byte>(buf_)));
    end(std::move(rec), sums, buf_.size());
    return {};
  }

  /// Encodes and writes plan entry i read from `src` in blocks of rows (plain rounding).
  result<void> stream(tensor_source& src, std::size_t i, std::span<const float> im, const encode_options& o) {
    const tensor_plan& e = plan_[i];
    tensor_record rec = begin(i, im);
    detail::engine::encode_sums sums;
    const auto rows = static_cast<std::size_t>(e.rows()), cols = static_cast<std::size_t>(e.ne[0]);
    const std::size_t block = std::max<std::size_t>(1, (std::size_t{1} << 22) / cols);  // ~16 MB of f32
    std::uint64_t bytes = 0;
    for (std::size_t r0 = 0; r0 < rows; r0 += block) {
      const std::size_t r1 = std::min(rows, r0 + block);
      SBGQ_TRY_VOID(src.rows(e, r0, r1, vals_));
      const std::string who = "tensor '" + rec.name + "'" + (rows > block ? ", rows from " + std::to_string(r0) : "");
      SBGQ_TRY_VOID(detail::engine::encode_rows(types_[i], vals_.data(), r1 - r0, cols, im, nullptr, o, buf_, plain_, sums, rec, who));
      SBGQ_TRY_VOID(w_.write_tensor_chunk(i, std::span<const std::byte>(buf_)));
      bytes += buf_.size();
    }
    end(std::move(rec), sums, bytes);
    return {};
  }

  /// Completes the file (atomically renamed into place); returns its size.
  result<std::uint64_t> finish() {
    SBGQ_TRY_VOID(w_.finish());
    std::error_code ec;
    const auto size = std::filesystem::file_size(path_, ec);
    return ec ? std::uint64_t{0} : static_cast<std::uint64_t>(size);
  }

  const std::vector<tensor_record>& records() const noexcept { return records_; }
  std::uint64_t n_elements() const noexcept { return n_elements_; }
  std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  gguf_sink(gguf_writer w, std::string path) : w_(std::move(w)), path_(std::move(path)) {}
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
    if (is_quantized(rec.type)) {
      rec.rel_error_plain = s.norm > 0 ? s.err_plain / s.norm : 0.0;
      rec.rel_error = s.norm > 0 ? s.err / s.norm : 0.0;
    }
    n_elements_ += rec.n_elements;
    bytes_ += rec.bytes;
    records_.push_back(std::move(rec));
  }

  gguf_writer w_;
  std::string path_;
  std::vector<tensor_plan> plan_;
  std::vector<ggml_type> types_;
  std::vector<tensor_record> records_;
  std::uint64_t n_elements_ = 0, bytes_ = 0;
  std::vector<std::byte> buf_, plain_;
  std::vector<float> vals_;
};

SBGQ_END_NAMESPACE
