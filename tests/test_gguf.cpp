// GGUF reader and writer against llama.cpp's own gguf.cpp (libggml-base of the oracle):
//   - files from our writer are read by gguf_init_from_file, every key/value/tensor/byte
//     compared with what we wrote;
//   - files from llama.cpp's writer (gguf_init_empty + gguf_set_* + real ggml tensors +
//     gguf_write_to_file) are read by ours, and our writer re-creates them byte for byte;
//   - the worked example of gguf-format.md section 4.4, built by hand, byte by byte;
//   - a corpus of malformed files as annotated byte arrays: each gets its error code,
//     message and byte offset, and llama.cpp's reader (gguf_init_from_buffer) rejects
//     the same bytes; every prefix of a valid file fails cleanly;
//   - writer misuse, and that an abandoned writer leaves no file behind.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sbgq/io/gguf.hpp>
#include <string>
#include <vector>

#include "support/oracle.hpp"
#include "support/rng.hpp"

using sbgq::error_code;
using sbgq::ggml_type;
using sbgq::gguf_array;
using sbgq::gguf_value;
using sbgq::gguf_value_type;
using sbgq::test::oracle;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) { return std::string(SBGQ_TEST_TMP_DIR) + "/gguf_" + name; }

std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
  return b;
}

std::vector<std::byte> random_bytes(sbgq::test::rng& r, std::size_t n) {
  std::vector<std::byte> v(n);
  for (auto& x : v) x = static_cast<std::byte>(r.next_u32() & 0xff);
  return v;
}

/// Files in the tmp dir whose name starts with `prefix` (to find leftover temp files).
std::vector<std::string> files_starting_with(const std::string& prefix_path) {
  const fs::path p(prefix_path);
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(p.parent_path()))
    if (e.path().filename().string().rfind(p.filename().string(), 0) == 0) out.push_back(e.path().string());
  return out;
}

/// Little-endian byte builder for hand-made GGUF files.
struct bytes {
  std::vector<std::byte> b;
  template <class T>
  bytes& put(T v) {
    const std::size_t n = b.size();
    b.resize(n + sizeof(T));
    std::memcpy(b.data() + n, &v, sizeof(T));
    return *this;
  }
  bytes& u8(std::uint8_t v) { return put(v); }
  bytes& u32(std::uint32_t v) { return put(v); }
  bytes& u64(std::uint64_t v) { return put(v); }
  bytes& i64(std::int64_t v) { return put(v); }
  bytes& f32(float v) { return put(v); }
  bytes& raw(std::string_view s) {
    for (char c : s) b.push_back(static_cast<std::byte>(c));
    return *this;
  }
  bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  bytes& zeros(std::size_t n) {
    b.resize(b.size() + n, std::byte{0});
    return *this;
  }
  bytes& pad_to(std::size_t a) { return zeros((a - b.size() % a) % a); }
  /// GGUF header: magic, version, n_tensors, n_kv.
  bytes& header(std::int64_t n_tensors, std::int64_t n_kv, std::uint32_t version = 3) {
    return raw("GGUF").u32(version).i64(n_tensors).i64(n_kv);
  }
  /// One tensor info record.
  bytes& tensor(std::string_view name, std::vector<std::int64_t> ne, std::uint32_t type, std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(ne.size()));
    for (auto x : ne) i64(x);
    return u32(type).u64(offset);
  }
  std::span<const std::byte> span() const { return b; }
  std::size_t size() const { return b.size(); }
};

bool llama_accepts(std::span<const std::byte> b) {
  auto& o = oracle();
  void* ctx = o.gguf_init_from_buffer(b.data(), b.size(), sbgq::test::gguf_init_params{true, nullptr});
  if (ctx) o.gguf_free(ctx);
  return ctx != nullptr;
}

/// Our reader must reject `b` with `code`, a message containing `what` and (unless npos)
/// the byte offset `at`; llama.cpp's reader must reject it too unless `llama_too` is false.
void expect_reject(const bytes& b, error_code code, const std::string& what, std::uint64_t at = sbgq::error::npos,
                   bool llama_too = true) {
  auto r = sbgq::gguf_file::parse(b.span());
  REQUIRE_FALSE(r.has_value());
  const std::string msg = r.error().message();
  CAPTURE(msg);
  CHECK(r.error().code == code);
  CHECK(r.error().component == "gguf");
  CHECK(msg.find(what) != std::string::npos);
  CHECK(msg.rfind("[sbgq.gguf.", 0) == 0);
  if (at != sbgq::error::npos) CHECK(r.error().offset == at);
  if (llama_too) CHECK_FALSE(llama_accepts(b.span()));
}

// gguf-format.md section 4.4, as a byte array.
bytes worked_example() {
  bytes b;
  b.raw("GGUF").u32(3).u64(1).u64(1);                       // 0: magic, version, n_tensors, n_kv
  b.u64(20).raw("general.architecture").u32(8).str("x");    // 24: key, STRING, "x"
  b.str("t").u32(1).i64(8).u32(0).u64(0);                   // 65: "t", 1 dim, ne 8, F32, offset 0
  b.zeros(30);                                              // 98: padding to 128
  for (int i = 0; i < 8; ++i) b.f32(static_cast<float>(i) * 0.5f - 1.0f);  // 128: data
  return b;
}

// ---- a metadata set covering every type ---------------------------------------------------
struct kv_case {
  std::string key;
  gguf_value value;
};

std::vector<kv_case> every_value_type() {
  std::vector<kv_case> v;
  v.push_back({"general.architecture", gguf_value("qwen35")});
  v.push_back({"t.u8", gguf_value(std::uint8_t{250})});
  v.push_back({"t.i8", gguf_value(std::int8_t{-100})});
  v.push_back({"t.u16", gguf_value(std::uint16_t{65000})});
  v.push_back({"t.i16", gguf_value(std::int16_t{-32000})});
  v.push_back({"t.u32", gguf_value(std::uint32_t{4000000000u})});
  v.push_back({"t.i32", gguf_value(std::int32_t{-2000000000})});
  v.push_back({"t.f32", gguf_value(3.1415926f)});
  v.push_back({"t.bool.true", gguf_value(true)});
  v.push_back({"t.bool.false", gguf_value(false)});
  v.push_back({"t.str.unicode", gguf_value("h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80")});
  v.push_back({"t.str.empty", gguf_value(std::string())});
  v.push_back({"t.u64", gguf_value(std::uint64_t{0xfedcba9876543210ull})});
  v.push_back({"t.i64", gguf_value(std::int64_t{-0x123456789abcdefll})});
  v.push_back({"t.f64", gguf_value(-2.718281828459045)});
  v.push_back({"a.u8", gguf_value(gguf_array::of<std::uint8_t>({1, 2, 255}))});
  v.push_back({"a.i8", gguf_value(gguf_array::of<std::int8_t>({-1, 0, 127, -128}))});
  v.push_back({"a.u16", gguf_value(gguf_array::of<std::uint16_t>({1, 65535}))});
  v.push_back({"a.i16", gguf_value(gguf_array::of<std::int16_t>({-5, 5, -32768}))});
  v.push_back({"a.u32", gguf_value(gguf_array::of<std::uint32_t>({7, 4294967295u, 0}))});
  v.push_back({"a.i32", gguf_value(gguf_array::of<std::int32_t>({-1, 1, 2147483647}))});
  v.push_back({"a.f32", gguf_value(gguf_array::of<float>({0.5f, -1e30f, 1e-30f, -0.0f}))});
  v.push_back({"a.bool", gguf_value(gguf_array::of(std::vector<bool>{true, false, true, true}))});
  v.push_back({"a.str", gguf_value(gguf_array::of(std::vector<std::string>{"a", "", "\xC3\xA9t\xC3\xA9", "<|im_end|>"}))});
  v.push_back({"a.u64", gguf_value(gguf_array::of<std::uint64_t>({1, 0xffffffffffffffffull}))});
  v.push_back({"a.i64", gguf_value(gguf_array::of<std::int64_t>({-1, std::numeric_limits<std::int64_t>::min()}))});
  v.push_back({"a.f64", gguf_value(gguf_array::of<double>({1.0 / 3.0, -1e300}))});
  v.push_back({"a.empty.u32", gguf_value(gguf_array::empty(gguf_value_type::uint32))});
  v.push_back({"a.empty.str", gguf_value(gguf_array::empty(gguf_value_type::string))});
  v.push_back({"a.empty.f32", gguf_value(gguf_array::empty(gguf_value_type::float32))});
  return v;
}

