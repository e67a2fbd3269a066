// Model evaluation the way llama-perplexity does it: perplexity over non-overlapping
// chunks, and KL-divergence statistics against saved base-model log-probabilities.
//
// Perplexity (llama-perplexity's default mode):
//   - the token stream (tokenized by the caller, no BOS added) is cut into
//     n_chunks = floor(n_tokens / ctx) non-overlapping chunks of ctx tokens (at least two
//     chunks' worth of tokens are required, as llama-perplexity requires 2 * ctx);
//   - in each chunk only the second half is scored: the logits at positions
//     first = ctx/2 ... ctx-2 predict the tokens at first+1 ... ctx-1 (ctx - 1 - first
//     predictions per chunk), so every scored token has at least ctx/2 tokens of context;
//   - nll = -log softmax(logits)[next] with the softmax sum in double; PPL = exp(mean nll);
//     the running value after each chunk is exp(sum nll / count so far);
//   - the error estimate is llama-perplexity's: s = sqrt((mean(nll^2) - mean(nll)^2) /
//     (count - 1)) is the standard error of the mean nll, and PPL +/- PPL * s.
//
// KL divergence (llama-perplexity --kl-divergence): per scored token, with P the base
// distribution (saved) and Q the evaluated model,
//   KLD = sum_i P_i (log P_i - log Q_i),  dp = Q(next) - P(next),  same top = argmax equal.
// Reported like llama-perplexity: mean PPL(Q) and PPL(base) with errors, the correlation
// of the per-token nll, mean ln(PPL(Q)/PPL(base)), the PPL ratio and difference (errors
// propagated with the covariance of the nll pairs), mean KLD +/- its standard error, its
// maximum, 99.9/99/95/90/50(median)/10/5/1/0.1 percentiles and minimum (percentiles
// interpolate linearly between sorted values at position f * (n - 1)), the same
// statistics of dp, RMS dp, and the same-top fraction +/- sqrt(f (1 - f) / (n - 1)).
//
// Saved base logits ("sbgq base logits", file extension of your choice) -- written
// streaming through the atomic output_file, read back through a memory map:
//
//   offset  size            field
//   0       8               magic "SBGQLGT1"
//   8       4   u32         n_vocab
//   12      4   u32         ctx
//   16      4   u32         first (= ctx / 2)
//   20      4   u32         reserved, 0
//   24      8   u64         n_chunks
//   32      4 * n_chunks * ctx   i32 tokens of every chunk
//   then n_chunks * (ctx - 1 - first) records, chunk after chunk, position after position:
//           4   f32 lo      lowest stored log-probability
//           4   f32 step    quantisation step
//           4   f32 target  exact log P(next token)
//           4   i32 top     argmax of the base logits
//           2 * n_vocab u16 codes: log P_i ~= lo + code * step
//   all little-endian.
// The row is quantised to 16 bits between its maximum log-probability (<= 0) and
// lo = max(min log P, -40): every log P_i within 40 nats of 0 is stored to +/- step/2
// (at most 40 / 131070 = 3.1e-4 nats); probabilities below e^-40 are raised to e^-40.
// The reader renormalises the decoded row, so P is an exact distribution. The scored
// token's log P and the top token are stored exactly, so PPL(base) and same-top are exact.
//
// Design goals: llama-perplexity's numbers from our forward pass (or from any logits),
// streaming (one batch of chunks in memory), deterministic results.
// Non-goals: strided perplexity, HellaSwag and other llama-perplexity modes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/base.hpp"
#include "core/detail/checked.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "model/forward.hpp"
#include "core/mapped_file.hpp"
#include "model/model_config.hpp"
#include "core/output_file.hpp"

SBGQ_BEGIN_NAMESPACE

/// Result of a perplexity run.
struct perplexity_result {
  double ppl = 0;        ///< exp(mean nll)
  double ppl_error = 0;  ///< llama-perplexity's "+/-": ppl * standard error of the mean nll
  double mean_nll = 0;
  std::int64_t n_chunks = 0;
  std::int64_t n_scored = 0;        ///< n_chunks * (ctx - 1 - ctx/2)
  std::vector<double> running_ppl;  ///< after each chunk, as llama-perplexity prints "[i]ppl"
  std::vector<float> nll;           ///< per scored token, chunk after chunk
};

