// Importance matrix: per-input-column sums of squared activations of every weight matrix,
// accumulated as llama-imatrix does, and read/written in both of llama.cpp's file formats
// (imatrix.md): the GGUF format (`<name>.in_sum2` + `<name>.counts` tensors) and the
// legacy binary `.dat`.
//
// Design goals:
//   - Numbers identical in meaning to llama.cpp's: raw f32 sums S[c] added in token order,
//     one int64 count per matrix; the quantizer's weights are S/count (1.0 for a matrix that
//     saw no token), or value/ncall for a legacy file.
//   - Files from either tool drive either quantizer: what we write, llama-quantize reads;
//     what llama-imatrix writes, we read. Malformed files give clear errors.
// Non-goals: MoE expert routing (dense Qwen3.5 only; n_mat > 1 entries are read and
// written but never collected).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../core/base.hpp"
#include "../core/error.hpp"
#include "../core/detail/byte_reader.hpp"
#include "gguf.hpp"
#include "../core/mapped_file.hpp"
#include "../core/output_file.hpp"

SBGQ_BEGIN_NAMESPACE

/// Statistics of one weight matrix (or n_mat stacked matrices).
struct imatrix_entry {
  std::int64_t n_in = 0;              ///< columns of the weight (ne[0])
  std::vector<float> sum2;            ///< n_in * n_mat raw sums of x^2
  std::vector<std::int64_t> counts;   ///< n_mat token counts
};

/// A whole importance matrix, entries keyed by GGUF tensor name (sorted, as llama.cpp writes).
struct imatrix {
  std::map<std::string, imatrix_entry> entries;
  std::vector<std::string> datasets;  ///< imatrix.datasets
  std::uint32_t chunk_count = 0;      ///< imatrix.chunk_count
  std::uint32_t chunk_size = 0;       ///< imatrix.chunk_size (tokens per chunk)

  /// Adds the rows of an activation matrix X [n_rows x n_in] (row-major) to `name`:
  /// sum2[c] += x[c]^2 in token order (f32), counts[0] += n_rows. Creates the entry.
  /// Errors: size_mismatch if n_in differs from an existing entry's; not_finite.
  result<void> accumulate(const std::string& name, const float* x, std::int64_t n_rows, std::int64_t n_in) {
    auto& e = entries[name];
    if (e.sum2.empty()) {
      e.n_in = n_in;
      e.sum2.assign(static_cast<std::size_t>(n_in), 0.0f);
      e.counts.assign(1, 0);
    } else if (e.n_in != n_in || e.counts.size() != 1) {
      return error(error_code::size_mismatch, "imatrix",
                   name + ": activations have " + std::to_string(n_in) + " columns, the entry has " + std::to_string(e.n_in));
    }
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const float* row = x + r * n_in;
      for (std::int64_t c = 0; c < n_in; ++c) e.sum2[static_cast<std::size_t>(c)] += row[c] * row[c];
    }
    for (std::int64_t c = 0; c < n_in; ++c)
      if (!std::isfinite(e.sum2[static_cast<std::size_t>(c)]))
        return error(error_code::not_finite, "imatrix", name + ": non-finite sum at column " + std::to_string(c));
    e.counts[0] += n_rows;
    return {};
  }

  /// Adds another importance matrix (sums and counts, entry by entry; datasets appended),
  /// as llama-imatrix --in-file does. Errors: size_mismatch for an entry of another shape.
  result<void> merge(const imatrix& o) {
    for (const auto& [name, src] : o.entries) {
      auto it = entries.find(name);
      if (it == entries.end()) {
        entries.emplace(name, src);
        continue;
      }
      auto& dst = it->second;
      if (dst.n_in != src.n_in || dst.sum2.size() != src.sum2.size() || dst.counts.size() != src.counts.size())
        return error(error_code::size_mismatch, "imatrix", name + ": cannot merge entries of different shapes");
      for (std::size_t i = 0; i < dst.sum2.size(); ++i) dst.sum2[i] += src.sum2[i];
      for (std::size_t i = 0; i < dst.counts.size(); ++i) dst.counts[i] += src.counts[i];
    }
    datasets.insert(datasets.end(), o.datasets.begin(), o.datasets.end());
    chunk_count += o.chunk_count;
    if (chunk_size == 0) chunk_size = o.chunk_size;
    return {};
  }

  /// The quantizer's column weights for `name`, as llama-quantize derives them from a
  /// GGUF imatrix (imatrix.md 4.1): S/count per matrix, 1.0 where count is 0. Empty if
  /// the entry is absent.
  std::vector<float> weights(const std::string& name) const {
    auto it = entries.find(name);
    if (it == entries.end()) return {};
    const auto& e = it->second;
    std::vector<float> w(e.sum2.size());
    for (std::size_t m = 0; m < e.counts.size(); ++m) {
      const auto base = m * static_cast<std::size_t>(e.n_in);
      for (std::size_t i = 0; i < static_cast<std::size_t>(e.n_in); ++i)
        w[base + i] = e.counts[m] > 0 ? e.sum2[base + i] / static_cast<float>(e.counts[m]) : 1.0f;
    }
    return w;
  }
};