/// Raw wire bytes of a non-string scalar (what gguf_get_val_data points to).
std::vector<std::byte> scalar_bytes(const gguf_value& v) {
  std::vector<std::byte> out;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_arithmetic_v<T>) {
          out.resize(sizeof(T));
          if constexpr (std::is_same_v<T, bool>) {
            out[0] = std::byte{static_cast<std::uint8_t>(x ? 1 : 0)};
          } else {
            std::memcpy(out.data(), &x, sizeof(T));
          }
        }
      },
      v.variant());
  return out;
}

/// Checks that llama.cpp's context `ctx` holds exactly `kvs` (in order).
void check_llama_kv(void* ctx, const std::vector<kv_case>& kvs) {
  auto& o = oracle();
  REQUIRE(o.gguf_get_n_kv(ctx) == static_cast<std::int64_t>(kvs.size()));
  for (std::size_t i = 0; i < kvs.size(); ++i) {
    const auto id = static_cast<std::int64_t>(i);
    const kv_case& kv = kvs[i];
    CAPTURE(kv.key);
    CHECK(std::string(o.gguf_get_key(ctx, id)) == kv.key);
    CHECK(o.gguf_find_key(ctx, kv.key.c_str()) == id);
    REQUIRE(o.gguf_get_kv_type(ctx, id) == static_cast<int>(kv.value.type()));
    CHECK(std::string(o.gguf_type_name(o.gguf_get_kv_type(ctx, id))) ==
          std::string(sbgq::gguf_value_type_name(kv.value.type())));
    if (const std::string* s = kv.value.get_string_if()) {
      CHECK(std::string(o.gguf_get_val_str(ctx, id)) == *s);
    } else if (const gguf_array* a = kv.value.get_array_if()) {
      REQUIRE(o.gguf_get_arr_type(ctx, id) == static_cast<int>(a->element_type()));
      REQUIRE(o.gguf_get_arr_n(ctx, id) == a->size());
      if (a->element_type() == gguf_value_type::string) {
        for (std::size_t j = 0; j < a->size(); ++j) CHECK(std::string(o.gguf_get_arr_str(ctx, id, j)) == a->strings()[j]);
      } else if (a->size() > 0) {
        CHECK(std::memcmp(o.gguf_get_arr_data(ctx, id), a->raw_bytes().data(), a->raw_bytes().size()) == 0);
      }
    } else {
      const auto expect = scalar_bytes(kv.value);
      CHECK(std::memcmp(o.gguf_get_val_data(ctx, id), expect.data(), expect.size()) == 0);
    }
  }
}

struct tensor_case {
  std::string name;
  ggml_type type;
  std::vector<std::int64_t> ne;
};

std::uint64_t nbytes_of(const tensor_case& t) {
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
  for (std::size_t j = 0; j < t.ne.size(); ++j) ne[j] = t.ne[j];
  return *sbgq::detail::gguf_check_tensor(t.name, static_cast<std::uint32_t>(t.type), ne);
}

// Several types (block sizes 1, 32, 256) and 1-D..4-D shapes. The last dim is never 1,
// so ggml's writer (which trims trailing 1s from n_dims) writes the same records.
const std::vector<tensor_case> tensor_cases = {
    {"token_embd.weight", ggml_type::f16, {64, 5}},
    {"blk.0.attn_norm.weight", ggml_type::f32, {37}},
    {"blk.0.ffn_up.weight", ggml_type::q8_0, {96, 3, 2}},
    {"blk.0.ffn_down.weight", ggml_type::q4_k, {256, 2, 1, 3}},
    {"blk.0.attn_q.weight", ggml_type::iq4_xs, {512, 2}},
    {"output.weight", ggml_type::bf16, {3, 7}},
    {"blk.0.ssm_a", ggml_type::f32, {1}},
};

}  // namespace

// =====================================================================================
TEST_SUITE("gguf") {

TEST_CASE("value model: exact types, ordered records, typed getters with clear errors") {
  sbgq::gguf_metadata m;
  REQUIRE(m.add("b", gguf_value(std::int32_t{-3})).has_value());
  REQUIRE(m.add("a", gguf_value(std::uint32_t{7})).has_value());
  REQUIRE(m.add("s", gguf_value("text")).has_value());
  REQUIRE(m.add("arr", gguf_value(gguf_array::of<std::uint32_t>({1, 2, 3}))).has_value());
  CHECK(m[0].key == "b");
  CHECK(m[1].key == "a");
  CHECK(m.index_of("s") == 2);

  CHECK(*m.get<std::uint32_t>("a") == 7u);
  CHECK(*m.get<std::int32_t>("b") == -3);
  CHECK(*m.get_string("s") == "text");
  CHECK(*m.get_array_of<std::uint32_t>("arr") == std::vector<std::uint32_t>{1, 2, 3});

  auto wrong = m.get<std::uint32_t>("b");
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.error().code == error_code::bad_dtype);
  CHECK(wrong.error().message() == "[sbgq.gguf.bad_dtype] key 'b' has type i32, expected u32");
  auto missing = m.get<float>("nope");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == error_code::not_found);
  CHECK(missing.error().message() == "[sbgq.gguf.not_found] key 'nope' not found");
  auto wrong_elem = m.get_array_of<std::int32_t>("arr");
  REQUIRE_FALSE(wrong_elem.has_value());
  CHECK(wrong_elem.error().message() == "[sbgq.gguf.bad_dtype] key 'arr' is an array of u32, expected an array of i32");
  auto not_array = m.get_array("a");
  REQUIRE_FALSE(not_array.has_value());
  CHECK(not_array.error().message().find("has type u32, expected arr") != std::string::npos);
  CHECK(!m.get_optional<std::uint32_t>("missing")->has_value());
  CHECK(**m.get_optional<std::uint32_t>("a") == 7u);
  CHECK_FALSE(m.get_optional<std::uint16_t>("a").has_value());

  auto dup = m.add("a", gguf_value(std::uint32_t{1}));
  REQUIRE_FALSE(dup.has_value());
  CHECK(dup.error().code == error_code::duplicate);
  CHECK(dup.error().message().find("'a'") != std::string::npos);
  CHECK(m.add("", gguf_value(true)).error().code == error_code::invalid_argument);
  REQUIRE(m.set("a", gguf_value(std::uint32_t{9})).has_value());  // replaced in place
  CHECK(m.index_of("a") == 1);
  CHECK(*m.get<std::uint32_t>("a") == 9u);
  CHECK(m.remove("b"));
  CHECK(m.index_of("a") == 0);
  CHECK(m.size() == 3);

  CHECK(to_string(gguf_value(std::int8_t{-5})) == "-5");
  CHECK(to_string(gguf_value(std::uint8_t{200})) == "200");
  CHECK(to_string(gguf_value(0.1f)) == "0.100000001");
  CHECK(to_string(gguf_value(true)) == "true");
  CHECK(to_string(gguf_value("a b")) == "\"a b\"");
  CHECK(to_string(gguf_value(gguf_array::of<std::int32_t>({1, -2, 3})), 2) == "[1, -2, ... (3 total)]");
  CHECK(to_string(gguf_value(gguf_array::of(std::vector<std::string>{"x", "y"}))) == "[\"x\", \"y\"]");
  CHECK(to_string(gguf_value(gguf_array::empty(gguf_value_type::float32))) == "[]");
  // The variant index is the wire id.
  for (const auto& kv : every_value_type()) CHECK(static_cast<std::uint32_t>(kv.value.type()) == kv.value.variant().index());
  for (std::uint32_t t = 0; t < sbgq::gguf_value_type_count; ++t)
    CHECK(std::string(sbgq::gguf_value_type_name(static_cast<gguf_value_type>(t))) == oracle().gguf_type_name(static_cast<int>(t)));
}

