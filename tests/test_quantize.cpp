// sbgq quantize against llama.cpp's own llama_model_quantize (libllama v0.5.0):
//   - the tiny Qwen3.5 model (F32, F16 and BF16 GGUF from our converter, checked against
//     libllama elsewhere), quantized by both with the same ftype, imatrix weights (a real
//     imatrix collected from calib.txt), overrides and kv overrides: the files must be
//     byte-identical (same metadata, tensor order, types and bytes), at every SIMD level;
//   - the type choice alone on a model with the 9B tensor list (real row lengths, 2 rows
//     each) for every preset, and on one with odd row lengths (shape fallbacks);
//   - the type choice against the spec's worked examples (9B, tiny), an independent
//     expectation;
//   - quantized files load and decode in libllama; bad inputs give clear errors and leave
//     no file behind.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sbgq/calibrate.hpp>
#include <sbgq/convert.hpp>
#include <sbgq/quantize.hpp>
#include <sbgq/model/tokenizer.hpp>
#include <sbgq/model/weights.hpp>
#include <string>
#include <vector>

#include "support/oracle.hpp"
#include "support/rng.hpp"

namespace fs = std::filesystem;
using sbgq::ggml_type;
using sbgq::llama_ftype;
using sbgq::test::oracle;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

const std::string model_dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";

std::string tmp(const std::string& name) {
  static const fs::path dir = [] {
    fs::path d = fs::path(SBGQ_TEST_TMP_DIR) / "quantize";
    fs::create_directories(d);
    return d;
  }();
  return (dir / name).string();
}

/// The tiny model as our converter writes it (MTP block included, as llama.cpp's).
const std::string& tiny_gguf(ggml_type t) {
  static std::map<ggml_type, std::string> cache;
  auto it = cache.find(t);
  if (it != cache.end()) return it->second;
  const std::string p = tmp("tiny-" + std::string(sbgq::type_name(t)) + ".gguf");
  sbgq::convert_options opt;
  opt.outtype = t;
  auto r = sbgq::convert_checkpoint(model_dir, p, opt);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
  return cache.emplace(t, p).first->second;
}

/// A real importance matrix: 2 chunks of 128 tokens of calib.txt through our forward
/// pass (collect_calibration is checked against libllama's activations in
/// test_calibrate.cpp). Entries for blocks 0-7; the MTP block has none.
const sbgq::imatrix& tiny_imatrix() {
  static const sbgq::imatrix im = [] {
    auto cfg = sbgq::load_qwen35_config(model_dir);
    REQUIRE(cfg.has_value());
    auto file = sbgq::gguf_file::open(tiny_gguf(ggml_type::f32));
    REQUIRE(file.has_value());
    sbgq::gguf_weight_provider p(*file, *cfg, 2);
    std::ifstream f(std::string(SBGQ_SHARED_DIR) + "/data/calib.txt");
    const std::string text((std::istreambuf_iterator<char>(f)), {});
    auto tok = sbgq::tokenizer::load(model_dir + "/tokenizer.json", 8192);
    REQUIRE(tok.has_value());
    auto ids = tok->encode(text);
    REQUIRE(ids.has_value());
    sbgq::calibration_options opt;
    opt.ctx = 128;
    opt.max_chunks = 2;
    opt.n_threads = 2;
    opt.dataset = "calib.txt";
    auto r = sbgq::collect_calibration(*cfg, p, *ids, opt);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
    REQUIRE(r->im.entries.size() > 50);
    return std::move(r->im);
  }();
  return im;
}

// ---- the oracle side ------------------------------------------------------------------

/// Runs llama_model_quantize with the parameters equivalent to `o`. The imatrix weights
/// are derived here as llama-quantize does (S/count, 1 for an empty count), and the
/// provenance keys are built from llama-quantize's documented behaviour (imatrix.md 4.1),
/// not from our code. Returns the return code (0 = success).
/// `kv_args`: llama-quantize --override-kv arguments, parsed here as llama.cpp's
/// string_parse_kv_override does (KEY=TYPE:VALUE, int/float/bool/str; llama-c-api.md 3.4)
/// and passed before the imatrix keys, as llama-quantize orders them. The imatrix entries
/// are filtered here by o.imatrix_include / o.imatrix_exclude as llama-quantize's
/// --include-weights / --exclude-weights do (substring matches; imatrix.md 4.1).
std::uint32_t run_oracle(const std::string& in, const std::string& out, const sbgq::quantize_options& o,
                         const std::vector<std::string>& kv_args = {}) {
  auto& lib = oracle();
  auto p = lib.llama_model_quantize_default_params();
  p.nthread = 2;
  p.ftype = static_cast<std::int32_t>(o.policy.ftype);
  p.output_tensor_type = o.policy.output_tensor_type ? static_cast<std::int32_t>(*o.policy.output_tensor_type) : 43;
  p.token_embedding_type =
      o.policy.token_embedding_type ? static_cast<std::int32_t>(*o.policy.token_embedding_type) : 43;
  p.pure = o.policy.pure;
  p.quantize_output_tensor = !o.policy.leave_output_tensor;
  p.allow_requantize = o.allow_requantize;
  std::vector<sbgq::test::llama_model_tensor_override> tt;
  for (const auto& t : o.policy.tensor_types) tt.push_back({t.pattern.c_str(), static_cast<std::int32_t>(t.type)});
  if (!tt.empty()) {
    tt.push_back({nullptr, 43});
    p.tt_overrides = tt.data();
  }
  std::vector<std::vector<float>> w;
  std::vector<sbgq::test::llama_model_imatrix_data> im;
  std::vector<sbgq::test::llama_model_kv_override> kv;
  for (const std::string& a : kv_args) {
    sbgq::test::llama_model_kv_override x{};
    const std::size_t eq = a.find('='), colon = a.find(':', eq);
    REQUIRE((eq != std::string::npos && colon != std::string::npos));
    std::strncpy(x.key, a.substr(0, eq).c_str(), 127);
    const std::string type = a.substr(eq + 1, colon - eq - 1), value = a.substr(colon + 1);
    if (type == "int") {
      x.tag = 0;
      x.val_i64 = std::atol(value.c_str());
    } else if (type == "float") {
      x.tag = 1;
      x.val_f64 = std::atof(value.c_str());
    } else if (type == "bool") {
      x.tag = 2;
      x.val_bool = value == "true";
    } else {
      REQUIRE(type == "str");
      x.tag = 3;
      std::strncpy(x.val_str, value.c_str(), 127);
    }
    kv.push_back(x);
  }
  auto used = [&](const std::string& name) {
    auto has = [&](const std::vector<std::string>& parts) {
      for (const auto& part : parts)
        if (name.find(part) != std::string::npos) return true;
      return false;
    };
    return (o.imatrix_include.empty() || has(o.imatrix_include)) && !has(o.imatrix_exclude);
  };
  std::size_t n_used = 0;
  if (o.importance)
    for (const auto& [name, e] : o.importance->entries) n_used += used(name) ? 1 : 0;
  if (o.importance && n_used > 0) {
    for (const auto& [name, e] : o.importance->entries) {
      if (!used(name)) continue;
      std::vector<float> v(e.sum2.size());
      const auto n_in = static_cast<std::size_t>(e.n_in);
      for (std::size_t m = 0; m < e.counts.size(); ++m)
        for (std::size_t i = 0; i < n_in; ++i)
          v[m * n_in + i] = e.counts[m] > 0 ? e.sum2[m * n_in + i] / static_cast<float>(e.counts[m]) : 1.0f;
      w.push_back(std::move(v));
    }
    std::size_t k = 0;
    for (const auto& [name, e] : o.importance->entries) {
      if (!used(name)) continue;
      im.push_back({name.c_str(), w[k].data(), w[k].size()});
      ++k;
    }
    im.push_back({nullptr, nullptr, 0});
    p.imatrix = im.data();
    if (o.imatrix_metadata) {
      auto str = [&](const char* key, const std::string& v) {
        sbgq::test::llama_model_kv_override x{};
        x.tag = 3;
        std::strncpy(x.key, key, 127);
        std::strncpy(x.val_str, v.c_str(), 127);
        kv.push_back(x);
      };
      auto num = [&](const char* key, std::int64_t v) {
        sbgq::test::llama_model_kv_override x{};
        x.tag = 0;
        std::strncpy(x.key, key, 127);
        x.val_i64 = v;
        kv.push_back(x);
      };
      str("quantize.imatrix.file", o.imatrix_file);
      if (!o.importance->datasets.empty()) str("quantize.imatrix.dataset", o.importance->datasets[0]);
      num("quantize.imatrix.entries_count", static_cast<std::int64_t>(n_used));
      if (o.importance->chunk_count > 0) num("quantize.imatrix.chunks_count", o.importance->chunk_count);
    }
  }
  if (!kv.empty()) {
    kv.push_back(sbgq::test::llama_model_kv_override{});
    p.kv_overrides = kv.data();
  }
  lib.last_log.clear();
  return lib.llama_model_quantize(in.c_str(), out.c_str(), &p);
}