/// KL-divergence statistics of a model against base log-probabilities (file header).
/// Probabilities and fractions are in [0, 1] (llama-perplexity prints them in %).
struct kld_result {
  std::int64_t n = 0;  ///< scored tokens
  double ppl = 0, ppl_error = 0;
  double ppl_base = 0, ppl_base_error = 0;
  double nll_correlation = 0;  ///< Cor(ln PPL(Q), ln PPL(base)) of the per-token nll
  double ln_ppl_ratio = 0, ln_ppl_ratio_error = 0;
  double ppl_ratio = 0, ppl_ratio_error = 0;
  double ppl_delta = 0, ppl_delta_error = 0;  ///< PPL(Q) - PPL(base)
  double kld_mean = 0, kld_mean_error = 0;
  double kld_max = 0, kld_p99_9 = 0, kld_p99 = 0, kld_p95 = 0, kld_p90 = 0, kld_median = 0, kld_p10 = 0,
         kld_p5 = 0, kld_p1 = 0, kld_p0_1 = 0, kld_min = 0;
  double dp_mean = 0, dp_mean_error = 0;
  double dp_max = 0, dp_p99_9 = 0, dp_p99 = 0, dp_p95 = 0, dp_p90 = 0, dp_median = 0, dp_p10 = 0, dp_p5 = 0,
         dp_p1 = 0, dp_p0_1 = 0, dp_min = 0;
  double dp_rms = 0, dp_rms_error = 0;
  double same_top = 0, same_top_error = 0;
  std::vector<float> kld;  ///< per scored token, chunk after chunk
};

namespace detail::eval {

inline error eval_error(error_code c, std::string msg, std::uint64_t off = error::npos) {
  return error(c, "evaluate", std::move(msg), off);
}

/// log softmax(z)[i] = z[i] - max - log(sum exp(z - max)), sum in double. Returns
/// {max, log(sum)} so that log_softmax(z)[i] = (z[i] - max) - log_sum.
inline std::pair<float, double> log_softmax_terms(const float* z, std::int64_t n) noexcept {
  float mx = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, z[i]);
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(z[i] - mx));
  return {mx, std::log(sum)};
}

/// (mean, standard error of the mean) from sums, as llama-perplexity computes them.
inline std::pair<double, double> mean_and_error(double sum, double sum2, std::int64_t n) noexcept {
  if (n < 1) return {0.0, 0.0};
  const double mean = sum / static_cast<double>(n);
  const double var = sum2 / static_cast<double>(n) - mean * mean;
  return {mean, var > 0 && n > 1 ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0};
}
inline double covariance_of_means(double sa, double sb, double sab, std::int64_t n) noexcept {
  if (n < 2) return 0.0;
  const double dn = static_cast<double>(n);
  return (sab / dn - (sa / dn) * (sb / dn)) / (dn - 1);
}

/// Percentile of sorted values at fraction f, linear between ranks at f * (n - 1).
inline double percentile_sorted(const std::vector<float>& v, double f) noexcept {
  if (v.empty()) return 0.0;
  const double pos = std::clamp(f, 0.0, 1.0) * static_cast<double>(v.size() - 1);
  const auto i = static_cast<std::size_t>(pos);
  const double t = pos - static_cast<double>(i);
  const std::size_t j = std::min(i + 1, v.size() - 1);
  return (1.0 - t) * v[i] + t * v[j];
}

inline void put_u32(std::vector<std::byte>& b, std::size_t at, std::uint32_t v) { std::memcpy(b.data() + at, &v, 4); }

}  // namespace detail::eval

/// Accumulates perplexity chunk by chunk from logits (ours, libllama's, anyone's).
/// Not thread-safe; results are deterministic (sums in chunk and position order).
class perplexity_accumulator {
 public:
  explicit perplexity_accumulator(std::int64_t ctx) : ctx_(ctx), first_(ctx / 2) {}

  std::int64_t ctx() const noexcept { return ctx_; }
  std::int64_t first() const noexcept { return first_; }
  /// Scored predictions per chunk: ctx - 1 - ctx/2.
  std::int64_t scored_per_chunk() const noexcept { return ctx_ - 1 - first_; }