// ---- legacy .dat (imatrix.md section 3) -----------------------------------------------

/// Writes the legacy binary format atomically. Values are mean * ncall with
/// ncall = ceil(max(counts) / chunk_size); entries whose counts are all zero are skipped.
inline result<void> write_imatrix_dat(const imatrix& im, const std::string& path) {
  SBGQ_TRY(output_file out, output_file::create(path));
  std::int32_t n = 0;
  for (const auto& [name, e] : im.entries)
    if (std::any_of(e.counts.begin(), e.counts.end(), [](std::int64_t c) { return c > 0; })) ++n;
  SBGQ_TRY_VOID(out.write(&n, 4));
  const std::int64_t chunk = im.chunk_size > 0 ? im.chunk_size : 1;
  for (const auto& [name, e] : im.entries) {
    const std::int64_t max_count = *std::max_element(e.counts.begin(), e.counts.end());
    if (max_count <= 0) continue;
    const auto len = static_cast<std::int32_t>(name.size());
    const auto ncall = static_cast<std::int32_t>((max_count + chunk - 1) / chunk);
    const auto nval = static_cast<std::int32_t>(e.sum2.size());
    SBGQ_TRY_VOID(out.write(&len, 4));
    SBGQ_TRY_VOID(out.write(name.data(), name.size()));
    SBGQ_TRY_VOID(out.write(&ncall, 4));
    SBGQ_TRY_VOID(out.write(&nval, 4));
    std::vector<float> v(e.sum2.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const std::int64_t c = e.counts[i / static_cast<std::size_t>(e.n_in)];
      v[i] = c > 0 ? (e.sum2[i] / static_cast<float>(c)) * static_cast<float>(ncall) : static_cast<float>(ncall);
    }
    SBGQ_TRY_VOID(out.write(v.data(), v.size() * sizeof(float)));
  }
  const auto chunks = static_cast<std::int32_t>(im.chunk_count);
  SBGQ_TRY_VOID(out.write(&chunks, 4));
  const std::string ds = im.datasets.empty() ? std::string() : im.datasets.front();
  const auto ds_len = static_cast<std::int32_t>(ds.size());
  SBGQ_TRY_VOID(out.write(&ds_len, 4));
  SBGQ_TRY_VOID(out.write(ds.data(), ds.size()));
  return out.commit();
}

