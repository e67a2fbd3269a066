// Where a quantized mix's KL-divergence comes from (issue 15's error budget), measured in
// libllama on the tiny model.
//
//   error_budget [--out DIR] [--recipe llama-q4_k_m] [--calib-chunks N] [--eval-chunks N]
//                [--by-layer] [--group NAME=REGEX ...] [--reuse] [-t N]
//
// 1. The whole mix: the pipeline with the recipe, plain and gptq rounding (MTP dropped: the
//    evaluation never runs it).
// 2. One group at a time: a rules recipe that gives the group's tensors exactly the types
//    they have in the whole mix and keeps every other tensor F32. Groups: token_embd, the
//    head, and each role of the layer matrices (attn_qkv, attn_gate, ssm_alpha+beta, ssm_out,
//    attn_q/k/v/output, ffn_gate/up/down); with --by-layer also each layer's matrices; with
//    --group any set of tensors named by a regular expression (extra rows). The
//    group's bytes equal the whole mix's (same types, same importance, same X^T X), so each
//    file isolates that group's quantization error.
// 3. Every file evaluated in lockstep against the F32 model on all of eval.txt (chunks of
//    256, llama-perplexity's scoring). Printed: mean KLD +/- standard error, p99, the
//    group's share of the whole mix's mean KLD, and the sum of the parts against the whole
//    (how far the errors add up).
// Output: a Markdown table on stdout and DIR/budget.csv; results go to bench/RESULTS.md.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "sbgq/convert.hpp"
#include "sbgq/pipeline.hpp"
#include "support/lockstep_eval.hpp"

namespace {

using sbgq::bench::check;

struct group {
  std::string name;
  std::string pattern;  ///< ECMAScript regex on GGUF names
  bool global = false;  ///< outside the layers: gptq does not touch it (plain only)
};

std::vector<group> role_groups() {
  return {{"token_embd", R"(^token_embd\.weight$)", true},
          {"output", R"(^output\.weight$)", true},
          {"attn_qkv", R"(\.attn_qkv\.weight$)"},
          {"attn_gate", R"(\.attn_gate\.weight$)"},
          {"ssm_alpha+beta", R"(\.ssm_(alpha|beta)\.weight$)"},
          {"ssm_out", R"(\.ssm_out\.weight$)"},
          {"attn_q", R"(\.attn_q\.weight$)"},
          {"attn_k", R"(\.attn_k\.weight$)"},
          {"attn_v", R"(\.attn_v\.weight$)"},
          {"attn_output", R"(\.attn_output\.weight$)"},
          {"ffn_gate", R"(\.ffn_gate\.weight$)"},
          {"ffn_up", R"(\.ffn_up\.weight$)"},
          {"ffn_down", R"(\.ffn_down\.weight$)"}};
}

std::string escape_regex(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '.') o += "\\\\";  // a JSON string holding "\."
    o += c;
  }
  return o;
}

/// A rules recipe: `members` at their whole-mix types, everything else F32.
std::string group_recipe(const std::string& name, const std::vector<const sbgq::tensor_record*>& members) {
  std::string j = "{ \"name\": \"budget-" + name + "\", \"default\": \"F32\", \"rules\": [";
  for (std::size_t i = 0; i < members.size(); ++i)
    j += std::string(i ? ", " : "") + "{ \"match\": \"^" + escape_regex(members[i]->name) + "$\", \"type\": \"" +
         std::string(sbgq::type_name(members[i]->type)) + "\" }";
  return j + "] }\n";
}