std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), {});
  std::vector<std::byte> b(c.size());
  if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
  return b;
}

/// Both files: same keys in the same order with the same types and values (the header
/// bytes), same tensor infos, same tensor bytes; in the end the same file.
void require_same_file(const std::string& ours, const std::string& theirs) {
  auto a = sbgq::gguf_file::open(ours);
  auto b = sbgq::gguf_file::open(theirs);
  REQUIRE_MESSAGE(a.has_value(), (a ? "" : a.error().message()));
  REQUIRE_MESSAGE(b.has_value(), (b ? "" : b.error().message()));
  REQUIRE(a->metadata().size() == b->metadata().size());
  for (std::size_t i = 0; i < a->metadata().size(); ++i) {
    CAPTURE(i);
    CHECK(a->metadata()[i].key == b->metadata()[i].key);
    CHECK(a->metadata()[i].value.type() == b->metadata()[i].value.type());
  }
  REQUIRE(a->tensors().size() == b->tensors().size());
  int bad = 0;
  for (std::size_t i = 0; i < a->tensors().size(); ++i) {
    const auto& x = a->tensors()[i];
    const auto& y = b->tensors()[i];
    CAPTURE(x.name);
    CHECK(x.name == y.name);
    CHECK(sbgq::type_name(x.type) == sbgq::type_name(y.type));
    const auto dx = a->tensor_data(i), dy = b->tensor_data(i);
    const bool same = dx.size() == dy.size() && std::memcmp(dx.data(), dy.data(), dx.size()) == 0;
    if (!same && ++bad <= 5) MESSAGE("tensor bytes differ: " << x.name << " (" << sbgq::type_name(x.type) << ")");
  }
  CHECK(bad == 0);
  CHECK(a->data_offset() == b->data_offset());
  const auto fa = read_all(ours), fb = read_all(theirs);
  CHECK(fa.size() == fb.size());
  CHECK(fa == fb);
}

std::string simd_levels_message(const std::vector<sbgq::simd_level>& ran) {
  std::string s = "SIMD levels run:";
  for (auto l : ran) s += " " + std::string(sbgq::simd_level_name(l));
  s += "; skipped (unsupported by this CPU/build):";
  for (int l = static_cast<int>(sbgq::supported_simd_level()) + 1; l <= 2; ++l)
    s += " " + std::string(sbgq::simd_level_name(static_cast<sbgq::simd_level>(l)));
  return s;
}

/// Quantizes with sbgq (at each supported SIMD level if `all_levels`) and with
/// libllama, and requires identical files.
void check_against_oracle(const std::string& tag, const std::string& in, const sbgq::quantize_options& o,
                          bool all_levels = false, const std::vector<std::string>& kv_args = {}) {
  const std::string theirs = tmp(tag + "-llama.gguf"), ours = tmp(tag + "-sbgq.gguf");
  const std::uint32_t rc = run_oracle(in, theirs, o, kv_args);
  REQUIRE_MESSAGE(rc == 0, oracle().last_log);
  std::vector<sbgq::simd_level> levels;
  if (all_levels)
    for (int l = 0; l <= static_cast<int>(sbgq::supported_simd_level()); ++l) levels.push_back(static_cast<sbgq::simd_level>(l));
  else
    levels.push_back(sbgq::active_simd_level());
  for (auto level : levels) {
    CAPTURE(sbgq::simd_level_name(level));
    sbgq::simd_override cap(level);
    sbgq::quantize_options mine = o;
    mine.n_threads = 2;
    auto r = sbgq::quantize_file(in, ours, mine);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
    CHECK(r->file_size == fs::file_size(ours));
    require_same_file(ours, theirs);
  }
  if (all_levels) MESSAGE(tag << ": " << simd_levels_message(levels));
}

sbgq::quantize_options preset(llama_ftype ft, const sbgq::imatrix* im = nullptr) {
  sbgq::quantize_options o;
  o.policy.ftype = ft;
  o.importance = im;
  o.imatrix_file = "tiny-imatrix.gguf";
  o.n_threads = 2;
  return o;
}

// ---- synthetic models for the type choice ----------------------------------------------

