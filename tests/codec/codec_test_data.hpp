// Test inputs for the codec tests and benchmarks: the distributions of the algorithms
// doc section 14 (plus a few more edge cases), importance-weight vectors, and real bf16
// weights read from the tiny Qwen3.5 checkpoint with a minimal safetensors parser
// (8-byte header length + JSON; only the fields we need, found by string search).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/rng.hpp"

namespace sbgq::test {

/// A matrix of nrows x n_per_row floats with a name for failure messages.
struct codec_case {
  std::string name;
  std::size_t nrows = 0;
  std::size_t n_per_row = 0;
  std::vector<float> x;
};

/// Student-t with 3 degrees of freedom (heavy tails): normal / sqrt(chi2_3 / 3).
inline float student_t3(rng& r) {
  const float a = r.normal(), b = r.normal(), c = r.normal();
  const float chi = (a * a + b * b + c * c) / 3.0f;
  return r.normal() / std::sqrt(std::max(chi, 1e-6f));
}

/// The synthetic distributions, `scale` elements in total per case (rounded to rows).
/// n_per_row values are multiples of 256 (so they suit every codec).
inline std::vector<codec_case> synthetic_cases(std::size_t elems, std::uint64_t seed) {
  std::vector<codec_case> out;
  auto add = [&](std::string name, std::size_t n_per_row, const std::function<float(rng&, std::size_t)>& gen) {
    codec_case c;
    c.name = std::move(name);
    c.n_per_row = n_per_row;
    c.nrows = std::max<std::size_t>(1, elems / n_per_row);
    c.x.resize(c.nrows * n_per_row);
    rng r(seed + out.size() * 7919);
    for (std::size_t i = 0; i < c.x.size(); ++i) c.x[i] = gen(r, i);
    out.push_back(std::move(c));
  };
  add("gaussian*0.02", 4096, [](rng& r, std::size_t) { return r.normal() * 0.02f; });
  add("gaussian row 16384", 16384, [](rng& r, std::size_t) { return r.normal(); });
  add("student-t3", 2048, [](rng& r, std::size_t) { return student_t3(r) * 0.05f; });
  add("cauchy-ish", 512, [](rng& r, std::size_t) {
    return r.normal() / std::max(std::fabs(r.normal()), 1e-3f) * 0.01f;
  });
  add("rare x30 outliers", 4096, [](rng& r, std::size_t) {
    const float v = r.normal() * 0.02f;
    return r.uniform() < 0.002 ? v * 30.0f : v;
  });
  add("rare x1e6 outliers", 1024, [](rng& r, std::size_t) {
    const float v = r.normal() * 0.01f;
    return r.uniform() < 0.001 ? v * 1e6f : v;
  });
  add("all positive", 256, [](rng& r, std::size_t) { return std::fabs(r.normal()) + 0.1f; });
  add("all negative", 768, [](rng& r, std::size_t) { return -std::fabs(r.normal()) * 0.3f; });
  add("all zero", 512, [](rng&, std::size_t) { return 0.0f; });
  add("every third 32-block zero", 2048, [](rng& r, std::size_t i) {
    const float v = r.normal();
    return (i / 32) % 3 == 0 ? 0.0f : v;
  });
  add("whole zero super-blocks", 1024, [](rng& r, std::size_t i) {
    const float v = r.normal() * 0.1f;
    return (i / 256) % 2 == 1 ? 0.0f : v;
  });
  add("one non-zero per super-block", 512, [](rng& r, std::size_t i) {
    const float v = r.normal();
    return i % 256 == 37 ? v : 0.0f;
  });
  add("partly zero (half the weights)", 1024, [](rng& r, std::size_t) {
    const float v = r.normal();
    return r.uniform() < 0.5 ? 0.0f : v;
  });
  add("coarse grid ties", 1024, [](rng& r, std::size_t) { return std::round(r.normal() * 4.0f) / 4.0f; });
  add("integer grid -8..7", 256, [](rng& r, std::size_t) {
    return static_cast<float>(static_cast<int>(r.next_u32() % 16) - 8);
  });
  add("constant 16-blocks", 512, [](rng& r, std::size_t i) {
    static thread_local float v = 0;
    if (i % 16 == 0) v = r.normal();
    return v;
  });
  add("repeated values", 256, [](rng& r, std::size_t) {
    const float vals[4] = {-0.5f, 0.25f, 0.25f, 1.0f};
    return vals[r.next_u32() % 4];
  });
  add("magnitudes 1e-6..1e1", 2048, [](rng& r, std::size_t) {
    const float mag = std::pow(10.0f, r.uniform(-6.0f, 1.0f));
    return r.normal() * mag;
  });
  add("tiny 1e-6 (fp16 subnormal scales)", 1024, [](rng& r, std::size_t) { return r.normal() * 1e-6f; });
  add("tiny 1e-9 (scales underflow)", 512, [](rng& r, std::size_t) { return r.normal() * 1e-9f; });
  add("tiny 3e-5 (scale at the fp16 normal limit)", 512, [](rng& r, std::size_t) { return r.normal() * 3e-5f; });
  add("huge 1e6 (scale near fp16 max)", 1024, [](rng& r, std::size_t) { return r.normal() * 1e6f; });
  add("huge 3e6 (fp16 scale overflow)", 256, [](rng& r, std::size_t) { return r.normal() * 3e6f; });
  return out;
}

/// Importance weights (one per column) of several shapes.
inline std::vector<std::vector<float>> weight_sets(std::size_t n, std::uint64_t seed) {
  std::vector<std::vector<float>> out;
  rng r(seed);
  std::vector<float> a(n), b(n), c(n), d(n);
  for (std::size_t i = 0; i < n; ++i) a[i] = r.uniform(0.001f, 2.0f);
  for (std::size_t i = 0; i < n; ++i) b[i] = r.uniform(0.0f, 1.0f) * r.uniform(0.0f, 1.0f) * 5.0f;
  // Squared activations: the mean of x^2 over a few "tokens" whose per-column spread is
  // log-normal, as in a real imatrix (a few columns dominate).
  for (std::size_t i = 0; i < n; ++i) {
    const float sigma = std::exp(r.normal() * 1.5f);
    float s = 0.0f;
    for (int t = 0; t < 8; ++t) {
      const float v = r.normal() * sigma;
      s += v * v;
    }
    c[i] = s / 8.0f;
  }
  // Like c, with 1/7 of the columns never activated (weight exactly 0).
  for (std::size_t i = 0; i < n; ++i) d[i] = (r.next_u32() % 7 == 0) ? 0.0f : c[(i * 31) % n];
  out.push_back(std::move(a));
  out.push_back(std::move(b));
  out.push_back(std::move(c));
  out.push_back(std::move(d));
  return out;
}

/// Reads tensor `name` (BF16, 2-D) from a safetensors file as floats. Minimal parser:
/// enough for the checkpoint in shared/models, not a validator.
inline codec_case read_bf16_tensor(const std::string& path, const std::string& name, std::size_t max_rows) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::uint64_t hlen = 0;
  f.read(reinterpret_cast<char*>(&hlen), 8);
  std::string header(hlen, '\0');
  f.read(header.data(), static_cast<std::streamsize>(hlen));
  const std::size_t at = header.find("\"" + name + "\"");
  if (at == std::string::npos) throw std::runtime_error("tensor " + name + " not in " + path);
  const std::size_t end = header.find('}', at);
  const std::string entry = header.substr(at, end - at);
  if (entry.find("\"BF16\"") == std::string::npos) throw std::runtime_error(name + " is not BF16");
  auto numbers_after = [&](const std::string& key) {
    std::vector<std::uint64_t> v;
    std::size_t p = entry.find(key);
    if (p == std::string::npos) throw std::runtime_error("no " + key + " for " + name);
    p = entry.find('[', p);
    const std::size_t q = entry.find(']', p);
    std::string s = entry.substr(p + 1, q - p - 1);
    std::size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && (s[i] < '0' || s[i] > '9')) ++i;
      if (i >= s.size()) break;
      std::uint64_t n = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') n = n * 10 + static_cast<std::uint64_t>(s[i++] - '0');
      v.push_back(n);
    }
    return v;
  };
  const auto shape = numbers_after("\"shape\"");
  const auto offs = numbers_after("\"data_offsets\"");
  if (shape.size() != 2 || offs.size() != 2 || offs[1] - offs[0] != shape[0] * shape[1] * 2)
    throw std::runtime_error("unexpected shape/offsets for " + name);
  codec_case c;
  c.name = name;
  c.nrows = std::min<std::size_t>(shape[0], max_rows);
  c.n_per_row = shape[1];
  std::vector<std::uint16_t> raw(c.nrows * c.n_per_row);
  f.seekg(static_cast<std::streamoff>(8 + hlen + offs[0]));
  f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size() * 2));
  if (!f) throw std::runtime_error("short read of " + name);
  c.x.resize(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const std::uint32_t bits = static_cast<std::uint32_t>(raw[i]) << 16;
    std::memcpy(&c.x[i], &bits, 4);
  }
  return c;
}

/// A few real weight matrices of tiny-qwen35 (row lengths 256 and 768).
inline std::vector<codec_case> real_cases(std::size_t max_rows) {
  const std::string dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35/";
  const std::string f1 = dir + "model-00001-of-00002.safetensors";
  std::vector<codec_case> out;
  for (const char* n : {"model.language_model.layers.0.mlp.down_proj.weight",
                        "model.language_model.layers.1.linear_attn.in_proj_qkv.weight",
                        "model.language_model.embed_tokens.weight"})
    out.push_back(read_bf16_tensor(f1, n, max_rows));
  return out;
}

}  // namespace sbgq::test