/// Parses the legacy binary format. A legacy file holds means, not sums, so each entry
/// keeps llama-quantize's weights exactly: sum2 = value / ncall (value itself when
/// ncall <= 0) with a count of 1, so weights() returns them unchanged. chunk_size is
/// unknown (0); chunk_count and the dataset come from the optional trailer.
/// Errors name the entry and the byte offset: truncated, bad_value (sizes, negative or
/// non-finite values), duplicate.
inline result<imatrix> parse_imatrix_dat(std::span<const std::byte> bytes) {
  detail::byte_reader r(bytes);
  auto need = [&](bool ok, const std::string& what) -> result<void> {
    if (!ok) return error(error_code::truncated, "imatrix", "legacy imatrix ends inside " + what, r.offset());
    return {};
  };
  imatrix im;
  std::int32_t n = 0;
  SBGQ_TRY_VOID(need(r.read(n), "the entry count"));
  if (n < 0 || static_cast<std::uint64_t>(n) > bytes.size() / 16)
    return error(error_code::bad_value, "imatrix", "legacy imatrix: implausible entry count " + std::to_string(n), 0);
  for (std::int32_t k = 0; k < n; ++k) {
    const std::string where = "entry " + std::to_string(k);
    std::int32_t len = 0;
    SBGQ_TRY_VOID(need(r.read(len), where + " name length"));
    if (len <= 0 || len > 4096)
      return error(error_code::bad_value, "imatrix", where + ": bad name length " + std::to_string(len), r.offset() - 4);
    std::string_view name;
    SBGQ_TRY_VOID(need(r.read_string(static_cast<std::uint64_t>(len), name), where + " name"));
    std::int32_t ncall = 0, nval = 0;
    SBGQ_TRY_VOID(need(r.read(ncall), "'" + std::string(name) + "' ncall"));
    SBGQ_TRY_VOID(need(r.read(nval), "'" + std::string(name) + "' nval"));
    if (nval <= 0 || static_cast<std::uint64_t>(nval) * 4 > r.remaining())
      return error(nval <= 0 ? error_code::bad_value : error_code::truncated, "imatrix",
                   "'" + std::string(name) + "': " + std::to_string(nval) + " values do not fit the file", r.offset() - 4);
    imatrix_entry e;
    e.n_in = nval;
    e.sum2.resize(static_cast<std::size_t>(nval));
    std::span<const std::byte> raw;
    (void)r.read_bytes(static_cast<std::uint64_t>(nval) * 4, raw);
    std::memcpy(e.sum2.data(), raw.data(), raw.size());
    for (std::size_t i = 0; i < e.sum2.size(); ++i) {
      if (!std::isfinite(e.sum2[i]) || e.sum2[i] < 0)
        return error(error_code::bad_value, "imatrix",
                     "'" + std::string(name) + "': value " + std::to_string(i) + " is negative or not finite");
      if (ncall > 0) e.sum2[i] /= static_cast<float>(ncall);
    }
    e.counts = {1};
    if (!im.entries.emplace(std::string(name), std::move(e)).second)
      return error(error_code::duplicate, "imatrix", "entry '" + std::string(name) + "' appears twice");
  }
  // Optional trailer: chunk count and dataset name.
  std::int32_t chunks = 0;
  if (r.read(chunks)) {
    im.chunk_count = chunks > 0 ? static_cast<std::uint32_t>(chunks) : 0;
    std::int32_t ds_len = 0;
    if (r.read(ds_len) && ds_len > 0) {
      std::string_view ds;
      if (!r.read_string(static_cast<std::uint64_t>(ds_len), ds))
        return error(error_code::truncated, "imatrix", "legacy imatrix ends inside the dataset name", r.offset());
      im.datasets.emplace_back(ds);
    }
  }
  return im;
}

inline result<imatrix> read_imatrix_dat(const std::string& path) {
  SBGQ_TRY(mapped_file m, mapped_file::open(path));
  auto r = parse_imatrix_dat(m.bytes());
  if (!r) {
    auto e = std::move(r).error();
    e.context = path + ": " + e.context;
    return e;
  }
  return r;
}

// ---- GGUF imatrix (imatrix.md section 2) ------------------------------------------------

/// Writes the GGUF imatrix format atomically: general.type "imatrix", imatrix.datasets,
/// imatrix.chunk_count, imatrix.chunk_size, then per entry (sorted by name)
/// `<name>.in_sum2` F32 {n_in, n_mat} (raw sums) and `<name>.counts` F32 {1, n_mat}.
inline result<void> write_imatrix_gguf(const imatrix& im, const std::string& path) {
  SBGQ_TRY(gguf_writer w, gguf_writer::create(path));
  SBGQ_TRY_VOID(w.add("general.type", "imatrix"));
  SBGQ_TRY_VOID(w.add("imatrix.datasets", gguf_array::of(std::vector<std::string>(im.datasets))));
  SBGQ_TRY_VOID(w.add("imatrix.chunk_count", im.chunk_count));
  SBGQ_TRY_VOID(w.add("imatrix.chunk_size", im.chunk_size));
  for (const auto& [name, e] : im.entries) {
    const auto n_mat = static_cast<std::int64_t>(e.counts.size());
    SBGQ_TRY(std::size_t a, w.add_tensor(name + ".in_sum2", ggml_type::f32, {e.n_in, n_mat}));
    SBGQ_TRY(std::size_t b, w.add_tensor(name + ".counts", ggml_type::f32, {1, n_mat}));
    (void)a;
    (void)b;
  }
  for (const auto& [name, e] : im.entries) {
    SBGQ_TRY_VOID(w.write_tensor_data(name + ".in_sum2", std::as_bytes(std::span<const float>(e.sum2))));
    std::vector<float> c(e.counts.size());
    for (std::size_t i = 0; i < c.size(); ++i) c[i] = static_cast<float>(e.counts[i]);
    SBGQ_TRY_VOID(w.write_tensor_data(name + ".counts", std::as_bytes(std::span<const float>(c))));
  }
  return w.finish();
}

