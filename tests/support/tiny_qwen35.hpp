// Test support: the tiny Qwen3.5 model of /work/shared/models/tiny-qwen35 in GGUF
// convention, for the forward-pass and evaluation tests and the forward benchmark.
//
//   - read_tiny_model(): parses the two bf16 safetensors shards minimally (8-byte header
//     length, JSON header via simdjson, raw bf16 data) and converts every text-tower
//     tensor with the lead's tensor plan (include/sbgq/qwen35_tensors.hpp: +1 norms,
//     -exp(A_log), V-head reorder, squeezed conv), without the MTP block;
//   - tensor_map_provider: an sbgq::weight_provider over those f32 tensors;
//   - write_f32_gguf(): writes them as an F32 GGUF that libllama loads (arch qwen35, the
//     metadata keys and exact types of qwen35-gguf.md section 2.2, tokenizer keys of
//     section 8), so libllama and our forward pass run on bit-identical weights.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "sbgq/core/dtype.hpp"
#include "sbgq/model/forward.hpp"
#include "sbgq/core/mapped_file.hpp"
#include "sbgq/model/model_config.hpp"
#include "sbgq/core/output_file.hpp"
#include "sbgq/model/qwen35_tensors.hpp"
#include "sbgq/model/weights.hpp"

namespace sbgq::test {

inline std::string tiny_model_dir() { return std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35"; }

/// One f32 tensor in GGUF convention: ne fastest first, data row-major (ne[0] contiguous).
struct f32_tensor {
  std::vector<std::int64_t> ne;
  std::vector<float> data;
};

struct tiny_model {
  qwen35_config config;
  std::vector<std::string> order;           ///< GGUF tensor order (converter order)
  std::map<std::string, f32_tensor> tensors;  ///< by GGUF name
};

namespace detail_tiny {

struct raw_tensor {
  std::string dtype;
  std::vector<std::int64_t> shape;
  const std::byte* data = nullptr;
  std::size_t bytes = 0;
};

inline void read_shard(const mapped_file& f, std::map<std::string, raw_tensor>& out) {
  const auto* p = f.data();
  if (f.size() < 8) throw std::runtime_error(f.path() + ": too small for safetensors");
  std::uint64_t hlen = 0;
  std::memcpy(&hlen, p, 8);
  if (hlen > f.size() - 8) throw std::runtime_error(f.path() + ": header length past the end");
  simdjson::dom::parser parser;
  simdjson::padded_string json(reinterpret_cast<const char*>(p + 8), hlen);
  simdjson::dom::object obj;
  if (parser.parse(json).get(obj) != simdjson::SUCCESS) throw std::runtime_error(f.path() + ": bad header JSON");
  const std::byte* base = p + 8 + hlen;
  const std::size_t data_size = f.size() - 8 - hlen;
  for (auto field : obj) {
    if (field.key == "__metadata__") continue;
    raw_tensor t;
    std::string_view dt;
    if (field.value["dtype"].get_string().get(dt) != simdjson::SUCCESS) throw std::runtime_error("dtype");
    t.dtype = std::string(dt);
    for (auto d : field.value["shape"].get_array()) t.shape.push_back(static_cast<std::int64_t>(d.get_int64().value()));
    auto offs = field.value["data_offsets"].get_array();
    const auto b = static_cast<std::size_t>(offs.at(0).get_uint64().value());
    const auto e = static_cast<std::size_t>(offs.at(1).get_uint64().value());
    if (b > e || e > data_size) throw std::runtime_error("data_offsets out of range");
    t.data = base + b;
    t.bytes = e - b;
    out.emplace(std::string(field.key), t);
  }
}

inline std::vector<float> to_f32(const raw_tensor& t) {
  std::size_t n = 1;
  for (auto d : t.shape) n *= static_cast<std::size_t>(d);
  std::vector<float> v(n);
  if (t.dtype == "BF16" && t.bytes == 2 * n) {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t b;
      std::memcpy(&b, t.data + 2 * i, 2);
      v[i] = bf16_bits_to_f32(b);
    }
  } else if (t.dtype == "F32" && t.bytes == 4 * n) {
    std::memcpy(v.data(), t.data, 4 * n);
  } else {
    throw std::runtime_error("unexpected dtype " + t.dtype);
  }
  return v;
}

}  // namespace detail_tiny

/// Loads and converts the tiny model (text tower, no MTP) to GGUF-convention f32 tensors.
inline tiny_model read_tiny_model() {
  const std::string dir = tiny_model_dir();
  tiny_model m;
  m.config = load_qwen35_config(dir).value();
  std::vector<mapped_file> files;
  std::map<std::string, detail_tiny::raw_tensor> raw;
  for (const char* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    files.push_back(mapped_file::open(dir + "/" + shard).value());
    detail_tiny::read_shard(files.back(), raw);
  }
  tensor_plan_options opt;
  opt.include_mtp = false;
  opt.tied = m.config.tie_word_embeddings;
  for (const tensor_plan& p : qwen35_tensor_plan(m.config, opt)) {
    auto it = raw.find(p.hf_name);
    if (it == raw.end()) throw std::runtime_error("tiny model lacks " + p.hf_name);
    const std::vector<float> in = detail_tiny::to_f32(it->second);
    f32_tensor t;
    t.ne = p.ne;
    t.data.resize(in.size());
    apply_tensor_transform(p, m.config, in, t.data).value();
    m.order.push_back(p.gguf_name);
    m.tensors.emplace(p.gguf_name, std::move(t));
  }
  return m;
}

/// A weight_provider over a tiny_model's tensors (copies into Eigen types on load), filled
/// by the same detail::load_layer_with as the library's GGUF and safetensors providers.
class tensor_map_provider : public weight_provider {
 public:
  explicit tensor_map_provider(const tiny_model& m) : m_(m) {}

