// Whole-file quantization of a GGUF model, a drop-in for llama.cpp's llama-quantize:
// F32/F16/BF16 (or, with allow_requantize, quantized) GGUF in, a Q4_K_M/IQ4_XS/... GGUF
// out, with the same tensor types, tensor order, tensor bytes and metadata as
// llama_model_quantize (+ the quantize.imatrix.* keys llama-quantize's CLI adds).
//
// What the output contains (checked against libllama v0.5.0 by tests/test_quantize.cpp):
//   metadata  every key of the input, in input order, except general.quantization_version,
//             general.file_type and split.{no,count,tensors.count}; then
//             general.quantization_version = 2 (u32) and general.file_type = ftype (u32)
//             appended (llama.cpp's gguf_set_val removes and re-appends a key); then the
//             kv overrides in order, each also removed and re-appended (imatrix
//             provenance keys last, see below).
//   tensors   in llama_model_quantize's order (quant_policy.hpp: by layer, then name),
//             types from choose_tensor_types(); tensors whose type does not change are
//             copied byte for byte, the others are converted to f32 exactly and encoded
//             with codec/rows.hpp (byte-identical to ggml_quantize_chunk), with the
//             imatrix weights of that tensor.
//
// llama_model_quantize itself writes NO imatrix keys; llama-quantize (the CLI) passes four
// as kv overrides: quantize.imatrix.file (the --imatrix argument, 127 bytes at most),
// quantize.imatrix.dataset (the first dataset, 127 bytes; only if there is one),
// quantize.imatrix.entries_count (u32, entries after filtering) and
// quantize.imatrix.chunks_count (u32, only if > 0). quantize_options::imatrix_metadata
// chooses between the two behaviours (default: the CLI's). The CLI's --include-weights /
// --exclude-weights filtering of the imatrix (quantize_options::imatrix_include/exclude)
// and --override-kv parsing (parse_kv_override) are here too, so the file equals
// llama-quantize's for the same command line.
//
// Design goals:
//   - The engine's own parts (engine/gguf_source.hpp, engine/sink.hpp): the input is a
//     row_source, the output the pipeline's gguf_sink, so the encoder, the row checks
//     and the error messages are the pipeline's.
//   - Bounded memory: the input is memory-mapped, read in blocks of ~16 MB of f32 rows,
//     and its pages are released behind the reader (plus the page cache).
//   - Output atomic (gguf_writer over output_file): an error leaves no file behind.
//   - Everything that can be checked before writing is checked first: codecs for every
//     chosen type, decodable sources, imatrix sizes and finiteness.
//   - Rows are validated after encoding as ggml_validate_row_data does (no inf/NaN fp16
//     scale), so a file that llama.cpp would refuse to write is never written.
// Non-goals: split files (--keep-split), --prune-layers, target types without an sbgq
// codec (Q4_0/Q5_0/Q5_1/IQ1..IQ3; they are reported as unsupported).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>


#include "core/base.hpp"
#include "codec/blocks.hpp"
#include "codec/registry.hpp"
#include "codec/rows.hpp"
#include "core/error.hpp"
#include "io/ggml_types.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "core/output_file.hpp"
#include "core/progress.hpp"
#include "quant/quant_policy.hpp"
#include "engine/gguf_source.hpp"
#include "engine/sink.hpp"

SBGQ_BEGIN_NAMESPACE

/// GGML_QNT_VERSION, written as general.quantization_version.
inline constexpr std::uint32_t ggml_quantization_version = 2;