sbgq::qwen35_config config_9b() {
  sbgq::qwen35_config c;
  c.hidden_size = 4096;
  c.intermediate_size = 12288;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 4;
  c.head_dim = 256;
  c.linear_num_key_heads = 16;
  c.linear_num_value_heads = 32;
  c.linear_key_head_dim = 128;
  c.linear_value_head_dim = 128;
  c.linear_conv_kernel_dim = 4;
  c.vocab_size = 248320;
  c.mtp_num_hidden_layers = 1;
  for (int l = 0; l < 32; ++l)
    c.layer_types.push_back(l % 4 == 3 ? sbgq::layer_kind::full_attention : sbgq::layer_kind::linear_attention);
  return c;
}

/// Tensor infos of a config's GGUF (types as a converter writes them: F32 for norms etc.).
std::vector<sbgq::tensor_desc> plan_infos(const sbgq::qwen35_config& c, bool mtp, ggml_type weight_type) {
  sbgq::tensor_plan_options po;
  po.include_mtp = mtp;
  std::vector<sbgq::tensor_desc> v;
  for (const auto& e : sbgq::qwen35_tensor_plan(c, po)) {
    sbgq::tensor_desc t;
    t.name = e.gguf_name;
    t.n_dims = static_cast<std::uint32_t>(e.ne.size());
    for (std::size_t j = 0; j < e.ne.size(); ++j) t.ne[j] = e.ne[j];
    t.type = e.keep_f32 || e.ne.size() < 2 ? ggml_type::f32 : weight_type;
    v.push_back(t);
  }
  return v;
}

/// Writes an F32 GGUF libllama's quantizer accepts: the tiny model's metadata with the
/// given layer/head counts, and `tensors` with their names, ne[0] / 16 when ne[0] >= 4096
/// (9B's 4096 and 12288 stay multiples of 256) and only 2 rows each: the quantizer reads
/// only hyper-parameters and ne[0] (modulo the block sizes) for its choices.
/// `ne0` may change a tensor's row length; `poke` may change one value.
void write_synthetic(const std::string& path, const std::vector<sbgq::tensor_desc>& tensors, std::int64_t n_layer,
                     std::int64_t n_head, std::int64_t n_head_kv,
                     const std::map<std::string, std::int64_t>& ne0 = {},
                     const std::pair<std::string, float>& poke = {}) {
  auto tiny = sbgq::gguf_file::open(tiny_gguf(ggml_type::f32));
  REQUIRE(tiny.has_value());
  auto w = sbgq::gguf_writer::create(path);
  REQUIRE(w.has_value());
  for (const auto& kv : tiny->metadata()) {
    sbgq::gguf_value v = kv.value;
    if (kv.key == "qwen35.block_count") v = sbgq::gguf_value(static_cast<std::uint32_t>(n_layer));
    if (kv.key == "qwen35.attention.head_count") v = sbgq::gguf_value(static_cast<std::uint32_t>(n_head));
    if (kv.key == "qwen35.attention.head_count_kv") v = sbgq::gguf_value(static_cast<std::uint32_t>(n_head_kv));
    if (kv.key == "qwen35.nextn_predict_layers") v = sbgq::gguf_value(std::uint32_t{0});
    REQUIRE(w->add(kv.key, v).has_value());
  }
  std::vector<std::vector<std::int64_t>> shapes;
  for (const auto& t : tensors) {
    std::vector<std::int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    if (ne[0] >= 4096) ne[0] /= 16;
    if (auto it = ne0.find(t.name); it != ne0.end()) ne[0] = it->second;
    if (ne.size() >= 2) ne.resize(2), ne[1] = 2;
    shapes.push_back(ne);
    REQUIRE(w->add_tensor(t.name, ggml_type::f32, ne).has_value());
  }
  sbgq::test::rng g(1234);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    std::size_t n = 1;
    for (auto d : shapes[i]) n *= static_cast<std::size_t>(d);
    std::vector<float> v(n);
    for (auto& x : v) x = g.uniform(-1.0f, 1.0f);
    if (tensors[i].name == poke.first) v[0] = poke.second;
    REQUIRE(w->write_tensor_data(i, std::span<const float>(v)).has_value());
  }
  REQUIRE(w->finish().has_value());
}

/// llama_model_quantize on `in` with `o`, then our choice on the same file: same types
/// and the same tensor order.
void check_types_against_oracle(const std::string& in, const sbgq::quantize_options& o, const std::string& tag) {
  const std::string out = tmp(tag + ".gguf");
  REQUIRE_MESSAGE(run_oracle(in, out, o) == 0, oracle().last_log);
  auto theirs = sbgq::gguf_file::open(out);
  REQUIRE(theirs.has_value());
  auto file = sbgq::gguf_file::open(in);
  REQUIRE(file.has_value());
  auto facts = sbgq::model_facts::from_metadata(file->metadata());
  REQUIRE(facts.has_value());
  auto plan = sbgq::choose_tensor_types(*facts, file->descriptions(), o.policy, o.importance && !o.importance->entries.empty());
  REQUIRE_MESSAGE(plan.has_value(), (plan ? "" : plan.error().message()));
  REQUIRE(plan->tensors.size() == theirs->tensors().size());
  int bad = 0;
  for (std::size_t i = 0; i < plan->tensors.size(); ++i) {
    const auto& c = plan->tensors[i];
    const auto& t = theirs->tensors()[i];
    if (c.name != t.name || c.type != t.type) {
      if (++bad <= 8)
        MESSAGE(tag << ": " << t.name << " libllama " << sbgq::type_name(t.type) << ", sbgq " << c.name << " "
                    << sbgq::type_name(c.type) << " (" << c.why << ")");
    }
  }
  CHECK_MESSAGE(bad == 0, tag);
  fs::remove(out);
}

}  // namespace

// =======================================================================================