TEST_CASE("our writer -> llama.cpp's reader: every value type, tensors of several types and shapes") {
  auto& o = oracle();
  for (std::uint32_t align : {0u, 32u, 64u}) {  // 0: no general.alignment key (default 32)
    CAPTURE(align);
    const std::string path = tmp_path("ours_" + std::to_string(align) + ".gguf");
    auto kvs = every_value_type();
    if (align != 0) kvs.insert(kvs.begin() + 1, kv_case{"general.alignment", gguf_value(align)});
    const std::uint64_t A = align == 0 ? 32 : align;

    sbgq::test::rng r(1234 + align);
    std::vector<std::vector<std::byte>> data;
    for (const auto& t : tensor_cases) data.push_back(random_bytes(r, static_cast<std::size_t>(nbytes_of(t))));

    std::uint64_t planned_header = 0;  // header_bytes() before the types are chosen
    {
      auto w = sbgq::gguf_writer::create(path);
      REQUIRE(w.has_value());
      for (const auto& kv : kvs) REQUIRE(w->add(kv.key, kv.value).has_value());
      std::vector<sbgq::tensor_desc> untyped;  // the names and shapes, every type f32
      for (const auto& t : tensor_cases) {
        sbgq::tensor_desc d;
        d.name = t.name;
        d.n_dims = static_cast<std::uint32_t>(t.ne.size());
        for (std::size_t j = 0; j < t.ne.size(); ++j) d.ne[j] = t.ne[j];
        untyped.push_back(d);
      }
      planned_header = w->header_bytes(untyped);
      for (std::size_t i = 0; i < tensor_cases.size(); ++i) {
        const auto& t = tensor_cases[i];
        auto id = w->add_tensor(t.name, t.type, t.ne);
        REQUIRE(id.has_value());
        CHECK(*id == i);
      }
      for (std::size_t i = 0; i < tensor_cases.size(); ++i) {
        if (i == 3) {  // stream the q4_K tensor in uneven chunks
          const auto& d = data[i];
          std::size_t pos = 0, step = 1;
          while (pos < d.size()) {
            const std::size_t n = std::min(step, d.size() - pos);
            REQUIRE(w->write_tensor_chunk(i, std::span<const std::byte>(d).subspan(pos, n)).has_value());
            pos += n;
            step = step * 3 + 1;
          }
        } else if (i == 1) {
          REQUIRE(w->write_tensor_data(tensor_cases[i].name, data[i]).has_value());
        } else {
          REQUIRE(w->write_tensor_data(i, data[i]).has_value());
        }
      }
      CHECK(w->next_tensor() == tensor_cases.size());
      CHECK(w->alignment() == A);
      REQUIRE(w->finish().has_value());
    }

    // llama.cpp, metadata only.
    sbgq::test::oracle_gguf g(path);
    REQUIRE_MESSAGE(g.ok(), o.last_log);
    void* ctx = g.get();
    CHECK(o.gguf_get_version(ctx) == 3u);
    CHECK(o.gguf_get_alignment(ctx) == A);
    check_llama_kv(ctx, kvs);
    const auto file = read_all(path);
    const std::uint64_t data_off = o.gguf_get_data_offset(ctx);
    CHECK(data_off % A == 0);
    CHECK(planned_header == data_off);
    REQUIRE(o.gguf_get_n_tensors(ctx) == static_cast<std::int64_t>(tensor_cases.size()));
    std::uint64_t expect_off = 0;
    for (std::size_t i = 0; i < tensor_cases.size(); ++i) {
      const auto& t = tensor_cases[i];
      const auto id = static_cast<std::int64_t>(i);
      CAPTURE(t.name);
      CHECK(std::string(o.gguf_get_tensor_name(ctx, id)) == t.name);
      CHECK(o.gguf_find_tensor(ctx, t.name.c_str()) == id);
      CHECK(o.gguf_get_tensor_type(ctx, id) == static_cast<int>(t.type));
      const std::int64_t* ne = o.gguf_get_tensor_ne(ctx, id);
      for (std::size_t j = 0; j < 4; ++j) CHECK(ne[j] == (j < t.ne.size() ? t.ne[j] : 1));
      CHECK(o.gguf_get_tensor_size(ctx, id) == data[i].size());
      CHECK(o.gguf_get_tensor_offset(ctx, id) == expect_off);
      REQUIRE(data_off + expect_off + data[i].size() <= file.size());
      CHECK(std::memcmp(file.data() + data_off + expect_off, data[i].data(), data[i].size()) == 0);
      // zero padding after the tensor
      for (std::uint64_t k = expect_off + data[i].size(); k < sbgq::detail::align_up(expect_off + data[i].size(), A); ++k)
        CHECK(file[static_cast<std::size_t>(data_off + k)] == std::byte{0});
      expect_off = sbgq::detail::align_up(expect_off + data[i].size(), A);
    }
    CHECK(file.size() == data_off + expect_off);  // the last tensor is padded too

    // llama.cpp with no_alloc = false reads the whole padded data section.
    void* gctx = nullptr;
    void* full = o.gguf_init_from_file(path.c_str(), sbgq::test::gguf_init_params{false, &gctx});
    CHECK_MESSAGE(full != nullptr, o.last_log);
    if (full) o.gguf_free(full);
    if (gctx) o.ggml_free(gctx);

    // And our own reader agrees with everything.
    auto f = sbgq::gguf_file::open(path);
    REQUIRE_MESSAGE(f.has_value(), f.error().message());
    CHECK(f->version() == 3u);
    CHECK(f->alignment() == A);
    CHECK(f->data_offset() == data_off);
    REQUIRE(f->metadata().size() == kvs.size());
    for (std::size_t i = 0; i < kvs.size(); ++i) {
      CHECK(f->metadata()[i].key == kvs[i].key);
      CHECK(f->metadata()[i].value == kvs[i].value);
    }
    REQUIRE(f->tensors().size() == tensor_cases.size());
    for (std::size_t i = 0; i < tensor_cases.size(); ++i) {
      const auto& ti = f->tensors()[i];
      CHECK(ti.name == tensor_cases[i].name);
      CHECK(ti.n_dims == tensor_cases[i].ne.size());
      CHECK(ti.offset == o.gguf_get_tensor_offset(ctx, static_cast<std::int64_t>(i)));
      const auto d = f->tensor_data(i);
      REQUIRE(d.size() == data[i].size());
      CHECK(std::memcmp(d.data(), data[i].data(), d.size()) == 0);
    }
    CHECK(f->tensor_data("output.weight")->size() == data[5].size());
    CHECK(f->tensor_data("nope").error().code == error_code::not_found);
  }
}

