// Importance matrix files: accumulation, both file formats, llama.cpp's reader on our GGUF
// output, hand-built legacy files from imatrix.md section 3, and malformed files.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <sbgq/io/imatrix.hpp>
#include <string>
#include <vector>

#include "support/oracle.hpp"
#include "support/rng.hpp"

namespace fs = std::filesystem;

namespace {
std::string tmp(const std::string& name) {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "imatrix";
  fs::create_directories(dir);
  return (dir / name).string();
}
sbgq::imatrix sample() {
  sbgq::imatrix im;
  sbgq::test::rng r(7);
  std::vector<float> x(40 * 256);
  for (auto& v : x) v = r.normal();
  REQUIRE(im.accumulate("blk.0.ffn_up.weight", x.data(), 40, 256).has_value());
  REQUIRE(im.accumulate("blk.0.ffn_up.weight", x.data(), 24, 256).has_value());
  std::vector<float> y(16 * 768);
  for (auto& v : y) v = r.normal() * 3.0f;
  REQUIRE(im.accumulate("blk.0.ffn_down.weight", y.data(), 16, 768).has_value());
  im.entries["blk.1.attn_v.weight"] = {256, std::vector<float>(256, 0.0f), {0}};  // saw no token
  im.datasets = {"calib.txt"};
  im.chunk_count = 2;
  im.chunk_size = 32;
  return im;
}
void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  if (!b.empty()) std::fwrite(b.data(), 1, b.size(), f);  // fwrite(NULL, ...) is UB even for 0 bytes
  std::fclose(f);
}
template <class T>
void put(std::vector<unsigned char>& b, T v) {
  unsigned char tmp[sizeof(T)];
  std::memcpy(tmp, &v, sizeof(T));
  b.insert(b.end(), tmp, tmp + sizeof(T));
}
}  // namespace

TEST_CASE("accumulate adds x^2 per column in token order and counts rows") {
  sbgq::imatrix im;
  const float x[] = {1, 2, 3, -1, 0.5f, 2};
  REQUIRE(im.accumulate("w", x, 2, 3).has_value());
  const auto& e = im.entries.at("w");
  CHECK(e.sum2 == std::vector<float>{2.0f, 4.25f, 13.0f});
  CHECK(e.counts == std::vector<std::int64_t>{2});
  CHECK(im.weights("w") == std::vector<float>{1.0f, 2.125f, 6.5f});
  auto bad = im.accumulate("w", x, 1, 6);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == sbgq::error_code::size_mismatch);
  const float inf[] = {1e30f, 1e30f, 1e30f};
  CHECK(im.accumulate("w", inf, 1, 3).error().code == sbgq::error_code::not_finite);
  CHECK(im.weights("missing").empty());
}