TEST_CASE("quantization type names parse like llama-quantize's") {
  CHECK(sbgq::parse_quant_type("Q4_K_M").value() == llama_ftype::mostly_q4_k_m);
  CHECK(sbgq::parse_quant_type("q4_k_m").value() == llama_ftype::mostly_q4_k_m);
  CHECK(sbgq::parse_quant_type("Q4_K").value() == llama_ftype::mostly_q4_k_m);
  CHECK(sbgq::parse_quant_type("q5_k").value() == llama_ftype::mostly_q5_k_m);
  CHECK(sbgq::parse_quant_type("Q3_K").value() == llama_ftype::mostly_q3_k_m);
  CHECK(sbgq::parse_quant_type("iq4_xs").value() == llama_ftype::mostly_iq4_xs);
  CHECK(sbgq::parse_quant_type("30").value() == llama_ftype::mostly_iq4_xs);
  CHECK(sbgq::parse_quant_type("7").value() == llama_ftype::mostly_q8_0);
  CHECK(sbgq::parse_quant_type("bf16").value() == llama_ftype::mostly_bf16);
  for (const char* bad : {"", "Q4_0", "IQ2_XXS", "Q4_K_X", "2", "99999", "Q4_K_M "}) {
    CAPTURE(bad);
    auto r = sbgq::parse_quant_type(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::invalid_argument);
    CHECK(r.error().message().find("[sbgq.quantize.invalid_argument] unknown quantization type") == 0);
  }
  // Every preset's default type matches llama.cpp's ftype -> type table (gguf-format.md 6).
  for (const auto& p : sbgq::quant_presets) CHECK(sbgq::parse_quant_type(p.name).value() == p.ftype);

  auto o = sbgq::parse_tensor_type_override("ATTN_V=Q6_K");
  REQUIRE(o.has_value());
  CHECK(o->pattern == "attn_v");
  CHECK(o->type == ggml_type::q6_k);
  auto o2 = sbgq::parse_tensor_type_override(R"(blk\.(3|7)\.ffn_down=q8_0)");
  REQUIRE(o2.has_value());
  CHECK(o2->pattern == R"(blk\.(3|7)\.ffn_down)");
  auto o3 = sbgq::parse_tensor_type_override(R"(\D=f16)");  // lower-cased, as llama-quantize does
  REQUIRE(o3.has_value());
  CHECK(o3->pattern == R"(\d)");
  for (const char* bad : {"attn_v", "=q6_k", "attn_v=", "attn_v=q7_k", "(attn=q8_0"}) {
    CAPTURE(bad);
    auto r = sbgq::parse_tensor_type_override(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::invalid_argument);
    CHECK(r.error().message().find(bad) != std::string::npos);
  }
}

TEST_CASE("--tensor-type patterns std::regex cannot take safely are clear errors") {
  // 20,000 nested groups overflowed std::regex's recursive parser (SIGSEGV); 100 are
  // over name_pattern's depth limit; a{1000}{1000} would compile to a million states.
  const std::string deep = std::string(20000, '(') + "attn" + std::string(20000, ')');
  const std::string nested = std::string(100, '(') + "attn" + std::string(100, ')');
  struct bad_case {
    std::string pattern;
    const char* why;
  };
  for (const bad_case& c : {bad_case{deep, "longer than 1024 bytes"}, bad_case{nested, "nested more than 64 deep"},
                            bad_case{"a{1000}{1000}", "more than 10000 instructions"},
                            bad_case{"(?!attn)", "lookahead '(?!' is not supported at position 0"}}) {
    CAPTURE(c.pattern.substr(0, 40));
    auto r = sbgq::parse_tensor_type_override(c.pattern + "=q8_0");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::invalid_argument);
    CHECK(r.error().message().find("[sbgq.quantize.invalid_argument] tensor type override '" + c.pattern.substr(0, 40)) == 0);
    CHECK(r.error().message().find("bad regular expression (pattern '") != std::string::npos);
    CHECK(r.error().message().find(c.why) != std::string::npos);
    CHECK(r.error().message().size() < 400);  // long patterns are shown shortened
    // A policy built in code, not through the parser, is checked by the type choice.
    sbgq::quant_policy p;
    p.tensor_types.push_back({c.pattern, ggml_type::q8_0});
    auto plan = sbgq::choose_tensor_types(sbgq::model_facts{}, {}, p, false);
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.error().code == sbgq::error_code::invalid_argument);
    CHECK(plan.error().message().find("bad --tensor-type regular expression: pattern '") != std::string::npos);
    CHECK(plan.error().message().find(c.why) != std::string::npos);
  }
  // A backtracking bomb is an ordinary pattern: it compiles, and simply does not match.
  std::vector<sbgq::tensor_desc> t(1);
  t[0].name = "blk.0.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.weight";
  t[0].n_dims = 2;
  t[0].ne = {256, 256, 1, 1};
  t[0].type = ggml_type::f32;
  sbgq::quant_policy p;
  p.ftype = llama_ftype::mostly_q8_0;
  p.tensor_types.push_back(sbgq::parse_tensor_type_override("(a|aa)*c=q4_k").value());
  auto plan = sbgq::choose_tensor_types(sbgq::model_facts{}, t, p, false);
  REQUIRE(plan.has_value());
  CHECK(plan->tensors[0].type == ggml_type::q8_0);
}

TEST_CASE("visiting order: layer number as sscanf(\"blk.%d.\") reads it, then the name") {
  CHECK(sbgq::tensor_layer_key("output.weight") == -1);
  CHECK(sbgq::tensor_layer_key("blk.0.attn_v.weight") == 0);
  CHECK(sbgq::tensor_layer_key("blk.31.ffn_down.weight") == 31);
  CHECK(sbgq::tensor_layer_key("blk.x.ffn_down.weight") == -1);
  CHECK(sbgq::tensor_layer_key("blk.") == -1);
  std::vector<sbgq::tensor_desc> t(5);
  t[0].name = "blk.10.attn_q.weight";
  t[1].name = "token_embd.weight";
  t[2].name = "blk.9.ffn_up.weight";
  t[3].name = "output.weight";
  t[4].name = "blk.9.attn_qkv.weight";
  const auto order = sbgq::llama_tensor_order(t);
  CHECK(order == std::vector<std::size_t>{3, 1, 4, 2, 0});
  // use_more_bits for n = 32 (llama-type-selection.md 4): 16 layers.
  std::vector<int> more;
  for (int i = 0; i < 32; ++i)
    if (sbgq::use_more_bits(i, 32)) more.push_back(i);
  CHECK(more == std::vector<int>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31});
}