TEST_CASE("llama.cpp's writer -> our reader, and our writer rewrites it byte for byte") {
  auto& o = oracle();
  const auto kvs = every_value_type();

  // Build the same content in a llama.cpp gguf_context.
  void* g = o.gguf_init_empty();
  REQUIRE(g != nullptr);
  for (const auto& kv : kvs) {
    const char* k = kv.key.c_str();
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::uint8_t>) o.gguf_set_val_u8(g, k, x);
          else if constexpr (std::is_same_v<T, std::int8_t>) o.gguf_set_val_i8(g, k, x);
          else if constexpr (std::is_same_v<T, std::uint16_t>) o.gguf_set_val_u16(g, k, x);
          else if constexpr (std::is_same_v<T, std::int16_t>) o.gguf_set_val_i16(g, k, x);
          else if constexpr (std::is_same_v<T, std::uint32_t>) o.gguf_set_val_u32(g, k, x);
          else if constexpr (std::is_same_v<T, std::int32_t>) o.gguf_set_val_i32(g, k, x);
          else if constexpr (std::is_same_v<T, float>) o.gguf_set_val_f32(g, k, x);
          else if constexpr (std::is_same_v<T, bool>) o.gguf_set_val_bool(g, k, x);
          else if constexpr (std::is_same_v<T, std::string>) o.gguf_set_val_str(g, k, x.c_str());
          else if constexpr (std::is_same_v<T, std::uint64_t>) o.gguf_set_val_u64(g, k, x);
          else if constexpr (std::is_same_v<T, std::int64_t>) o.gguf_set_val_i64(g, k, x);
          else if constexpr (std::is_same_v<T, double>) o.gguf_set_val_f64(g, k, x);
          else if constexpr (std::is_same_v<T, gguf_array>) {
            if (x.element_type() == gguf_value_type::string) {
              std::vector<const char*> p;
              for (const auto& s : x.strings()) p.push_back(s.c_str());
              o.gguf_set_arr_str(g, k, p.data(), p.size());
            } else {
              o.gguf_set_arr_data(g, k, static_cast<int>(x.element_type()), x.raw_bytes().data(), x.size());
            }
          }
        },
        kv.value.variant());
  }

  SUBCASE("metadata only") {
    const std::string theirs = tmp_path("llama_meta.gguf"), ours = tmp_path("ours_meta.gguf");
    REQUIRE(o.gguf_write_to_file(g, theirs.c_str(), false));
    auto f = sbgq::gguf_file::open(theirs);
    REQUIRE_MESSAGE(f.has_value(), f.error().message());
    CHECK(f->tensors().empty());
    REQUIRE(f->metadata().size() == kvs.size());
    for (std::size_t i = 0; i < kvs.size(); ++i) {
      CAPTURE(kvs[i].key);
      CHECK(f->metadata()[i].key == kvs[i].key);
      CHECK(f->metadata()[i].value == kvs[i].value);
    }
    // llama.cpp reports the unpadded end of the records as the data offset when there are
    // no tensors; so do we.
    sbgq::test::oracle_gguf og(theirs);
    REQUIRE(og.ok());
    CHECK(f->data_offset() == o.gguf_get_data_offset(og.get()));

    auto w = sbgq::gguf_writer::create(ours);
    REQUIRE(w.has_value());
    REQUIRE(w->add_all(f->metadata()).has_value());
    REQUIRE(w->finish().has_value());
    const auto a = read_all(theirs), b = read_all(ours);
    CHECK(a.size() == o.gguf_get_meta_size(g));
    CHECK(a.size() == b.size());
    CHECK(a == b);
  }

  SUBCASE("with tensors made by ggml") {
    // Real ggml tensors (ggml_init + ggml_new_tensor), added with gguf_add_tensor.
    void* mem = o.ggml_init(sbgq::test::ggml_init_params{std::size_t{8} << 20, nullptr, false});
    REQUIRE(mem != nullptr);
    sbgq::test::rng r(99);
    std::vector<std::vector<std::byte>> data;
    for (const auto& t : tensor_cases) {
      void* tensor = o.ggml_new_tensor(mem, static_cast<int>(t.type), static_cast<int>(t.ne.size()), t.ne.data());
      REQUIRE(tensor != nullptr);
      o.ggml_set_name(tensor, t.name.c_str());
      REQUIRE(o.ggml_nbytes(tensor) == nbytes_of(t));
      data.push_back(random_bytes(r, o.ggml_nbytes(tensor)));
      std::memcpy(o.ggml_get_data(tensor), data.back().data(), data.back().size());
      o.gguf_add_tensor(g, tensor);
    }
    const std::string theirs = tmp_path("llama_tensors.gguf"), ours = tmp_path("ours_tensors.gguf");
    REQUIRE(o.gguf_write_to_file(g, theirs.c_str(), false));

    auto f = sbgq::gguf_file::open(theirs);
    REQUIRE_MESSAGE(f.has_value(), f.error().message());
    sbgq::test::oracle_gguf og(theirs);
    REQUIRE(og.ok());
    CHECK(f->data_offset() == o.gguf_get_data_offset(og.get()));
    CHECK(f->alignment() == 32u);
    REQUIRE(f->metadata().size() == kvs.size());
    for (std::size_t i = 0; i < kvs.size(); ++i) CHECK(f->metadata()[i].value == kvs[i].value);
    REQUIRE(f->tensors().size() == tensor_cases.size());
    for (std::size_t i = 0; i < tensor_cases.size(); ++i) {
      const auto& ti = f->tensors()[i];
      const auto& t = tensor_cases[i];
      CAPTURE(t.name);
      CHECK(ti.name == t.name);
      CHECK(ti.type == t.type);
      CHECK(ti.n_dims == t.ne.size());
      for (std::size_t j = 0; j < 4; ++j) CHECK(ti.ne[j] == o.gguf_get_tensor_ne(og.get(), static_cast<std::int64_t>(i))[j]);
      CHECK(ti.offset == o.gguf_get_tensor_offset(og.get(), static_cast<std::int64_t>(i)));
      CHECK(ti.nbytes == o.gguf_get_tensor_size(og.get(), static_cast<std::int64_t>(i)));
      const auto d = f->tensor_data(i);
      REQUIRE(d.size() == data[i].size());
      CHECK(std::memcmp(d.data(), data[i].data(), d.size()) == 0);
    }

    // Rewrite with our writer from what our reader parsed: identical bytes.
    {
      auto w = sbgq::gguf_writer::create(ours);
      REQUIRE(w.has_value());
      REQUIRE(w->add_all(f->metadata()).has_value());
      for (const auto& ti : f->tensors()) REQUIRE(w->add_tensor(ti.name, ti.type, ti.shape()).has_value());
      for (std::size_t i = 0; i < f->tensors().size(); ++i) REQUIRE(w->write_tensor_data(i, f->tensor_data(i)).has_value());
      REQUIRE(w->finish().has_value());
    }
    const auto a = read_all(theirs), b = read_all(ours);
    CHECK(a.size() == b.size());
    CHECK(a == b);
    o.ggml_free(mem);
  }
  o.gguf_free(g);
}