  /// Adds one chunk: `chunk` holds its ctx tokens; logits holds scored_per_chunk() rows
  /// of n_vocab values, the logits at positions first ... ctx-2. Errors: size_mismatch,
  /// bad_value (a token outside [0, n_vocab)), not_finite (a NaN or infinite logit: a
  /// broken model gives an error, never "PPL = nan").
  result<void> add_chunk(std::span<const float> logits, std::int64_t n_vocab, std::span<const std::int32_t> chunk) {
    const std::int64_t rows = scored_per_chunk();
    if (static_cast<std::int64_t>(chunk.size()) != ctx_ || n_vocab <= 0 ||
        static_cast<std::int64_t>(logits.size()) != rows * n_vocab)
      return detail::eval::eval_error(error_code::size_mismatch,
                                "perplexity chunk: expected " + std::to_string(ctx_) + " tokens and " +
                                    std::to_string(rows) + " x n_vocab logits, got " + std::to_string(chunk.size()) +
                                    " tokens and " + std::to_string(logits.size()) + " values");
    for (std::int64_t i = 0; i < rows; ++i) {
      const std::int32_t next = chunk[static_cast<std::size_t>(first_ + i + 1)];
      if (next < 0 || next >= n_vocab)
        return detail::eval::eval_error(error_code::bad_value, "token id " + std::to_string(next) + " outside [0, " +
                                                             std::to_string(n_vocab) + ")");
      const float* z = logits.data() + i * n_vocab;
      const auto [mx, log_sum] = detail::eval::log_softmax_terms(z, n_vocab);
      const double v = -(static_cast<double>(z[next] - mx) - log_sum);
      if (!std::isfinite(v))
        return detail::eval::eval_error(error_code::not_finite,
                                        "chunk " + std::to_string(n_chunks_) + ", position " + std::to_string(first_ + i) +
                                            ": the logits are not finite (NaN or infinity in the model's weights?)");
      nll_sum_ += v;
      nll2_sum_ += v * v;
      nll_.push_back(static_cast<float>(v));
    }
    ++n_chunks_;
    running_.push_back(std::exp(nll_sum_ / static_cast<double>(nll_.size())));
    return {};
  }

  perplexity_result finish() const {
    perplexity_result r;
    r.n_chunks = n_chunks_;
    r.n_scored = static_cast<std::int64_t>(nll_.size());
    const auto [mean, err] = detail::eval::mean_and_error(nll_sum_, nll2_sum_, r.n_scored);
    r.mean_nll = mean;
    r.ppl = std::exp(mean);
    r.ppl_error = r.ppl * err;
    r.running_ppl = running_;
    r.nll = nll_;
    return r;
  }

 private:
  std::int64_t ctx_, first_;
  std::int64_t n_chunks_ = 0;
  double nll_sum_ = 0, nll2_sum_ = 0;
  std::vector<double> running_;
  std::vector<float> nll_;
};

/// One decoded base record: normalised log-probabilities of the whole vocabulary.
struct base_logits_row {
  std::vector<double> log_p;  ///< n_vocab, renormalised
  float target_log_p = 0;     ///< exact log P(next token)
  std::int32_t top = 0;       ///< argmax of the base logits
};

/// Streaming writer of base log-probabilities (format in the file header). Create it
/// with the tokens of all chunks, append the scored rows of each chunk in order, commit.
class base_logits_writer {
 public:
  static constexpr char magic[9] = "SBGQLGT1";
  static constexpr double min_log_p = -40.0;

  /// Errors: invalid_argument (ctx < 4, chunks empty or not a multiple of ctx), io_error.
  static result<base_logits_writer> create(const std::string& path, std::int64_t n_vocab, std::int64_t ctx,
                                           std::span<const std::int32_t> chunk_tokens) {
    if (ctx < 4 || n_vocab <= 0 || n_vocab > (std::int64_t{1} << 30) || chunk_tokens.empty() ||
        static_cast<std::int64_t>(chunk_tokens.size()) % ctx != 0)
      return detail::eval::eval_error(error_code::invalid_argument,
                                "base logits: need ctx >= 4, a vocabulary and whole chunks of ctx tokens");
    base_logits_writer w;
    SBGQ_TRY(w.file_, output_file::create(path));
    w.n_vocab_ = n_vocab;
    w.ctx_ = ctx;
    w.n_chunks_ = static_cast<std::int64_t>(chunk_tokens.size()) / ctx;
    std::vector<std::byte> head(32);
    std::memcpy(head.data(), magic, 8);
    detail::eval::put_u32(head, 8, static_cast<std::uint32_t>(n_vocab));
    detail::eval::put_u32(head, 12, static_cast<std::uint32_t>(ctx));
    detail::eval::put_u32(head, 16, static_cast<std::uint32_t>(ctx / 2));
    detail::eval::put_u32(head, 20, 0);
    const auto nc = static_cast<std::uint64_t>(w.n_chunks_);
    std::memcpy(head.data() + 24, &nc, 8);
    SBGQ_TRY_VOID(w.file_.write(head));
    SBGQ_TRY_VOID(w.file_.write(chunk_tokens.data(), chunk_tokens.size_bytes()));
    w.tokens_.assign(chunk_tokens.begin(), chunk_tokens.end());
    return w;
  }

