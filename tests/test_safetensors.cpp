// safetensors reader, writer and checkpoint lookup.
//
// Oracles: the real tiny-qwen35 checkpoint, checked against its config.json (tensor list
// and shapes derived from the model dimensions) and against the index and shard headers
// parsed here with simdjson's DOM and our own byte reads (weight_map, data offsets);
// bf16/f16 decoding against libggml-base's row converters (all 65,536 patterns); F8 and
// integer decoding against formulas written from the format definitions; the writer
// against the reader and an independent parse of the header it wrote. Malformed inputs
// are annotated byte arrays, each with its error code, message and byte offset.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sbgq/io/safetensors.hpp>
#include <set>
#include <string>
#include <vector>

#include "support/oracle.hpp"
#include "support/rng.hpp"

namespace fs = std::filesystem;
using sbgq::dtype;
using sbgq::error_code;
using sbgq::tensor_shape;

namespace {

const std::string tiny_dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";

fs::path scratch(const std::string& name) {
  const fs::path p = fs::path(SBGQ_TEST_TMP_DIR) / "safetensors" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::vector<std::string> dir_listing(const fs::path& p) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(p)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

void write_text(const fs::path& p, std::string_view s) {
  std::ofstream f(p, std::ios::binary);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::vector<std::byte> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
  return b;
}

std::uint64_t read_u64le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

/// A file image: the 8-byte little-endian `length`, then `header`, then `data_bytes` bytes
/// (value i & 0xff at data position i).
std::vector<std::byte> image_with_length(std::uint64_t length, std::string_view header, std::size_t data_bytes = 0) {
  std::vector<std::byte> b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::byte>((length >> (8 * i)) & 0xff));
  for (char c : header) b.push_back(static_cast<std::byte>(c));
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<std::byte>(i & 0xff));
  return b;
}
std::vector<std::byte> image(std::string_view header, std::size_t data_bytes = 0) {
  return image_with_length(header.size(), header, data_bytes);
}

template <class R>
void check_error_at(int line, const R& r, error_code code, std::string_view substring, std::uint64_t offset = sbgq::error::npos - 1) {
  INFO("checked at line " << line);
  REQUIRE_FALSE(r.has_value());
  const auto& e = r.error();
  const std::string msg = e.message();
  CAPTURE(msg);
  CHECK(e.code == code);
  CHECK(msg.find(substring) != std::string::npos);
  CHECK(msg.find(std::string("[sbgq.safetensors.") + std::string(sbgq::error_code_name(code)) + "]") == 0);
  if (offset != sbgq::error::npos - 1) CHECK(e.offset == offset);
}

#define check_error(...) check_error_at(__LINE__, __VA_ARGS__)
}  // namespace

// ---- the real checkpoint -------------------------------------------------------------

namespace {
// The tensor list of a Qwen3.5 text model with an MTP block, derived from config.json's
// dimensions (README of tiny-qwen35 and spec/qwen35-model.md), independent of the files.
std::map<std::string, std::vector<std::int64_t>> expected_tensors(simdjson::dom::element tc) {
  auto i = [&](const char* k) { return static_cast<std::int64_t>(tc[k].get_int64().value()); };
  const std::int64_t H = i("hidden_size"), I = i("intermediate_size"), V = i("vocab_size");
  const std::int64_t nh = i("num_attention_heads"), nkv = i("num_key_value_heads"), hd = i("head_dim");
  const std::int64_t lk = i("linear_num_key_heads"), lv = i("linear_num_value_heads");
  const std::int64_t dk = i("linear_key_head_dim"), dv = i("linear_value_head_dim"), kc = i("linear_conv_kernel_dim");
  std::map<std::string, std::vector<std::int64_t>> m;
  auto full_attention = [&](const std::string& p) {
    m[p + "self_attn.q_proj.weight"] = {nh * hd * 2, H};  // attn_output_gate: query + gate rows
    m[p + "self_attn.k_proj.weight"] = {nkv * hd, H};
    m[p + "self_attn.v_proj.weight"] = {nkv * hd, H};
    m[p + "self_attn.o_proj.weight"] = {H, nh * hd};
    m[p + "self_attn.q_norm.weight"] = {hd};
    m[p + "self_attn.k_norm.weight"] = {hd};
  };
  auto common = [&](const std::string& p) {
    m[p + "input_layernorm.weight"] = {H};
    m[p + "post_attention_layernorm.weight"] = {H};
    m[p + "mlp.gate_proj.weight"] = {I, H};
    m[p + "mlp.up_proj.weight"] = {I, H};
    m[p + "mlp.down_proj.weight"] = {H, I};
  };
  m["lm_head.weight"] = {V, H};
  m["model.language_model.embed_tokens.weight"] = {V, H};
  m["model.language_model.norm.weight"] = {H};
  std::int64_t layer = 0;
  const simdjson::dom::array layer_types = tc["layer_types"].get_array().value();
  for (auto t : layer_types) {
    const std::string p = "model.language_model.layers." + std::to_string(layer++) + ".";
    common(p);
    if (std::string_view(t.get_string().value()) == "full_attention") {
      full_attention(p);
    } else {
      const std::int64_t conv = 2 * lk * dk + lv * dv;
      m[p + "linear_attn.in_proj_qkv.weight"] = {conv, H};
      m[p + "linear_attn.in_proj_z.weight"] = {lv * dv, H};
      m[p + "linear_attn.in_proj_b.weight"] = {lv, H};
      m[p + "linear_attn.in_proj_a.weight"] = {lv, H};
      m[p + "linear_attn.conv1d.weight"] = {conv, 1, kc};
      m[p + "linear_attn.dt_bias"] = {lv};
      m[p + "linear_attn.A_log"] = {lv};
      m[p + "linear_attn.norm.weight"] = {dv};
      m[p + "linear_attn.out_proj.weight"] = {H, lv * dv};
    }
  }
  REQUIRE(layer == i("num_hidden_layers"));
  for (std::int64_t l = 0; l < i("mtp_num_hidden_layers"); ++l) {
    const std::string p = "mtp.layers." + std::to_string(l) + ".";
    common(p);
    full_attention(p);
  }
  m["mtp.fc.weight"] = {H, 2 * H};
  m["mtp.pre_fc_norm_embedding.weight"] = {H};
  m["mtp.pre_fc_norm_hidden.weight"] = {H};
  m["mtp.norm.weight"] = {H};
  return m;
}

// data_offsets of `name` in a shard, read with our own byte handling and simdjson's DOM.
std::pair<std::uint64_t, std::uint64_t> raw_offsets(const std::vector<std::byte>& file, const std::string& name,
                                                     std::uint64_t& data_start) {
  const std::uint64_t n = read_u64le(file.data());
  data_start = 8 + n;
  simdjson::dom::parser p;
  simdjson::padded_string s(reinterpret_cast<const char*>(file.data()) + 8, n);
  auto off = p.parse(s)[name]["data_offsets"].get_array().value();
  return {off.at(0).get_uint64().value(), off.at(1).get_uint64().value()};
}
}  // namespace