TEST_CASE("GGUF imatrix: llama.cpp's reader sees the layout of imatrix.md section 2") {
  const auto im = sample();
  const std::string path = tmp("a.imatrix.gguf");
  REQUIRE(sbgq::write_imatrix_gguf(im, path).has_value());
  auto& o = sbgq::test::oracle();
  sbgq::test::oracle_gguf g(path);
  REQUIRE(g.ok());
  auto key = [&](const char* k) { return o.gguf_find_key(g.get(), k); };
  REQUIRE(key("imatrix.chunk_count") >= 0);
  CHECK(o.gguf_get_kv_type(g.get(), key("imatrix.chunk_count")) == 4);  // UINT32
  CHECK(*static_cast<const std::uint32_t*>(o.gguf_get_val_data(g.get(), key("imatrix.chunk_count"))) == 2);
  CHECK(o.gguf_get_kv_type(g.get(), key("imatrix.chunk_size")) == 4);
  CHECK(o.gguf_get_arr_type(g.get(), key("imatrix.datasets")) == 8);  // STRING
  CHECK(std::string(o.gguf_get_arr_str(g.get(), key("imatrix.datasets"), 0)) == "calib.txt");
  CHECK(std::string(o.gguf_get_val_str(g.get(), key("general.type"))) == "imatrix");
  CHECK(o.gguf_get_n_tensors(g.get()) == 6);
  // Sorted entry order, in_sum2 then counts, F32, shapes {n_in, 1} and {1, 1}.
  CHECK(std::string(o.gguf_get_tensor_name(g.get(), 0)) == "blk.0.ffn_down.weight.in_sum2");
  CHECK(std::string(o.gguf_get_tensor_name(g.get(), 1)) == "blk.0.ffn_down.weight.counts");
  const std::int64_t t = o.gguf_find_tensor(g.get(), "blk.0.ffn_up.weight.in_sum2");
  REQUIRE(t >= 0);
  CHECK(o.gguf_get_tensor_type(g.get(), t) == 0);
  CHECK(o.gguf_get_tensor_ne(g.get(), t)[0] == 256);
  CHECK(o.gguf_get_tensor_ne(g.get(), t)[1] == 1);
  // The data bytes are the raw sums.
  auto f = sbgq::gguf_file::open(path);
  REQUIRE(f.has_value());
  const auto raw = f->bytes().subspan(o.gguf_get_data_offset(g.get()) + o.gguf_get_tensor_offset(g.get(), t), 256 * 4);
  CHECK(std::memcmp(raw.data(), im.entries.at("blk.0.ffn_up.weight").sum2.data(), raw.size()) == 0);
  const std::int64_t c = o.gguf_find_tensor(g.get(), "blk.0.ffn_up.weight.counts");
  float count = 0;
  std::memcpy(&count, f->bytes().data() + o.gguf_get_data_offset(g.get()) + o.gguf_get_tensor_offset(g.get(), c), 4);
  CHECK(count == 64.0f);
}

TEST_CASE("GGUF imatrix round trip and the quantizer's weights") {
  const auto im = sample();
  const std::string path = tmp("b.imatrix.gguf");
  REQUIRE(sbgq::write_imatrix_gguf(im, path).has_value());
  auto back = sbgq::read_imatrix(path);
  REQUIRE_MESSAGE(back.has_value(), (back ? "" : back.error().message()));
  CHECK(back->entries.size() == 3);
  CHECK(back->datasets == im.datasets);
  CHECK(back->chunk_count == 2);
  CHECK(back->chunk_size == 32);
  for (const auto& [name, e] : im.entries) {
    CAPTURE(name);
    CHECK(back->entries.at(name).sum2 == e.sum2);
    CHECK(back->entries.at(name).counts == e.counts);
    CHECK(back->weights(name) == im.weights(name));
  }
  // A matrix that saw no token gets uniform weights 1.0 (imatrix.md 4.1).
  CHECK(back->weights("blk.1.attn_v.weight") == std::vector<float>(256, 1.0f));
  // Merging doubles sums and counts, so the weights stay the same.
  auto merged = *back;
  REQUIRE(merged.merge(*back).has_value());
  CHECK(merged.entries.at("blk.0.ffn_up.weight").counts[0] == 128);
  CHECK(merged.datasets.size() == 2);
}

TEST_CASE("legacy .dat: written as mean * ncall, read back as llama-quantize divides") {
  const auto im = sample();
  const std::string path = tmp("c.imatrix.dat");
  REQUIRE(sbgq::write_imatrix_dat(im, path).has_value());
  auto back = sbgq::read_imatrix(path);
  REQUIRE_MESSAGE(back.has_value(), (back ? "" : back.error().message()));
  CHECK(back->entries.size() == 2);  // the all-zero-count entry is skipped
  CHECK(back->chunk_count == 2);
  CHECK(back->datasets == im.datasets);
  // ncall = ceil(64 / 32) = 2 for ffn_up and ceil(16 / 32) = 1 for ffn_down.
  const auto& up = im.entries.at("blk.0.ffn_up.weight");
  const auto w = back->weights("blk.0.ffn_up.weight");
  REQUIRE(w.size() == 256);
  for (std::size_t i = 0; i < w.size(); ++i) REQUIRE(w[i] == ((up.sum2[i] / 64.0f) * 2.0f) / 2.0f);
}