TEST_CASE("type choice on the Qwen3.5-9B tensor list matches the spec's worked example (section 8)") {
  const auto infos = plan_infos(config_9b(), false, ggml_type::bf16);
  const sbgq::model_facts facts{"qwen35", 32, 16, 4, 0, false};
  REQUIRE(facts.n_gqa() == 4);
  auto type_of = [](const sbgq::type_plan& p, const std::string& name) {
    for (const auto& c : p.tensors)
      if (c.name == name) return c.type;
    FAIL("no tensor " << name);
    return ggml_type::f32;
  };
  auto blk = [](int l, const char* n) { return "blk." + std::to_string(l) + "." + n + ".weight"; };
  sbgq::quant_policy q4;
  q4.ftype = llama_ftype::mostly_q4_k_m;
  auto p = sbgq::choose_tensor_types(facts, infos, q4, false);
  REQUIRE(p.has_value());
  CHECK(p->n_attention_wv == 32);
  CHECK(type_of(*p, "output.weight") == ggml_type::q6_k);
  CHECK(type_of(*p, "token_embd.weight") == ggml_type::q4_k);
  const std::vector<int> qkv_q6 = {0, 1, 2, 6, 9, 12, 18, 21, 24, 28, 29, 30};
  const std::vector<int> v_q6 = {3, 15, 27, 31};
  for (int l = 0; l < 32; ++l) {
    CAPTURE(l);
    const bool full = l % 4 == 3;
    const bool more = sbgq::use_more_bits(l, 32);
    if (full) {
      const bool q6 = std::find(v_q6.begin(), v_q6.end(), l) != v_q6.end();
      CHECK(type_of(*p, blk(l, "attn_v")) == (q6 ? ggml_type::q6_k : ggml_type::q4_k));
      for (const char* n : {"attn_q", "attn_k", "attn_output"}) CHECK(type_of(*p, blk(l, n)) == ggml_type::q4_k);
      CHECK(type_of(*p, "blk." + std::to_string(l) + ".attn_q_norm.weight") == ggml_type::f32);
    } else {
      const bool q6 = std::find(qkv_q6.begin(), qkv_q6.end(), l) != qkv_q6.end();
      CHECK(type_of(*p, blk(l, "attn_qkv")) == (q6 ? ggml_type::q6_k : ggml_type::q4_k));
      for (const char* n : {"attn_gate", "ssm_out", "ssm_alpha", "ssm_beta"}) CHECK(type_of(*p, blk(l, n)) == ggml_type::q4_k);
      CHECK(type_of(*p, blk(l, "ssm_conv1d")) == ggml_type::f32);
      CHECK(type_of(*p, "blk." + std::to_string(l) + ".ssm_a") == ggml_type::f32);
    }
    CHECK(type_of(*p, blk(l, "ffn_down")) == (more ? ggml_type::q6_k : ggml_type::q4_k));
    CHECK(type_of(*p, blk(l, "ffn_gate")) == ggml_type::q4_k);
    CHECK(type_of(*p, blk(l, "ffn_up")) == ggml_type::q4_k);
  }
  CHECK(p->n_fallback == 0);

  sbgq::quant_policy iq4;
  iq4.ftype = llama_ftype::mostly_iq4_xs;
  for (bool has_im : {false, true}) {
    CAPTURE(has_im);
    auto q = sbgq::choose_tensor_types(facts, infos, iq4, has_im);
    REQUIRE(q.has_value());
    CHECK(type_of(*q, "output.weight") == ggml_type::q6_k);
    CHECK(type_of(*q, "token_embd.weight") == ggml_type::iq4_xs);
    for (int l = 0; l < 32; ++l) {
      CAPTURE(l);
      CHECK(type_of(*q, blk(l, l % 4 == 3 ? "attn_v" : "attn_qkv")) == ggml_type::q5_k);  // n_gqa = 4
      CHECK(type_of(*q, blk(l, "ffn_down")) == (l < 4 && !has_im ? ggml_type::q5_k : ggml_type::iq4_xs));
      CHECK(type_of(*q, blk(l, "ffn_up")) == ggml_type::iq4_xs);
    }
  }
}

TEST_CASE("type choice on the tiny model matches gguf-format.md 6.1") {
  auto cfg = sbgq::load_qwen35_config(model_dir);
  REQUIRE(cfg.has_value());
  sbgq::quant_policy q4;
  q4.ftype = llama_ftype::mostly_q4_k_m;
  // Without the MTP block (8 layers): the spec's example, layers 0, 3, 6, 7.
  // With it (llama.cpp's converter default, block_count 9): use_more_bits(i, 9) adds 8.
  for (bool mtp : {false, true}) {
    CAPTURE(mtp);
    const auto infos = plan_infos(*cfg, mtp, ggml_type::f32);
    const sbgq::model_facts facts{"qwen35", mtp ? 9 : 8, 4, 2, 0, false};
    auto p = sbgq::choose_tensor_types(facts, infos, q4, false);
    REQUIRE(p.has_value());
    const std::vector<int> more = mtp ? std::vector<int>{0, 3, 6, 7, 8} : std::vector<int>{0, 3, 6, 7};
    for (const auto& c : p->tensors) {
      CAPTURE(c.name);
      const int l = sbgq::tensor_layer_key(c.name);
      const bool in_more = std::find(more.begin(), more.end(), l) != more.end();
      const auto cat = c.category;
      if (c.source_type == ggml_type::f32 && (c.n_dims < 2 || c.name.find("norm") != std::string::npos ||
                                              c.name.find("ssm_conv1d") != std::string::npos))
        CHECK(c.type == ggml_type::f32);
      else if (c.name == "output.weight")
        CHECK(c.type == ggml_type::q6_k);
      else if (cat == sbgq::tensor_category::attention_qkv || cat == sbgq::tensor_category::attention_v ||
               cat == sbgq::tensor_category::ffn_down)
        CHECK(c.type == (in_more ? ggml_type::q6_k : ggml_type::q4_k));
      else
        CHECK(c.type == ggml_type::q4_k);
    }
  }
}