TEST_CASE("tiny-qwen35: the sharded checkpoint matches config.json and the index") {
  auto ck = sbgq::safetensors_checkpoint::open(tiny_dir);
  REQUIRE_MESSAGE(ck.has_value(), ck.error().message());
  CHECK(ck->shards().size() == 2);
  CHECK(ck->index_path() == tiny_dir + "/model.safetensors.index.json");

  simdjson::dom::parser cp;
  auto config = cp.load(tiny_dir + "/config.json").value();
  const auto expected = expected_tensors(config["text_config"].value());
  CHECK(expected.size() == 124);
  REQUIRE(ck->size() == expected.size());
  std::uint64_t total_bytes = 0;
  for (const auto& v : ck->views()) {
    CAPTURE(v.name);
    auto it = expected.find(std::string(v.name));
    REQUIRE(it != expected.end());
    CHECK(std::vector<std::int64_t>(v.shape.dims().begin(), v.shape.dims().end()) == it->second);
    CHECK(v.type == dtype::bf16);
    CHECK(v.bytes.size() == v.shape.elements() * 2);
    total_bytes += v.bytes.size();
  }
  // The index's own total_size counts every tensor byte.
  REQUIRE(ck->total_size().has_value());
  CHECK(*ck->total_size() == total_bytes);

  // weight_map parsed independently: every tensor is served by the shard it names.
  simdjson::dom::parser ip;
  auto index = ip.load(tiny_dir + "/model.safetensors.index.json").value();
  std::size_t listed = 0;
  const simdjson::dom::object weight_map = index["weight_map"].get_object().value();
  for (auto kv : weight_map) {
    ++listed;
    const auto* shard = ck->shard_of(kv.key);
    REQUIRE(shard != nullptr);
    CHECK(fs::path(shard->path()).filename().string() == std::string(kv.value.get_string().value()));
  }
  CHECK(listed == ck->size());

  // Per shard: file order is by data offset, and the metadata is HF's {"format": "pt"}.
  for (const auto& s : ck->shards()) {
    CHECK(s.find_metadata("format") == std::optional<std::string_view>("pt"));
    CHECK(s.data_offset() % 8 == 0);
    std::uint64_t prev_end = 0;
    for (const auto& t : s.tensors()) {
      CHECK(t.begin == prev_end);  // this writer leaves no gaps
      prev_end = t.end;
    }
    CHECK(s.data_offset() + prev_end == s.bytes().size());
    auto by_name = s.views(sbgq::tensor_order::name);
    CHECK(std::is_sorted(by_name.begin(), by_name.end(), [](const auto& a, const auto& b) { return a.name < b.name; }));
  }

  // The same checkpoint through the index path, and one shard on its own.
  auto via_index = sbgq::safetensors_checkpoint::open(tiny_dir + "/model.safetensors.index.json");
  REQUIRE(via_index.has_value());
  CHECK(via_index->size() == ck->size());
  auto one = sbgq::safetensors_checkpoint::open(tiny_dir + "/model-00002-of-00002.safetensors");
  REQUIRE(one.has_value());
  CHECK(one->size() == 87);
  CHECK(one->index_path().empty());
  CHECK(ck->get("no.such.tensor").error().code == error_code::not_found);
}

TEST_CASE("tiny-qwen35: bf16 values decode like ggml from independently located bytes") {
  auto ck = sbgq::safetensors_checkpoint::open(tiny_dir).value();
  auto& o = sbgq::test::oracle();
  struct probe {
    std::string name;
    std::uint64_t row_begin, row_end;
  };
  const probe probes[] = {
      {"model.language_model.norm.weight", 0, 1},
      {"model.language_model.layers.0.linear_attn.norm.weight", 0, 1},
      {"model.language_model.embed_tokens.weight", 100, 104},
      {"model.language_model.layers.0.linear_attn.conv1d.weight", 7, 20},  // rows of kernel 4
      {"mtp.fc.weight", 255, 256},
  };
  for (const auto& pr : probes) {
    CAPTURE(pr.name);
    const auto* shard = ck.shard_of(pr.name);
    REQUIRE(shard != nullptr);
    const auto file = read_all(shard->path());
    std::uint64_t data_start = 0;
    const auto [b, e] = raw_offsets(file, pr.name, data_start);
    const auto v = ck.get(pr.name).value();
    const std::uint64_t row = v.shape.row_size();
    REQUIRE((e - b) % 2 == 0);
    std::vector<std::uint16_t> raw((e - b) / 2);
    std::memcpy(raw.data(), file.data() + data_start + b, e - b);
    std::vector<float> ref(raw.size());
    o.ggml_bf16_to_fp32_row(raw.data(), ref.data(), static_cast<std::int64_t>(raw.size()));

    std::vector<float> got((pr.row_end - pr.row_begin) * row);
    REQUIRE(sbgq::to_f32(v, pr.row_begin, pr.row_end, got).has_value());
    int bad = 0, nonzero = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      bad += !same_bits(got[i], ref[pr.row_begin * row + i]);
      nonzero += got[i] != 0.0f;
    }
    CHECK(bad == 0);
    CHECK(nonzero > 0);  // a real trained tensor, not zeros
    CHECK(v.file_offset == data_start + b);
    auto typed = v.as<sbgq::bf16>();
    REQUIRE(typed.has_value());
    CHECK(typed->size() == raw.size());
    CHECK((*typed)[raw.size() - 1].bits == raw.back());
  }
}

// ---- conversions ------------------------------------------------------------------------

namespace {
template <class T>
sbgq::tensor_view view_of(const std::vector<T>& v, dtype t, tensor_shape s) {
  return sbgq::tensor_view{"t", t, s, std::as_bytes(std::span<const T>(v)), 0};
}
}  // namespace

TEST_CASE("to_f32: f16 and bf16 equal ggml for all 65,536 patterns, any row range") {
  std::vector<std::uint16_t> h(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<std::uint16_t>(i);
  std::vector<float> ref_f16(h.size()), ref_bf16(h.size()), got(h.size());
  sbgq::test::oracle().ggml_fp16_to_fp32_row(h.data(), ref_f16.data(), 65536);
  sbgq::test::oracle().ggml_bf16_to_fp32_row(h.data(), ref_bf16.data(), 65536);
  for (auto [t, ref] : {std::pair{dtype::f16, &ref_f16}, std::pair{dtype::bf16, &ref_bf16}}) {
    CAPTURE(sbgq::dtype_name(t));
    const auto v = view_of(h, t, {256, 256});
    REQUIRE(sbgq::to_f32(v, got).has_value());
    int bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) bad += !same_bits(got[i], (*ref)[i]);
    CHECK(bad == 0);
    std::vector<float> part(3 * 256);
    REQUIRE(sbgq::to_f32(v, 17, 20, part).has_value());
    CHECK(std::equal(part.begin(), part.end(), got.begin() + 17 * 256, same_bits));
  }
}