/// Reads a GGUF imatrix (an already parsed file). Tensors are paired by the suffixes
/// .in_sum2 and .counts; other suffixes are ignored, as llama-quantize does. Errors:
/// not_found (a required imatrix.* key, or half of a pair), bad_dtype (not F32),
/// bad_shape (counts not {1, n_mat} or in_sum2 not {n_in, n_mat}), bad_value (negative or
/// non-finite values).
inline result<imatrix> read_imatrix_gguf(const gguf_file& f) {
  imatrix im;
  const auto& md = f.metadata();
  auto with_ctx = [](error e) {
    e.component = "imatrix";
    return e;
  };
  {
    auto ds = md.get_array_of<std::string>("imatrix.datasets");
    if (!ds) return with_ctx(std::move(ds).error());
    im.datasets = std::move(*ds);
    auto cc = md.get<std::uint32_t>("imatrix.chunk_count");
    if (!cc) return with_ctx(std::move(cc).error());
    im.chunk_count = *cc;
    auto cs = md.get<std::uint32_t>("imatrix.chunk_size");
    if (!cs) return with_ctx(std::move(cs).error());
    im.chunk_size = *cs;
  }
  auto floats = [&](const gguf_tensor_info& t, std::size_t index) -> result<std::vector<float>> {
    if (t.type != ggml_type::f32)
      return error(error_code::bad_dtype, "imatrix", "tensor '" + t.name + "' is " + std::string(type_name(t.type)) + ", expected f32");
    const auto raw = f.tensor_data(index);
    std::vector<float> v(raw.size() / sizeof(float));
    std::memcpy(v.data(), raw.data(), v.size() * sizeof(float));
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]) || v[i] < 0)
        return error(error_code::bad_value, "imatrix", "tensor '" + t.name + "' value " + std::to_string(i) + " is negative or not finite");
    return v;
  };
  const auto tensors = f.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    constexpr std::string_view suffix = ".in_sum2";
    if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string name = t.name.substr(0, t.name.size() - suffix.size());
    const std::size_t ci = f.tensor_index(name + ".counts");
    if (ci == gguf_file::npos) return error(error_code::not_found, "imatrix", "'" + name + "' has in_sum2 but no counts tensor");
    const auto& ct = tensors[ci];
    // Both 2-D ({n_in, n_mat} and {1, n_mat}): with a 3rd or 4th dimension the counts and
    // the sums would no longer pair up (n_in values per count), and weights() relies on it.
    if (ct.ne[0] != 1 || ct.ne[1] != t.ne[1] || ct.ne[2] != 1 || t.ne[2] != 1 || ct.ne[3] != 1 || t.ne[3] != 1)
      return error(error_code::bad_shape, "imatrix",
                   "'" + name + "': in_sum2 is " + detail::gguf_shape_string(t.ne) + " and counts is " + detail::gguf_shape_string(ct.ne) +
                       ", expected {n_in, n_mat} and {1, n_mat}");
    imatrix_entry e;
    e.n_in = t.ne[0];
    SBGQ_TRY(e.sum2, floats(t, i));
    SBGQ_TRY(std::vector<float> counts, floats(ct, ci));
    for (float c : counts) {
      if (c != std::floor(c) || c > 9e15f)
        return error(error_code::bad_value, "imatrix", "'" + name + "': count " + std::to_string(c) + " is not a whole number");
      e.counts.push_back(static_cast<std::int64_t>(c));
    }
    im.entries.emplace(name, std::move(e));
  }
  for (const auto& t : tensors) {
    constexpr std::string_view suffix = ".counts";
    if (t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        !im.entries.count(t.name.substr(0, t.name.size() - suffix.size())))
      return error(error_code::not_found, "imatrix", "'" + t.name + "' has no matching in_sum2 tensor");
  }
  return im;
}