TEST_CASE("type choice agrees with llama_model_quantize on a 9B-shaped model, every preset and option") {
  const auto infos = plan_infos(config_9b(), false, ggml_type::f32);
  const std::string in = tmp("synthetic-9b.gguf");
  write_synthetic(in, infos, 32, 16, 4);
  sbgq::imatrix one;  // has_imatrix only needs a non-empty map
  one.entries["blk.0.ffn_down.weight"] = sbgq::imatrix_entry{768, std::vector<float>(768, 1.0f), {1}};
  std::vector<llama_ftype> fts;
  for (const auto& p : sbgq::quant_presets)
    if (sbgq::is_quantized(p.default_type)) fts.push_back(p.ftype);
  if (sanitized) fts = {llama_ftype::mostly_q4_k_m, llama_ftype::mostly_iq4_xs};
  for (llama_ftype ft : fts) {
    const std::string name = std::string(sbgq::find_quant_preset(ft)->name);
    check_types_against_oracle(in, preset(ft), "9b-" + name);
    if (ft == llama_ftype::mostly_iq4_xs || ft == llama_ftype::mostly_iq4_nl)
      check_types_against_oracle(in, preset(ft, &one), "9b-" + name + "-imatrix");
  }
  // Options: patterns (first match wins, counters skip matched tensors), overrides, pure.
  auto o = preset(llama_ftype::mostly_q4_k_m);
  o.policy.tensor_types = {{"blk\\.1[0-5]\\.attn_qkv", ggml_type::q4_k},
                           {"attn_qkv", ggml_type::q5_k},
                           {"blk\\.(3|7)\\.ffn_down", ggml_type::q8_0}};
  o.policy.output_tensor_type = ggml_type::q8_0;
  o.policy.token_embedding_type = ggml_type::q6_k;
  check_types_against_oracle(in, o, "9b-overrides");
  auto pure = preset(llama_ftype::mostly_q5_k_m);
  pure.policy.pure = true;
  pure.policy.leave_output_tensor = true;
  pure.policy.tensor_types = {{"ffn_up", ggml_type::q8_0}};
  check_types_against_oracle(in, pure, "9b-pure");

  // Row lengths that force every fallback: 256-blocks -> 32-blocks, and F16 when even 32
  // does not divide (llama-type-selection.md 5).
  const std::map<std::string, std::int64_t> odd = {
      {"output.weight", 256 + 32},         {"token_embd.weight", 256 + 64},
      {"blk.0.ffn_down.weight", 768 + 32}, {"blk.5.ffn_down.weight", 768 + 32},
      {"blk.3.attn_v.weight", 256 + 96},   {"blk.2.attn_qkv.weight", 256 + 16},
      {"blk.4.ssm_out.weight", 256 + 160}, {"blk.6.ffn_gate.weight", 256 + 8}};
  const std::string in_odd = tmp("synthetic-9b-odd.gguf");
  write_synthetic(in_odd, infos, 32, 16, 4, odd);
  for (llama_ftype ft : {llama_ftype::mostly_q4_k_m, llama_ftype::mostly_iq4_xs, llama_ftype::mostly_q2_k,
                         llama_ftype::mostly_q5_k_s})
    check_types_against_oracle(in_odd, preset(ft), "9b-odd-" + std::string(sbgq::find_quant_preset(ft)->name));
  auto odd_pure = preset(llama_ftype::mostly_q4_k_m);
  odd_pure.policy.pure = true;
  check_types_against_oracle(in_odd, odd_pure, "9b-odd-pure");

  // Tied embeddings (no output.weight): token_embd takes the output rule (Q6_K), or
  // --output-tensor-type; --token-embedding-type wins over both.
  std::vector<sbgq::tensor_desc> tied;
  for (const auto& t : infos)
    if (t.name != "output.weight") tied.push_back(t);
  const std::string in_tied = tmp("synthetic-9b-tied.gguf");
  write_synthetic(in_tied, tied, 32, 16, 4);
  check_types_against_oracle(in_tied, preset(llama_ftype::mostly_q4_k_m), "9b-tied");
  auto tied_out = preset(llama_ftype::mostly_iq4_xs);
  tied_out.policy.output_tensor_type = ggml_type::q8_0;
  check_types_against_oracle(in_tied, tied_out, "9b-tied-output-type");
  tied_out.policy.token_embedding_type = ggml_type::q5_k;
  check_types_against_oracle(in_tied, tied_out, "9b-tied-both");
  // n_gqa < 4 (head_count_kv 8): no IQ4 attn_v bump.
  const std::string in_gqa2 = tmp("synthetic-9b-gqa2.gguf");
  write_synthetic(in_gqa2, infos, 32, 16, 8);
  check_types_against_oracle(in_gqa2, preset(llama_ftype::mostly_iq4_xs), "9b-gqa2-IQ4_XS");
  check_types_against_oracle(in_gqa2, preset(llama_ftype::mostly_q2_k), "9b-gqa2-Q2_K");
  for (const auto& f : {in, in_odd, in_tied, in_gqa2}) fs::remove(f);
}

TEST_CASE("quantize_file writes llama_model_quantize's file byte for byte (tiny model, imatrix)") {
  const sbgq::imatrix& im = tiny_imatrix();
  const std::string f32 = tiny_gguf(ggml_type::f32);
  // Q4_K_M with imatrix and the CLI's quantize.imatrix.* keys, at every SIMD level.
  check_against_oracle("q4km-im", f32, preset(llama_ftype::mostly_q4_k_m, &im), true);
  if (!sanitized) {
    // IQ4_XS with imatrix, exactly llama_model_quantize's keys (no provenance keys).
    auto iq4 = preset(llama_ftype::mostly_iq4_xs, &im);
    iq4.imatrix_metadata = false;
    check_against_oracle("iq4xs-im", f32, iq4, true);
    check_against_oracle("q6k-im", f32, preset(llama_ftype::mostly_q6_k, &im));
    check_against_oracle("q4km", f32, preset(llama_ftype::mostly_q4_k_m));
  }
  check_against_oracle("q80-im", f32, preset(llama_ftype::mostly_q8_0, &im));
}

TEST_CASE("quantize_file from F16 and BF16 input, and requantizing") {
  const sbgq::imatrix& im = tiny_imatrix();
  check_against_oracle("bf16-q4km-im", tiny_gguf(ggml_type::bf16), preset(llama_ftype::mostly_q4_k_m, &im));
  check_against_oracle("f16-q80", tiny_gguf(ggml_type::f16), preset(llama_ftype::mostly_q8_0));

  // A Q8_0 file: requantizing needs allow_requantize, in both implementations.
  const std::string q8 = tmp("q80-im-llama.gguf");
  if (!fs::exists(q8)) REQUIRE(run_oracle(tiny_gguf(ggml_type::f32), q8, preset(llama_ftype::mostly_q8_0)) == 0);
  auto o = preset(llama_ftype::mostly_q4_k_s);
  const std::string out = tmp("requant-sbgq.gguf");
  auto r = sbgq::quantize_file(q8, out, o);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::unsupported);
  CHECK(r.error().message().find("requantizing from type q8_0 is disabled") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  CHECK(run_oracle(q8, tmp("requant-llama-refused.gguf"), o) != 0);
  o.allow_requantize = true;
  check_against_oracle("requant-q4ks", q8, o);
}

TEST_CASE("overrides: --tensor-type, --output-tensor-type, --token-embedding-type, --pure, --leave-output-tensor") {
  const sbgq::imatrix& im = tiny_imatrix();
  const std::string f32 = tiny_gguf(ggml_type::f32);
  auto o = preset(llama_ftype::mostly_q4_k_m, &im);
  for (const char* arg : {R"(blk\.0\.attn_qkv=q4_k)", "ATTN_GATE=Q5_K", R"(blk\.[12]\.ffn_down=q8_0)", "ssm_out=iq4_xs"})
    o.policy.tensor_types.push_back(sbgq::parse_tensor_type_override(arg).value());
  o.policy.output_tensor_type = ggml_type::q8_0;
  o.policy.token_embedding_type = ggml_type::q6_k;
  check_against_oracle("overrides", f32, o);
  if (!sanitized) {
    auto pure = preset(llama_ftype::mostly_q5_k_m, &im);
    pure.policy.pure = true;
    pure.policy.leave_output_tensor = true;
    pure.policy.tensor_types.push_back(sbgq::parse_tensor_type_override("ffn_up=q8_0").value());
    check_against_oracle("pure-leave", f32, pure);
  }
}

