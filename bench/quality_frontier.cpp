// The quality/size frontier on the tiny model, evaluated by llama.cpp itself.
//
//   quality_frontier [--out DIR] [--eval-chunks N] [--calib-chunks N] [--only NAME,...] [--reuse] [-t N]
//
// --reuse keeps files already in DIR (their size is read back; their time shows as 0).
//
// Every file is evaluated in libllama (the oracle) on eval.txt, chunks of 256 tokens, the
// second half of each chunk scored as llama-perplexity does, against the F32 model's
// distribution computed in the same run (chunk by chunk, every model in lockstep, so no
// base-logits file is needed). Rows:
//   - llama.cpp's own Q4_K_M, Q5_K_M, IQ4_XS, Q3_K_M: llama_model_quantize on the F32
//     file with the importance matrix of calib.txt (ctx 256) our forward pass collects;
//   - our pipeline with recipes llama-q4_k_m, llama-iq4_xs, seed-iq4_xs and auto at
//     several budgets, each with plain or gptq rounding, with or without rotation and gauge;
//     "auto-kld@Q4_K_M" (@IQ4_XS): auto allocating by measured KL-divergence (gptq) at the
//     bits per weight of llama.cpp's file of that name.
// Output: a Markdown table on stdout, DIR/frontier.csv and DIR/frontier.svg (mean KLD
// against bits per weight). Results and the command go to bench/RESULTS.md.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "sbgq/calibrate.hpp"
#include "sbgq/convert.hpp"
#include "sbgq/evaluate.hpp"
#include "sbgq/io/gguf.hpp"
#include "sbgq/pipeline.hpp"
#include "sbgq/model/weights.hpp"
#include "support/lockstep_eval.hpp"
#include "support/oracle.hpp"