  result<global_weights> load_globals() override {
    return detail::load_globals_with(getter(), m_.tensors.count("output.weight") != 0);
  }
  result<layer_weights> load_layer(int l) override {
    return detail::load_layer_with(getter(), m_.config.layer_types.at(static_cast<std::size_t>(l)), l);
  }

 private:
  detail::value_getter getter() const {
    return [this](const std::string& name) -> result<detail::named_values> {
      auto it = m_.tensors.find(name);
      if (it == m_.tensors.end()) throw std::runtime_error("missing tensor " + name);
      return detail::named_values{it->second.data, it->second.ne};
    };
  }
  const tiny_model& m_;
};

// ---- a minimal F32 GGUF writer ------------------------------------------------------------
namespace detail_tiny {

class gguf_bytes {
 public:
  void u32(std::uint32_t v) { put(&v, 4); }
  void i32(std::int32_t v) { put(&v, 4); }
  void u64(std::uint64_t v) { put(&v, 8); }
  void i64(std::int64_t v) { put(&v, 8); }
  void f32(float v) { put(&v, 4); }
  void str(const std::string& s) {
    u64(s.size());
    put(s.data(), s.size());
  }
  void put(const void* p, std::size_t n) {
    const auto* b = static_cast<const char*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  std::vector<char> buf;
};

enum : std::uint32_t { gt_u32 = 4, gt_i32 = 5, gt_f32 = 6, gt_bool = 7, gt_str = 8, gt_arr = 9 };

struct kv_writer {
  gguf_bytes& o;
  std::int64_t n = 0;
  void key(const std::string& k, std::uint32_t t) {
    o.str(k);
    o.u32(t);
    ++n;
  }
  void u32(const std::string& k, std::uint32_t v) { key(k, gt_u32); o.u32(v); }
  void f32(const std::string& k, float v) { key(k, gt_f32); o.f32(v); }
  void boolean(const std::string& k, bool v) { key(k, gt_bool); const char c = v ? 1 : 0; o.put(&c, 1); }
  void str(const std::string& k, const std::string& v) { key(k, gt_str); o.str(v); }
  void i32_array(const std::string& k, const std::vector<std::int32_t>& v) {
    key(k, gt_arr);
    o.u32(gt_i32);
    o.u64(v.size());
    for (auto x : v) o.i32(x);
  }
  void str_array(const std::string& k, const std::vector<std::string>& v) {
    key(k, gt_arr);
    o.u32(gt_str);
    o.u64(v.size());
    for (auto& x : v) o.str(x);
  }
};

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace detail_tiny

/// Writes m as an F32 GGUF at path (atomically). The tokenizer comes from the model's
/// vocab.json, merges.txt and tokenizer_config.json (pre-tokenizer "qwen35").
inline void write_f32_gguf(const tiny_model& m, const std::string& path) {
  using namespace detail_tiny;
  const qwen35_config& c = m.config;
  const std::string dir = tiny_model_dir();
  // Vocabulary: ids 0..8188 from vocab.json, then the three special added tokens.
  std::vector<std::string> tokens(static_cast<std::size_t>(c.vocab_size));
  std::vector<std::int32_t> types(tokens.size(), 1);
  {
    simdjson::dom::parser parser;
    const simdjson::padded_string json = simdjson::padded_string::load(dir + "/vocab.json");
    simdjson::dom::object vocab;
    if (parser.parse(json).get(vocab) != simdjson::SUCCESS) throw std::runtime_error("bad vocab.json");
    for (auto field : vocab) {
      const auto id = static_cast<std::size_t>(field.value.get_int64().value());
      tokens.at(id) = std::string(field.key);
    }
    const simdjson::padded_string cfg = simdjson::padded_string::load(dir + "/tokenizer_config.json");
    simdjson::dom::parser p2;
    simdjson::dom::object added;
    if (p2.parse(cfg)["added_tokens_decoder"].get(added) != simdjson::SUCCESS)
      throw std::runtime_error("bad tokenizer_config.json");
    for (auto field : added) {
      const auto id = static_cast<std::size_t>(std::stoul(std::string(field.key)));
      tokens.at(id) = std::string(field.value["content"].get_string().value());
      types.at(id) = field.value["special"].get_bool().value() ? 3 : 4;
    }
    for (std::size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i].empty()) {
        tokens[i] = "[PAD" + std::to_string(i) + "]";
        types[i] = 5;
      }
  }
  std::vector<std::string> merges;
  {
    std::istringstream in(read_text(dir + "/merges.txt"));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line.rfind("#version", 0) == 0) continue;
      merges.push_back(line);
    }
  }