TEST_CASE("--override-kv, --include-weights, --exclude-weights: the files llama-quantize writes") {
  const sbgq::imatrix& im = tiny_imatrix();
  const std::string f32 = tiny_gguf(ggml_type::f32);
  // Overrides of existing keys (removed and re-appended) and new keys of every TYPE; the
  // imatrix provenance keys follow them, as llama-quantize orders its kv overrides.
  // general.file_type (set by llama_model_quantize itself), a key given twice and an
  // imatrix provenance key move to the place of their last setting (gguf_set_val).
  const std::vector<std::string> kv_args = {"quantize.imatrix.file=str:user", "general.name=str:sbgq override",
                                            "sbgq.test.count=int:7", "sbgq.test.scale=float:0.125",
                                            "sbgq.test.flag=bool:true", "general.file_type=int:15",
                                            "sbgq.test.off=bool:false", "sbgq.test.count=int:9"};
  auto o = preset(llama_ftype::mostly_q4_k_m, &im);
  for (const auto& a : kv_args) {
    auto kv = sbgq::parse_kv_override(a);
    REQUIRE_MESSAGE(kv.has_value(), (kv ? "" : kv.error().message()));
    o.kv_overrides.push_back(std::move(*kv));
  }
  check_against_oracle("override-kv", f32, o, false, kv_args);
  {
    auto f = sbgq::gguf_file::open(tmp("override-kv-sbgq.gguf"));
    REQUIRE(f.has_value());
    const auto& md = f->metadata();
    auto find = [&](const std::string& key) -> const sbgq::gguf_value* {
      for (const auto& kv : md)
        if (kv.key == key) return &kv.value;
      return nullptr;
    };
    REQUIRE(find("sbgq.test.count"));
    CHECK(find("sbgq.test.count")->type() == sbgq::gguf_value_type::uint32);
    CHECK(*find("sbgq.test.count")->get_if<std::uint32_t>() == 9u);
    CHECK(*find("quantize.imatrix.file")->get_string_if() == "tiny-imatrix.gguf");
    REQUIRE(find("sbgq.test.scale"));
    CHECK(find("sbgq.test.scale")->type() == sbgq::gguf_value_type::float32);
    REQUIRE(find("general.name"));
    CHECK(*find("general.name")->get_string_if() == "sbgq override");
  }
  if (!sanitized) {
    // Entries by substring: only the attention and DeltaNet projections, or all but ffn_down.
    auto inc = preset(llama_ftype::mostly_q4_k_m, &im);
    inc.imatrix_include = {"attn_", "ssm_out"};
    check_against_oracle("include-weights", f32, inc);
    auto exc = preset(llama_ftype::mostly_iq4_xs, &im);
    exc.imatrix_exclude = {"ffn_down", "blk.0."};
    check_against_oracle("exclude-weights", f32, exc);
    // Nothing left: no imatrix at all (has_imatrix false, no provenance keys), in both.
    auto none = preset(llama_ftype::mostly_q4_k_m, &im);
    none.imatrix_include = {"no-such-tensor"};
    check_against_oracle("include-nothing", f32, none);
  }
  auto both = preset(llama_ftype::mostly_q4_k_m, &im);
  both.imatrix_include = {"attn"};
  both.imatrix_exclude = {"ffn"};
  auto r = sbgq::quantize_file(f32, tmp("include-exclude.gguf"), both);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find("include and exclude weights cannot be used together") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp("include-exclude.gguf")));
}

TEST_CASE("parse_kv_override: llama.cpp's KEY=TYPE:VALUE, refusing what it would write as something else") {
  auto ok = [](const char* arg) {
    auto r = sbgq::parse_kv_override(arg);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
    return *r;
  };
  CHECK(ok("a.b=int:4294967295").value.get_if<std::uint32_t>() != nullptr);
  CHECK(*ok("a.b=int:0").value.get_if<std::uint32_t>() == 0u);
  CHECK(*ok("k=float:-1.5").value.get_if<float>() == -1.5f);
  CHECK(*ok("k=bool:false").value.get_if<bool>() == false);
  CHECK(*ok("k=str:").value.get_string_if() == "");
  CHECK(*ok("k=str:a=b:c").value.get_string_if() == "a=b:c");
  CHECK(ok(("k=str:" + std::string(127, 'x')).c_str()).value.get_string_if()->size() == 127);
  auto bad = [](const std::string& arg, const char* why) {
    auto r = sbgq::parse_kv_override(arg);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::invalid_argument);
    CAPTURE(r.error().message());
    CHECK(r.error().message().find(why) != std::string::npos);
  };
  bad("no-equals", "no '='");
  bad("=int:1", "empty key");
  bad(std::string(128, 'k') + "=int:1", "key longer than 127 bytes");
  bad("k=1", "no TYPE:");
  bad("k=i32:1", "unknown TYPE 'i32'");
  bad("k=int:-3", "not a whole number");  // llama.cpp would write 3 (std::abs)
  bad("k=int:4294967296", "not a whole number");
  bad("k=int:12abc", "not a whole number");  // atol would read 12
  bad("k=float:abc", "not a finite number");
  bad("k=float:1e60", "not a finite number");
  bad("k=bool:yes", "neither true nor false");
  bad("k=str:" + std::string(128, 'x'), "longer than 127 bytes");
}

TEST_CASE("quantized files load and decode in libllama") {
  const sbgq::imatrix& im = tiny_imatrix();
  const std::string f32 = tiny_gguf(ggml_type::f32);
  auto logits_of = [](const std::string& path) {
    sbgq::test::oracle_model m(path);
    const auto toks = m.tokenize("The quick brown fox jumps over the lazy dog. It was a sunny day in the park.");
    REQUIRE(toks.size() > 8);
    return m.decode(toks);
  };
  auto rel_rms = [](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
      den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / den);
  };
  const auto ref = logits_of(f32);
  double prev = 0;
  for (llama_ftype ft : {llama_ftype::mostly_q8_0, llama_ftype::mostly_q4_k_m}) {
    const std::string name(sbgq::find_quant_preset(ft)->name);
    CAPTURE(name);
    // The files of the byte-for-byte test (identical to libllama's), made here if that
    // test did not run.
    const std::string out = tmp(ft == llama_ftype::mostly_q8_0 ? "q80-im-sbgq.gguf" : "q4km-im-sbgq.gguf");
    if (!fs::exists(out)) REQUIRE(sbgq::quantize_file(f32, out, preset(ft, &im)).has_value());
    const auto q = logits_of(out);
    REQUIRE(q.size() == ref.size());
    for (float x : q) REQUIRE(std::isfinite(x));
    const double e = rel_rms(q, ref);
    MESSAGE(name << ": relative RMS logit error vs F32 " << e);
    // Fewer bits, larger error; Q8_0 nearly exact. (Measured: 0.0037 and 0.015.)
    CHECK(e > prev);
    CHECK(e < (ft == llama_ftype::mostly_q8_0 ? 0.01 : 0.05));
    prev = e;
  }
}