  /// Appends the next chunk's scored logits: (ctx - 1 - ctx/2) rows of n_vocab values.
  result<void> append_chunk(std::span<const float> logits) {
    const std::int64_t first = ctx_ / 2, rows = ctx_ - 1 - first;
    if (done_chunks_ >= n_chunks_)
      return detail::eval::eval_error(error_code::invalid_argument, "base logits: more chunks than announced");
    if (static_cast<std::int64_t>(logits.size()) != rows * n_vocab_)
      return detail::eval::eval_error(error_code::size_mismatch, "base logits: expected " + std::to_string(rows * n_vocab_) +
                                                               " logits, got " + std::to_string(logits.size()));
    std::vector<std::byte> rec(static_cast<std::size_t>(16 + 2 * n_vocab_));
    const std::int32_t* chunk = tokens_.data() + done_chunks_ * ctx_;
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* z = logits.data() + i * n_vocab_;
      const auto [mx, log_sum] = detail::eval::log_softmax_terms(z, n_vocab_);
      double lo = 0, hi = -std::numeric_limits<double>::infinity();
      std::int32_t top = 0;
      for (std::int64_t j = 0; j < n_vocab_; ++j) {
        const double lp = static_cast<double>(z[j] - mx) - log_sum;
        lo = std::min(lo, lp);
        if (lp > hi) {
          hi = lp;
          top = static_cast<std::int32_t>(j);
        }
      }
      lo = std::max(lo, min_log_p);
      const double span = std::max(hi - lo, 1e-30);
      const float lo_f = static_cast<float>(lo), step_f = static_cast<float>(span / 65535.0);
      const std::int32_t next = chunk[first + i + 1];
      if (next < 0 || next >= n_vocab_)
        return detail::eval::eval_error(error_code::bad_value, "token id " + std::to_string(next) + " outside the vocabulary");
      const float target = static_cast<float>(static_cast<double>(z[next] - mx) - log_sum);
      std::memcpy(rec.data(), &lo_f, 4);
      std::memcpy(rec.data() + 4, &step_f, 4);
      std::memcpy(rec.data() + 8, &target, 4);
      std::memcpy(rec.data() + 12, &top, 4);
      for (std::int64_t j = 0; j < n_vocab_; ++j) {
        const double lp = static_cast<double>(z[j] - mx) - log_sum;
        const double q = std::nearbyint((std::max(lp, static_cast<double>(lo_f)) - lo_f) / step_f);
        const auto code = static_cast<std::uint16_t>(std::clamp(q, 0.0, 65535.0));
        std::memcpy(rec.data() + 16 + 2 * j, &code, 2);
      }
      SBGQ_TRY_VOID(file_.write(rec));
    }
    ++done_chunks_;
    return {};
  }

  /// Renames the file into place. Errors: invalid_argument if chunks are missing.
  result<void> commit() {
    if (done_chunks_ != n_chunks_)
      return detail::eval::eval_error(error_code::invalid_argument, "base logits: " + std::to_string(done_chunks_) + " of " +
                                                                  std::to_string(n_chunks_) + " chunks written");
    return file_.commit();
  }

 private:
  output_file file_;
  std::int64_t n_vocab_ = 0, ctx_ = 0, n_chunks_ = 0, done_chunks_ = 0;
  std::vector<std::int32_t> tokens_;
};