TEST_CASE("the worked example of gguf-format.md section 4.4, byte by byte") {
  const bytes b = worked_example();
  REQUIRE(b.size() == 160);
  auto f = sbgq::gguf_file::parse(b.span());
  REQUIRE_MESSAGE(f.has_value(), f.error().message());
  CHECK(f->version() == 3u);
  CHECK(f->alignment() == 32u);
  CHECK(f->data_offset() == 128u);
  REQUIRE(f->metadata().size() == 1);
  CHECK(f->metadata()[0].key == "general.architecture");
  CHECK(*f->metadata().get_string("general.architecture") == "x");
  REQUIRE(f->tensors().size() == 1);
  const auto& t = f->tensors()[0];
  CHECK(t.name == "t");
  CHECK(t.type == ggml_type::f32);
  CHECK(t.n_dims == 1u);
  CHECK(t.ne == std::array<std::int64_t, 4>{8, 1, 1, 1});
  CHECK(t.offset == 0u);
  CHECK(t.nbytes == 32u);
  const auto d = f->tensor_data(0);
  REQUIRE(d.size() == 32);
  CHECK(d.data() == b.b.data() + 128);  // zero copy
  for (int i = 0; i < 8; ++i) {
    float x;
    std::memcpy(&x, d.data() + 4 * i, 4);
    CHECK(x == static_cast<float>(i) * 0.5f - 1.0f);
  }
  CHECK(llama_accepts(b.span()));

  // Our writer produces exactly these 160 bytes.
  const std::string path = tmp_path("worked_example.gguf");
  {
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("general.architecture", gguf_value("x")).has_value());
    REQUIRE(w->add_tensor("t", ggml_type::f32, {8}).has_value());
    REQUIRE(w->write_tensor_data(0, d).has_value());
    CHECK(w->data_offset() == 128u);
    REQUIRE(w->finish().has_value());
  }
  CHECK(read_all(path) == b.b);
}

TEST_CASE("valid corner cases are accepted by both readers") {
  SUBCASE("version 2") {
    bytes b;
    b.header(0, 1, 2).str("k").u32(4).u32(5);
    auto f = sbgq::gguf_file::parse(b.span());
    REQUIRE_MESSAGE(f.has_value(), f.error().message());
    CHECK(f->version() == 2u);
    CHECK(llama_accepts(b.span()));
  }
  SUBCASE("a 63-byte name, 0 dims (a scalar), a zero-element tensor, bool byte 2, empty arrays") {
    const std::string name63(63, 'n');
    bytes b;
    b.header(3, 3).str("k.bool").u32(7).u8(2).str("k.arr").u32(9).u32(8).u64(0).str("k.arr2").u32(9).u32(4).u64(0);
    b.tensor(name63, {}, 0, 0).tensor("z", {0, 4}, 12, 32).tensor("s", {3}, 1, 32).pad_to(32);
    b.zeros(32).zeros(32);  // data: 4 bytes of the scalar (padded), 0 bytes, 6 bytes (padded)
    auto f = sbgq::gguf_file::parse(b.span());
    REQUIRE_MESSAGE(f.has_value(), f.error().message());
    CHECK(*f->metadata().get<bool>("k.bool") == true);
    CHECK((*f->metadata().get_array("k.arr"))->element_type() == gguf_value_type::string);
    CHECK(f->tensors()[0].name == name63);
    CHECK(f->tensors()[0].n_dims == 0u);
    CHECK(f->tensors()[0].nbytes == 4u);
    CHECK(f->tensors()[1].nbytes == 0u);
    CHECK(f->tensor_data(1).empty());
    CHECK(llama_accepts(b.span()));
  }
}