TEST_CASE("bad input gives clear errors and leaves no output file") {
  const std::string f32 = tiny_gguf(ggml_type::f32);
  const std::string out = tmp("bad-out.gguf");
  fs::remove(out);
  auto expect_error = [&](const sbgq::result<sbgq::quantize_report>& r, sbgq::error_code code, const std::string& text) {
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == code);
    CHECK_MESSAGE(r.error().message().find(text) != std::string::npos, r.error().message());
    CHECK_FALSE(fs::exists(out));
    for (const auto& e : fs::directory_iterator(fs::path(out).parent_path()))
      CHECK_MESSAGE(e.path().filename().string().rfind("bad-out.gguf.tmp", 0) != 0, e.path().string());
  };

  {  // not a GGUF file
    const std::string junk = tmp("junk.gguf");
    std::ofstream(junk) << "this is not a gguf file at all";
    expect_error(sbgq::quantize_file(junk, out, preset(llama_ftype::mostly_q4_k_m)), sbgq::error_code::bad_magic,
                 "expected magic 'GGUF'");
    expect_error(sbgq::quantize_file(tmp("missing.gguf"), out, preset(llama_ftype::mostly_q4_k_m)),
                 sbgq::error_code::io_error, "missing.gguf");
  }
  {  // imatrix entry of the wrong size (llama.cpp's message)
    sbgq::imatrix im;
    im.entries["blk.0.ffn_down.weight"] = sbgq::imatrix_entry{256, std::vector<float>(256, 1.0f), {4}};
    expect_error(sbgq::quantize_file(f32, out, preset(llama_ftype::mostly_q4_k_m, &im)), sbgq::error_code::size_mismatch,
                 "imatrix size 256 is different from tensor size 768 for blk.0.ffn_down.weight");
    CHECK(run_oracle(f32, tmp("bad-llama.gguf"), preset(llama_ftype::mostly_q4_k_m, &im)) != 0);
    CHECK(oracle().last_log.find("imatrix size 256 is different from tensor size 768") != std::string::npos);
    // ... except for token_embd, which is then quantized without imatrix, as in llama.cpp.
    sbgq::imatrix emb;
    emb.entries["token_embd.weight"] = sbgq::imatrix_entry{8192, std::vector<float>(8192, 1.0f), {4}};
    auto r = sbgq::quantize_file(f32, out, preset(llama_ftype::mostly_q8_0, &emb));
    REQUIRE(r.has_value());
    CHECK(r->n_with_imatrix == 0);
    CHECK(std::any_of(r->notes.begin(), r->notes.end(),
                      [](const std::string& n) { return n.find("token_embd.weight") != std::string::npos; }));
    fs::remove(out);
    // non-finite weight
    sbgq::imatrix nan;
    nan.entries["blk.0.ffn_up.weight"] = sbgq::imatrix_entry{256, std::vector<float>(256, 1.0f), {4}};
    nan.entries["blk.0.ffn_up.weight"].sum2[7] = std::numeric_limits<float>::infinity();
    expect_error(sbgq::quantize_file(f32, out, preset(llama_ftype::mostly_q4_k_m, &nan)), sbgq::error_code::not_finite,
                 "imatrix entry 'blk.0.ffn_up.weight' has a non-finite weight at index 7");
  }
  {  // a chosen type sbgq has no codec for
    auto o = preset(llama_ftype::mostly_q4_k_m);
    o.policy.tensor_types.push_back({"ffn_up", ggml_type::q4_0});
    expect_error(sbgq::quantize_file(f32, out, o), sbgq::error_code::unsupported,
                 "sbgq cannot write type q4_0 (chosen by: --tensor-type #0 'ffn_up')");
    auto p = preset(llama_ftype::mostly_q4_k_m);
    p.policy.ftype = static_cast<llama_ftype>(2);  // Q4_0: not a preset sbgq offers
    expect_error(sbgq::quantize_file(f32, out, p), sbgq::error_code::invalid_argument, "is not a file type sbgq produces");
  }
  {  // a value whose Q8_0 scale overflows fp16: both refuse (ggml_validate_row_data)
    const auto infos = plan_infos(config_9b(), false, ggml_type::f32);
    const std::string in = tmp("synthetic-9b-huge.gguf");
    write_synthetic(in, infos, 32, 16, 4, {}, {"blk.1.ffn_up.weight", 3.0e9f});
    expect_error(sbgq::quantize_file(in, out, preset(llama_ftype::mostly_q8_0)), sbgq::error_code::not_finite,
                 "tensor 'blk.1.ffn_up.weight' -> q8_0: block 0 (row 0) has a non-finite scale");
    CHECK(run_oracle(in, tmp("huge-llama.gguf"), preset(llama_ftype::mostly_q8_0)) != 0);
    CHECK(oracle().last_log.find("validation failed") != std::string::npos);
    fs::remove(in);
  }
}

TEST_CASE("quantizing a file onto itself is refused before any work; the input is kept") {
  const std::string in = tmp("self.gguf");
  fs::copy_file(tiny_gguf(ggml_type::f16), in, fs::copy_options::overwrite_existing);
  const auto size = fs::file_size(in);
  const auto mtime = fs::last_write_time(in);
  auto r = sbgq::quantize_file(in, in, preset(llama_ftype::mostly_q4_k_m));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == sbgq::error_code::invalid_argument);
  CHECK_MESSAGE(r.error().message() == "[sbgq.quantize.invalid_argument] output '" + in + "' is the input '" + in +
                                           "': refusing to overwrite it",
                r.error().message());
  CHECK(fs::file_size(in) == size);
  CHECK(fs::last_write_time(in) == mtime);
  for (const auto& e : fs::directory_iterator(fs::path(in).parent_path()))
    CHECK_MESSAGE(e.path().filename().string().rfind("self.gguf.tmp", 0) != 0, e.path().string());
}

TEST_CASE("quantize_gguf on caller-owned bytes (gguf_file::parse) leaves them intact") {
  const std::string f32 = tiny_gguf(ggml_type::f32);
  const auto bytes = read_all(f32);
  auto parsed = sbgq::gguf_file::parse(bytes);
  REQUIRE(parsed.has_value());
  const std::string ours = tmp("parsed-q80-sbgq.gguf"), theirs = tmp("parsed-q80-llama.gguf");
  auto r = sbgq::quantize_gguf(*parsed, ours, preset(llama_ftype::mostly_q8_0));
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
  CHECK(bytes == read_all(f32));  // the caller's buffer still holds the file
  REQUIRE(run_oracle(f32, theirs, preset(llama_ftype::mostly_q8_0)) == 0);
  require_same_file(ours, theirs);
}