namespace {

using sbgq::test::oracle;

using sbgq::bench::check;
using sbgq::bench::file_bpw;
using sbgq::bench::read_text;

struct config {
  std::string name;    ///< row label
  std::string group;   ///< "llama.cpp" or "sbgq"
  std::string path;    ///< the GGUF
  double bpw = 0;      ///< tensor data bits per weight
  std::uint64_t file_size = 0;
  double seconds = 0;  ///< time to produce it
};

struct variant {
  std::string recipe;
  double target_bpw;
  bool rotate, gauge, gptq;
  std::string size_of = {};  ///< auto by measured KLD at the size of this llama.cpp file ("Q4_K_M")
  bool embedding_weights = false;  ///< gptq: token_embd weighted by the residual stream's readers
  bool quantized_inputs = false;   ///< statistics through the quantized model
};

std::string variant_name(const variant& v) {
  std::string n = v.recipe;
  if (v.recipe == "auto" && !v.size_of.empty()) {
    n = "auto-kld@" + v.size_of;
  } else if (v.recipe == "auto") {
    char b[32];
    std::snprintf(b, sizeof b, "auto@%.2f", v.target_bpw);
    n = b;
  }
  if (v.rotate) n += " +rot";
  if (v.gauge) n += " +gauge";
  n += v.gptq ? " gptq" : " plain";
  if (v.gptq && v.embedding_weights) n += " +embw";
  if (v.quantized_inputs) n += " +qin";
  return n;
}

std::string svg_plot(const std::vector<config>& cs, const std::vector<sbgq::kld_result>& r) {
  double x0 = 1e9, x1 = 0, y0 = 1e9, y1 = 0;
  for (std::size_t i = 0; i < cs.size(); ++i) {
    x0 = std::min(x0, cs[i].bpw);
    x1 = std::max(x1, cs[i].bpw);
    y0 = std::min(y0, std::log10(r[i].kld_mean));
    y1 = std::max(y1, std::log10(r[i].kld_mean));
  }
  x0 -= 0.1, x1 += 0.1, y0 -= 0.1, y1 += 0.1;
  const double W = 900, H = 560, L = 80, R = 260, T = 30, B = 60;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return T + (y1 - y) / (y1 - y0) * (H - T - B); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' font-size='11'>\n";
  s << "<rect width='100%' height='100%' fill='white'/>\n";
  s << "<text x='" << (L + (W - L - R) / 2) << "' y='" << (H - 15) << "' text-anchor='middle' font-size='13'>bits per weight (tensor data)</text>\n";
  s << "<text x='18' y='" << (T + (H - T - B) / 2) << "' transform='rotate(-90 18 " << (T + (H - T - B) / 2)
    << ")' text-anchor='middle' font-size='13'>mean KL-divergence vs F32 (log scale)</text>\n";
  s << "<line x1='" << L << "' y1='" << (H - B) << "' x2='" << (W - R) << "' y2='" << (H - B) << "' stroke='black'/>\n";
  s << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << (H - B) << "' stroke='black'/>\n";
  for (double x = std::ceil(x0 * 4) / 4; x <= x1; x += 0.25) {
    s << "<line x1='" << px(x) << "' y1='" << (H - B) << "' x2='" << px(x) << "' y2='" << (H - B + 5) << "' stroke='black'/>";
    s << "<text x='" << px(x) << "' y='" << (H - B + 18) << "' text-anchor='middle'>" << x << "</text>\n";
  }
  for (double y = std::ceil(y0 * 4) / 4; y <= y1; y += 0.25) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1e", std::pow(10.0, y));
    s << "<line x1='" << (L - 5) << "' y1='" << py(y) << "' x2='" << (W - R) << "' y2='" << py(y) << "' stroke='#ddd'/>";
    s << "<text x='" << (L - 8) << "' y='" << (py(y) + 4) << "' text-anchor='end'>" << b << "</text>\n";
  }
  for (std::size_t i = 0; i < cs.size(); ++i) {
    const bool ours = cs[i].group == "sbgq";
    const std::string color = ours ? (cs[i].name.find("gptq") != std::string::npos ? "#1f77b4" : "#2ca02c") : "#d62728";
    const double x = px(cs[i].bpw), y = py(std::log10(r[i].kld_mean));
    if (ours)
      s << "<circle cx='" << x << "' cy='" << y << "' r='4' fill='" << color << "'/>";
    else
      s << "<rect x='" << (x - 5) << "' y='" << (y - 5) << "' width='10' height='10' fill='" << color << "'/>";
    s << "<text x='" << (x + 7) << "' y='" << (y + 4) << "' fill='" << color << "' font-size='9'>" << cs[i].name << "</text>\n";
  }
  const double lx = W - R + 20;
  s << "<rect x='" << lx << "' y='" << (T + 5) << "' width='10' height='10' fill='#d62728'/><text x='" << (lx + 15) << "' y='" << (T + 14)
    << "'>llama.cpp (llama_model_quantize + imatrix)</text>\n";
  s << "<circle cx='" << (lx + 5) << "' cy='" << (T + 30) << "' r='4' fill='#2ca02c'/><text x='" << (lx + 15) << "' y='" << (T + 34)
    << "'>sbgq, plain rounding</text>\n";
  s << "<circle cx='" << (lx + 5) << "' cy='" << (T + 50) << "' r='4' fill='#1f77b4'/><text x='" << (lx + 15) << "' y='" << (T + 54)
    << "'>sbgq, gptq rounding</text>\n";
  s << "</svg>\n";
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir = "frontier-out", only;
  std::int64_t eval_chunks = -1, calib_chunks = -1;
  int n_threads = 2;
  bool reuse = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return sbgq::bench::option_value(argc, argv, i); };
    if (a == "--out") out_dir = next();
    else if (a == "--eval-chunks") eval_chunks = std::stoll(next());
    else if (a == "--calib-chunks") calib_chunks = std::stoll(next());
    else if (a == "--only") only = next();
    else if (a == "-t") n_threads = std::stoi(next());
    else if (a == "--reuse") reuse = true;
    else {
      std::fprintf(stderr, "usage: quality_frontier [--out DIR] [--eval-chunks N] [--calib-chunks N] [--only A,B] [-t N]\n");
      return 2;
    }
  }
  std::filesystem::create_directories(out_dir);
  const std::string shared = SBGQ_SHARED_DIR, model_dir = shared + "/models/tiny-qwen35";
  const std::string calib = read_text(shared + "/data/calib.txt"), eval = read_text(shared + "/data/eval.txt");
  const std::int64_t ctx = 256;

  // -- the F32 reference and our imatrix of calib.txt
  const std::string f32 = out_dir + "/tiny-f32.gguf";
  sbgq::convert_options co;
  co.outtype = sbgq::ggml_type::f32;
  if (!(reuse && std::filesystem::exists(f32))) check(sbgq::convert_checkpoint(model_dir, f32, co), "convert");
  auto cfg = check(sbgq::load_qwen35_config(model_dir), "config");
  auto ckpt = check(sbgq::safetensors_checkpoint::open(model_dir), "checkpoint");
  auto tok = check(sbgq::tokenizer::load(model_dir + "/tokenizer.json", 8192), "tokenizer");
  sbgq::safetensors_weight_provider prov(ckpt, cfg);
  const auto calib_ids = check(tok.encode(calib), "tokenize");
  sbgq::calibration_options cal;
  cal.ctx = ctx;
  cal.max_chunks = calib_chunks;
  cal.n_threads = n_threads;
  cal.dataset = "calib.txt";
  auto im = check(sbgq::collect_calibration(cfg, prov, calib_ids, cal), "calibrate");
  std::fprintf(stderr, "imatrix: %lld chunks of %lld tokens of calib.txt\n", static_cast<long long>(im.n_chunks),
               static_cast<long long>(ctx));

  auto wanted = [&](const std::string& name) {
    if (only.empty()) return true;
    std::stringstream ss(only);
    std::string item;
    while (std::getline(ss, item, ','))
      if (name.find(item) != std::string::npos) return true;
    return false;
  };

  std::vector<config> configs;
  // -- llama.cpp's own files
  const std::pair<const char*, std::int32_t> llama_types[] = {{"Q3_K_M", 12}, {"IQ4_XS", 30}, {"Q4_K_M", 15}, {"Q5_K_M", 17}};
  const sbgq::bench::llama_imatrix_arg llama_im(im.im);
  for (const auto& [name, ftype] : llama_types) {
    const std::string label = std::string("llama.cpp ") + name;
    if (!wanted(label)) continue;
    config c;
    c.name = label;
    c.group = "llama.cpp";
    c.path = out_dir + "/llama-" + name + ".gguf";
    auto p = oracle().llama_model_quantize_default_params();
    p.nthread = n_threads;
    p.ftype = ftype;
    p.imatrix = llama_im.data();
    const auto t0 = std::chrono::steady_clock::now();
    if (!(reuse && std::filesystem::exists(c.path)) && oracle().llama_model_quantize(f32.c_str(), c.path.c_str(), &p) != 0) {
      std::fprintf(stderr, "llama_model_quantize %s failed\n", name);
      return 1;
    }
    c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto f = check(sbgq::gguf_file::open(c.path), "open");
    std::uint64_t bytes = 0, n_el = 0;
    for (const auto& t : f.tensors()) {
      bytes += t.nbytes;
      n_el += t.n_elements();
    }
    c.bpw = 8.0 * static_cast<double>(bytes) / static_cast<double>(n_el);
    c.file_size = std::filesystem::file_size(c.path);
    configs.push_back(c);
  }
  // -- our pipeline
  std::vector<variant> variants;
  for (const char* r : {"llama-q4_k_m", "llama-iq4_xs", "seed-iq4_xs"})
    for (bool rot : {false, true})
      for (bool gptq : {false, true}) variants.push_back({r, 0, rot, false, gptq});
  for (const char* r : {"llama-q4_k_m", "llama-iq4_xs"})
    for (bool rot : {false, true}) variants.push_back({r, 0, rot, true, false});
  for (double b : {4.5, 4.75, 5.0, 5.5})
    for (bool gptq : {false, true}) variants.push_back({"auto", b, false, false, gptq});
  for (const char* size_of : {"IQ4_XS", "Q4_K_M"})
    for (bool gptq : {true, false}) variants.push_back({"auto", 0, false, false, gptq, size_of});
  for (const char* r : {"llama-q4_k_m", "llama-iq4_xs"}) variants.push_back({r, 0, false, false, true, {}, true});
  for (const char* r : {"llama-q4_k_m", "llama-iq4_xs"})
    for (bool gptq : {false, true}) variants.push_back({r, 0, false, false, gptq, {}, false, true});
  for (const char* size_of : {"IQ4_XS", "Q4_K_M"}) variants.push_back({"auto", 0, false, false, true, size_of, false, true});
  for (auto v : variants) {
    const std::string label = variant_name(v);
    if (!wanted(label)) continue;
    if (!v.size_of.empty()) {  // the target: that llama.cpp file's bits per weight, made in this run
      for (const auto& c : configs)
        if (c.name == "llama.cpp " + v.size_of) v.target_bpw = c.bpw;
      if (!(v.target_bpw > 0)) {
        std::fprintf(stderr, "%s needs llama.cpp %s in the same run (--only)\n", label.c_str(), v.size_of.c_str());
        return 2;
      }
    }
    sbgq::pipeline_options o;
    o.recipe = v.recipe;
    o.target_bpw = v.target_bpw;
    if (!v.size_of.empty()) o.measure = sbgq::auto_measure::output_kld;
    o.calibration_text = calib;
    o.calibration_name = "calib.txt";
    o.ctx = ctx;
    o.chunks = calib_chunks;
    o.rotate = v.rotate ? sbgq::rotation_mode::hadamard : sbgq::rotation_mode::none;
    o.seed = 1;
    o.gauge = v.gauge;
    o.rounding = v.gptq ? sbgq::rounding_mode::gptq : sbgq::rounding_mode::plain;
    o.weigh_embedding = v.embedding_weights;
    o.quantized_inputs = v.quantized_inputs;
    o.n_threads = n_threads;
    config c;
    c.name = label;
    c.group = "sbgq";
    std::string file = label;
    for (char& ch : file)
      if (ch == ' ' || ch == '@' || ch == '+') ch = '_';
    c.path = out_dir + "/sbgq-" + file + ".gguf";
    if (reuse && std::filesystem::exists(c.path)) {
      c.bpw = file_bpw(c.path);
      c.file_size = std::filesystem::file_size(c.path);
      configs.push_back(c);
      continue;
    }
    std::fprintf(stderr, "pipeline: %s\n", label.c_str());
    auto rep = check(sbgq::run_pipeline(model_dir, c.path, o), "pipeline");
    c.bpw = rep.bits_per_weight();
    c.file_size = rep.file_size;
    c.seconds = rep.seconds;
    configs.push_back(c);
  }

  // -- evaluation in lockstep: F32 once per chunk, then every file
  std::vector<std::string> paths;
  for (const auto& c : configs) paths.push_back(c.path);
  std::int64_t n_chunks = 0;
  const auto res = sbgq::bench::evaluate_lockstep(f32, paths, eval, ctx, eval_chunks, n_threads, &n_chunks);

  // -- table, CSV, plot
  std::vector<std::size_t> order(configs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return configs[a].bpw < configs[b].bpw; });
  std::printf("eval.txt: %lld chunks of %lld tokens (%lld scored), calib.txt: %lld chunks\n\n", static_cast<long long>(n_chunks),
              static_cast<long long>(ctx), static_cast<long long>(res.empty() ? 0 : res[0].n), static_cast<long long>(im.n_chunks));
  std::printf("| file | bpw | size (bytes) | mean KLD | KLD p99 | same top | PPL | PPL(F32) | time (s) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  std::ofstream csv(out_dir + "/frontier.csv");
  csv << "name,group,bpw,file_size,kld_mean,kld_mean_error,kld_p99,same_top,ppl,ppl_base,seconds\n";
  for (std::size_t i : order) {
    const auto& c = configs[i];
    const auto& r = res[i];
    std::printf("| %s | %.3f | %llu | %.6f ± %.6f | %.5f | %.2f%% | %.3f | %.3f | %.1f |\n", c.name.c_str(), c.bpw,
                static_cast<unsigned long long>(c.file_size), r.kld_mean, r.kld_mean_error, r.kld_p99, 100 * r.same_top, r.ppl,
                r.ppl_base, c.seconds);
    csv << '"' << c.name << "\"," << c.group << ',' << c.bpw << ',' << c.file_size << ',' << r.kld_mean << ',' << r.kld_mean_error
        << ',' << r.kld_p99 << ',' << r.same_top << ',' << r.ppl << ',' << r.ppl_base << ',' << c.seconds << '\n';
  }
  std::ofstream(out_dir + "/frontier.svg") << svg_plot(configs, res);
  std::fprintf(stderr, "wrote %s/frontier.csv and %s/frontier.svg\n", out_dir.c_str(), out_dir.c_str());
  return 0;
}