TEST_CASE("to_f32: F8 formats decode as their definitions say, all 256 codes") {
  std::vector<std::uint8_t> codes(256);
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<std::uint8_t>(i);
  std::vector<float> e4m3(256), e5m2(256), e8m0(256);
  REQUIRE(sbgq::to_f32(view_of(codes, dtype::f8_e4m3, {256}), e4m3).has_value());
  REQUIRE(sbgq::to_f32(view_of(codes, dtype::f8_e5m2, {16, 16}), e5m2).has_value());
  REQUIRE(sbgq::to_f32(view_of(codes, dtype::f8_e8m0, {2, 128}), e8m0).has_value());
  for (int c = 0; c < 256; ++c) {
    CAPTURE(c);
    const double sign = (c & 0x80) ? -1.0 : 1.0;
    {  // E4M3 (fn): bias 7, subnormal m/8 * 2^-6, S.1111.111 is NaN, no infinities
      const int e = (c >> 3) & 15, m = c & 7;
      if (e == 15 && m == 7) {
        CHECK(std::isnan(e4m3[c]));
      } else {
        const double v = e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1 + m / 8.0) * std::ldexp(1.0, e - 7);
        CHECK(e4m3[c] == static_cast<float>(sign * v));
        CHECK(std::signbit(e4m3[c]) == (sign < 0));
      }
    }
    {  // E5M2: bias 15, subnormal m/4 * 2^-14, exponent 31 is inf (m = 0) or NaN
      const int e = (c >> 2) & 31, m = c & 3;
      if (e == 31) {
        CHECK((m == 0 ? std::isinf(e5m2[c]) : std::isnan(e5m2[c])));
      } else {
        const double v = e == 0 ? m / 4.0 * std::ldexp(1.0, -14) : (1 + m / 4.0) * std::ldexp(1.0, e - 15);
        CHECK(e5m2[c] == static_cast<float>(sign * v));
      }
    }
    // E8M0: 2^(c - 127), 0xFF is NaN
    if (c == 255)
      CHECK(std::isnan(e8m0[c]));
    else
      CHECK(e8m0[c] == static_cast<float>(std::ldexp(1.0, c - 127)));
  }
  CHECK(e4m3[0x7e] == 448.0f);
  CHECK(e5m2[0x7b] == 57344.0f);
}

TEST_CASE("to_f32: integers, bool, f32 and f64") {
  std::vector<float> out;
  auto run = [&](const sbgq::tensor_view& v) {
    out.assign(v.shape.elements(), -999.0f);
    REQUIRE(sbgq::to_f32(v, out).has_value());
  };
  run(view_of(std::vector<std::int8_t>{-128, -1, 0, 127}, dtype::i8, {4}));
  CHECK(out == std::vector<float>{-128, -1, 0, 127});
  run(view_of(std::vector<std::uint8_t>{0, 1, 2, 255}, dtype::u8, {2, 2}));
  CHECK(out == std::vector<float>{0, 1, 2, 255});
  run(view_of(std::vector<std::uint8_t>{0, 1, 2, 255}, dtype::boolean, {4}));
  CHECK(out == std::vector<float>{0, 1, 1, 1});
  run(view_of(std::vector<std::int16_t>{-32768, 32767}, dtype::i16, {2}));
  CHECK(out == std::vector<float>{-32768, 32767});
  run(view_of(std::vector<std::uint16_t>{65535, 7}, dtype::u16, {2}));
  CHECK(out == std::vector<float>{65535, 7});
  run(view_of(std::vector<std::int32_t>{-16777216, 16777216}, dtype::i32, {2}));
  CHECK(out == std::vector<float>{-16777216.0f, 16777216.0f});
  run(view_of(std::vector<std::uint32_t>{4294967295u, 3}, dtype::u32, {2}));
  CHECK(out == std::vector<float>{4294967296.0f, 3});  // rounds to nearest
  run(view_of(std::vector<std::int64_t>{-(1ll << 40), 5}, dtype::i64, {2}));
  CHECK(out == std::vector<float>{-1099511627776.0f, 5});
  run(view_of(std::vector<std::uint64_t>{1ull << 63, 0}, dtype::u64, {2}));
  CHECK(out == std::vector<float>{9223372036854775808.0f, 0});
  run(view_of(std::vector<double>{0.1, -2.5, 1e300, 1e-50}, dtype::f64, {4}));
  CHECK(out[0] == 0.1f);
  CHECK(out[1] == -2.5f);
  CHECK(std::isinf(out[2]));
  CHECK(out[3] == 0.0f);
  run(view_of(std::vector<float>{1.5f}, dtype::f32, {}));  // scalar shape: 1 element
  CHECK(out.size() == 1);
  CHECK(out[0] == 1.5f);
}

TEST_CASE("to_f32 and as<T>: argument errors") {
  std::vector<float> v(12, 1.0f);
  const auto t = view_of(v, dtype::f32, {3, 4});
  std::vector<float> out(8);
  CHECK(sbgq::to_f32(t, 0, 2, out).has_value());
  CHECK(sbgq::to_f32(t, 2, 4, out).error().code == error_code::invalid_argument);
  CHECK(sbgq::to_f32(t, 2, 1, out).error().code == error_code::invalid_argument);
  CHECK(sbgq::to_f32(t, 0, 1, out).error().code == error_code::size_mismatch);
  auto short_view = t;
  short_view.bytes = short_view.bytes.first(40);
  CHECK(sbgq::to_f32(short_view, 0, 2, out).error().code == error_code::size_mismatch);

  CHECK(t.as<float>().has_value());
  CHECK(t.as<float>()->size() == 12);
  auto wrong = t.as<sbgq::bf16>();
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.error().code == error_code::bad_dtype);
  CHECK(wrong.error().message().find("has dtype F32, as<T>() asked for BF16") != std::string::npos);
  auto misaligned = t;
  misaligned.bytes = std::as_bytes(std::span<const float>(v)).subspan(2, 8);
  misaligned.shape = {2};
  auto m = misaligned.as<float>();
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().code == error_code::unsupported);
  std::vector<float> two(2);
  CHECK(sbgq::to_f32(misaligned, two).has_value());  // unaligned reads are fine
}