TEST_CASE("malformed files: error code, message, offset; llama.cpp rejects them too") {
  SUBCASE("header") {
    expect_reject(bytes{}, error_code::truncated, "ends inside the magic", 0);
    expect_reject(bytes{}.raw("GGML").u32(3).i64(0).i64(0), error_code::bad_magic, "expected magic 'GGUF', found 'GGML'", 0);
    expect_reject(bytes{}.header(0, 0, 1), error_code::bad_version, "version 1 is no longer supported", 4);
    expect_reject(bytes{}.header(0, 0, 4), error_code::bad_version, "version 4 is newer", 4);
    expect_reject(bytes{}.header(0, 0, 0), error_code::bad_version, "version 0", 4);
    // A big-endian v3 file: the version bytes are 00 00 00 03.
    expect_reject(bytes{}.raw("GGUF").u32(0x03000000u).i64(0).i64(0), error_code::bad_version, "big-endian", 4);
    expect_reject(bytes{}.raw("GGUF").u32(3).u32(0), error_code::truncated, "inside n_tensors", 8);
    expect_reject(bytes{}.header(-1, 0), error_code::bad_value, "n_tensors is -1", 8);
    expect_reject(bytes{}.header(0, -5), error_code::bad_value, "n_kv is -5", 16);
    expect_reject(bytes{}.header(std::int64_t{1} << 40, 0), error_code::overflow, "n_tensors is 1099511627776, over the limit", 8);
    expect_reject(bytes{}.header(0, std::numeric_limits<std::int64_t>::max()), error_code::overflow, "n_kv is", 16);
    expect_reject(bytes{}.header(1000, 1000).zeros(100), error_code::truncated, "announces 1000 key/value records", 8);
  }
  SUBCASE("key/value records") {
    expect_reject(bytes{}.header(0, 1).u64(std::uint64_t{1} << 31).raw("k").zeros(16), error_code::overflow,
                  "key of record 0 has length 2147483648, over the 2^30 limit", 24);
    expect_reject(bytes{}.header(0, 1).u64(1000).raw("abcdefgh"), error_code::truncated,
                  "key of record 0 has length 1000 but only 8 bytes remain", 24);
    expect_reject(bytes{}.header(0, 1).str("").u32(0).u8(1).zeros(8), error_code::bad_value, "key of record 0 is empty", 24);
    expect_reject(bytes{}.header(0, 2).str("a").u32(0).u8(1).str("a").u32(0).u8(2), error_code::duplicate,
                  "duplicate key 'a' (records 0 and 1)", 38);
    expect_reject(bytes{}.header(0, 1).str("k").u32(13).u8(0).zeros(8), error_code::bad_dtype,
                  "key 'k' has invalid value type 13", 33);
    expect_reject(bytes{}.header(0, 1).str("k").u32(9).u32(9).u64(1).zeros(16), error_code::bad_dtype,
                  "array of arrays", 37);
    expect_reject(bytes{}.header(0, 1).str("k").u32(9).u32(99).u64(1).zeros(16), error_code::bad_dtype,
                  "invalid element type 99", 37);
    expect_reject(bytes{}.header(0, 1).str("k").u32(9).u32(0).u64(std::uint64_t{1} << 31).zeros(16), error_code::overflow,
                  "array of 2147483648 elements, over the 2^30 limit", 41);
    expect_reject(bytes{}.header(0, 1).str("k").u32(9).u32(12).u64(std::uint64_t{1} << 29).zeros(64), error_code::truncated,
                  "array of 536870912 f64", 41);
    expect_reject(bytes{}.header(0, 1).str("k").u32(9).u32(8).u64(1000).zeros(64), error_code::truncated,
                  "array of 1000 str", 41);
    expect_reject(bytes{}.header(0, 1).str("k").u32(9).u32(8).u64(2).str("ok").u64(std::uint64_t{1} << 40), error_code::overflow,
                  "string 1 of key 'k' has length 1099511627776", 59);
    expect_reject(bytes{}.header(0, 1).str("k").u32(8).u64(50).raw("short").zeros(8), error_code::truncated,
                  "string value of key 'k' has length 50 but only 13 bytes remain", 37);
    expect_reject(bytes{}.header(0, 1).str("k").u32(10).u32(0), error_code::truncated, "inside the u64 value of key 'k'", 37);
  }
  SUBCASE("general.alignment") {
    expect_reject(bytes{}.header(0, 1).str("general.alignment").u32(4).u32(48), error_code::bad_value,
                  "general.alignment is 48, not a power of two", 24);
    expect_reject(bytes{}.header(0, 1).str("general.alignment").u32(4).u32(0), error_code::bad_value,
                  "general.alignment is 0", 24);
    expect_reject(bytes{}.header(0, 1).str("general.alignment").u32(10).u64(64), error_code::bad_dtype,
                  "key 'general.alignment' must have type u32, found u64", 24);
  }
  SUBCASE("tensor infos") {
    // A tensor record starts at byte 24 (no KV records).
    expect_reject(bytes{}.header(2, 0).tensor("w", {32}, 0, 0).tensor("w", {32}, 0, 128).pad_to(32).zeros(256),
                  error_code::duplicate, "duplicate tensor name 'w' (tensors 0 and 1)", 57);
    expect_reject(bytes{}.header(1, 0).tensor(std::string(64, 'x'), {32}, 0, 0).pad_to(32).zeros(128), error_code::bad_value,
                  "is 64 bytes long; the limit is 63", 24);
    // NUL bytes in names: llama.cpp compares names as C strings, so it sees "a\0x" and
    // "a\0y" as duplicates but accepts one such name alone; we reject both files.
    expect_reject(bytes{}.header(2, 0).tensor(std::string("a\0x", 3), {8}, 0, 0).tensor(std::string("a\0y", 3), {8}, 0, 32).pad_to(32).zeros(64),
                  error_code::bad_value, "name 'a\\x00x' contains a NUL byte", 24);
    expect_reject(bytes{}.header(1, 0).tensor(std::string("a\0", 2), {8}, 0, 0).pad_to(32).zeros(32),
                  error_code::bad_value, "contains a NUL byte", 24, false);
    expect_reject(bytes{}.header(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).pad_to(32).zeros(32), error_code::bad_shape,
                  "tensor 'w' has 5 dimensions; at most 4", 33);
    expect_reject(bytes{}.header(1, 0).tensor("w", {4, -2}, 0, 0).pad_to(32).zeros(32), error_code::bad_shape,
                  "tensor 'w' dimension 1 has -2 elements, must be >= 0", 33);
    expect_reject(bytes{}.header(1, 0).tensor("w", {(std::int64_t{1} << 40) + 1, std::int64_t{1} << 30}, 0, 0).pad_to(32),
                  error_code::overflow, "2^63-1 or more elements", 33);
    // 2^32 x 2^32 elements: llama.cpp's element count wraps to 0, which skips its overflow
    // guard, and it accepts this header. We do not.
    expect_reject(bytes{}.header(1, 0).tensor("w", {std::int64_t{1} << 32, std::int64_t{1} << 32}, 0, 0).pad_to(32),
                  error_code::overflow, "2^63-1 or more elements", 33, false);
    CHECK(llama_accepts(bytes{}.header(1, 0).tensor("w", {std::int64_t{1} << 32, std::int64_t{1} << 32}, 0, 0).pad_to(32).span()));
    // The boundary of llama.cpp's rule (ne[0] < INT64_MAX / ne[1]), with 1-byte I8 elements.
    expect_reject(bytes{}.header(1, 0).tensor("w", {(std::int64_t{1} << 62) - 1, 2}, 24, 0).pad_to(32),
                  error_code::overflow, "2^63-1 or more elements", 33);
    expect_reject(bytes{}.header(1, 0).tensor("w", {std::int64_t{1} << 62}, 0, 0).pad_to(32), error_code::overflow,
                  "byte size over 2^64", 33);
    expect_reject(bytes{}.header(1, 0).tensor("w", {32}, 4, 0).pad_to(32).zeros(32), error_code::bad_dtype,
                  "tensor 'w' has ggml type 4 (q4_2), which was removed", 45);
    expect_reject(bytes{}.header(1, 0).tensor("w", {32}, 33, 0).pad_to(32).zeros(32), error_code::bad_dtype,
                  "ggml type 33 (q4_0_8_8), which was removed", 45);
    expect_reject(bytes{}.header(1, 0).tensor("w", {32}, 43, 0).pad_to(32).zeros(32), error_code::bad_dtype,
                  "unknown ggml type 43", 45);
    expect_reject(bytes{}.header(1, 0).tensor("w", {32}, 0xFFFFFFFFu, 0).pad_to(32).zeros(32), error_code::bad_dtype,
                  "unknown ggml type 4294967295", 45);
    expect_reject(bytes{}.header(1, 0).tensor("w", {33, 2}, 8, 0).pad_to(32).zeros(128), error_code::bad_shape,
                  "tensor 'w' of type q8_0 has ne[0] = 33, not a multiple of the block size 32", 33);
    expect_reject(bytes{}.header(1, 0).tensor("w", {128}, 12, 0).pad_to(32).zeros(256), error_code::bad_shape,
                  "not a multiple of the block size 256", 33);
  }
  SUBCASE("offsets and the data section") {
    // Two f32 tensors of 8 elements (32 bytes each, exactly one ALIGN unit).
    auto two = [](std::uint64_t off0, std::uint64_t off1) {
      return bytes{}.header(2, 0).tensor("a", {8}, 0, off0).tensor("b", {8}, 0, off1).pad_to(32).zeros(64);
    };
    CHECK(sbgq::gguf_file::parse(two(0, 32).span()).has_value());
    CHECK(llama_accepts(two(0, 32).span()));
    // offset fields are at 24 + 9 + 4 + 8 + 4 = 49 and 49 + 8 + 25 = 82
    expect_reject(two(0, 64), error_code::bad_range, "tensor 'b' has offset 64, expected 32", 82);
    expect_reject(two(32, 64), error_code::bad_range, "tensor 'a' has offset 32, expected 0", 49);
    expect_reject(two(0, 0), error_code::bad_range, "tensor 'b' has offset 0, expected 32", 82);
    // 5 f32 = 20 bytes, padded to 32: the second offset must be 32, not 20.
    expect_reject(bytes{}.header(2, 0).tensor("a", {5}, 0, 0).tensor("b", {8}, 0, 20).pad_to(32).zeros(64),
                  error_code::bad_range, "has offset 20, expected 32");
    // Data past EOF: llama.cpp's metadata reader does not look at the data, its model
    // loader does ("data is not within the file bounds"); only ours is checked here.
    expect_reject(bytes{}.header(2, 0).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 32).pad_to(32).zeros(40),
                  error_code::truncated, "tensor 'b' data [96 + 32, +32 bytes) ends past the end of the file (136 bytes)",
                  82, false);
    // The tensor infos end but the padding to the data section is missing.
    expect_reject(bytes{}.header(1, 0).tensor("a", {8}, 0, 0), error_code::truncated,
                  "the data section starts at byte 64", 57);
    // With general.alignment = 64 the data section starts at 128, not 96.
    expect_reject(bytes{}.header(1, 1).str("general.alignment").u32(4).u32(64).tensor("a", {8}, 0, 0).pad_to(32),
                  error_code::truncated, "padded to 64");
  }
}