/// How to quantize (llama-quantize's options).
struct quantize_options {
  quant_policy policy;                  ///< ftype and type overrides
  /// Importance matrix, or null (not owned; must outlive the call). A non-empty one also
  /// switches the type rules' has_imatrix.
  const imatrix* importance = nullptr;
  /// The imatrix path as the user gave it (quantize.imatrix.file).
  std::string imatrix_file;
  /// Add the quantize.imatrix.* keys llama-quantize's CLI writes (false: exactly
  /// llama_model_quantize's metadata).
  bool imatrix_metadata = true;
  /// Extra keys set after general.file_type (llama-quantize --override-kv): a key already
  /// present is removed and re-appended, as gguf_set_val does. parse_kv_override() turns
  /// llama.cpp's KEY=TYPE:VALUE into the key it writes.
  std::vector<gguf_kv> kv_overrides;
  /// llama-quantize --include-weights: use the importance matrix only for the entries whose
  /// name contains one of these strings (the other entries are dropped before anything
  /// else, so the type rules' has_imatrix and quantize.imatrix.entries_count see the rest).
  std::vector<std::string> imatrix_include;
  /// llama-quantize --exclude-weights: drop the entries whose name contains one of these
  /// strings. At most one of imatrix_include and imatrix_exclude may be non-empty.
  std::vector<std::string> imatrix_exclude;
  bool allow_requantize = false;        ///< --allow-requantize
  int n_threads = 0;                    ///< <= 0: all hardware threads
  /// Optional: stage quantize after each tensor is written (index, count, tensor, detail
  /// "f16 -> q4_K", bytes = output tensor data so far), then done.
  progress_fn progress;
};

/// What quantize_file did.
struct quantize_report {
  type_plan plan;                       ///< the per-tensor choices, in writing order
  std::uint64_t n_elements = 0;         ///< all tensors
  std::uint64_t bytes_in = 0;           ///< tensor data of the input
  std::uint64_t bytes_out = 0;          ///< tensor data of the output
  std::uint64_t file_size = 0;          ///< output file
  std::size_t n_converted = 0;          ///< tensors whose type changed
  std::size_t n_with_imatrix = 0;       ///< of those, quantized with imatrix weights
  std::vector<std::string> notes;       ///< e.g. tensors without an imatrix entry
  double seconds = 0;
  /// Bits per weight of the tensor data.
  double bits_per_weight() const noexcept {
    return n_elements ? static_cast<double>(bytes_out) * 8.0 / static_cast<double>(n_elements) : 0.0;
  }
};

/// The four provenance keys llama-quantize's CLI writes for an imatrix (file comment), in
/// its order. `file`: the path as given on the command line.
inline std::vector<gguf_kv> imatrix_metadata_keys(const imatrix& im, std::string_view file) {
  std::vector<gguf_kv> kv;
  auto cut = [](std::string_view s) { return std::string(s.substr(0, std::min<std::size_t>(s.size(), 127))); };
  kv.push_back({"quantize.imatrix.file", gguf_value(cut(file))});
  if (!im.datasets.empty()) kv.push_back({"quantize.imatrix.dataset", gguf_value(cut(im.datasets.front()))});
  kv.push_back({"quantize.imatrix.entries_count", gguf_value(static_cast<std::uint32_t>(im.entries.size()))});
  if (im.chunk_count > 0) kv.push_back({"quantize.imatrix.chunks_count", gguf_value(static_cast<std::uint32_t>(im.chunk_count))});
  return kv;
}