TEST_CASE("dtype table: names round-trip, sizes") {
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < sbgq::dtype_count; ++i) {
    const auto t = static_cast<dtype>(i);
    CHECK(sbgq::dtype_from_name(sbgq::dtype_name(t)) == t);
    names.insert(sbgq::dtype_name(t));
  }
  CHECK(names.size() == sbgq::dtype_count);
  CHECK(sbgq::dtype_size(dtype::bf16) == 2);
  CHECK(sbgq::dtype_size(dtype::f8_e4m3) == 1);
  CHECK(sbgq::dtype_size(dtype::i64) == 8);
  CHECK_FALSE(sbgq::dtype_from_name("bf16").has_value());
  CHECK_FALSE(sbgq::dtype_from_name("F4").has_value());
  CHECK(tensor_shape::make(std::vector<std::int64_t>(9, 1)).error().code == error_code::invalid_argument);
  CHECK(tensor_shape::make(std::vector<std::int64_t>{2, -1}).error().code == error_code::invalid_argument);
  CHECK((tensor_shape{3, 4}.to_string()) == "[3, 4]");
}

// ---- writer -------------------------------------------------------------------------------

TEST_CASE("writer -> reader round trip for every dtype, odd names, metadata, empty and scalar tensors") {
  const auto dir = scratch("roundtrip");
  const std::string path = (dir / "all.safetensors").string();
  sbgq::test::rng r(7);
  struct item {
    std::string name;
    dtype type;
    tensor_shape shape;
    std::vector<std::byte> bytes;
  };
  std::vector<item> items;
  const tensor_shape shapes[] = {{3, 5}, {7}, {}, {2, 0, 3}, {1, 1, 1, 1, 1, 1, 1, 2}, {4, 1, 3}};
  for (std::size_t i = 0; i < sbgq::dtype_count; ++i) {
    const auto t = static_cast<dtype>(i);
    const auto& s = shapes[i % std::size(shapes)];
    item it{"t." + std::string(sbgq::dtype_name(t)), t, s, {}};
    it.bytes.resize(s.elements() * sbgq::dtype_size(t));
    for (auto& b : it.bytes) b = static_cast<std::byte>(r.next_u32() & 0xff);
    items.push_back(std::move(it));
  }
  // Names that need JSON escaping or are not ASCII.
  for (std::string name : {std::string("quote\"back\\slash"), std::string("ctrl\x01\t\n"), std::string("caf\xc3\xa9 \xe2\x82\xac"),
                           std::string("")}) {
    item it{name, dtype::u8, {3}, {std::byte{1}, std::byte{2}, std::byte{3}}};
    items.push_back(std::move(it));
  }

  sbgq::safetensors_writer w;
  REQUIRE(w.add_metadata("format", "pt").has_value());
  REQUIRE(w.add_metadata("note \"x\"", "line1\nline2 \xc3\xa9").has_value());
  for (const auto& it : items) REQUIRE(w.add(it.name, it.type, it.shape, it.bytes).has_value());
  auto wr = w.write_file(path);
  REQUIRE_MESSAGE(wr.has_value(), wr.error().message());
  CHECK(dir_listing(dir) == std::vector<std::string>{"all.safetensors"});

  // Independent look at the bytes: 8-byte length, JSON padded with spaces to 8, data section.
  const auto raw = read_all(path);
  const std::uint64_t n = read_u64le(raw.data());
  CHECK((8 + n) % 8 == 0);
  CHECK(static_cast<char>(raw[8]) == '{');
  std::uint64_t expected_data = 0;
  for (const auto& it : items) expected_data += it.bytes.size();
  CHECK(raw.size() == 8 + n + expected_data);
  {
    simdjson::dom::parser p;
    simdjson::padded_string s(reinterpret_cast<const char*>(raw.data()) + 8, n);
    auto root = p.parse(s).get_object().value();
    std::uint64_t offset = 0;  // contiguous in insertion order
    for (const auto& it : items) {
      auto e = root[it.name];
      REQUIRE(e.error() == simdjson::SUCCESS);
      CHECK(std::string_view(e["dtype"].get_string().value()) == sbgq::dtype_name(it.type));
      auto off = e["data_offsets"].get_array().value();
      CHECK(off.at(0).get_uint64().value() == offset);
      offset += it.bytes.size();
      CHECK(off.at(1).get_uint64().value() == offset);
      CHECK(e["shape"].get_array().value().size() == it.shape.rank());
    }
    CHECK(std::string_view(root["__metadata__"]["note \"x\""].get_string().value()) == "line1\nline2 \xc3\xa9");
  }

  auto f = sbgq::safetensors_file::open(path);
  REQUIRE_MESSAGE(f.has_value(), f.error().message());
  CHECK(f->size() == items.size());
  CHECK(f->metadata().size() == 2);
  CHECK(f->find_metadata("format") == std::optional<std::string_view>("pt"));
  for (const auto& it : items) {
    CAPTURE(it.name);
    auto v = f->find(it.name);
    REQUIRE(v.has_value());
    CHECK(v->name == it.name);
    CHECK(v->type == it.type);
    CHECK(v->shape == it.shape);
    CHECK(std::equal(v->bytes.begin(), v->bytes.end(), it.bytes.begin(), it.bytes.end()));
  }
}

TEST_CASE("writer streaming: declare, then write data in chunks that cross tensor boundaries; producers") {
  const auto dir = scratch("stream");
  const std::string path = (dir / "s.safetensors").string();
  std::vector<float> a(1000), b(37);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<float>(i);
  {
    sbgq::safetensors_writer w;
    REQUIRE(w.declare("a", dtype::f32, {10, 100}).has_value());
    REQUIRE(w.declare("empty", dtype::f32, {0}).has_value());
    REQUIRE(w.declare("b", dtype::f32, {37}).has_value());
    CHECK(w.data_size() == 4 * 1037);
    REQUIRE(w.begin(path).has_value());
    std::vector<std::byte> all(4 * 1037);
    std::memcpy(all.data(), a.data(), 4000);
    std::memcpy(all.data() + 4000, b.data(), 148);
    for (std::size_t pos = 0; pos < all.size(); pos += 333)
      REQUIRE(w.write(std::span(all).subspan(pos, std::min<std::size_t>(333, all.size() - pos))).has_value());
    CHECK(w.current_tensor() == 3);
    REQUIRE(w.finish().has_value());
  }
  auto f = sbgq::safetensors_file::open(path).value();
  auto fa = f.get("a").value().as<float>().value();
  auto fb = f.get("b").value().as<float>().value();
  CHECK(std::equal(fa.begin(), fa.end(), a.begin(), a.end()));
  CHECK(std::equal(fb.begin(), fb.end(), b.begin(), b.end()));
  CHECK(f.get("empty").value().bytes.empty());
  // File order: a [0, 4000), then the empty tensor and b, both starting at 4000.
  CHECK(f.tensors()[0].name == "a");
  CHECK(f.tensors()[1].name == "empty");
  CHECK(f.tensors()[2].name == "b");

  // Producers streaming bf16 rows converted on the fly.
  const std::string path2 = (dir / "p.safetensors").string();
  sbgq::safetensors_writer w;
  REQUIRE(w.add("rows", dtype::bf16, {10, 100}, [&](sbgq::safetensors_writer& out) -> sbgq::result<void> {
               std::vector<sbgq::bf16> row(100);
               for (int r = 0; r < 10; ++r) {
                 sbgq::convert(std::span<const float>(a).subspan(r * 100, 100), std::span<sbgq::bf16>(row));
                 SBGQ_TRY_VOID(out.write(row.data(), row.size() * 2));
               }
               return {};
             }).has_value());
  REQUIRE(w.write_file(path2).has_value());
  auto g = sbgq::safetensors_file::open(path2).value();
  std::vector<float> back(1000);
  REQUIRE(sbgq::to_f32(g.get("rows").value(), back).has_value());
  int bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i) bad += !same_bits(back[i], sbgq::to_f32(sbgq::to_bf16(a[i])));
  CHECK(bad == 0);
}

