// sbgq quantize [options] IN.gguf [OUT.gguf] TYPE [nthreads]: llama-quantize's job, same output.
//
// The command line is llama-quantize's: TYPE as it spells it (Q4_K_M, q4_k_m, Q4_K, 15,
// ...), the optional thread count after it, OUT.gguf optional (then ggml-model-TYPE.gguf
// next to IN.gguf); --imatrix FILE, --include-weights / --exclude-weights NAME (imatrix
// entries by substring), --tensor-type REGEX=TYPE (repeatable; lower-cased as there),
// --tensor-type-file FILE, --output-tensor-type T, --token-embedding-type T,
// --override-kv KEY=TYPE:VALUE, --pure, --leave-output-tensor, --allow-requantize,
// --dry-run. sbgq adds -t N (threads, as the positional count) and --show-types (the
// per-tensor table and why each type was chosen). llama-quantize's options sbgq does not
// implement (--keep-split, --prune-layers, --target-bpw, --target-size, --state-file,
// --save-state) are refused by name.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cli.hpp"
#include "progress_display.hpp"
#include "commands.hpp"
#include <sbgq/io/imatrix.hpp>
#include <sbgq/quantize.hpp>

namespace sbgq::cli {

namespace {

ggml_type parse_type_flag(const std::string& flag, const std::string& v) {
  const auto t = ggml_type_from_name(v);
  if (!t) throw usage_error{flag + ": unknown ggml type '" + v + "' (e.g. q4_K, q6_K, q8_0, iq4_xs, f16)"};
  return *t;
}

/// A word llama-quantize would read as a file type: one of its type names (also those
/// sbgq does not produce, so `IN Q4_0` is refused as a type rather than taken as OUT) or
/// an ftype number.
bool is_llama_quantize_type(const std::string& word) {
  if (parse_quant_type(word).has_value()) return true;
  static constexpr std::string_view others[] = {"Q1_0", "Q2_0", "Q4_0", "Q4_1", "MXFP4_MOE", "Q5_0", "Q5_1", "IQ2_XXS",
                                                "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "Q2_K_S",
                                                "IQ3_XXS", "IQ3_S", "IQ3_M", "IQ3_XS", "COPY"};
  std::string up;
  for (char c : word) up += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  for (auto o : others)
    if (up == o) return true;
  return !word.empty() && word.size() <= 4 && std::all_of(word.begin(), word.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void add_tensor_type(quant_policy& p, const std::string& arg) {
  auto o = parse_tensor_type_override(arg);
  if (!o) throw usage_error{o.error().message()};
  p.tensor_types.push_back(std::move(*o));
}

/// --tensor-type-file: PATTERN=TYPE entries separated by spaces or newlines.
void read_tensor_type_file(quant_policy& p, const std::string& path) {
  std::ifstream f(path);
  if (!f) throw failure{error(error_code::io_error, "quantize", "cannot read --tensor-type-file '" + path + "'")};
  std::string word;
  while (f >> word) add_tensor_type(p, word);
}

void print_plan(const type_plan& plan) {
  for (const auto& c : plan.tensors) {
    std::string shape;
    for (std::uint32_t j = 0; j < c.n_dims; ++j) shape += (j ? ", " : "") + std::to_string(c.ne[j]);
    fmt::print("{:<36} [{:<14}] {:<6} -> {:<6} {}\n", c.name, shape, type_name(c.source_type), type_name(c.type), c.why);
  }
}

void print_dry_run(const std::string& in, const quantize_options& opt, bool has_imatrix) {
  const gguf_file f = unwrap(gguf_file::open(in));
  const model_facts m = unwrap(model_facts::from_metadata(f.metadata()));
  const type_plan plan = unwrap(choose_tensor_types(m, f.descriptions(), opt.policy, has_imatrix));
  print_plan(plan);
  std::uint64_t bytes = 0, elems = 0;
  for (const auto& c : plan.tensors) {
    std::uint64_t ne = 1;
    for (auto d : c.ne) ne *= static_cast<std::uint64_t>(d);
    elems += ne;
    bytes += row_size(c.type, static_cast<std::uint64_t>(c.ne[0])) * (ne / static_cast<std::uint64_t>(c.ne[0] ? c.ne[0] : 1));
  }
  fmt::print("dry run: {} tensors, {} of tensor data, {:.2f} bits per weight\n", plan.tensors.size(),
             human_bytes(static_cast<double>(bytes)), elems ? static_cast<double>(bytes) * 8.0 / static_cast<double>(elems) : 0.0);
}

}  // namespace

int cmd_quantize(parser& p, const words& w) {
  CLI::App& app = p.app();
  std::vector<std::string> pos, tensor_types, kv;
  std::string imatrix_path, tensor_type_file, output_type, embd_type;
  quantize_options opt;
  bool show = false, dry_run = false;
  app.add_option("--imatrix", imatrix_path, "importance matrix (GGUF or .dat) for the quantizers")->type_name("FILE");
  app.add_option("--include-weights", opt.imatrix_include, "use the imatrix only for tensors whose name contains NAME (repeatable)")
      ->type_name("NAME")->allow_extra_args(false);
  app.add_option("--exclude-weights", opt.imatrix_exclude, "do not use the imatrix for tensors whose name contains NAME (repeatable)")
      ->type_name("NAME")->allow_extra_args(false);
  app.add_option("--tensor-type", tensor_types, "quantize tensors matching REGEX to TYPE (repeatable)")
      ->type_name("REGEX=TYPE")->allow_extra_args(false);
  app.add_option("--tensor-type-file", tensor_type_file, "REGEX=TYPE entries, separated by spaces or newlines")->type_name("FILE");
  app.add_option("--output-tensor-type", output_type, "type of output.weight")->type_name("TYPE");
  app.add_option("--token-embedding-type", embd_type, "type of token_embd.weight")->type_name("TYPE");
  app.add_option("--override-kv", kv, "set metadata KEY in the output (TYPE int, float, bool, str; repeatable)")
      ->type_name("KEY=TYPE:VALUE")->allow_extra_args(false);
  app.add_flag("--pure", opt.policy.pure, "no k-quant mixture: every tensor gets the default type");
  app.add_flag("--leave-output-tensor", opt.policy.leave_output_tensor, "leave output.weight un(re)quantized");
  app.add_flag("--allow-requantize", opt.allow_requantize, "allow quantized input tensors (lower quality)");
  app.add_flag("--dry-run", dry_run, "print the per-tensor types and the size, write nothing");
  app.add_flag("--show-types", show, "print the per-tensor types and why each was chosen (sbgq only)");
  add_threads(app, opt.n_threads);
  app.add_option("args", pos, "IN.gguf [OUT.gguf] TYPE [nthreads]");
  p.unsupported("--keep-split", false, "sbgq writes one output file");
  p.unsupported("--prune-layers", true, "sbgq keeps every layer");
  p.unsupported("--target-bpw", true, "llama-quantize's automatic type search; sbgq pipeline --recipe auto --target-bpw is sbgq's");
  p.unsupported("--target-size", true, "llama-quantize's automatic type search");
  p.unsupported("--state-file", true, "llama-quantize's type-search state");
  p.unsupported("--save-state", false, "llama-quantize's type-search state");
  p.parse(w);

  // IN [OUT] TYPE [nthreads], as llama-quantize reads them: the second word is tried as a
  // type first; if it is one, OUT is ggml-model-TYPE.gguf in IN's directory.
  if (pos.size() < 2) throw usage_error{"expected IN.gguf [OUT.gguf] TYPE [nthreads]"};
  const std::string in = pos[0];
  std::string out, type;
  std::size_t next = 0;
  if (is_llama_quantize_type(pos[1])) {
    type = pos[1];
    next = 2;
  } else {
    if (pos.size() < 3) throw usage_error{"expected IN.gguf [OUT.gguf] TYPE [nthreads]"};
    out = pos[1];
    type = pos[2];
    next = 3;
  }
  if (next < pos.size()) {
    const std::string& t = pos[next];
    char* end = nullptr;
    const long n = std::strtol(t.c_str(), &end, 10);
    if (t.empty() || *end != '\0' || n < 1 || n > 1024)
      throw usage_error{"nthreads: expected an integer in [1, 1024], found '" + t + "'"};
    if (app.count("--threads") && n != opt.n_threads)
      throw usage_error{"the thread count is given twice (-t " + std::to_string(opt.n_threads) + " and " + t + ")"};
    opt.n_threads = static_cast<int>(n);
    ++next;
  }
  if (next < pos.size()) throw usage_error{"unexpected argument '" + pos[next] + "'"};
  auto ft = parse_quant_type(type);
  if (!ft) throw usage_error{ft.error().message()};
  opt.policy.ftype = *ft;
  if (out.empty())
    out = (std::filesystem::path(in).parent_path() / ("ggml-model-" + std::string(find_quant_preset(*ft)->name) + ".gguf")).string();

  for (const auto& t : tensor_types) add_tensor_type(opt.policy, t);
  if (!tensor_type_file.empty()) read_tensor_type_file(opt.policy, tensor_type_file);
  if (!output_type.empty()) opt.policy.output_tensor_type = parse_type_flag("--output-tensor-type", output_type);
  if (!embd_type.empty()) opt.policy.token_embedding_type = parse_type_flag("--token-embedding-type", embd_type);
  for (const auto& k : kv) {
    auto o = parse_kv_override(k);
    if (!o) throw usage_error{"--override-kv: " + o.error().message()};
    opt.kv_overrides.push_back(std::move(*o));
  }
  if (!opt.imatrix_include.empty() && !opt.imatrix_exclude.empty())
    throw usage_error{"--include-weights and --exclude-weights cannot be used together"};
  if ((!opt.imatrix_include.empty() || !opt.imatrix_exclude.empty()) && imatrix_path.empty())
    throw usage_error{"--include-weights/--exclude-weights select imatrix entries: they need --imatrix FILE"};

  imatrix im;
  if (!imatrix_path.empty()) {
    im = unwrap(read_imatrix(imatrix_path));
    opt.importance = &im;
    opt.imatrix_file = imatrix_path;
    const imatrix used = unwrap(filter_imatrix(im, opt.imatrix_include, opt.imatrix_exclude));
    fmt::print(stderr, "sbgq quantize: imatrix {}: {} entries ({} used), {} chunks\n", imatrix_path, im.entries.size(),
               used.entries.size(), im.chunk_count);
  }

  if (dry_run) {
    const bool has_imatrix = opt.importance && !unwrap(filter_imatrix(im, opt.imatrix_include, opt.imatrix_exclude)).entries.empty();
    print_dry_run(in, opt, has_imatrix);
    return 0;
  }

  progress_display pg("quantize");
  opt.progress = pg.callback();
  const quantize_report rep = unwrap(quantize_file(in, out, opt));
  pg.done();
  if (show) print_plan(rep.plan);
  for (const auto& note : rep.notes) fmt::print(stderr, "sbgq quantize: note: {}\n", note);
  if (rep.plan.n_fallback > 0)
    fmt::print(stderr, "sbgq quantize: {} of {} tensors required fallback quantization\n", rep.plan.n_fallback, rep.plan.tensors.size());
  fmt::print("wrote {} ({}): {} tensors ({} converted, {} with imatrix), {} -> {}, {:.2f} bits per weight, {:.2f} s, peak RSS {}\n",
             out, find_quant_preset(opt.policy.ftype)->name, rep.plan.tensors.size(), rep.n_converted, rep.n_with_imatrix,
             human_bytes(static_cast<double>(rep.bytes_in)), human_bytes(static_cast<double>(rep.file_size)), rep.bits_per_weight(),
             rep.seconds, human_bytes(static_cast<double>(peak_rss_bytes())));
  return 0;
}

}  // namespace sbgq::cli