/// Parses llama.cpp's --override-kv KEY=TYPE:VALUE (TYPE int, float, bool or str) into the
/// key llama_model_quantize writes: int as UINT32 (since llama.cpp PR #14182), float as
/// FLOAT32, bool (`true`/`false`), str (at most 127 bytes). The key is at most 127 bytes.
/// Stricter than llama.cpp's atol/atof: a value that is not a whole number in [0, 2^32)
/// for int, or not a finite number for float, is refused rather than written as 0 (or,
/// for a negative int, as its absolute value). Errors: invalid_argument naming the part.
inline result<gguf_kv> parse_kv_override(std::string_view arg) {
  auto bad = [&](const std::string& why) {
    return error(error_code::invalid_argument, "quantize",
                 "kv override '" + std::string(arg.substr(0, 200)) + "': " + why + " (expected KEY=TYPE:VALUE, TYPE int, float, bool or str)");
  };
  const std::size_t eq = arg.find('=');
  if (eq == std::string_view::npos) return bad("no '='");
  if (eq == 0) return bad("empty key");
  if (eq >= 128) return bad("key longer than 127 bytes");
  const std::string key(arg.substr(0, eq));
  const std::string_view rest = arg.substr(eq + 1);
  const std::size_t colon = rest.find(':');
  if (colon == std::string_view::npos) return bad("no TYPE: before the value");
  const std::string_view type = rest.substr(0, colon), value = rest.substr(colon + 1);
  const std::string v(value);
  if (type == "int") {
    if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }) || v.size() > 10 ||
        std::stoull(v) > 0xffffffffull)
      return bad("int value '" + v + "' is not a whole number in [0, 4294967295] (written as UINT32)");
    return gguf_kv{key, gguf_value(static_cast<std::uint32_t>(std::stoull(v)))};
  }
  if (type == "float") {
    char* end = nullptr;
    const double x = v.empty() ? 0.0 : std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !std::isfinite(static_cast<float>(x))) return bad("float value '" + v + "' is not a finite number");
    return gguf_kv{key, gguf_value(static_cast<float>(x))};
  }
  if (type == "bool") {
    if (v != "true" && v != "false") return bad("bool value '" + v + "' is neither true nor false");
    return gguf_kv{key, gguf_value(v == "true")};
  }
  if (type == "str") {
    if (v.size() > 127) return bad("str value longer than 127 bytes");
    return gguf_kv{key, gguf_value(v)};
  }
  return bad("unknown TYPE '" + std::string(type) + "'");
}

/// The importance matrix llama-quantize uses after --include-weights / --exclude-weights:
/// an entry is kept if its name contains one of `include` (when given), and dropped if it
/// contains one of `exclude`. Plain substring matches, as llama-quantize's. Errors:
/// invalid_argument if both lists are non-empty (llama-quantize refuses the combination).
inline result<imatrix> filter_imatrix(const imatrix& im, const std::vector<std::string>& include,
                                      const std::vector<std::string>& exclude) {
  if (!include.empty() && !exclude.empty())
    return error(error_code::invalid_argument, "quantize", "include and exclude weights cannot be used together");
  auto contains_any = [](const std::string& name, const std::vector<std::string>& parts) {
    return std::any_of(parts.begin(), parts.end(), [&](const std::string& p) { return name.find(p) != std::string::npos; });
  };
  imatrix out;
  out.datasets = im.datasets;
  out.chunk_count = im.chunk_count;
  out.chunk_size = im.chunk_size;
  for (const auto& [name, e] : im.entries) {
    if (!include.empty() && !contains_any(name, include)) continue;
    if (contains_any(name, exclude)) continue;
    out.entries.emplace(name, e);
  }
  return out;
}

namespace detail::quant {

inline error fail(error_code c, std::string ctx) { return error(c, "quantize", std::move(ctx)); }

/// A codec sbgq can write into a GGUF (Q8_K is an internal type only).
inline const codec_traits* writable_codec(ggml_type t) noexcept {
  return t == ggml_type::q8_k ? nullptr : find_codec(t);
}

}  // namespace detail::quant

