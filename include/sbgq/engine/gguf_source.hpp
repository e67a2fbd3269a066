// A GGUF file as an engine row_source: what llama-quantize reads. Its plan is the file's
// tensors in file order; rows are decoded to f32 from whatever type the file stores
// (F32, F16, BF16, or a quantized type sbgq codes), and a tensor kept at its type is handed
// out as its stored bytes.
//
//   SBGQ_TRY(const gguf_file f, gguf_file::open(path));
//   gguf_source src(f, n_threads);
//   src.rows(*src.find("blk.0.ffn_up.weight"), 0, 64, buf);   // its first 64 rows in f32
//
// Design goals: bounded memory (only the rows asked for are decoded; a mapped file's pages
// are released behind the reader, never those of memory the caller owns); errors name the
// tensor. Non-goals: a forward pass over a GGUF model (this is not a tensor_source).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "../codec/rows.hpp"
#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/mapped_file.hpp"
#include "../io/gguf.hpp"
#include "source.hpp"

SBGQ_BEGIN_NAMESPACE

/// A parsed GGUF file (not owned) as a row_source (see the file comment).
class gguf_source : public row_source {
 public:
  explicit gguf_source(const gguf_file& f, int n_threads = 0) : f_(f), n_threads_(n_threads) {
    plan_.reserve(f.tensors().size());
    for (const gguf_tensor_info& t : f.tensors()) {
      tensor_plan e;
      e.gguf_name = t.name;
      e.ne.assign(t.ne.begin(), t.ne.begin() + t.n_dims);
      plan_.push_back(std::move(e));
    }
  }

  const std::vector<tensor_plan>& plan() const override { return plan_; }
  const gguf_file& file() const noexcept { return f_; }

  /// Errors: not_found (no such tensor), invalid_argument (rows out of range), and those of
  /// dequantize_rows (a stored type sbgq cannot decode), with the tensor's name.
  result<void> rows(const tensor_plan& e, std::size_t r0, std::size_t r1, std::vector<float>& out) override {
    const std::size_t i = f_.tensor_index(e.gguf_name);
    if (i == gguf_file::npos)
      return error(error_code::not_found, "source", "tensor '" + e.gguf_name + "' is not in the GGUF file");
    const gguf_tensor_info& t = f_.tensors()[i];
    const auto cols = static_cast<std::size_t>(t.ne[0]);
    const std::size_t n_rows = cols ? static_cast<std::size_t>(t.n_elements()) / cols : 0;
    if (r0 > r1 || r1 > n_rows)
      return error(error_code::invalid_argument, "source",
                   e.gguf_name + ": rows [" + std::to_string(r0) + ", " + std::to_string(r1) + ") of " + std::to_string(n_rows));
    const std::span<const std::byte> all = f_.tensor_data(i);
    const std::size_t row_bytes = n_rows ? all.size() / n_rows : 0;
    const std::span<const std::byte> part = all.subspan(r0 * row_bytes, (r1 - r0) * row_bytes);
    out.resize((r1 - r0) * cols);
    SBGQ_TRY_VOID(in_context(dequantize_rows(t.type, part, r1 - r0, cols, out, n_threads_),
                             "tensor '" + e.gguf_name + "' (stored as " + std::string(type_name(t.type)) + ")"));
    // Only for a file mapping: on caller-owned memory (gguf_file::parse) MADV_DONTNEED
    // would discard the data.
    if (f_.mapping().size() > 0) release_mapped_pages(part);
    return {};
  }

  /// Drops a tensor's pages once it has been copied (mapped files only).
  void release(std::span<const std::byte> data) const noexcept {
    if (f_.mapping().size() > 0) release_mapped_pages(data);
  }

 private:
  const gguf_file& f_;
  int n_threads_;
  std::vector<tensor_plan> plan_;
};

SBGQ_END_NAMESPACE