/// Read-only view of a saved base-logits file. Thread-safe for concurrent reads.
class base_logits_file {
 public:
  /// Errors: io_error, bad_magic, bad_value (ctx/first), truncated / bad_range (size).
  static result<base_logits_file> open(const std::string& path) {
    base_logits_file f;
    SBGQ_TRY(f.map_, mapped_file::open(path));
    const std::byte* p = f.map_.data();
    const std::uint64_t size = f.map_.size();
    if (size < 32) return detail::eval::eval_error(error_code::truncated, path + ": shorter than the 32-byte header", size);
    if (std::memcmp(p, base_logits_writer::magic, 8) != 0)
      return detail::eval::eval_error(error_code::bad_magic, path + ": not an sbgq base-logits file", 0);
    std::uint32_t nv, ctx, first;
    std::uint64_t nc;
    std::memcpy(&nv, p + 8, 4);
    std::memcpy(&ctx, p + 12, 4);
    std::memcpy(&first, p + 16, 4);
    std::memcpy(&nc, p + 24, 8);
    if (nv == 0 || nv > (1u << 30) || ctx < 4 || first != ctx / 2 || nc == 0)
      return detail::eval::eval_error(error_code::bad_value, path + ": invalid n_vocab " + std::to_string(nv) + ", ctx " +
                                                           std::to_string(ctx) + ", first " + std::to_string(first) +
                                                           " or n_chunks " + std::to_string(nc), 8);
    f.n_vocab_ = nv;
    f.ctx_ = ctx;
    f.n_chunks_ = static_cast<std::int64_t>(nc);
    // expected size = 32 + 4 * nc * ctx + nc * rows * (16 + 2 * nv), overflow-checked
    std::uint64_t tok_bytes = 0, n_rec = 0, rec_total = 0, total = 0;
    const std::uint64_t rows = ctx - 1 - first;
    if (!detail::checked_mul(nc, std::uint64_t{4} * ctx, tok_bytes) || !detail::checked_mul(nc, rows, n_rec) ||
        !detail::checked_mul(n_rec, std::uint64_t{16} + 2ull * nv, rec_total) ||
        !detail::checked_add(std::uint64_t{32} + tok_bytes, rec_total, total))
      return detail::eval::eval_error(error_code::overflow, path + ": header sizes overflow", 24);
    if (total != size)
      return detail::eval::eval_error(size < total ? error_code::truncated : error_code::bad_range,
                                path + ": expected " + std::to_string(total) + " bytes for " + std::to_string(nc) +
                                    " chunks, file has " + std::to_string(size), size);
    f.tokens_.resize(static_cast<std::size_t>(nc * ctx));
    std::memcpy(f.tokens_.data(), p + 32, static_cast<std::size_t>(tok_bytes));
    f.records_ = 32 + tok_bytes;
    return f;
  }

  std::int64_t n_vocab() const noexcept { return n_vocab_; }
  std::int64_t ctx() const noexcept { return ctx_; }
  std::int64_t first() const noexcept { return ctx_ / 2; }
  std::int64_t n_chunks() const noexcept { return n_chunks_; }
  std::int64_t rows_per_chunk() const noexcept { return ctx_ - 1 - ctx_ / 2; }
  /// Tokens of every chunk, chunk after chunk.
  std::span<const std::int32_t> tokens() const noexcept { return tokens_; }

  /// Decodes record i of chunk c (position first + i). Precondition: indices in range.
  void row(std::int64_t c, std::int64_t i, base_logits_row& out) const {
    SBGQ_DASSERT(c >= 0 && c < n_chunks_ && i >= 0 && i < rows_per_chunk());
    const std::uint64_t rec = 16 + 2 * static_cast<std::uint64_t>(n_vocab_);
    const std::byte* p = map_.data() + records_ + static_cast<std::uint64_t>(c * rows_per_chunk() + i) * rec;
    float lo, step;
    std::memcpy(&lo, p, 4);
    std::memcpy(&step, p + 4, 4);
    std::memcpy(&out.target_log_p, p + 8, 4);
    std::memcpy(&out.top, p + 12, 4);
    out.log_p.resize(static_cast<std::size_t>(n_vocab_));
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < n_vocab_; ++j) {
      std::uint16_t code;
      std::memcpy(&code, p + 16 + 2 * j, 2);
      const double v = static_cast<double>(lo) + static_cast<double>(code) * static_cast<double>(step);
      out.log_p[static_cast<std::size_t>(j)] = v;
      mx = std::max(mx, v);
    }
    double sum = 0;
    for (double v : out.log_p) sum += std::exp(v - mx);
    const double norm = mx + std::log(sum);
    for (double& v : out.log_p) v -= norm;
  }

 private:
  mapped_file map_;
  std::int64_t n_vocab_ = 0, ctx_ = 0, n_chunks_ = 0;
  std::uint64_t records_ = 0;
  std::vector<std::int32_t> tokens_;
};