  gguf_bytes kvs;
  kv_writer kv{kvs};
  const std::string a = "qwen35.";
  auto u = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
  kv.str("general.architecture", "qwen35");
  kv.str("general.type", "model");
  kv.str("general.name", "tiny-qwen35");
  kv.u32(a + "block_count", u(c.num_hidden_layers));
  kv.u32(a + "context_length", u(c.max_position_embeddings));
  kv.u32(a + "embedding_length", u(c.hidden_size));
  kv.u32(a + "feed_forward_length", u(c.intermediate_size));
  kv.u32(a + "attention.head_count", u(c.num_attention_heads));
  kv.u32(a + "attention.head_count_kv", u(c.num_key_value_heads));
  std::vector<std::int32_t> sections(4, 0);
  for (std::size_t i = 0; i < c.mrope_section.size() && i < 4; ++i) sections[i] = static_cast<std::int32_t>(c.mrope_section[i]);
  kv.i32_array(a + "rope.dimension_sections", sections);
  kv.f32(a + "rope.freq_base", static_cast<float>(c.rope_theta));
  kv.f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  kv.u32(a + "attention.key_length", u(c.head_dim));
  kv.u32(a + "attention.value_length", u(c.head_dim));
  kv.u32("general.file_type", 0);
  kv.u32(a + "ssm.conv_kernel", u(c.linear_conv_kernel_dim));
  kv.u32(a + "ssm.state_size", u(c.linear_key_head_dim));
  kv.u32(a + "ssm.group_count", u(c.linear_num_key_heads));
  kv.u32(a + "ssm.time_step_rank", u(c.linear_num_value_heads));
  kv.u32(a + "ssm.inner_size", u(c.linear_value_dim()));
  kv.u32(a + "full_attention_interval", u(c.full_attention_interval));
  kv.u32(a + "rope.dimension_count", u(c.rope_dims()));
  kv.u32("general.quantization_version", 2);
  kv.str("tokenizer.ggml.model", "gpt2");
  kv.str("tokenizer.ggml.pre", "qwen35");
  kv.str_array("tokenizer.ggml.tokens", tokens);
  kv.i32_array("tokenizer.ggml.token_type", types);
  kv.str_array("tokenizer.ggml.merges", merges);
  kv.u32("tokenizer.ggml.eos_token_id", 8191);
  kv.u32("tokenizer.ggml.padding_token_id", 8189);
  kv.boolean("tokenizer.ggml.add_bos_token", false);

  constexpr std::uint64_t align = 32;
  gguf_bytes infos;
  std::uint64_t off = 0;
  for (const std::string& name : m.order) {
    const f32_tensor& t = m.tensors.at(name);
    infos.str(name);
    infos.u32(static_cast<std::uint32_t>(t.ne.size()));
    for (auto d : t.ne) infos.i64(d);
    infos.u32(0);  // GGML_TYPE_F32
    infos.u64(off);
    off += (t.data.size() * 4 + align - 1) / align * align;
  }
  gguf_bytes head;
  head.put("GGUF", 4);
  head.u32(3);
  head.i64(static_cast<std::int64_t>(m.order.size()));
  head.i64(kv.n);
  auto f = output_file::create(path).value();
  f.write(head.buf.data(), head.buf.size()).value();
  f.write(kvs.buf.data(), kvs.buf.size()).value();
  f.write(infos.buf.data(), infos.buf.size()).value();
  f.write_zeros(static_cast<std::size_t>((align - f.bytes_written() % align) % align)).value();
  for (const std::string& name : m.order) {
    const f32_tensor& t = m.tensors.at(name);
    f.write(t.data.data(), t.data.size() * 4).value();
    f.write_zeros(static_cast<std::size_t>((align - f.bytes_written() % align) % align)).value();
  }
  f.commit().value();
}

/// The tiny model, converted once per process.
inline const tiny_model& tiny() {
  static const tiny_model m = read_tiny_model();
  return m;
}

/// Path of an F32 GGUF of the tiny model written once per process under dir (the name
/// carries a tag so concurrently running test executables do not share the file).
inline const std::string& tiny_gguf(const std::string& dir, const std::string& tag) {
  static const std::string path = [&] {
    const std::string p = dir + "/tiny-qwen35-f32-" + tag + ".gguf";
    write_f32_gguf(tiny(), p);
    return p;
  }();
  return path;
}

}  // namespace sbgq::test
