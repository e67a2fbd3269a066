// What the quality benchmarks (quality_frontier, error_budget) share: reading the data,
// failing loudly, a GGUF's bits per weight, llama.cpp's imatrix argument, and the one
// measurement they all report -- KL-divergence of GGUF files against the F32 model,
// computed by libllama (the oracle) on a text cut into chunks, every file in lockstep so
// the F32 model runs once per chunk and no base-logits file is needed.
//
// Scoring is llama-perplexity's: the second half of each chunk (positions ctx/2 .. ctx-2
// predict the next token), the statistics of evaluate.hpp's kld_accumulator (mean with its
// standard error, percentiles, same-top rate).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sbgq/core/error.hpp"
#include "sbgq/evaluate.hpp"
#include "sbgq/io/gguf.hpp"
#include "sbgq/io/imatrix.hpp"
#include "support/oracle.hpp"

namespace sbgq::bench {

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

/// The value of the option argv[i] (argv[i + 1], and i moves past it), or a message and
/// exit(2) when it is missing.
inline std::string option_value(int argc, char** argv, int& i) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s needs a value\n", argv[i]);
    std::exit(2);
  }
  return argv[++i];
}

/// The value, or the error on stderr and exit(1): a benchmark has no one to return to.
template <class T>
T check(result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", what, r.error().message().c_str());
    std::exit(1);
  }
  return std::move(*r);
}
inline void check(result<void> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", what, r.error().message().c_str());
    std::exit(1);
  }
}

/// Bits per weight of a GGUF's tensor data (0 if it cannot be read).
inline double file_bpw(const std::string& path) {
  auto f = gguf_file::open(path);
  if (!f) return 0;
  std::uint64_t bytes = 0, n = 0;
  for (const auto& t : f->tensors()) {
    bytes += t.nbytes;
    n += t.n_elements();
  }
  return n ? 8.0 * static_cast<double>(bytes) / static_cast<double>(n) : 0;
}

/// An imatrix as llama_model_quantize's argument (S / count per entry); keeps the arrays.
class llama_imatrix_arg {
 public:
  explicit llama_imatrix_arg(const imatrix& im) {
    for (const auto& [n, e] : im.entries) {
      std::vector<float> v(e.sum2.size());
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = e.sum2[i] / static_cast<float>(e.counts[0]);
      names_.push_back(n);
      weights_.push_back(std::move(v));
    }
    for (std::size_t k = 0; k < names_.size(); ++k) data_.push_back({names_[k].c_str(), weights_[k].data(), weights_[k].size()});
    data_.push_back({nullptr, nullptr, 0});
  }
  const test::llama_model_imatrix_data* data() const noexcept { return data_.data(); }

 private:
  std::vector<std::string> names_;
  std::vector<std::vector<float>> weights_;
  std::vector<test::llama_model_imatrix_data> data_;
};

/// KL-divergence statistics of each file in `paths` against the F32 GGUF `f32`, in
/// libllama, on `text` cut into chunks of ctx tokens (at most max_chunks; <= 0: all).
/// `chunks_done` receives the number of chunks evaluated.
inline std::vector<kld_result> evaluate_lockstep(const std::string& f32, const std::vector<std::string>& paths,
                                                 const std::string& text, std::int64_t ctx, std::int64_t max_chunks,
                                                 int n_threads, std::int64_t* chunks_done = nullptr) {
  using test::oracle_model;
  const oracle_model::options mo{static_cast<std::uint32_t>(ctx), static_cast<std::uint32_t>(ctx), n_threads, false, true};
  oracle_model base(f32, mo);
  const auto ids = base.tokenize(text, false);
  std::int64_t n_chunks = static_cast<std::int64_t>(ids.size()) / ctx;
  if (max_chunks > 0) n_chunks = std::min(n_chunks, max_chunks);
  if (chunks_done) *chunks_done = n_chunks;
  std::vector<std::unique_ptr<oracle_model>> models;
  for (const auto& p : paths) models.push_back(std::make_unique<oracle_model>(p, mo));
  std::vector<kld_accumulator> acc(paths.size());
  const std::int64_t first = ctx / 2, nv = base.n_vocab();
  base_logits_row row;
  std::vector<std::vector<float>> zq(paths.size());
  for (std::int64_t ch = 0; ch < n_chunks; ++ch) {
    std::vector<std::int32_t> chunk(ids.begin() + ch * ctx, ids.begin() + (ch + 1) * ctx);
    base.clear();
    const auto zb = base.decode(chunk);
    for (std::size_t m = 0; m < models.size(); ++m) {
      models[m]->clear();
      zq[m] = models[m]->decode(chunk);
    }
    for (std::int64_t i = first; i < ctx - 1; ++i) {
      const float* z = zb.data() + i * nv;
      const auto [mx, lse] = detail::eval::log_softmax_terms(z, nv);
      row.log_p.resize(static_cast<std::size_t>(nv));
      std::int32_t top = 0;
      for (std::int64_t j = 0; j < nv; ++j) {
        row.log_p[static_cast<std::size_t>(j)] = static_cast<double>(z[j] - mx) - lse;
        if (z[j] > z[top]) top = static_cast<std::int32_t>(j);
      }
      const std::int32_t next = chunk[static_cast<std::size_t>(i + 1)];
      row.target_log_p = static_cast<float>(row.log_p[static_cast<std::size_t>(next)]);
      row.top = top;
      for (std::size_t m = 0; m < models.size(); ++m)
        check(acc[m].add(std::span<const float>(zq[m].data() + i * nv, static_cast<std::size_t>(nv)), row, next), "kld");
    }
    if ((ch + 1) % 20 == 0)
      std::fprintf(stderr, "eval: chunk %lld/%lld\n", static_cast<long long>(ch + 1), static_cast<long long>(n_chunks));
  }
  std::vector<kld_result> res;
  for (auto& a : acc) res.push_back(a.finish());
  return res;
}

}  // namespace sbgq::bench