/// Accumulates KL-divergence statistics row by row. Not thread-safe; deterministic.
class kld_accumulator {
 public:
  /// Adds one scored token: the model's logits z (n_vocab values), the base record and
  /// the token that follows. Errors: size_mismatch, bad_value.
  result<void> add(std::span<const float> z, const base_logits_row& base, std::int32_t next) {
    const auto n = static_cast<std::int64_t>(z.size());
    if (static_cast<std::int64_t>(base.log_p.size()) != n || n == 0)
      return detail::eval::eval_error(error_code::size_mismatch, "kld: logits and base rows differ in length");
    if (next < 0 || next >= n) return detail::eval::eval_error(error_code::bad_value, "kld: token outside the vocabulary");
    const auto [mx, log_sum] = detail::eval::log_softmax_terms(z.data(), n);
    double kld = 0;
    std::int64_t top = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double lq = static_cast<double>(z[j] - mx) - log_sum;
      const double lp = base.log_p[static_cast<std::size_t>(j)];
      kld += std::exp(lp) * (lp - lq);
      if (z[j] > z[top]) top = j;
    }
    const double nll = -(static_cast<double>(z[next] - mx) - log_sum);
    if (!std::isfinite(nll) || !std::isfinite(kld))
      return detail::eval::eval_error(error_code::not_finite,
                                      "kld: the logits are not finite (NaN or infinity in the model's weights?)");
    const double nll_base = -static_cast<double>(base.target_log_p);
    const double dp = std::exp(-nll) - std::exp(-nll_base);
    s_nll_ += nll;
    s_nll2_ += nll * nll;
    s_nllb_ += nll_base;
    s_nllb2_ += nll_base * nll_base;
    s_nll_nllb_ += nll * nll_base;
    s_kld_ += kld;
    s_kld2_ += kld * kld;
    s_dp_ += dp;
    s_dp2_ += dp * dp;
    s_dp4_ += dp * dp * dp * dp;
    same_ += top == base.top;
    kld_.push_back(static_cast<float>(kld));
    dp_.push_back(static_cast<float>(dp));
    return {};
  }

  kld_result finish() const {
    kld_result r;
    const auto n = static_cast<std::int64_t>(kld_.size());
    r.n = n;
    if (n == 0) return r;
    const auto lp = detail::eval::mean_and_error(s_nll_, s_nll2_, n);
    const auto lpb = detail::eval::mean_and_error(s_nllb_, s_nllb2_, n);
    const double cov = detail::eval::covariance_of_means(s_nll_, s_nllb_, s_nll_nllb_, n);
    r.ppl = std::exp(lp.first);
    r.ppl_error = r.ppl * lp.second;
    r.ppl_base = std::exp(lpb.first);
    r.ppl_base_error = r.ppl_base * lpb.second;
    r.nll_correlation = lp.second > 0 && lpb.second > 0 ? cov / (lp.second * lpb.second) : 0.0;
    r.ln_ppl_ratio = lp.first - lpb.first;
    r.ln_ppl_ratio_error = std::sqrt(std::max(0.0, lp.second * lp.second + lpb.second * lpb.second - 2 * cov));
    r.ppl_ratio = std::exp(r.ln_ppl_ratio);
    r.ppl_ratio_error = r.ppl_ratio * r.ln_ppl_ratio_error;
    r.ppl_delta = r.ppl - r.ppl_base;
    const double ppl_cov = r.ppl * r.ppl_base * cov;
    r.ppl_delta_error = std::sqrt(std::max(0.0, r.ppl_error * r.ppl_error + r.ppl_base_error * r.ppl_base_error - 2 * ppl_cov));
    std::tie(r.kld_mean, r.kld_mean_error) = detail::eval::mean_and_error(s_kld_, s_kld2_, n);
    std::tie(r.dp_mean, r.dp_mean_error) = detail::eval::mean_and_error(s_dp_, s_dp2_, n);
    const auto ms = detail::eval::mean_and_error(s_dp2_, s_dp4_, n);
    r.dp_rms = std::sqrt(ms.first);
    r.dp_rms_error = r.dp_rms > 0 ? 0.5 / r.dp_rms * ms.second : 0.0;
    const double f = static_cast<double>(same_) / static_cast<double>(n);
    r.same_top = f;
    r.same_top_error = n > 1 ? std::sqrt(f * (1 - f) / static_cast<double>(n - 1)) : 0.0;
    auto fill = [](std::vector<float> v, double* out) {
      std::sort(v.begin(), v.end());
      const double fr[] = {1.0, 0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.001, 0.0};
      for (int i = 0; i < 11; ++i) out[i] = detail::eval::percentile_sorted(v, fr[i]);
    };
    double k[11], d[11];
    fill(kld_, k);
    fill(dp_, d);
    double* kd[] = {&r.kld_max, &r.kld_p99_9, &r.kld_p99, &r.kld_p95, &r.kld_p90, &r.kld_median,
                    &r.kld_p10, &r.kld_p5, &r.kld_p1, &r.kld_p0_1, &r.kld_min};
    double* dd[] = {&r.dp_max, &r.dp_p99_9, &r.dp_p99, &r.dp_p95, &r.dp_p90, &r.dp_median,
                    &r.dp_p10, &r.dp_p5, &r.dp_p1, &r.dp_p0_1, &r.dp_min};
    for (int i = 0; i < 11; ++i) {
      *kd[i] = k[i];
      *dd[i] = d[i];
    }
    r.kld = kld_;
    return r;
  }

 private:
  double s_nll_ = 0, s_nll2_ = 0, s_nllb_ = 0, s_nllb2_ = 0, s_nll_nllb_ = 0;
  double s_kld_ = 0, s_kld2_ = 0, s_dp_ = 0, s_dp2_ = 0, s_dp4_ = 0;
  std::int64_t same_ = 0;
  std::vector<float> kld_, dp_;
};