TEST_CASE("legacy .dat built by hand from the spec") {
  std::vector<unsigned char> b;
  put<std::int32_t>(b, 1);
  const std::string name = "blk.0.attn_k.weight";
  put<std::int32_t>(b, static_cast<std::int32_t>(name.size()));
  b.insert(b.end(), name.begin(), name.end());
  put<std::int32_t>(b, 4);  // ncall
  put<std::int32_t>(b, 3);  // nval
  for (float v : {8.0f, 2.0f, 0.0f}) put(b, v);
  const std::string path = tmp("hand.dat");
  write_bytes(path, b);  // no trailer: very old files
  auto im = sbgq::read_imatrix(path);
  REQUIRE(im.has_value());
  CHECK(im->weights(name) == std::vector<float>{2.0f, 0.5f, 0.0f});
  CHECK(im->chunk_count == 0);
}

TEST_CASE("malformed imatrix files give clear errors") {
  struct bad_case {
    const char* what;
    std::vector<unsigned char> bytes;
    sbgq::error_code code;
    const char* needle;
  };
  auto entry = [](std::int32_t name_len, const std::string& name, std::int32_t ncall, std::int32_t nval, std::vector<float> vals) {
    std::vector<unsigned char> b;
    put<std::int32_t>(b, 1);
    put(b, name_len);
    b.insert(b.end(), name.begin(), name.end());
    put(b, ncall);
    put(b, nval);
    for (float v : vals) put(b, v);
    return b;
  };
  std::vector<unsigned char> dup = entry(1, "a", 1, 1, {1.0f});
  dup[0] = 2;
  put<std::int32_t>(dup, 1);
  dup.push_back('a');
  put<std::int32_t>(dup, 1);
  put<std::int32_t>(dup, 1);
  put(dup, 1.0f);
  const bad_case cases[] = {
      {"empty", {}, sbgq::error_code::truncated, "entry count"},
      {"negative count", {0xff, 0xff, 0xff, 0xff}, sbgq::error_code::bad_value, "entry count"},
      {"name past end", entry(100, "abc", 1, 1, {}), sbgq::error_code::truncated, "entry 0 name"},
      {"zero name", entry(0, "", 1, 1, {1.0f}), sbgq::error_code::bad_value, "name length"},
      {"values past end", entry(1, "a", 1, 1000, {1.0f}), sbgq::error_code::truncated, "'a': 1000 values"},
      {"negative nval", entry(1, "a", 1, -1, {}), sbgq::error_code::bad_value, "-1 values"},
      {"nan", entry(1, "a", 1, 1, {std::nanf("")}), sbgq::error_code::bad_value, "not finite"},
      {"negative value", entry(1, "a", 1, 1, {-1.0f}), sbgq::error_code::bad_value, "negative"},
      {"duplicate", dup, sbgq::error_code::duplicate, "appears twice"},
  };
  for (const auto& bc : cases) {
    CAPTURE(bc.what);
    const std::string path = tmp(std::string("bad_") + bc.what + ".dat");
    write_bytes(path, bc.bytes);
    auto r = sbgq::read_imatrix(path);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == bc.code);
    CAPTURE(r.error().message());
    CHECK(r.error().message().find(bc.needle) != std::string::npos);
    CHECK(r.error().message().find(path) != std::string::npos);
  }
  // GGUF files: a pair with one half missing, and a missing required key.
  {
    const std::string path = tmp("half.gguf");
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("imatrix.datasets", sbgq::gguf_array::of(std::vector<std::string>{})).has_value());
    REQUIRE(w->add("imatrix.chunk_count", std::uint32_t{1}).has_value());
    REQUIRE(w->add("imatrix.chunk_size", std::uint32_t{1}).has_value());
    REQUIRE(w->add_tensor("x.in_sum2", sbgq::ggml_type::f32, {4, 1}).has_value());
    const float v[4] = {1, 2, 3, 4};
    REQUIRE(w->write_tensor_data("x.in_sum2", std::as_bytes(std::span<const float>(v))).has_value());
    REQUIRE(w->finish().has_value());
    auto r = sbgq::read_imatrix(path);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::not_found);
    CHECK(r.error().message().find("no counts tensor") != std::string::npos);
  }
  // Shapes with a 4th dimension: {4, 1} sums and {1, 1, 1, 2} counts (2 counts for one
  // matrix), or {4, 1, 1, 2} sums and {1, 1} counts. Before the fix the first was accepted
  // and weights() wrote past its output (the fuzzer's pattern: counts.size() * n_in >
  // sum2.size()); both are bad_shape now.
  for (const bool counts_4d : {true, false}) {
    CAPTURE(counts_4d);
    const std::string path = tmp("ne3.gguf");
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("imatrix.datasets", sbgq::gguf_array::of(std::vector<std::string>{})).has_value());
    REQUIRE(w->add("imatrix.chunk_count", std::uint32_t{1}).has_value());
    REQUIRE(w->add("imatrix.chunk_size", std::uint32_t{1}).has_value());
    const std::vector<std::int64_t> sum_ne = counts_4d ? std::vector<std::int64_t>{4, 1} : std::vector<std::int64_t>{4, 1, 1, 2};
    const std::vector<std::int64_t> cnt_ne = counts_4d ? std::vector<std::int64_t>{1, 1, 1, 2} : std::vector<std::int64_t>{1, 1};
    REQUIRE(w->add_tensor("x.in_sum2", sbgq::ggml_type::f32, sum_ne).has_value());
    REQUIRE(w->add_tensor("x.counts", sbgq::ggml_type::f32, cnt_ne).has_value());
    const std::vector<float> sums(counts_4d ? 4 : 8, 1.0f), counts(counts_4d ? 2 : 1, 1.0f);
    REQUIRE(w->write_tensor_data("x.in_sum2", std::as_bytes(std::span<const float>(sums))).has_value());
    REQUIRE(w->write_tensor_data("x.counts", std::as_bytes(std::span<const float>(counts))).has_value());
    REQUIRE(w->finish().has_value());
    auto r = sbgq::read_imatrix(path);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::bad_shape);
    CHECK(r.error().message().find("'x': in_sum2 is " + std::string(counts_4d ? "[4, 1, 1, 1]" : "[4, 1, 1, 2]") +
                                   " and counts is " + (counts_4d ? "[1, 1, 1, 2]" : "[1, 1, 1, 1]") +
                                   ", expected {n_in, n_mat} and {1, n_mat}") != std::string::npos);
  }
  {
    const std::string path = tmp("nokey.gguf");
    auto w = sbgq::gguf_writer::create(path);
    REQUIRE(w.has_value());
    REQUIRE(w->add("imatrix.datasets", sbgq::gguf_array::of(std::vector<std::string>{})).has_value());
    REQUIRE(w->add("imatrix.chunk_count", std::int32_t{1}).has_value());  // wrong type
    REQUIRE(w->finish().has_value());
    auto r = sbgq::read_imatrix(path);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::bad_dtype);
    CHECK(r.error().message().find("imatrix.chunk_count") != std::string::npos);
  }
}

TEST_CASE("entries are checked against the model's tensors") {
  const auto im = sample();
  auto n_in = [](const std::string& name) -> std::int64_t {
    if (name == "blk.0.ffn_up.weight" || name == "blk.1.attn_v.weight") return 256;
    if (name == "blk.0.ffn_down.weight") return 768;
    return -1;
  };
  CHECK(sbgq::check_imatrix_against(im, n_in).has_value());
  auto wrong = [](const std::string& name) -> std::int64_t { return name == "blk.0.ffn_down.weight" ? 512 : 256; };
  auto r = sbgq::check_imatrix_against(im, wrong);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find("768 values, the tensor has 512 columns") != std::string::npos);
  auto none = [](const std::string&) -> std::int64_t { return -1; };
  CHECK(sbgq::check_imatrix_against(im, none).error().message().find("matches no tensor") != std::string::npos);
}