TEST_CASE("every prefix of a valid file fails cleanly") {
  auto& o = oracle();
  const std::string path = tmp_path("prefix.gguf");
  {
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("general.architecture", gguf_value("qwen35")).has_value());
    REQUIRE(w->add("a.str", gguf_value(gguf_array::of(std::vector<std::string>{"x", "yz", ""}))).has_value());
    REQUIRE(w->add("a.i32", gguf_value(gguf_array::of<std::int32_t>({1, -2, 3}))).has_value());
    REQUIRE(w->add("s.f64", gguf_value(0.25)).has_value());
    REQUIRE(w->add("s.bool", gguf_value(true)).has_value());
    REQUIRE(w->add_tensor("a", ggml_type::f16, {5, 2}).has_value());
    REQUIRE(w->add_tensor("b", ggml_type::q8_0, {32}).has_value());
    sbgq::test::rng r(5);
    REQUIRE(w->write_tensor_data(0, random_bytes(r, 20)).has_value());
    REQUIRE(w->write_tensor_data(1, random_bytes(r, 34)).has_value());
    REQUIRE(w->finish().has_value());
  }
  const auto full = read_all(path);
  auto ok = sbgq::gguf_file::parse(full);
  REQUIRE(ok.has_value());
  const std::uint64_t data_start = ok->data_offset();
  const std::uint64_t last_end = data_start + ok->tensors()[1].offset + ok->tensors()[1].nbytes;
  int llama_checked = 0;
  for (std::size_t n = 0; n < full.size(); ++n) {
    CAPTURE(n);
    const std::span<const std::byte> prefix(full.data(), n);
    auto r = sbgq::gguf_file::parse(prefix);
    if (n >= last_end) {  // only the final padding is missing: accepted, like the model loader
      CHECK(r.has_value());
      continue;
    }
    REQUIRE_FALSE(r.has_value());
    CHECK((r.error().code == error_code::truncated || r.error().code == error_code::bad_range));
    CHECK(r.error().offset <= n);
    if (n < data_start) {  // llama.cpp needs everything up to the data section
      std::vector<std::byte> copy(prefix.begin(), prefix.end());  // exact-size heap buffer for ASan
      void* ctx = o.gguf_init_from_buffer(copy.data(), copy.size(), sbgq::test::gguf_init_params{true, nullptr});
      CHECK(ctx == nullptr);
      if (ctx) o.gguf_free(ctx);
      ++llama_checked;
    }
  }
  CHECK(llama_checked == static_cast<int>(data_start));
}

TEST_CASE("random mutations: we accept a file only if llama.cpp does, and reject more only for data bounds") {
  auto& o = oracle();
  // A small file with every structure: records of several kinds, 3 tensors.
  const std::string path = tmp_path("mutate.gguf");
  {
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("general.architecture", gguf_value("qwen35")).has_value());
    REQUIRE(w->add("general.alignment", gguf_value(std::uint32_t{32})).has_value());
    REQUIRE(w->add("a.str", gguf_value(gguf_array::of(std::vector<std::string>{"x", "yz"}))).has_value());
    REQUIRE(w->add("a.u16", gguf_value(gguf_array::of<std::uint16_t>({1, 2}))).has_value());
    REQUIRE(w->add("s.i8", gguf_value(std::int8_t{-1})).has_value());
    REQUIRE(w->add_tensor("a", ggml_type::f16, {5, 2}).has_value());
    REQUIRE(w->add_tensor("bb", ggml_type::q8_0, {32}).has_value());
    REQUIRE(w->add_tensor("c", ggml_type::f32, {2, 1, 2}).has_value());
    std::vector<std::byte> z(64);
    REQUIRE(w->write_tensor_data(0, std::span<const std::byte>(z).first(20)).has_value());
    REQUIRE(w->write_tensor_data(1, std::span<const std::byte>(z).first(34)).has_value());
    REQUIRE(w->write_tensor_data(2, std::span<const std::byte>(z).first(16)).has_value());
    REQUIRE(w->finish().has_value());
  }
  const auto base = read_all(path);
  REQUIRE(sbgq::gguf_file::parse(base).has_value());
  const std::size_t meta_end = static_cast<std::size_t>(sbgq::gguf_file::parse(base)->data_offset());
  sbgq::test::rng r(2024);
  int both_ok = 0, both_bad = 0, only_llama = 0, only_data = 0, only_nul = 0, only_wrap = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<std::byte> m = base;
    const int n_mut = 1 + static_cast<int>(r.next_u32() % 3);
    for (int k = 0; k < n_mut; ++k) {
      const std::size_t at = r.next_u32() % std::min(meta_end, m.size());  // in the metadata part
      switch (r.next_u32() % 4) {
        case 0: m[at] = static_cast<std::byte>(r.next_u32() & 0xff); break;           // random byte
        case 1: m[at] ^= static_cast<std::byte>(1u << (r.next_u32() % 8)); break;      // bit flip
        case 2: m[at] = static_cast<std::byte>(static_cast<std::uint8_t>(m[at]) + 1); break;  // +1
        default: m.resize(at + (r.next_u32() % (m.size() - at))); break;               // truncate
      }
      if (m.size() <= 1) break;
    }
    auto ours = sbgq::gguf_file::parse(m);
    void* ctx = o.gguf_init_from_buffer(m.data(), m.size(), sbgq::test::gguf_init_params{true, nullptr});
    const bool theirs = ctx != nullptr;
    if (ctx) o.gguf_free(ctx);
    CAPTURE(iter);
    if (ours.has_value()) {
      CHECK(theirs);  // never accept what llama.cpp rejects
      ++both_ok;
    } else if (theirs) {
      // Allowed only where llama.cpp's metadata reader is knowingly laxer than its loader.
      const std::string msg = ours.error().message();
      CAPTURE(msg);
      const bool data_bounds = msg.find("ends past the end of the file") != std::string::npos;
      const bool nul_name = msg.find("contains a NUL byte") != std::string::npos;
      const bool wrapped = msg.find("2^63-1 or more elements") != std::string::npos;
      CHECK((data_bounds || nul_name || wrapped));
      only_data += data_bounds;
      only_nul += nul_name;
      only_wrap += wrapped;
      ++only_llama;
    } else {
      ++both_bad;
    }
  }
  MESSAGE("mutants: both accept " << both_ok << ", both reject " << both_bad << ", only llama.cpp accepts "
                                  << only_llama << " (data past EOF " << only_data << ", NUL in a name " << only_nul
                                  << ", wrapped element count " << only_wrap << ")");
  CHECK(both_ok > 0);
  CHECK(both_bad > 0);
}

