// HF Qwen3.5 checkpoint -> GGUF, exactly as llama.cpp's convert_hf_to_gguf.py does it
// (qwen35-gguf.md), streamed one tensor at a time.
//
// Design goals:
//   - Same file as llama.cpp's converter: every metadata key it writes, with the exact
//     types the loader checks; the tokenizer keys of section 8; the tensor name map and
//     every transform of section 7 (through qwen35_tensors.hpp, the one table of them);
//     1-D tensors, norms, ssm_a, ssm_dt.bias and ssm_conv1d in F32, everything else in the
//     requested output type.
//   - Bounded memory: the shards are memory-mapped; one tensor is converted to f32,
//     transformed, encoded and written at a time, so peak memory is about the largest
//     tensor (twice, in f32) whatever the model size. The output is written through a
//     temporary file and renamed only when complete.
//   - Clear errors for a checkpoint that does not match its config (missing tensor, wrong
//     shape, a tensor of a layer past num_hidden_layers or of no known part, a layer
//     pattern llama.cpp cannot express).
// Non-goals: the vision tower (left out with a notice, as the converter's --mmproj is a
// separate file), MoE checkpoints.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "core/base.hpp"
#include "codec/registry.hpp"
#include "codec/rows.hpp"
#include "core/error.hpp"
#include "io/gguf.hpp"
#include "model/model_config.hpp"
#include "core/output_file.hpp"
#include "model/qwen35_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/tokenizer.hpp"
#include "model/hf_checkpoint.hpp"
#include "engine/sink.hpp"
#include "engine/source.hpp"
#include "core/progress.hpp"

SBGQ_BEGIN_NAMESPACE

/// What convert_checkpoint writes and how.
struct convert_options {
  ggml_type outtype = ggml_type::f16;  ///< f32, f16, bf16 or q8_0 for the 2-D weights
  bool include_mtp = true;             ///< llama.cpp's converter keeps MTP by default
  std::string name;                    ///< general.name; default: the directory name
  int n_threads = 0;                   ///< for q8_0 encoding (<= 0: all)
  /// Negative control for tests only: leave DeltaNet value heads in HF order. The file
  /// loads but computes a different function whenever H_k != H_v.
  bool skip_v_head_reorder = false;
  /// Progress: stage quantize per tensor (index, count, tensor, detail = output type),
  /// notes, then write and done.
  progress_fn progress;
};

/// What was written.
struct convert_report {
  std::size_t n_tensors = 0;
  std::uint64_t bytes_read = 0;     ///< source tensor bytes
  std::uint64_t bytes_written = 0;  ///< output file size
  std::size_t n_skipped = 0;        ///< HF tensors left out (vision tower, ...)
  double seconds = 0;
};

/// Converts the checkpoint in `model_dir` (config.json, tokenizer.json, safetensors shards
/// or a single model.safetensors) to a GGUF at `out_path`. Errors: everything the config,
/// safetensors and tokenizer readers report; not_found / bad_shape for tensors that do
/// not match the config; unsupported for an outtype other than f32/f16/bf16/q8_0;
/// invalid_argument when `out_path` is a file of `model_dir` (a shard, the config) or not a
/// regular file, before any work.
inline result<convert_report> convert_checkpoint(const std::string& model_dir, const std::string& out_path,
                                                 const convert_options& opt = {}) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.outtype != ggml_type::f32 && opt.outtype != ggml_type::f16 && opt.outtype != ggml_type::bf16 &&
      opt.outtype != ggml_type::q8_0)
    return error(error_code::unsupported, "convert",
                 "output type " + std::string(type_name(opt.outtype)) + ": expected f32, f16, bf16 or q8_0");
  SBGQ_TRY_VOID(check_output_not_input(out_path, {model_dir}, "convert"));
  SBGQ_TRY(hf_model m, hf_model::open(model_dir, opt.include_mtp));
  const auto& plan = m.plan;
  convert_report rep;
  rep.n_skipped = m.n_skipped;
  progress_reporter report(opt.progress);
  if (rep.n_skipped)
    report.note("leaving out " + std::to_string(rep.n_skipped) + " tensors that are not part of the text model (vision tower" +
                std::string(m.po.include_mtp ? "" : ", MTP") + ")");

  SBGQ_TRY(gguf_sink sink, gguf_sink::create(out_path));
  const std::string name = opt.name.empty() ? m.default_name() : opt.name;
  SBGQ_TRY_VOID(add_qwen35_metadata(sink.writer(), m.cfg, m.tok, model_dir, name, m.n_params(),
                                    converter_file_type(opt.outtype), m.n_mtp()));
  std::vector<ggml_type> types;
  for (const auto& e : plan) types.push_back(converted_type(e, opt.outtype));
  SBGQ_TRY_VOID(sink.declare(plan, types));

  // Every tensor streamed from the source: row-local ones (no transform) in blocks of rows
  // straight from the mapping, whose pages are released behind us (peak memory is a block,
  // not the 4 GB f32 copy of a 9B embedding); V-head reorders whole (a few hundred MB).
  checkpoint_source src(m, !opt.skip_v_head_reorder);
  encode_options enc;
  enc.n_threads = opt.n_threads;
  enc.measure = false;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    report(progress_event::at(progress_stage::quantize, static_cast<double>(i) / static_cast<double>(plan.size()))
               .item(i, plan.size())
               .on(plan[i].gguf_name, type_name(types[i])));
    SBGQ_TRY(tensor_view v, find_hf_tensor(m.ckpt, plan[i]));
    rep.bytes_read += v.bytes.size();
    SBGQ_TRY_VOID(sink.stream(src, i, {}, enc));
  }
  report(progress_event::at(progress_stage::write, 1.0).item(plan.size(), plan.size()));
  SBGQ_TRY(rep.bytes_written, sink.finish());
  report.finish();
  rep.n_tensors = plan.size();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

SBGQ_END_NAMESPACE