TEST_CASE("writer atomicity: failures leave no file and no temporary; an existing file survives") {
  const auto dir = scratch("atomic");
  const std::string path = (dir / "m.safetensors").string();
  const std::vector<float> four = {1, 2, 3, 4};
  const auto four_bytes = std::as_bytes(std::span<const float>(four));
  using listing = std::vector<std::string>;

  {  // abandoned after half the data: the temporary exists while writing, then goes away
    sbgq::safetensors_writer w;
    REQUIRE(w.declare("a", dtype::f32, {4}).has_value());
    REQUIRE(w.begin(path).has_value());
    REQUIRE(w.write(four_bytes.first(8)).has_value());
    const auto during = dir_listing(dir);
    REQUIRE(during.size() == 1);
    CHECK(during[0].rfind("m.safetensors.tmp.", 0) == 0);
  }
  CHECK(dir_listing(dir) == listing{});

  {  // finish() before all data
    sbgq::safetensors_writer w;
    REQUIRE(w.declare("a", dtype::f32, {4}).has_value());
    REQUIRE(w.begin(path).has_value());
    REQUIRE(w.write(four_bytes.first(4)).has_value());
    check_error(w.finish(), error_code::size_mismatch, "tensor 'a' at 4 of 16 bytes");
    CHECK(dir_listing(dir) == listing{});
    CHECK(w.write(four_bytes).error().code == error_code::invalid_argument);  // abandoned
  }
  {  // write() past the declared data
    sbgq::safetensors_writer w;
    REQUIRE(w.declare("a", dtype::f32, {2}).has_value());
    REQUIRE(w.begin(path).has_value());
    check_error(w.write(four_bytes), error_code::size_mismatch, "passes the declared data size of 8 bytes");
    CHECK(dir_listing(dir) == listing{});
  }
  {  // a producer that fails, and one that writes too little
    sbgq::safetensors_writer w;
    REQUIRE(w.add("a", dtype::f32, {4}, four_bytes).has_value());
    REQUIRE(w.add("b", dtype::f32, {4}, [](sbgq::safetensors_writer&) -> sbgq::result<void> {
                 return sbgq::error(error_code::io_error, "test", "source went away");
               }).has_value());
    check_error(w.write_file(path), error_code::io_error, "source went away");
    CHECK(dir_listing(dir) == listing{});
    sbgq::safetensors_writer w2;
    REQUIRE(w2.add("b", dtype::f32, {4}, [&](sbgq::safetensors_writer& o) { return o.write(four_bytes.first(4)); })
                .has_value());
    check_error(w2.write_file(path), error_code::size_mismatch, "producer of tensor 'b' wrote 4 bytes, its shape needs 16");
    CHECK(dir_listing(dir) == listing{});
  }
  {  // an existing file under the final name is untouched by a failed rewrite
    write_text(path, "precious");
    sbgq::safetensors_writer w;
    REQUIRE(w.declare("a", dtype::f32, {4}).has_value());
    REQUIRE(w.begin(path).has_value());
    w.abandon();
    CHECK(dir_listing(dir) == listing{"m.safetensors"});
    const auto kept = read_all(path);
    CHECK(std::string(reinterpret_cast<const char*>(kept.data()), kept.size()) == "precious");
    fs::remove(path);
  }
  {  // a directory that does not exist
    sbgq::safetensors_writer w;
    REQUIRE(w.add("a", dtype::f32, {4}, four_bytes).has_value());
    check_error(w.write_file((dir / "no" / "such" / "x.safetensors").string()), error_code::io_error, "cannot create");
  }
  {  // declaration errors
    sbgq::safetensors_writer w;
    REQUIRE(w.add("a", dtype::f32, {4}, four_bytes).has_value());
    check_error(w.add("a", dtype::f32, {4}, four_bytes), error_code::duplicate, "tensor 'a' added twice");
    check_error(w.add("b", dtype::f32, {3}, four_bytes), error_code::size_mismatch, "16 bytes given, shape [3] of F32 needs 12");
    check_error(w.declare("__metadata__", dtype::u8, {1}), error_code::invalid_argument, "reserved");
    check_error(w.declare("bad\xff", dtype::u8, {1}), error_code::invalid_argument, "not valid UTF-8");
    check_error(w.declare("huge", dtype::f64, {1ll << 62, 4}), error_code::overflow, "overflows");
    check_error(w.add("p", dtype::u8, {1}, sbgq::safetensors_writer::producer{}), error_code::invalid_argument,
                "empty producer");
    REQUIRE(w.add_metadata("k", "v").has_value());
    check_error(w.add_metadata("k", "w"), error_code::duplicate, "metadata key 'k' added twice");
    REQUIRE(w.declare("c", dtype::u8, {1}).has_value());
    check_error(w.write_file(path), error_code::invalid_argument, "tensor 'c' was declared without data");
    CHECK(w.size() == 2);
  }
  {  // calls out of sequence
    sbgq::safetensors_writer w;
    check_error(w.write(four_bytes), error_code::invalid_argument, "write() called in state 'declaring'");
    check_error(w.finish(), error_code::invalid_argument, "finish() called");
    REQUIRE(w.declare("a", dtype::u8, {0}).has_value());
    REQUIRE(w.begin(path).has_value());
    check_error(w.declare("b", dtype::u8, {1}), error_code::invalid_argument, "declare() called in state 'writing'");
    REQUIRE(w.finish().has_value());
    auto f = sbgq::safetensors_file::open(path).value();
    CHECK(f.size() == 1);
    CHECK(f.header_size() % 8 == 0);
  }
  CHECK(dir_listing(dir) == listing{"m.safetensors"});
}

