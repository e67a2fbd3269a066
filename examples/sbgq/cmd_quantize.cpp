// sbgq quantize IN.gguf OUT.gguf TYPE [options]: llama-quantize's job, same output.
//
// TYPE as llama-quantize spells it (Q4_K_M, q4_k_m, Q4_K, 15, ...). Options mirror
// llama-quantize: --imatrix FILE, --tensor-type REGEX=TYPE (repeatable; the pattern is
// lower-cased as there), --output-tensor-type T, --token-embedding-type T, --pure,
// --leave-output-tensor, --allow-requantize, -t N; plus --show-types (print the per-tensor
// table and why each type was chosen) and --dry-run (the table only, no output file).
#include <cstdio>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include <sbgq/io/imatrix.hpp>
#include <sbgq/quantize.hpp>

namespace sbgq::cli {

namespace {

ggml_type parse_type_flag(args& a, const std::string& flag) {
  const std::string v = a.value(flag);
  const auto t = ggml_type_from_name(v);
  if (!t) throw usage_error{flag + ": unknown ggml type '" + v + "' (e.g. q4_K, q6_K, q8_0, iq4_xs, f16)"};
  return *t;
}

void print_plan(const type_plan& plan) {
  for (const auto& c : plan.tensors) {
    std::string shape;
    for (std::uint32_t j = 0; j < c.n_dims; ++j) shape += (j ? ", " : "") + std::to_string(c.ne[j]);
    std::printf("%-36s [%-14s] %-6s -> %-6s %s\n", c.name.c_str(), shape.c_str(),
                std::string(type_name(c.source_type)).c_str(), std::string(type_name(c.type)).c_str(), c.why.c_str());
  }
}

}  // namespace

int cmd_quantize(args& a) {
  std::string in, out, type, imatrix_path;
  quantize_options opt;
  bool show = false, dry_run = false;
  while (!a.empty()) {
    const std::string f = a.next();
    if (f == "--imatrix") imatrix_path = a.value(f);
    else if (f == "--tensor-type") {
      auto o = parse_tensor_type_override(a.value(f));
      if (!o) throw usage_error{o.error().message()};
      opt.policy.tensor_types.push_back(std::move(*o));
    } else if (f == "--output-tensor-type") opt.policy.output_tensor_type = parse_type_flag(a, f);
    else if (f == "--token-embedding-type") opt.policy.token_embedding_type = parse_type_flag(a, f);
    else if (f == "--pure") opt.policy.pure = true;
    else if (f == "--leave-output-tensor") opt.policy.leave_output_tensor = true;
    else if (f == "--allow-requantize") opt.allow_requantize = true;
    else if (f == "--show-types") show = true;
    else if (f == "--dry-run") dry_run = true;
    else if (f == "-t" || f == "--threads") opt.n_threads = static_cast<int>(a.integer(f, 1, 1024));
    else if (f.size() > 1 && f[0] == '-') throw usage_error{"unknown option '" + f + "'"};
    else if (in.empty()) in = f;
    else if (out.empty()) out = f;
    else if (type.empty()) type = f;
    else throw usage_error{"unexpected argument '" + f + "'"};
  }
  if (type.empty()) throw usage_error{"expected IN.gguf OUT.gguf TYPE"};
  auto ft = parse_quant_type(type);
  if (!ft) throw usage_error{ft.error().message()};
  opt.policy.ftype = *ft;

  imatrix im;
  if (!imatrix_path.empty()) {
    im = unwrap(read_imatrix(imatrix_path));
    opt.importance = &im;
    opt.imatrix_file = imatrix_path;
    std::fprintf(stderr, "sbgq quantize: imatrix %s: %zu entries, %u chunks\n", imatrix_path.c_str(), im.entries.size(),
                 im.chunk_count);
  }

  if (dry_run) {
    const gguf_file f = unwrap(gguf_file::open(in));
    const model_facts m = unwrap(model_facts::from_metadata(f.metadata()));
    const type_plan plan = unwrap(choose_tensor_types(m, f.descriptions(), opt.policy, opt.importance && !im.entries.empty()));
    print_plan(plan);
    std::uint64_t bytes = 0, elems = 0;
    for (const auto& c : plan.tensors) {
      std::uint64_t ne = 1;
      for (auto d : c.ne) ne *= static_cast<std::uint64_t>(d);
      elems += ne;
      bytes += row_size(c.type, static_cast<std::uint64_t>(c.ne[0])) * (ne / static_cast<std::uint64_t>(c.ne[0] ? c.ne[0] : 1));
    }
    std::printf("dry run: %zu tensors, %s of tensor data, %.2f bits per weight\n", plan.tensors.size(),
                human_bytes(static_cast<double>(bytes)).c_str(), elems ? static_cast<double>(bytes) * 8.0 / static_cast<double>(elems) : 0.0);
    return 0;
  }

  progress_display pg("quantize");
  opt.progress = pg.callback();
  const quantize_report rep = unwrap(quantize_file(in, out, opt));
  pg.done();
  if (show) print_plan(rep.plan);
  for (const auto& note : rep.notes) std::fprintf(stderr, "sbgq quantize: note: %s\n", note.c_str());
  if (rep.plan.n_fallback > 0)
    std::fprintf(stderr, "sbgq quantize: %d of %zu tensors required fallback quantization\n", rep.plan.n_fallback,
                 rep.plan.tensors.size());
  std::printf("wrote %s (%s): %zu tensors (%zu converted, %zu with imatrix), %s -> %s, %.2f bits per weight, "
              "%.2f s, peak RSS %s\n",
              out.c_str(), std::string(find_quant_preset(opt.policy.ftype)->name).c_str(), rep.plan.tensors.size(),
              rep.n_converted, rep.n_with_imatrix, human_bytes(static_cast<double>(rep.bytes_in)).c_str(),
              human_bytes(static_cast<double>(rep.file_size)).c_str(), rep.bits_per_weight(), rep.seconds,
              human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  return 0;
}

}  // namespace sbgq::cli