/// Options of evaluate().
struct evaluate_options {
  std::int64_t ctx = 512;          ///< chunk length (llama-perplexity -c)
  std::int64_t max_chunks = -1;    ///< -1: all chunks (llama-perplexity --chunks)
  std::int64_t batch_chunks = 8;   ///< chunks per forward batch (memory ~ batch * ctx * widths)
  int n_threads = 0;               ///< <= 0: all hardware threads; results do not depend on it
  /// Stage evaluate after each batch: index = chunks done, count = chunks, value = the
  /// running perplexity.
  progress_fn progress;
};

/// What evaluate() measured.
struct evaluation {
  perplexity_result perplexity;
  kld_result kld;  ///< n == 0 unless a base file was given
};

/// Runs the forward pass over the chunks of `tokens` and measures perplexity; optionally
/// saves the scored base log-probabilities (`save`, created by the caller with the same
/// chunks) and/or compares with a saved base (`base`: its tokens must equal the chunks).
/// Layers are loaded from the provider once per batch of chunks.
/// Errors: invalid_argument (fewer than 2 * ctx tokens, ctx < 4, token mismatch with the
/// base), and those of the provider and the forward pass.
inline result<evaluation> evaluate(const qwen35_config& c, weight_provider& provider, std::span<const std::int32_t> tokens,
                                   const evaluate_options& opt, base_logits_writer* save = nullptr,
                                   const base_logits_file* base = nullptr) {
  const std::int64_t ctx = opt.ctx;
  if (ctx < 4 || static_cast<std::int64_t>(tokens.size()) < 2 * ctx)
    return detail::eval::eval_error(error_code::invalid_argument, "perplexity needs ctx >= 4 and at least 2 * ctx = " +
                                                                std::to_string(2 * ctx) + " tokens, got " +
                                                                std::to_string(tokens.size()));
  std::int64_t n_chunks = static_cast<std::int64_t>(tokens.size()) / ctx;
  if (opt.max_chunks > 0) n_chunks = std::min(n_chunks, opt.max_chunks);
  if (base) {
    if (base->ctx() != ctx || base->n_chunks() < n_chunks || base->n_vocab() != c.vocab_size ||
        !std::equal(tokens.begin(), tokens.begin() + n_chunks * ctx, base->tokens().begin()))
      return detail::eval::eval_error(error_code::invalid_argument,
                                "the base logits were saved for other tokens, ctx or vocabulary");
  }
  progress_reporter report(opt.progress);
  perplexity_accumulator ppl(ctx);
  kld_accumulator kld;
  base_logits_row brow;
  const std::int64_t first = ppl.first(), rows = ppl.scored_per_chunk(), nv = c.vocab_size;
  SBGQ_TRY(global_weights g, provider.load_globals());
  const std::int64_t per_batch = std::max<std::int64_t>(1, opt.batch_chunks);
  for (std::int64_t c0 = 0; c0 < n_chunks; c0 += per_batch) {
    const std::int64_t nb = std::min(per_batch, n_chunks - c0);
    const auto batch = tokens.subspan(static_cast<std::size_t>(c0 * ctx), static_cast<std::size_t>(nb * ctx));
    SBGQ_TRY(activations act, embed(g, batch, nb));
    for (int l = 0; l < static_cast<int>(c.num_hidden_layers); ++l) {
      SBGQ_TRY(layer_weights w, provider.load_layer(l));
      SBGQ_TRY_VOID(run_layer(c, l, w, act, nullptr, opt.n_threads));
    }
    SBGQ_TRY(matrix_f32 z, logits(g, c, act, nullptr, opt.n_threads, token_range{first, ctx - 1}));
    for (std::int64_t s = 0; s < nb; ++s) {
      const std::span<const float> zs(z.data() + s * rows * nv, static_cast<std::size_t>(rows * nv));
      const auto chunk = batch.subspan(static_cast<std::size_t>(s * ctx), static_cast<std::size_t>(ctx));
      SBGQ_TRY_VOID(ppl.add_chunk(zs, nv, chunk));
      if (save) SBGQ_TRY_VOID(save->append_chunk(zs));
      if (base)
        for (std::int64_t i = 0; i < rows; ++i) {
          base->row(c0 + s, i, brow);
          SBGQ_TRY_VOID(kld.add(zs.subspan(static_cast<std::size_t>(i * nv), static_cast<std::size_t>(nv)), brow,
                                chunk[static_cast<std::size_t>(first + i + 1)]));
        }
    }
    report(progress_event::at(progress_stage::evaluate, static_cast<double>(c0 + nb) / static_cast<double>(n_chunks))
               .item(static_cast<std::size_t>(c0 + nb - 1), static_cast<std::size_t>(n_chunks))
               .with_value(ppl.finish().ppl));
  }
  evaluation e;
  e.perplexity = ppl.finish();
  if (base) e.kld = kld.finish();
  return e;
}