// ---- malformed files ----------------------------------------------------------------------

namespace {
// File byte of the '"' that opens `key` in `header` (an image() built from it).
std::uint64_t at(std::string_view header, std::string_view key) {
  std::string quoted = "\"";
  quoted += key;
  quoted += '"';
  const auto p = header.find(quoted);
  REQUIRE(p != std::string_view::npos);
  return 8 + p;
}
struct bad_case {
  const char* what;
  std::vector<std::byte> bytes;
  error_code code;
  const char* message;
  std::uint64_t offset;
};
constexpr std::uint64_t npos = sbgq::error::npos;
}  // namespace

TEST_CASE("malformed safetensors files give specific errors, never a crash") {
  const std::string f32_1 = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::vector<bad_case> cases;
  auto header_case = [&](const char* what, std::string header, std::size_t data, error_code code,
                         const char* message, std::uint64_t offset) {
    cases.push_back({what, image(header, data), code, message, offset});
  };
  auto tensor_case = [&](const char* what, std::string header, std::size_t data, error_code code,
                         const char* message, const char* key = "w") {
    const auto off = at(header, key);
    cases.push_back({what, image(header, data), code, message, off});
  };

  // -- the 8-byte length prefix --
  cases.push_back({"empty file", {}, error_code::truncated, "file of 0 bytes is shorter than the 8-byte header", 0});
  cases.push_back({"truncated length prefix: 5 of its 8 bytes",
                   {std::byte{0x02}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}},
                   error_code::truncated, "file of 5 bytes", 0});
  // length 64, but only "{}" follows: 10 bytes in all
  cases.push_back({"header length past EOF", image_with_length(64, "{}"), error_code::truncated,
                   "header of 64 bytes runs past the end of the file of 10 bytes", 0});
  // length 2^64 - 1
  cases.push_back({"header length absurdly large", image_with_length(~0ull, "{}"), error_code::overflow,
                   "header length 18446744073709551615 passes the cap of 104857600 bytes", 0});
  cases.push_back({"header length just past the 100 MB cap", image_with_length((100ull << 20) + 1, "{}"),
                   error_code::overflow, "passes the cap", 0});
  cases.push_back({"header length 0", image_with_length(0, "{}"), error_code::bad_value,
                   "header length 0 is too small", 0});
  cases.push_back({"header length 1", image_with_length(1, "{}"), error_code::bad_value,
                   "header length 1 is too small", 0});

  // -- JSON --
  header_case("bad JSON: unterminated object", R"({"w":{"dtype":"F32",)", 0, error_code::bad_json,
              "header is not valid JSON", 8);
  header_case("bad JSON: trailing garbage after the object", "{} x", 0, error_code::bad_json, "not valid JSON", 8);
  header_case("bad JSON: NUL padding instead of spaces", std::string("{}\0\0\0\0\0\0", 8), 0, error_code::bad_json,
              "not valid JSON", 8);
  header_case("bad JSON: invalid UTF-8 in a name", "{\"w\xff\":{}}", 0, error_code::bad_json, "not valid JSON", 8);
  header_case("bad JSON: integer past 64 bits", R"({"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}})",
              4, error_code::bad_json, "not valid JSON", 8);
  header_case("header not an object", "[1, 2]", 0, error_code::bad_json, "header must be a JSON object, found an array", 8);
  header_case("header a string", R"("{}")", 0, error_code::bad_json, "found a string", 8);

  // -- entries --
  tensor_case("entry not an object", R"({"w":[0,4]})", 4, error_code::bad_json,
              "tensor 'w': expected an object {dtype, shape, data_offsets}, found an array");
  tensor_case("missing data_offsets", R"({"w":{"dtype":"F32","shape":[1]}})", 4, error_code::bad_json,
              "tensor 'w': missing field 'data_offsets'");
  tensor_case("missing dtype", R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4, error_code::bad_json,
              "missing field 'dtype'");
  tensor_case("extra field", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"bias":true}})", 4,
              error_code::bad_json, "tensor 'w': unexpected field 'bias'");
  tensor_case("field twice", R"({"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4,
              error_code::duplicate, "tensor 'w': field 'dtype' appears twice");
  tensor_case("dtype not a string", R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4,
              error_code::bad_json, "dtype must be a string, found an integer");
  tensor_case("unknown dtype", R"({"w":{"dtype":"F4","shape":[1],"data_offsets":[0,4]}})", 4, error_code::bad_dtype,
              "tensor 'w': unknown dtype 'F4'");
  tensor_case("dtype in lower case", R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4,
              error_code::bad_dtype, "unknown dtype 'f32'");
  tensor_case("shape not an array", R"({"w":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", 4, error_code::bad_json,
              "shape must be an array, found an integer");
  tensor_case("negative shape entry", R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,4]}})", 4,
              error_code::bad_value, "tensor 'w': shape entry 1: expected a non-negative integer, found -1");
  tensor_case("float shape entry", R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4,
              error_code::bad_json, "shape entry 0: expected a non-negative integer, found a floating-point number");
  tensor_case("string shape entry", R"({"w":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", 4,
              error_code::bad_json, "found a string");
  tensor_case("huge shape entry (2^63)", R"({"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,4]}})",
              4, error_code::overflow, "shape entry 0 = 9223372036854775808 passes 2^63 - 1");
  // 2^32 * 2^32 = 2^64
  tensor_case("shape product overflow", R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
              4, error_code::overflow, "shape [4294967296, 4294967296] x 1 bytes overflows 64 bits");
  // 2^62 elements fit, 2^62 x 4 bytes does not
  tensor_case("shape x dtype size overflow", R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})",
              4, error_code::overflow, "x 4 bytes overflows 64 bits");
  tensor_case("rank 9", R"({"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", 4,
              error_code::unsupported, "shape has more than 8 dimensions");
  tensor_case("shape x dtype != byte range", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8,
              error_code::bad_shape, "tensor 'w': shape [2] of F32 needs 8 bytes, data_offsets [0, 4) hold 4");
  tensor_case("data_offsets begin > end", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8,
              error_code::bad_range, "tensor 'w': data_offsets [8, 4) begin after end");
  tensor_case("range past EOF", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 7,
              error_code::bad_range, "data_offsets [0, 8) end past the data section of 7 bytes");
  tensor_case("range past EOF by 2^64 - 4", R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,0]}})",
              8, error_code::bad_range, "begin after end");
  tensor_case("data_offsets one element", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4,
              error_code::bad_json, "data_offsets must hold exactly 2 integers [begin, end], found 1 elements");
  tensor_case("data_offsets three elements", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8,
              error_code::bad_json, "found 3 elements");
  tensor_case("data_offsets not an array", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":{"begin":0}}})", 4,
              error_code::bad_json, "data_offsets must be an array [begin, end], found an object");
  tensor_case("negative data offset", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4,
              error_code::bad_value, "data_offsets[0]: expected a non-negative integer, found -4");
  tensor_case("float data offset", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}})", 4,
              error_code::bad_json, "data_offsets[1]: expected a non-negative integer, found a floating-point number");
  // b starts inside a: [0, 8) and [4, 12)
  tensor_case("overlapping ranges",
              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
              12, error_code::bad_range, "tensor 'b': data_offsets [4, 12) overlap tensor 'a' [0, 8)", "b");
  // c lies inside a but is listed last: overlap is found in offset order, not header order
  tensor_case("range nested in an earlier one",
              R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[2],"data_offsets":[8,10]},"c":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
              10, error_code::bad_range, "tensor 'c': data_offsets [2, 4) overlap tensor 'a' [0, 8)", "c");
  // An empty tensor inside another tensor's range: the reference reader rejects it too.
  tensor_case("empty range inside another",
              R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}})",
              4, error_code::bad_range, "tensor 'e': data_offsets [2, 2) overlap tensor 'a' [0, 4)", "e");

  // -- exact coverage of the data section (holes and trailing bytes shift every read) --
  {
    // a [0, 4), then 4 bytes nobody owns, then b [8, 12)
    const std::string h =
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
    const std::string msg = "[sbgq.safetensors.bad_range] 'bad.safetensors': tensor 'b': data_offsets [8, 12) leave a "
                            "hole: data section bytes [4, 8) (file bytes [" + std::to_string(8 + h.size() + 4) + ", " +
                            std::to_string(8 + h.size() + 8) + ")) belong to no tensor, the previous tensor 'a' "
                            "[0, 4) ends at 4 (byte " + std::to_string(at(h, "b")) + ")";
    auto r = sbgq::safetensors_file::parse(image(h, 12), "bad.safetensors");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message() == msg);
  }
  tensor_case("hole between two tensors, listed in reverse",
              R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
              5, error_code::bad_range, "tensor 'b': data_offsets [3, 5) leave a hole: data section bytes [2, 3)", "b");
  tensor_case("hole before the first tensor", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
              error_code::bad_range,
              "tensor 'w': data_offsets [4, 8) leave a hole: data section bytes [0, 4) (file bytes [");
  tensor_case("hole before the first tensor, after an empty one",
              R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              8, error_code::bad_range, "the previous tensor 'e' [0, 0) ends at 0");
  {
    const auto n = f32_1.size();
    const std::string msg = "[sbgq.safetensors.bad_range] 'bad.safetensors': data section of 5 bytes has 1 trailing "
                            "bytes that belong to no tensor: file bytes [" + std::to_string(8 + n + 4) + ", " +
                            std::to_string(8 + n + 5) + "), after the last tensor 'w' [0, 4) (byte " +
                            std::to_string(8 + n + 4) + ")";
    auto r = sbgq::safetensors_file::parse(image(f32_1, 5), "bad.safetensors");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message() == msg);
    cases.push_back({"one trailing byte after the last tensor", image(f32_1, 5), error_code::bad_range,
                     "1 trailing bytes that belong to no tensor", 8 + n + 4});
  }
  cases.push_back({"trailing bytes and no tensor", image("{}", 3), error_code::bad_range,
                   "data section of 3 bytes has 3 trailing bytes that belong to no tensor: file bytes [10, 13), and the "
                   "header lists no tensor", 10});
  header_case("trailing bytes after metadata only", R"({"__metadata__":{"format":"pt"}})", 1, error_code::bad_range,
              "1 trailing bytes", 8 + std::string(R"({"__metadata__":{"format":"pt"}})").size());

  {
    const std::string h =
        R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
    cases.push_back({"duplicate names", image(h, 8), error_code::duplicate,
                     "tensor 'w': name appears twice (first at header byte 9)", 8 + h.rfind("\"w\"")});
  }

  // -- __metadata__ --
  header_case("metadata value not a string", R"({"__metadata__":{"format":"pt","step":100}})", 0, error_code::bad_json,
              "'__metadata__' value of 'step' must be a string, found an integer", 9);
  header_case("metadata not an object", R"({"__metadata__":["pt"]})", 0, error_code::bad_json,
              "'__metadata__' must be an object, found an array", 9);
  header_case("metadata key twice", R"({"__metadata__":{"a":"1","a":"2"}})", 0, error_code::duplicate,
              "'__metadata__' key 'a' appears twice", 9);
  {
    const std::string h = R"({"__metadata__":{},"__metadata__":{}})";
    cases.push_back({"__metadata__ twice", image(h), error_code::duplicate, "'__metadata__' appears twice",
                     8 + h.rfind("\"__metadata__\"")});
  }
  // A name with control characters is escaped in the message.
  tensor_case("name printed safely", "{\"w\\u0001\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
              error_code::bad_dtype, "tensor 'w\\x01': unknown dtype 'X'", "w\\u0001");

  for (const auto& c : cases) {
    CAPTURE(c.what);
    auto r = sbgq::safetensors_file::parse(c.bytes, "bad.safetensors");
    check_error(r, c.code, c.message, c.offset);
    if (!r.has_value()) CHECK(r.error().message().find("'bad.safetensors': ") != std::string::npos);
  }
  // The same through a real file (mmap path), for one case.
  const auto dir = scratch("malformed");
  const auto p = dir / "x.safetensors";
  write_text(p, std::string_view(reinterpret_cast<const char*>(cases[2].bytes.data()), cases[2].bytes.size()));
  check_error(sbgq::safetensors_file::open(p.string()), error_code::truncated, "runs past the end");
  check_error(sbgq::safetensors_file::open((dir / "none.safetensors").string()), error_code::io_error, "cannot open");
  (void)npos;
}

