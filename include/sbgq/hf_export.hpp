// Writes a model given by a weight_provider (GGUF conventions, f32) back as a Hugging Face
// checkpoint directory: config.json, tokenizer files, safetensors shards (+ index), so a
// transformed model (rotated, gauge-scaled) can be stored, inspected, shared and converted
// again by sbgq or llama.cpp's converter.
//
// The tensors go through the inverse of every HF -> GGUF transform of qwen35_tensors.hpp
// (the one table of them): gains -> offsets (w = g - 1), ssm_a -> A_log = log(-a) (chosen
// so that -exp(A_log) gives back a bit for bit, see detail::hf_export::a_log_of), the V-head
// reorder undone (rows of in_proj_qkv's V block, conv1d, in_proj_z/a/b, A_log, dt_bias;
// columns of out_proj), conv1d unsqueezed to [C, 1, K]. Converting the export therefore
// reproduces the provider's f32 weights exactly (tests/test_hf_export.cpp: bit-identical
// GGUF tensors for the tiny model).
//
// Design goals:
//   - Layer-streamed: the globals are loaded, written and released first, then one layer
//     at a time; memory is about the globals plus one layer (f32).
//   - Atomic: everything is written into a temporary sibling directory that is renamed to
//     the output directory only when complete; a failure leaves no output.
//   - Honest config: tie_word_embeddings = false when the provider has a separate head
//     (a rotated tied model is untied); the MTP block is not written (providers do not
//     carry it, and a rotated one is not exactly preservable: spec 4.d), so
//     mtp_num_hidden_layers is set to 0, with a notice. The vision tower is not written.
// Non-goals: the MTP block, the vision tower, other architectures.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "core/progress.hpp"
#include "core/base.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "model/forward.hpp"
#include "core/mapped_file.hpp"
#include "model/model_config.hpp"
#include "core/output_file.hpp"
#include "model/qwen35_tensors.hpp"
#include "io/safetensors.hpp"
#include "core/tensor_view.hpp"

SBGQ_BEGIN_NAMESPACE

/// What export_hf_checkpoint writes.
struct hf_export_options {
  /// dtype::f32 or dtype::bf16. With bf16, A_log and linear_attn.norm.weight stay F32, as in
  /// the released checkpoints. A transformed model should be written in f32: bf16 rounding of
  /// rotated weights changes the function by far more than the transform's own rounding.
  dtype out_dtype = dtype::f32;
  /// Shard size target; one file "model.safetensors" when everything fits.
  std::uint64_t max_shard_bytes = std::uint64_t{4} << 30;
  /// HF name prefix of the text tower; empty: as the source checkpoint (else
  /// "model.language_model.").
  std::string hf_prefix;
  /// Progress: notes, stage write per tensor (index, count, tensor = HF name), done.
  progress_fn progress;
};