struct file_row {
  std::string label, mode, path;
  std::size_t n_tensors = 0;
  std::uint64_t bytes = 0;
  bool part = false;    ///< a group (not the whole mix)
  bool by_layer = false;
  bool extra = false;   ///< a --group row (in no partition's sum)
};

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir = "budget-out", recipe = "llama-q4_k_m";
  std::int64_t eval_chunks = -1, calib_chunks = 64;
  int n_threads = 2;
  bool reuse = false, by_layer = false;
  std::vector<group> extra;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return sbgq::bench::option_value(argc, argv, i); };
    if (a == "--out") out_dir = next();
    else if (a == "--recipe") recipe = next();
    else if (a == "--eval-chunks") eval_chunks = std::stoll(next());
    else if (a == "--calib-chunks") calib_chunks = std::stoll(next());
    else if (a == "-t") n_threads = std::stoi(next());
    else if (a == "--reuse") reuse = true;
    else if (a == "--by-layer") by_layer = true;
    else if (a == "--group") {
      const std::string g = next();
      const auto eq = g.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::fprintf(stderr, "--group: expected NAME=REGEX, found '%s'\n", g.c_str());
        return 2;
      }
      extra.push_back({g.substr(0, eq), g.substr(eq + 1)});
    }
    else {
      std::fprintf(stderr,
                   "usage: error_budget [--out DIR] [--recipe R] [--calib-chunks N] [--eval-chunks N] [--by-layer] "
                   "[--group NAME=REGEX ...] [--reuse] [-t N]\n");
      return 2;
    }
  }
  namespace fs = std::filesystem;
  fs::create_directories(out_dir);
  const std::string shared = SBGQ_SHARED_DIR, model_dir = shared + "/models/tiny-qwen35";
  const std::string calib = sbgq::bench::read_text(shared + "/data/calib.txt");
  const std::string eval = sbgq::bench::read_text(shared + "/data/eval.txt");
  const std::int64_t ctx = 256;

  const std::string f32 = out_dir + "/tiny-f32.gguf";
  sbgq::convert_options co;
  co.outtype = sbgq::ggml_type::f32;
  if (!(reuse && fs::exists(f32))) check(sbgq::convert_checkpoint(model_dir, f32, co), "convert");

  auto options = [&](const std::string& r, bool gptq) {
    sbgq::pipeline_options o;
    o.recipe = r;
    o.calibration_text = calib;
    o.calibration_name = "calib.txt";
    o.ctx = ctx;
    o.chunks = calib_chunks;
    o.rounding = gptq ? sbgq::rounding_mode::gptq : sbgq::rounding_mode::plain;
    o.keep_mtp = false;
    o.n_threads = n_threads;
    return o;
  };
  std::vector<file_row> rows;
  // Runs the pipeline unless --reuse finds the file; returns the tensors it wrote.
  auto produce = [&](file_row f, const std::string& r, bool gptq) {
    if (!(reuse && fs::exists(f.path))) {
      std::fprintf(stderr, "pipeline: %s %s\n", f.label.c_str(), f.mode.c_str());
      check(sbgq::run_pipeline(model_dir, f.path, options(r, gptq)), "pipeline");
    }
    rows.push_back(std::move(f));
  };

  std::vector<group> groups = role_groups();
  if (by_layer) {
    const auto cfg = check(sbgq::load_qwen35_config(model_dir), "config");
    for (std::int64_t l = 0; l < cfg.num_hidden_layers; ++l)
      groups.push_back({"layer " + std::to_string(l), "^blk\\." + std::to_string(l) + "\\.[a-z_]+\\.weight$"});
  }
  const std::size_t n_partition = groups.size();  // role groups, then layers: two partitions of the mix
  groups.insert(groups.end(), extra.begin(), extra.end());
  for (const bool gptq : {false, true}) {
    const std::string mode = gptq ? "gptq" : "plain";
    // The whole mix, run here (not reused) so its types are known.
    const std::string whole = out_dir + "/whole-" + mode + ".gguf";
    auto rep = check(sbgq::run_pipeline(model_dir, whole, options(recipe, gptq)), "pipeline");
    rows.push_back({recipe, mode, whole, rep.tensors.size(), rep.bytes, false, false, false});
    for (std::size_t g = 0; g < groups.size(); ++g) {
      const group& gr = groups[g];
      if (gr.global && gptq) continue;  // the same bytes as plain
      const std::regex re(gr.pattern);
      std::vector<const sbgq::tensor_record*> members;
      std::uint64_t bytes = 0;
      for (const auto& t : rep.tensors)
        if (sbgq::is_quantized(t.type) && std::regex_search(t.name, re)) {
          members.push_back(&t);
          bytes += t.bytes;
        }
      if (members.empty()) continue;
      std::string stem = gr.name;
      for (char& c : stem)
        if (c == ' ' || c == '+') c = '_';
      const std::string recipe_path = out_dir + "/recipe-" + stem + "-" + mode + ".json";
      std::ofstream(recipe_path) << group_recipe(stem, members);
      produce({gr.name, gr.global ? "plain = gptq" : mode, out_dir + "/part-" + stem + "-" + mode + ".gguf", members.size(), bytes,
               true, g >= role_groups().size(), g >= n_partition},
              recipe_path, gptq);
    }
  }

  std::vector<std::string> paths;
  for (const auto& f : rows) paths.push_back(f.path);
  std::int64_t n_chunks = 0;
  const auto res = sbgq::bench::evaluate_lockstep(f32, paths, eval, ctx, eval_chunks, n_threads, &n_chunks);

  std::printf("recipe %s; eval.txt: %lld chunks of %lld tokens (%lld scored); calib.txt: %lld chunks\n\n", recipe.c_str(),
              static_cast<long long>(n_chunks), static_cast<long long>(ctx), static_cast<long long>(res.empty() ? 0 : res[0].n),
              static_cast<long long>(calib_chunks));
  std::printf("| group | rounding | tensors | bytes | mean KLD | KLD p99 | share of the whole |\n|---|---|---:|---:|---:|---:|---:|\n");
  std::ofstream csv(out_dir + "/budget.csv");
  csv << "group,rounding,tensors,bytes,kld_mean,kld_mean_error,kld_p99,share\n";
  std::map<std::string, double> whole_kld, sum_roles, sum_layers;
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (!rows[i].part) whole_kld[rows[i].mode] = res[i].kld_mean;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& f = rows[i];
    const auto& r = res[i];
    // A global group's one file counts for both roundings.
    std::vector<std::string> modes = {f.mode};
    if (f.mode == "plain = gptq") modes = {"plain", "gptq"};
    if (!f.extra)
      for (const auto& m : modes) (f.by_layer ? sum_layers : sum_roles)[m] += f.part ? r.kld_mean : 0;
    if (f.mode == "plain = gptq" && !f.extra)
      for (const auto& m : {"plain", "gptq"}) sum_layers[m] += r.kld_mean;  // globals belong to both partitions
    const double share = f.part ? r.kld_mean / whole_kld[f.mode == "plain = gptq" ? "plain" : f.mode] : 1.0;
    std::printf("| %s | %s | %zu | %llu | %.6f ± %.6f | %.5f | %.1f%% |\n", f.label.c_str(), f.mode.c_str(), f.n_tensors,
                static_cast<unsigned long long>(f.bytes), r.kld_mean, r.kld_mean_error, r.kld_p99, 100 * share);
    csv << '"' << f.label << "\"," << f.mode << ',' << f.n_tensors << ',' << f.bytes << ',' << r.kld_mean << ',' << r.kld_mean_error
        << ',' << r.kld_p99 << ',' << share << '\n';
  }
  std::printf("\n");
  for (const auto& [m, w] : whole_kld) {
    std::printf("%s: whole %.6f; sum of the role groups %.6f (%.1f%% of the whole)", m.c_str(), w, sum_roles[m],
                100 * sum_roles[m] / w);
    if (by_layer) std::printf("; sum of token_embd, output and the layers %.6f (%.1f%%)", sum_layers[m], 100 * sum_layers[m] / w);
    std::printf("\n");
  }
  return 0;
}