TEST_CASE("writer misuse gives clear errors; an abandoned writer leaves nothing") {
  const std::string path = tmp_path("misuse.gguf");
  fs::remove(path);
  std::vector<std::byte> d128(128), d100(100), d34(34);

  SUBCASE("declarations") {
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("k", gguf_value(std::uint32_t{1})).has_value());
    auto dup = w->add("k", gguf_value(std::uint32_t{2}));
    REQUIRE_FALSE(dup.has_value());
    CHECK(dup.error().code == error_code::duplicate);
    CHECK(dup.error().message() == "[sbgq.gguf.duplicate] duplicate metadata key 'k'");
    CHECK(w->set("k", gguf_value(std::uint32_t{3})).has_value());
    CHECK(w->add("", gguf_value(true)).error().code == error_code::invalid_argument);
    auto al = w->add("general.alignment", gguf_value(std::int32_t{32}));
    CHECK(al.error().code == error_code::bad_dtype);
    CHECK(al.error().message().find("must have type u32, got i32") != std::string::npos);
    CHECK(w->add("general.alignment", gguf_value(std::uint32_t{48})).error().code == error_code::bad_value);
    auto name64 = w->add_tensor(std::string(64, 'x'), ggml_type::f32, {4});
    CHECK(name64.error().code == error_code::invalid_argument);
    CHECK(name64.error().message().find("64 bytes long; the limit is 63") != std::string::npos);
    CHECK(w->add_tensor(std::string(63, 'x'), ggml_type::f32, {4}).has_value());
    CHECK(w->add_tensor("", ggml_type::f32, {4}).error().code == error_code::invalid_argument);
    CHECK(w->add_tensor(std::string("a\0b", 3), ggml_type::f32, {4}).error().code == error_code::invalid_argument);
    REQUIRE(w->add_tensor("t", ggml_type::f32, {32}).has_value());
    CHECK(w->add_tensor("t", ggml_type::f32, {32}).error().code == error_code::duplicate);
    CHECK(w->add_tensor("q", ggml_type::q4_k, {100}).error().code == error_code::bad_shape);
    CHECK(w->add_tensor("q", ggml_type::f32, {1, 2, 3, 4, 5}).error().code == error_code::invalid_argument);
    CHECK(w->add_tensor("q", ggml_type::f32, std::span<const std::int64_t>{}).error().code == error_code::invalid_argument);
    CHECK(w->add_tensor("q", ggml_type::f32, {4, -1}).error().code == error_code::bad_shape);
    CHECK(w->add_tensor("q", static_cast<ggml_type>(5), {32}).error().code == error_code::bad_dtype);
    CHECK(w->tensors().size() == 2);
    w->abandon();
  }
  SUBCASE("data: size, order, completeness") {
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("general.architecture", gguf_value("x")).has_value());
    REQUIRE(w->add_tensor("a", ggml_type::f32, {32}).has_value());
    REQUIRE(w->add_tensor("b", ggml_type::q8_0, {32}).has_value());
    auto wrong = w->write_tensor_data(0, d100);
    REQUIRE_FALSE(wrong.has_value());
    CHECK(wrong.error().code == error_code::size_mismatch);
    CHECK(wrong.error().message() == "[sbgq.gguf.size_mismatch] tensor 'a' (f32 [32]) is 128 bytes, got 100");
    auto order = w->write_tensor_data("b", d34);
    REQUIRE_FALSE(order.has_value());
    CHECK(order.error().code == error_code::invalid_argument);
    CHECK(order.error().message().find("tensor 'b' (index 1) written before tensor 'a' (index 0)") != std::string::npos);
    auto late = w->add("k", gguf_value(true));
    CHECK(late.error().code == error_code::invalid_argument);
    CHECK(late.error().message().find("after the header was written") != std::string::npos);
    CHECK(w->add_tensor("c", ggml_type::f32, {4}).error().code == error_code::invalid_argument);
    CHECK(w->write_tensor_data("nope", d34).error().code == error_code::invalid_argument);
    REQUIRE(w->write_tensor_chunk(0, std::span<const std::byte>(d128).first(100)).has_value());
    CHECK(w->write_tensor_data(0, d128).error().code == error_code::invalid_argument);  // partly chunked
    auto over = w->write_tensor_chunk(0, std::span<const std::byte>(d128).first(29));
    CHECK(over.error().code == error_code::size_mismatch);
    CHECK(over.error().message().find("has 28 of 128 bytes left, got a chunk of 29") != std::string::npos);
    REQUIRE(w->write_tensor_chunk(0, std::span<const std::byte>(d128).first(28)).has_value());
    CHECK(w->write_tensor_data(0, d128).error().message().find("tensor 'a' was already written") != std::string::npos);
    auto early = w->finish();
    REQUIRE_FALSE(early.has_value());
    CHECK(early.error().code == error_code::invalid_argument);
    CHECK(early.error().message().find("finish() before all tensor data was written: tensor 'b' (1 of 2) has 0 of 34 bytes") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(path));
    CHECK(files_starting_with(path).size() == 1);  // the temp file, still open
    REQUIRE(w->write_tensor_data(1, d34).has_value());
    REQUIRE(w->finish().has_value());
    CHECK(w->finish().error().code == error_code::invalid_argument);
    CHECK(w->write_tensor_data(1, d34).error().code == error_code::invalid_argument);
    CHECK(fs::exists(path));
    CHECK(files_starting_with(path) == std::vector<std::string>{path});
    CHECK(sbgq::gguf_file::open(path).has_value());
    fs::remove(path);
  }
  SUBCASE("abandoned writers leave no file and no temp file") {
    {
      auto w = sbgq::gguf_writer::create(path);
      REQUIRE(w.has_value());
      REQUIRE(w->add_tensor("a", ggml_type::f32, {32}).has_value());
      REQUIRE(w->add_tensor("b", ggml_type::f32, {32}).has_value());
      REQUIRE(w->write_tensor_data(0, d128).has_value());
      CHECK(files_starting_with(path).size() == 1);
    }  // destroyed before finish()
    CHECK(files_starting_with(path).empty());
    {
      auto w = sbgq::gguf_writer::create(path);
      REQUIRE(w.has_value());
    }
    CHECK(files_starting_with(path).empty());
  }
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("open() errors name the path") {
  auto r = sbgq::gguf_file::open(tmp_path("does_not_exist.gguf"));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::io_error);
  const std::string p = tmp_path("bad_magic.gguf");
  {
    std::ofstream f(p, std::ios::binary);
    f << "GGMLxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
  }
  auto b = sbgq::gguf_file::open(p);
  REQUIRE_FALSE(b.has_value());
  CHECK(b.error().code == error_code::bad_magic);
  CHECK(b.error().message() == "[sbgq.gguf.bad_magic] '" + p + "': expected magic 'GGUF', found 'GGML' (byte 0)");
  fs::remove(p);
}

}  // TEST_SUITE