TEST_CASE("valid edge cases: empty header, whitespace, empty tensors at range boundaries, escaped names") {
  // The smallest file: length 2, "{}".
  auto minimal = sbgq::safetensors_file::parse(image("{}"));
  REQUIRE(minimal.has_value());
  CHECK(minimal->size() == 0);
  CHECK(minimal->metadata().empty());

  // Leading whitespace, space padding, an empty tensor where one range ends and the next
  // begins, a scalar, an escaped name. The ranges cover the data section exactly.
  const std::string h =
      " {\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"e\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
      "\"s\\\"\\u00e9\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[4,6]}}      ";
  const auto img = image(h, 6);
  auto f = sbgq::safetensors_file::parse(img);
  REQUIRE_MESSAGE(f.has_value(), f.error().message());
  CHECK(f->size() == 3);
  CHECK(f->tensors()[0].name == "a");
  CHECK(f->tensors()[1].name == "e");  // [4, 4) sorts after [0, 4) and before [4, 6)
  CHECK(f->tensors()[2].name == "s\"\xc3\xa9");
  const auto s = f->get("s\"\xc3\xa9").value();
  CHECK(s.shape.rank() == 0);
  CHECK(s.elements() == 1);
  CHECK(s.bytes.data() == img.data() + 8 + h.size() + 4);
  CHECK(f->tensors()[2].header_offset == at(h, "s\\\"\\u00e9"));
  std::vector<float> one(1);
  REQUIRE(sbgq::to_f32(s, one).has_value());
  CHECK(one[0] == static_cast<float>(4 | (5 << 8)));  // data bytes 4, 5 little-endian
  CHECK(f->get("e").value().bytes.empty());
  CHECK(f->get("missing").error().code == error_code::not_found);
}