/// Quantizes the parsed GGUF `in` (see quantize_file) into `out_path`.
inline result<quantize_report> quantize_gguf(const gguf_file& in, const std::string& out_path,
                                             const quantize_options& opt) {
  namespace dq = detail::quant;
  const auto t0 = std::chrono::steady_clock::now();
  progress_reporter report(opt.progress);
  quantize_report rep;

  // -- the choice of types
  SBGQ_TRY(const model_facts facts, model_facts::from_metadata(in.metadata()));
  const imatrix* im = opt.importance;
  imatrix filtered;  // --include-weights / --exclude-weights
  if (im && (!opt.imatrix_include.empty() || !opt.imatrix_exclude.empty())) {
    SBGQ_TRY(filtered, filter_imatrix(*im, opt.imatrix_include, opt.imatrix_exclude));
    im = &filtered;
  }
  const bool has_imatrix = im && !im->entries.empty();
  SBGQ_TRY(rep.plan, choose_tensor_types(facts, in.descriptions(), opt.policy, has_imatrix));

  // -- imatrix weights: S/count per entry, all finite (llama_model_quantize checks every entry),
  //    none degenerate (all zero or subnormal) or huge: such statistics would erase tensors
  std::map<std::string, std::vector<float>> weights;
  if (has_imatrix) {
    for (const auto& [name, e] : im->entries) {
      std::vector<float> w = im->weights(name);
      SBGQ_TRY_VOID(check_importance_weights(name, w));
      weights.emplace(name, std::move(w));
    }
  }

  // -- pre-flight: every conversion is possible, every imatrix entry used fits its tensor
  std::vector<const float*> tensor_weights(rep.plan.tensors.size(), nullptr);
  for (std::size_t k = 0; k < rep.plan.tensors.size(); ++k) {
    const tensor_type_choice& c = rep.plan.tensors[k];
    const gguf_tensor_info& info = in.tensors()[c.index];
    rep.n_elements += info.n_elements();
    if (!c.converts()) continue;
    const std::string who = "tensor '" + c.name + "'";
    if (!dq::writable_codec(c.type))
      return dq::fail(error_code::unsupported, who + ": sbgq cannot write type " + std::string(type_name(c.type)) +
                                                   " (chosen by: " + c.why + ")");
    if (info.ne[0] % block_size(c.type) != 0)
      return dq::fail(error_code::bad_shape, who + ": ne[0] = " + std::to_string(info.ne[0]) +
                                                 " is not a multiple of the " + std::string(type_name(c.type)) +
                                                 " block size " + std::to_string(block_size(c.type)) + " (" + c.why + ")");
    if (is_quantized(info.type)) {
      if (!opt.allow_requantize)
        return dq::fail(error_code::unsupported, who + ": requantizing from type " + std::string(type_name(info.type)) +
                                                     " is disabled (allow_requantize / --allow-requantize)");
      if (!dq::writable_codec(info.type))
        return dq::fail(error_code::unsupported, who + ": sbgq cannot decode type " + std::string(type_name(info.type)));
    } else if (info.type != ggml_type::f32 && info.type != ggml_type::f16 && info.type != ggml_type::bf16) {
      return dq::fail(error_code::unsupported,
                      who + ": cannot convert type " + std::string(type_name(info.type)) + " (only F32, F16, BF16 and quantized)");
    }
    if (has_imatrix) {
      const auto it = weights.find(c.name);
      if (it == weights.end()) {
        rep.notes.push_back("no imatrix entry for " + c.name);
      } else {
        const auto want = static_cast<std::uint64_t>(info.ne[0]) * static_cast<std::uint64_t>(info.ne[2]);
        if (it->second.size() == want) {
          tensor_weights[k] = it->second.data();
        } else if (c.category == tensor_category::token_embd) {
          rep.notes.push_back("imatrix size " + std::to_string(it->second.size()) + " differs from " +
                              std::to_string(want) + " for " + c.name + ": quantized without imatrix");
        } else {
          return dq::fail(error_code::size_mismatch, "imatrix size " + std::to_string(it->second.size()) +
                                                         " is different from tensor size " + std::to_string(want) +
                                                         " for " + c.name);
        }
      }
    }
  }

  // -- header: metadata as llama_model_quantize writes it, then the tensor infos
  SBGQ_TRY(gguf_sink sink, gguf_sink::create(out_path, "quantize"));
  // As llama_model_quantize builds it: the input's keys without split.*, then each key it
  // sets -- general.quantization_version, general.file_type, the kv overrides in order --
  // removing an earlier record of that key and appending (gguf_set_val). So an override of
  // general.file_type, or of a key overridden before, lands at its override's place.
  static constexpr std::string_view dropped[] = {"split.no", "split.count", "split.tensors.count"};
  std::vector<gguf_kv> meta;
  meta.reserve(in.metadata().size() + opt.kv_overrides.size() + 6);
  for (const gguf_kv& kv : in.metadata())
    if (std::find(std::begin(dropped), std::end(dropped), kv.key) == std::end(dropped)) meta.push_back(kv);
  auto set_kv = [&](gguf_kv kv) {
    meta.erase(std::remove_if(meta.begin(), meta.end(), [&](const gguf_kv& m) { return m.key == kv.key; }), meta.end());
    meta.push_back(std::move(kv));
  };
  set_kv({"general.quantization_version", gguf_value(ggml_quantization_version)});
  set_kv({"general.file_type", gguf_value(static_cast<std::uint32_t>(opt.policy.ftype))});
  for (const gguf_kv& kv : opt.kv_overrides) set_kv(kv);
  if (has_imatrix && opt.imatrix_metadata)
    for (auto& kv : imatrix_metadata_keys(*im, opt.imatrix_file)) set_kv(std::move(kv));
  for (gguf_kv& kv : meta) SBGQ_TRY_VOID(sink.writer().add(std::move(kv.key), std::move(kv.value)));

  // -- data: the engine's sink, in llama_model_quantize's order; a tensor whose type does not
  //    change is copied, the others are read in blocks of rows and encoded
  gguf_source src(in, opt.n_threads);
  std::vector<tensor_plan> plan;
  std::vector<ggml_type> types;
  for (const tensor_type_choice& c : rep.plan.tensors) {
    plan.push_back(src.plan()[c.index]);
    types.push_back(c.type);
  }
  SBGQ_TRY_VOID(sink.declare(plan, types));
  encode_options enc;
  enc.n_threads = opt.n_threads;
  enc.measure = false;
  const std::size_t n = rep.plan.tensors.size();
  for (std::size_t k = 0; k < n; ++k) {
    const tensor_type_choice& c = rep.plan.tensors[k];
    const gguf_tensor_info& info = in.tensors()[c.index];
    const std::span<const std::byte> stored = in.tensor_data(c.index);
    const float* wts = tensor_weights[k];
    if (c.converts()) {
      const std::size_t n_im = wts ? static_cast<std::size_t>(info.ne[0] * info.ne[2]) : 0;
      SBGQ_TRY_VOID(sink.stream(src, k, std::span<const float>(wts, n_im), enc));
      ++rep.n_converted;
      if (wts) ++rep.n_with_imatrix;
    } else {
      SBGQ_TRY_VOID(sink.copy(k, info.type, stored));
      src.release(stored);
    }
    rep.bytes_in += stored.size();
    const std::string detail = std::string(type_name(c.source_type)) + " -> " + std::string(type_name(c.type)) +
                               (wts && c.converts() ? " (imatrix)" : "");
    report(progress_event::at(progress_stage::quantize, static_cast<double>(k + 1) / static_cast<double>(n))
               .item(k, n)
               .on(c.name, detail)
               .with_bytes(sink.bytes()));
  }
  rep.bytes_out = sink.bytes();
  SBGQ_TRY(rep.file_size, sink.finish());
  report.finish();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

/// Quantizes the GGUF file `in_path` into `out_path` (atomically). `out_path` may not be
/// `in_path` (or a link to it): the input is kept.
///
/// Input: a GGUF model whose tensors are F32, F16 or BF16 (quantized ones need
/// allow_requantize and an sbgq codec). Output: see the file comment.
/// Errors (component "quantize" unless noted): the reader's errors ("gguf", with the
/// path), not_found (general.architecture or block_count missing), invalid_argument
/// (ftype sbgq does not produce, bad pattern), unsupported (a chosen or source type
/// without codec, requantizing without allow_requantize, no fallback for a row length),
/// size_mismatch (imatrix entry of the wrong size for a tensor other than token_embd),
/// not_finite (imatrix or input values, or an encoded scale overflowing fp16), io_error,
/// invalid_argument (out_path is the input, or not a regular file; checked first).
/// No output file exists after an error.
/// Thread-safety: uses opt.n_threads worker threads; concurrent calls are safe.
inline result<quantize_report> quantize_file(const std::string& in_path, const std::string& out_path,
                                             const quantize_options& opt) {
  SBGQ_TRY_VOID(check_output_not_input(out_path, {in_path}, "quantize"));
  SBGQ_TRY(const gguf_file in, gguf_file::open(in_path));
  return quantize_gguf(in, out_path, opt);
}

SBGQ_END_NAMESPACE