namespace detail::hf_export {

inline error export_error(error_code c, std::string msg) { return error(c, "hf_export", std::move(msg)); }

inline result<std::string> read_text(const std::string& path) {
  SBGQ_TRY(mapped_file m, mapped_file::open(path));
  return std::string(reinterpret_cast<const char*>(m.data()), m.size());
}

/// A_log for a GGUF ssm_a value a < 0: an f32 x with -exp(x) == a exactly (the converter's
/// f32 std::exp), searched around log(-a) rounded to f32; the nearest such x when one
/// exists (it does whenever a itself came from -exp of an f32), else log(-a) rounded.
inline result<float> a_log_of(float a) {
  if (!(a < 0.0f) || !std::isfinite(a))
    return export_error(error_code::bad_value, "ssm_a value " + std::to_string(a) + ": expected a finite negative number");
  const float x0 = static_cast<float>(std::log(-static_cast<double>(a)));
  float up = x0, down = x0;
  for (int step = 0; step <= 8; ++step) {
    if (-std::exp(up) == a) return up;
    if (-std::exp(down) == a) return down;
    up = std::nextafter(up, std::numeric_limits<float>::infinity());
    down = std::nextafter(down, -std::numeric_limits<float>::infinity());
  }
  return x0;
}

/// The inverse of apply_tensor_transform: GGUF values (GGUF order) -> HF values (PyTorch
/// order of plan.hf_shape). `in` and `out` must not overlap.
/// Errors: size_mismatch; bad_value for an ssm_a that is not negative.
inline result<void> invert_tensor_transform(const tensor_plan& plan, const qwen35_config& c, std::span<const float> in,
                                            std::span<float> out) {
  const auto n = static_cast<std::size_t>(plan.numel());
  if (in.size() != n || out.size() != n)
    return export_error(error_code::size_mismatch, plan.gguf_name + ": expected " + std::to_string(n) + " values, got " +
                                                      std::to_string(in.size()));
  const std::int64_t Hk = c.linear_num_key_heads, Hv = c.linear_num_value_heads, s = plan.reorder_block;
  switch (plan.transform) {
    case tensor_transform::none:
      std::copy(in.begin(), in.end(), out.begin());
      return {};
    case tensor_transform::plus_one:
      // g = w + 1 was exact for every bf16 offset |w| >= 2^-15 (24-bit f32 mantissa), and
      // g - 1 is exact for g >= 0.5 (Sterbenz): the offset comes back bit for bit.
      for (std::size_t i = 0; i < n; ++i) out[i] = in[i] - 1.0f;
      return {};
    case tensor_transform::neg_exp:
      for (std::int64_t j = 0; j < Hv; ++j) {
        SBGQ_TRY(float x, a_log_of(in[static_cast<std::size_t>(v_head_gguf_index(j, Hk, Hv))]));
        out[static_cast<std::size_t>(j)] = x;
      }
      return {};
    case tensor_transform::reorder_rows:
    case tensor_transform::reorder_v_rows: {
      const bool v_rows = plan.transform == tensor_transform::reorder_v_rows;
      const std::int64_t row_len = v_rows ? plan.numel() / c.linear_conv_dim()
                                          : (plan.hf_shape.size() > 1 ? plan.numel() / plan.hf_shape[0] : 1);
      const std::int64_t first = v_rows ? 2 * c.linear_num_key_heads * c.linear_key_head_dim : 0;
      std::copy(in.begin(), in.end(), out.begin());
      const auto len = static_cast<std::ptrdiff_t>(s * row_len);
      for (std::int64_t j = 0; j < Hv; ++j) {
        const std::int64_t jg = v_head_gguf_index(j, Hk, Hv);
        const auto src = static_cast<std::ptrdiff_t>((first + jg * s) * row_len);
        const auto dst = static_cast<std::ptrdiff_t>((first + j * s) * row_len);
        std::copy(in.begin() + src, in.begin() + src + len, out.begin() + dst);
      }
      return {};
    }
    case tensor_transform::reorder_cols: {
      const std::int64_t rows = plan.hf_shape[0], cols = plan.hf_shape[1];
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < Hv; ++j) {
          const std::int64_t jg = v_head_gguf_index(j, Hk, Hv);
          const auto src = static_cast<std::ptrdiff_t>(r * cols + jg * s);
          const auto dst = static_cast<std::ptrdiff_t>(r * cols + j * s);
          std::copy(in.begin() + src, in.begin() + src + s, out.begin() + dst);
        }
      return {};
    }
  }
  return export_error(error_code::internal, "unknown transform");
}

/// Sets every scalar value of `key` (at any nesting depth) in JSON text to `literal`;
/// returns the number of values replaced. Strings are skipped as tokens, so a key inside
/// a string value never matches; object/array/string values are left alone.
inline std::size_t set_json_literal(std::string& text, std::string_view key, std::string_view literal) {
  std::size_t count = 0, i = 0;
  auto ws = [&](std::size_t k) {
    while (k < text.size() && (text[k] == ' ' || text[k] == '\t' || text[k] == '\n' || text[k] == '\r')) ++k;
    return k;
  };
  while (i < text.size()) {
    if (text[i] != '"') {
      ++i;
      continue;
    }
    const std::size_t s = i + 1;
    std::size_t e = s;
    while (e < text.size() && text[e] != '"') e += text[e] == '\\' ? 2 : 1;
    if (e >= text.size()) break;
    const std::string_view content(text.data() + s, e - s);
    std::size_t k = ws(e + 1);
    i = e + 1;
    if (k >= text.size() || text[k] != ':' || content != key) continue;
    k = ws(k + 1);
    if (k >= text.size() || text[k] == '"' || text[k] == '{' || text[k] == '[') continue;
    std::size_t end = k;
    while (end < text.size() && std::string_view(",}] \t\r\n").find(text[end]) == std::string_view::npos) ++end;
    text.replace(k, end - k, literal);
    i = k + literal.size();
    ++count;
  }
  return count;
}