/// Reads an imatrix file of either format: GGUF if it starts with the GGUF magic,
/// else the legacy binary format (llama-quantize tries GGUF first too).
inline result<imatrix> read_imatrix(const std::string& path) {
  SBGQ_TRY(mapped_file m, mapped_file::open(path));
  const bool is_gguf = m.size() >= 4 && std::memcmp(m.data(), "GGUF", 4) == 0;
  result<imatrix> r = error_code::internal;
  if (is_gguf) {
    auto f = gguf_file::open(path);
    if (!f) r = std::move(f).error();
    else r = read_imatrix_gguf(*f);
  } else {
    r = parse_imatrix_dat(m.bytes());
  }
  if (!r) {
    auto e = std::move(r).error();
    e.context = path + ": " + e.context;
    return e;
  }
  return r;
}

/// Largest importance weight (S/count, a mean squared activation) accepted. Real models'
/// largest means are around 1e8 (activations of 1e4); a weight of 1e30 or more would make
/// the quantizers' weighted sums (w * x^2 over a block) overflow f32 and wreck the tensor.
inline constexpr float max_importance_weight = 1e30f;

/// Checks the quantizer's weights of one entry (`w` = imatrix::weights(name)): every value
/// finite and non-negative, none above max_importance_weight, and at least one column with
/// a normal positive weight. An entry of zeros or subnormals would make every block's
/// weighted fit degenerate (all-zero scales: the tensor is erased, PPL in the thousands).
/// Errors: not_finite (index named), bad_value (the entry named with what was found).
inline result<void> check_importance_weights(const std::string& name, std::span<const float> w) {
  bool any_normal = false;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const float v = w[i];
    if (!std::isfinite(v))
      return error(error_code::not_finite, "imatrix", "imatrix entry '" + name + "' has a non-finite weight at index " + std::to_string(i));
    if (v < 0.0f)
      return error(error_code::bad_value, "imatrix", "imatrix entry '" + name + "' has a negative weight at index " + std::to_string(i));
    if (v > max_importance_weight)
      return error(error_code::bad_value, "imatrix",
                   "imatrix entry '" + name + "' has a weight of " + std::to_string(v) + " at index " + std::to_string(i) +
                       " (at most 1e30 expected: mean squared activations)");
    if (std::isnormal(v)) any_normal = true;
  }
  if (!w.empty() && !any_normal)
    return error(error_code::bad_value, "imatrix",
                 "imatrix entry '" + name + "': all " + std::to_string(w.size()) +
                     " weights are zero or subnormal (statistics of a model that saw no input?)");
  return {};
}

/// Checks an imatrix against the tensors it will weight: every entry must name a tensor
/// of `n_in_of` and hold exactly its ne[0] x n_mat values in n_mat matrices. `n_in_of`
/// maps a name to ne[0] (an integer; n_mat = 1) or to a std::pair{ne[0], ne[2]}, with
/// ne[0] = -1 for no such tensor. token_embd's size is not checked (llama-quantize then
/// quantizes it without weights). Errors: not_found, size_mismatch (both name the entry).
template <class F>
result<void> check_imatrix_against(const imatrix& im, F&& n_in_of) {
  for (const auto& [name, e] : im.entries) {
    std::int64_t n_in = 0, n_mat = 1;
    if constexpr (std::is_integral_v<std::decay_t<decltype(n_in_of(name))>>) {
      n_in = n_in_of(name);
    } else {
      std::tie(n_in, n_mat) = n_in_of(name);
    }
    if (n_in < 0) return error(error_code::not_found, "imatrix", "entry '" + name + "' matches no tensor of the model");
    if (name == "token_embd.weight") continue;
    const auto n_values = static_cast<std::int64_t>(e.sum2.size());
    const auto n_counts = static_cast<std::int64_t>(e.counts.size());
    if (n_values != n_in * n_mat || n_counts != n_mat || e.n_in != n_in)
      return error(error_code::size_mismatch, "imatrix",
                   "entry '" + name + "' has " + std::to_string(n_values) + " values, the tensor has " + std::to_string(n_in) +
                       " columns (entry: " + std::to_string(n_counts) + " matrices of " + std::to_string(e.n_in) +
                       ", tensor: " + std::to_string(n_mat) + ")");
  }
  return {};
}

SBGQ_END_NAMESPACE