/// A report in llama-perplexity's --kl-divergence layout (percentages where it prints them).
inline std::string format_kld_report(const kld_result& r) {
  std::string s;
  char buf[160];
  auto line = [&](const char* fmt, auto... v) {
    std::snprintf(buf, sizeof buf, fmt, v...);
    s += buf;
    s += '\n';
  };
  line("====== Perplexity statistics ======");
  line("Mean PPL(Q)                   : %10.6f +/- %10.6f", r.ppl, r.ppl_error);
  line("Mean PPL(base)                : %10.6f +/- %10.6f", r.ppl_base, r.ppl_base_error);
  line("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%", 100.0 * r.nll_correlation);
  line("Mean ln(PPL(Q)/PPL(base))     : %10.6f +/- %10.6f", r.ln_ppl_ratio, r.ln_ppl_ratio_error);
  line("Mean PPL(Q)/PPL(base)         : %10.6f +/- %10.6f", r.ppl_ratio, r.ppl_ratio_error);
  line("Mean PPL(Q)-PPL(base)         : %10.6f +/- %10.6f", r.ppl_delta, r.ppl_delta_error);
  line("");
  line("====== KL divergence statistics ======");
  line("Mean    KLD: %10.6f +/- %10.6f", r.kld_mean, r.kld_mean_error);
  line("Maximum KLD: %10.6f", r.kld_max);
  line("99.9%%   KLD: %10.6f", r.kld_p99_9);
  line("99.0%%   KLD: %10.6f", r.kld_p99);
  line("95.0%%   KLD: %10.6f", r.kld_p95);
  line("90.0%%   KLD: %10.6f", r.kld_p90);
  line("Median  KLD: %10.6f", r.kld_median);
  line("10.0%%   KLD: %10.6f", r.kld_p10);
  line(" 5.0%%   KLD: %10.6f", r.kld_p5);
  line(" 1.0%%   KLD: %10.6f", r.kld_p1);
  line(" 0.1%%   KLD: %10.6f", r.kld_p0_1);
  line("Minimum KLD: %10.6f", r.kld_min);
  line("");
  line("====== Token probability statistics ======");
  line("Mean    Dp: %8.3f +/- %6.3f %%", 100.0 * r.dp_mean, 100.0 * r.dp_mean_error);
  line("Maximum Dp: %8.3f%%", 100.0 * r.dp_max);
  line("99.9%%   Dp: %8.3f%%", 100.0 * r.dp_p99_9);
  line("99.0%%   Dp: %8.3f%%", 100.0 * r.dp_p99);
  line("95.0%%   Dp: %8.3f%%", 100.0 * r.dp_p95);
  line("90.0%%   Dp: %8.3f%%", 100.0 * r.dp_p90);
  line("Median  Dp: %8.3f%%", 100.0 * r.dp_median);
  line("10.0%%   Dp: %8.3f%%", 100.0 * r.dp_p10);
  line(" 5.0%%   Dp: %8.3f%%", 100.0 * r.dp_p5);
  line(" 1.0%%   Dp: %8.3f%%", 100.0 * r.dp_p1);
  line(" 0.1%%   Dp: %8.3f%%", 100.0 * r.dp_p0_1);
  line("Minimum Dp: %8.3f%%", 100.0 * r.dp_min);
  line("RMS Dp    : %8.3f +/- %6.3f %%", 100.0 * r.dp_rms, 100.0 * r.dp_rms_error);
  line("Same top p: %6.3f +/- %5.3f %%", 100.0 * r.same_top, 100.0 * r.same_top_error);
  return s;
}

SBGQ_END_NAMESPACE