/// Hands out the provider's tensors in plan order: the globals (already loaded), then one
/// layer at a time; the globals are released when the first layer is loaded.
class tensor_stream {
 public:
  tensor_stream(weight_provider& p, global_weights g) : p_(p), g_(std::move(g)) {}

  result<std::span<const float>> get(const tensor_plan& e) {
    const float* data = nullptr;
    std::size_t size = 0;
    if (e.layer < 0) {
      if (!g_) return export_error(error_code::internal, e.gguf_name + ": globals requested after the layers");
      const auto take = [&](const auto& x) { data = x.data(); size = static_cast<std::size_t>(x.size()); };
      if (e.gguf_name == "token_embd.weight") take(g_->token_embd);
      else if (e.gguf_name == "output_norm.weight") take(g_->output_norm);
      else if (e.gguf_name == "output.weight") take(g_->output);
    } else {
      if (e.layer != layer_) {
        g_.reset();
        w_ = layer_weights{};
        SBGQ_TRY(w_, p_.load_layer(e.layer));
        layer_ = e.layer;
      }
      if (const auto ref = layer_tensor(w_, e.gguf_name)) {
        data = ref->data;
        size = ref->rows * ref->cols;
      }
    }
    if (!data || size != static_cast<std::size_t>(e.numel()))
      return export_error(error_code::bad_shape, e.gguf_name + ": the provider has " + std::to_string(data ? size : 0) +
                                                    " values, the config implies " + std::to_string(e.numel()));
    return std::span<const float>(data, size);
  }

 private:
  weight_provider& p_;
  std::optional<global_weights> g_;
  layer_weights w_;
  int layer_ = -1;
};

/// Writes f32 values as `t` (f32 or bf16) through a safetensors writer, in chunks.
inline result<void> write_values(safetensors_writer& w, dtype t, std::span<const float> v) {
  if (t == dtype::f32) return w.write(v.data(), v.size() * sizeof(float));
  constexpr std::size_t chunk = std::size_t{1} << 20;
  std::vector<bf16> buf;
  for (std::size_t i = 0; i < v.size(); i += chunk) {
    const std::size_t n = std::min(chunk, v.size() - i);
    buf.resize(n);
    convert(v.subspan(i, n), std::span<bf16>(buf));
    SBGQ_TRY_VOID(w.write(buf.data(), n * sizeof(bf16)));
  }
  return {};
}

/// Files copied unchanged from the source directory when present.
inline constexpr const char* copied_files[] = {
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json", "generation_config.json",
    "preprocessor_config.json", "video_preprocessor_config.json"};

/// The output directory's temporary sibling: removed on destruction unless released.
class temp_dir {
 public:
  explicit temp_dir(std::filesystem::path p) : p_(std::move(p)) {}
  ~temp_dir() {
    if (!p_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(p_, ec);
    }
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const noexcept { return p_; }
  void release() noexcept { p_.clear(); }

 private:
  std::filesystem::path p_;
};

}  // namespace detail::hf_export

/// Checks, before any work, that `out_dir` can receive an export read from `src_dir`: it
/// is neither src_dir nor a file in it, and it does not exist or is an empty directory.
/// export_hf_checkpoint checks the same; callers with long preparation call it first.
/// Errors (component "hf_export"): invalid_argument, naming the paths.
inline result<void> check_hf_export_target(const std::string& src_dir, const std::string& out_dir) {
  namespace fs = std::filesystem;
  SBGQ_TRY_VOID(check_output_not_input(out_dir, {src_dir}, "hf_export"));
  std::error_code ec;
  const fs::path out = fs::path(out_dir).lexically_normal();
  if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
    return detail::hf_export::export_error(error_code::invalid_argument,
                                           "output directory '" + out_dir + "' exists and is not empty");
  return {};
}