// ---- checkpoints ---------------------------------------------------------------------------

namespace {
void write_shard(const fs::path& p, const std::vector<std::string>& names) {
  sbgq::safetensors_writer w;
  static const std::vector<float> data = {1, 2, 3, 4};
  for (const auto& n : names) REQUIRE(w.add(n, dtype::f32, {4}, std::as_bytes(std::span(data))).has_value());
  REQUIRE(w.write_file(p.string()).has_value());
}
}  // namespace

TEST_CASE("checkpoints: sharded, single file, and malformed indexes") {
  const auto dir = scratch("checkpoint");
  write_shard(dir / "s1.safetensors", {"a", "b"});
  write_shard(dir / "s2.safetensors", {"c"});
  const auto index = dir / "model.safetensors.index.json";
  auto open_with = [&](std::string_view weight_map) {
    write_text(index, std::string(R"({"metadata":{"total_size":48},"weight_map":)") + std::string(weight_map) + "}");
    return sbgq::safetensors_checkpoint::open(dir.string());
  };

  auto good = open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"})");
  REQUIRE_MESSAGE(good.has_value(), good.error().message());
  CHECK(good->size() == 3);
  CHECK(good->shards().size() == 2);
  CHECK(good->total_size() == std::optional<std::uint64_t>(48));
  CHECK(fs::path(good->shard_of("c")->path()).filename() == "s2.safetensors");
  std::vector<std::string> names;
  for (const auto& v : good->views()) names.emplace_back(v.name);
  CHECK(names == std::vector<std::string>{"a", "b", "c"});
  CHECK(good->get("b").value().as<float>().value()[3] == 4.0f);

  check_error(open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s3.safetensors"})"), error_code::not_found,
              "tensor 'c' maps to shard 's3.safetensors', which is not a file");
  check_error(open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"../checkpoint/s2.safetensors"})"),
              error_code::bad_value, "weight_map['c'] = '../checkpoint/s2.safetensors' is not a plain file name");
  check_error(open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":")" + (dir / "s2.safetensors").string() + "\"}"),
              error_code::bad_value, "is not a plain file name");
  check_error(open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":".."})"), error_code::bad_value,
              "is not a plain file name");
  check_error(open_with(R"({"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"})"), error_code::not_found,
              "tensor 'b' is not in its shard 's2.safetensors' (it is in '");
  // s1 holds a and b, but the map lists only a (s2, not listed at all, is not opened).
  check_error(open_with(R"({"a":"s1.safetensors"})"), error_code::bad_value,
              "holds tensor 'b', which the weight_map does not list");
  check_error(open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors","d":"s2.safetensors"})"),
              error_code::not_found, "tensor 'd' is not in its shard");
  check_error(open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors","c":"s2.safetensors"})"),
              error_code::duplicate, "weight_map lists tensor 'c' twice");
  check_error(open_with(R"({"a":"s1.safetensors","b":1})"), error_code::bad_json,
              "weight_map['b'] must be a shard file name string, found an integer");
  check_error(open_with(R"(["s1.safetensors"])"), error_code::bad_json, "'weight_map' must be an object");
  write_text(index, R"({"metadata":{}})");
  check_error(sbgq::safetensors_checkpoint::open(index.string()), error_code::bad_json, "missing 'weight_map'");
  write_text(index, R"({"weight_map":{)");
  check_error(sbgq::safetensors_checkpoint::open(index.string()), error_code::bad_json, "not valid JSON");

  // A tensor in two shards: s3 also holds 'c', listed for s2.
  write_shard(dir / "s3.safetensors", {"c", "d"});
  check_error(open_with(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors","d":"s3.safetensors"})"),
              error_code::duplicate, "tensor 'c' is in shard 's2.safetensors' and also in '");

  // A corrupt shard reports its own error.
  write_text(dir / "s4.safetensors", "short");
  check_error(open_with(R"({"a":"s4.safetensors"})"), error_code::truncated, "s4.safetensors': file of 5 bytes");

  // Directories: with model.safetensors only, and with nothing.
  const auto single = scratch("checkpoint_single");
  write_shard(single / "model.safetensors", {"x", "y"});
  auto one = sbgq::safetensors_checkpoint::open(single.string());
  REQUIRE(one.has_value());
  CHECK(one->size() == 2);
  CHECK_FALSE(one->total_size().has_value());
  const auto empty = scratch("checkpoint_empty");
  check_error(sbgq::safetensors_checkpoint::open(empty.string()), error_code::not_found, "holds neither");
}

TEST_CASE("safetensors_index::parse is usable on its own") {
  auto idx = sbgq::safetensors_index::parse(R"({"weight_map":{"b":"x.safetensors","a":"y.safetensors"},"metadata":{"total_size":-1}})");
  REQUIRE(idx.has_value());
  CHECK(idx->weight_map.size() == 2);
  CHECK(idx->weight_map[0].tensor == "a");  // sorted by tensor name
  CHECK_FALSE(idx->total_size.has_value());  // not a non-negative integer: ignored
  check_error(sbgq::safetensors_index::parse(R"({"weight_map":{"a":"sub/x"}})"), error_code::bad_value, "plain file name");
  check_error(sbgq::safetensors_index::parse(R"({"weight_map":{"a":"c:x"}})"), error_code::bad_value, "plain file name");
  check_error(sbgq::safetensors_index::parse(R"({"weight_map":{"a":""}})"), error_code::bad_value, "plain file name");
  check_error(sbgq::safetensors_index::parse("[]"), error_code::bad_json, "root must be an object");
}
