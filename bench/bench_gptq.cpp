// Error-compensating rounding (include/sbgq/gptq.hpp): wall time of gptq_quantize for
// 9B-shaped matrices (rows x cols = 4096 x 4096, 4096 x 12288, i.e. ssm_out / ffn_down
// shaped as output x input) with their H, Q4_K and IQ4_XS, one thread and all threads.
//
// H is the covariance of AR(1)-correlated activations with per-column scales,
// H_ij = s_i s_j rho^|i-j| (rho = 0.98): exactly PSD, ill-conditioned, and O(n^2) to
// build, so the benchmark measures gptq_quantize and not the synthesis of X^T X.
// Variants: "noobj" (compute_objectives off: what the pipeline pays), "obj" (with the two
// objective evaluations). Names: gptq/<type>/<rows>x<cols>/<noobj|obj>/threads:<n>.
// Results go to bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "sbgq/quant/gptq.hpp"
#include "support/rng.hpp"

namespace {

struct problem {
  std::size_t rows, cols;
  std::vector<float> w;
  Eigen::MatrixXf h;
};

const problem& get_problem(std::size_t rows, std::size_t cols) {
  static std::vector<std::unique_ptr<problem>> cache;
  for (auto& p : cache)
    if (p->rows == rows && p->cols == cols) return *p;
  auto p = std::make_unique<problem>();
  p->rows = rows;
  p->cols = cols;
  sbgq::test::rng g(7);
  p->w.resize(rows * cols);
  for (auto& v : p->w) v = 0.02f * g.normal() * std::exp(0.5f * g.normal());
  const auto n = static_cast<Eigen::Index>(cols);
  Eigen::VectorXd s(n);
  for (Eigen::Index j = 0; j < n; ++j) s(j) = std::exp(0.5 * static_cast<double>(g.normal()));
  p->h.resize(n, n);
  const double rho = 0.98;
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index i = 0; i < n; ++i) p->h(i, j) = static_cast<float>(s(i) * s(j) * std::pow(rho, static_cast<double>(std::abs(i - j))));
  cache.push_back(std::move(p));
  return *cache.back();
}

void bm_gptq(benchmark::State& state, sbgq::ggml_type type, std::size_t rows, std::size_t cols, bool objectives) {
  const problem& p = get_problem(rows, cols);
  std::vector<std::byte> q(rows * sbgq::row_size(type, cols));
  sbgq::gptq_options opt;
  opt.n_threads = static_cast<int>(state.range(0));
  opt.compute_objectives = objectives;
  sbgq::gptq_stats st;
  for (auto _ : state) {
    auto r = sbgq::gptq_quantize(type, p.w.data(), rows, cols, p.h, {}, q, opt);
    if (!r.has_value()) {
      state.SkipWithError(r.error().message().c_str());
      return;
    }
    st = *r;
    benchmark::DoNotOptimize(q.data());
  }
  state.counters["gptq_s"] = st.seconds;
  if (objectives) state.counters["reduction_pct"] = 100.0 * (1.0 - st.objective / st.objective_plain);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows * cols));
}

void register_all() {
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (auto type : {sbgq::ggml_type::q4_k, sbgq::ggml_type::iq4_xs})
    for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{4096, 4096}, {4096, 12288}})
      for (bool obj : {false, true}) {
        if (obj && cols > 4096) continue;  // the objectives double the time; one shape is enough
        const std::string name = std::string("gptq/") + std::string(sbgq::type_name(type)) + "/" +
                                 std::to_string(rows) + "x" + std::to_string(cols) + (obj ? "/obj" : "/noobj");
        auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { bm_gptq(s, type, rows, cols, obj); });
        b->Arg(1);
        if (all > 1) b->Arg(all);
        b->ArgName("threads")->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);
      }
}

const int registered = (register_all(), 0);

}  // namespace

BENCHMARK_MAIN();