/// Writes the model of `p` (config `c`, which must be the config of `src_dir`) as an HF
/// checkpoint directory `out_dir`: config.json (from src_dir, with tie_word_embeddings =
/// false when p has a separate LM head and mtp_num_hidden_layers = 0), the tokenizer files
/// of src_dir, and the weights as safetensors shards (plus model.safetensors.index.json
/// when there is more than one), with the inverse HF <- GGUF transforms applied.
/// `out_dir` must not exist or be an empty directory; it appears only when complete.
/// Errors (component "hf_export"): invalid_argument (out_dir is src_dir, exists and is
/// not empty, a dtype other than f32/bf16), bad_value (config of src_dir not matching c), bad_shape
/// (a provider tensor of the wrong size), io_error, and the errors of the provider, the
/// config reader and the safetensors writer.
/// Not thread-safe with respect to `p`.
inline result<void> export_hf_checkpoint(const std::string& src_dir, const qwen35_config& c, weight_provider& p,
                                         const std::string& out_dir, const hf_export_options& opt = {}) {
  namespace fs = std::filesystem;
  using namespace detail::hf_export;
  progress_reporter report(opt.progress);
  auto notice = [&](const std::string& s) { report.note(s); };
  if (opt.out_dtype != dtype::f32 && opt.out_dtype != dtype::bf16)
    return export_error(error_code::invalid_argument,
                        "output dtype " + std::string(dtype_name(opt.out_dtype)) + ": expected F32 or BF16");
  SBGQ_TRY_VOID(check_hf_export_target(src_dir, out_dir));
  std::error_code ec;
  const fs::path out = fs::path(out_dir).lexically_normal();

  // Config: the source's text with the fields that change, checked against c.
  SBGQ_TRY(std::string cfg_text, read_text(src_dir + "/config.json"));
  SBGQ_TRY(qwen35_config src_cfg, parse_qwen35_config(cfg_text));
  if (src_cfg.hidden_size != c.hidden_size || src_cfg.num_hidden_layers != c.num_hidden_layers ||
      src_cfg.vocab_size != c.vocab_size || src_cfg.intermediate_size != c.intermediate_size ||
      src_cfg.layer_types != c.layer_types)
    return export_error(error_code::bad_value, src_dir + "/config.json does not describe the model being exported "
                                               "(hidden_size, layers, vocab or intermediate size differ)");

  // The prefix of the text tower, as in the source checkpoint.
  std::string prefix = opt.hf_prefix;
  if (prefix.empty()) {
    prefix = "model.language_model.";
    if (auto src = safetensors_checkpoint::open(src_dir); src && !src->contains("model.language_model.embed_tokens.weight") &&
                                                          src->contains("model.embed_tokens.weight"))
      prefix = "model.";
  }

  SBGQ_TRY(global_weights g, p.load_globals());
  SBGQ_TRY_VOID(check_global_weights(c, g));
  const bool untied = g.output.size() != 0;
  // Sets tie_word_embeddings everywhere it appears, or adds it at the top level.
  auto set_tie = [&](const char* v) {
    if (set_json_literal(cfg_text, "tie_word_embeddings", v) == 0) {
      const std::size_t brace = cfg_text.find('{');
      if (brace != std::string::npos) cfg_text.insert(brace + 1, std::string("\"tie_word_embeddings\": ") + v + ", ");
    }
  };
  if (untied && src_cfg.tie_word_embeddings) {
    set_tie("false");
    notice("the model has its own LM head (a rotated tied model must be untied): writing lm_head.weight and "
           "tie_word_embeddings = false");
  }
  if (!untied && !src_cfg.tie_word_embeddings) {
    set_tie("true");
    notice("the model has no separate LM head: tie_word_embeddings = true");
  }
  if (src_cfg.mtp_num_hidden_layers > 0) {
    set_json_literal(cfg_text, "mtp_num_hidden_layers", "0");
    notice("MTP block (" + std::to_string(src_cfg.mtp_num_hidden_layers) +
           (src_cfg.mtp_num_hidden_layers == 1 ? " layer" : " layers") +
           ") not written (weight providers do not carry it, and it cannot be kept exact under a residual "
           "rotation); mtp_num_hidden_layers = 0");
  }
  {
    auto check = parse_qwen35_config(cfg_text);
    if (!check || check->tie_word_embeddings == untied || check->mtp_num_hidden_layers != 0)
      return export_error(error_code::internal, "rewriting config.json failed (tie_word_embeddings / mtp_num_hidden_layers)");
  }
  if (cfg_text.find("\"vision_config\"") != std::string::npos)
    notice("vision tower not written: the export holds the text model only");

  tensor_plan_options po;
  po.hf_prefix = prefix;
  po.include_mtp = false;
  po.tied = !untied;
  const std::vector<tensor_plan> plan = qwen35_tensor_plan(c, po);
  auto dtype_of = [&](const tensor_plan& e) {
    const std::string_view h = e.hf_name;
    const bool keep = h.ends_with(".A_log") || h.ends_with("linear_attn.norm.weight");
    return keep ? dtype::f32 : opt.out_dtype;
  };

  // Shards: consecutive tensors up to max_shard_bytes each.
  std::vector<std::size_t> shard_of(plan.size());
  std::size_t n_shards = 1;
  {
    std::uint64_t cur = 0;
    for (std::size_t i = 0; i < plan.size(); ++i) {
      const std::uint64_t b = static_cast<std::uint64_t>(plan[i].numel()) * dtype_size(dtype_of(plan[i]));
      if (cur > 0 && cur + b > opt.max_shard_bytes) {
        ++n_shards;
        cur = 0;
      }
      cur += b;
      shard_of[i] = n_shards - 1;
    }
  }
  auto shard_name = [&](std::size_t s) {
    if (n_shards == 1) return std::string(safetensors_checkpoint::single_file_name);
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
    return std::string(buf);
  };

  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  temp_dir tmp(parent / ("." + out.filename().string() + ".tmp-" + std::to_string(stamp)));
  if (!fs::create_directory(tmp.path(), ec))
    return export_error(error_code::io_error, "cannot create '" + tmp.path().string() + "': " + ec.message());

  tensor_stream stream(p, std::move(g));
  std::vector<float> hf_values;
  std::optional<error> source_error;
  std::uint64_t total = 0;
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (std::size_t s = 0, i = 0; s < n_shards; ++s) {
    safetensors_writer w;
    SBGQ_TRY_VOID(w.add_metadata("format", "pt"));
    for (; i < plan.size() && shard_of[i] == s; ++i) {
      const tensor_plan& e = plan[i];
      SBGQ_TRY(tensor_shape shape, tensor_shape::make(e.hf_shape));
      const dtype t = dtype_of(e);
      const int index = static_cast<int>(i);
      SBGQ_TRY_VOID(w.add(e.hf_name, t, shape, [&, index, t](safetensors_writer& sw) -> result<void> {
        const tensor_plan& pe = plan[static_cast<std::size_t>(index)];
        report(progress_event::at(progress_stage::write, static_cast<double>(index) / static_cast<double>(plan.size()))
                   .item(static_cast<std::size_t>(index), plan.size())
                   .on(pe.hf_name));
        auto v = stream.get(pe);
        if (!v) {
          source_error = v.error();  // keep the provider's own component in the message
          return std::move(v).error();
        }
        if (pe.transform == tensor_transform::none) return write_values(sw, t, *v);
        hf_values.resize(v->size());
        if (auto inv = invert_tensor_transform(pe, c, *v, hf_values); !inv) {
          source_error = inv.error();
          return inv;
        }
        return write_values(sw, t, hf_values);
      }));
      total += static_cast<std::uint64_t>(e.numel()) * dtype_size(t);
      weight_map.emplace_back(e.hf_name, shard_name(s));
    }
    if (auto r = w.write_file((tmp.path() / shard_name(s)).string()); !r) {
      if (source_error) return *source_error;
      return r;
    }
  }

  auto write_text = [&](const std::string& name, const std::string& text) -> result<void> {
    SBGQ_TRY(output_file f, output_file::create((tmp.path() / name).string()));
    SBGQ_TRY_VOID(f.write(text.data(), text.size()));
    return f.commit();
  };
  if (n_shards > 1)
    SBGQ_TRY_VOID(write_text(std::string(safetensors_checkpoint::index_file_name), safetensors_index_json(total, weight_map)));
  SBGQ_TRY_VOID(write_text("config.json", cfg_text));
  for (const char* f : copied_files) {
    const fs::path src = fs::path(src_dir) / f;
    if (!fs::is_regular_file(src, ec)) continue;
    if (!fs::copy_file(src, tmp.path() / f, ec))
      return export_error(error_code::io_error, "cannot copy '" + src.string() + "': " + ec.message());
  }
  if (fs::exists(out, ec)) fs::remove(out, ec);  // an empty directory (checked above)
  fs::rename(tmp.path(), out, ec);
  if (ec)
    return export_error(error_code::io_error,
                        "cannot rename '" + tmp.path().string() + "' to '" + out.string() + "': " + ec.message());
  tmp.release();
  report.finish();
  return {};
}

SBGQ_END_NAMESPACE
