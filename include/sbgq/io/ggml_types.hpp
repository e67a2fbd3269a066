// ggml tensor types as GGUF stores them: ids, names, block sizes and bytes per block
// (gguf-format.md section 5), and llama_ftype ids (section 6).
//
// The table is the one libggml-base v0.5.0 reports (tests/test_ggml_types.cpp compares
// every id with ggml_type_name / ggml_blck_size / ggml_type_size of the oracle). Removed
// ids (4, 5, 31-33, 36-38) have block size 0 and are rejected by every reader.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "../core/base.hpp"

SBGQ_BEGIN_NAMESPACE

/// ggml_type ids (wire values of a GGUF tensor-info record).
enum class ggml_type : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
  iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22,
  iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30,
  tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41, q2_0 = 42,
};

/// What the type rules, writers and reports need to know of a tensor, whatever holds it (a
/// GGUF file, a checkpoint being converted, a plan): its name, type and ggml shape. `ne`
/// has all 4 dims, the ones past n_dims are 1.
struct tensor_desc {
  std::string name;
  ggml_type type = ggml_type::f32;
  std::uint32_t n_dims = 1;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};

  /// The declared dims, ne[0] first (reversed PyTorch shape).
  std::span<const std::int64_t> shape() const noexcept { return {ne.data(), n_dims}; }
  std::uint64_t n_elements() const noexcept {
    return static_cast<std::uint64_t>(ne[0]) * static_cast<std::uint64_t>(ne[1]) *
           static_cast<std::uint64_t>(ne[2]) * static_cast<std::uint64_t>(ne[3]);
  }
};
inline constexpr std::uint32_t ggml_type_count = 43;

/// Name (as ggml_type_name prints it), elements per block and bytes per block.
struct ggml_type_traits {
  std::string_view name;
  std::uint32_t block_size = 0;  ///< 0: removed id, invalid
  std::uint32_t type_size = 0;
};

inline constexpr std::array<ggml_type_traits, ggml_type_count> ggml_type_table = {{
    {"f32", 1, 4},      {"f16", 1, 2},      {"q4_0", 32, 18},   {"q4_1", 32, 20},
    {"q4_2", 0, 0},     {"q4_3", 0, 0},     {"q5_0", 32, 22},   {"q5_1", 32, 24},
    {"q8_0", 32, 34},   {"q8_1", 32, 36},   {"q2_K", 256, 84},  {"q3_K", 256, 110},
    {"q4_K", 256, 144}, {"q5_K", 256, 176}, {"q6_K", 256, 210}, {"q8_K", 256, 292},
    {"iq2_xxs", 256, 66}, {"iq2_xs", 256, 74}, {"iq3_xxs", 256, 98}, {"iq1_s", 256, 50},
    {"iq4_nl", 32, 18}, {"iq3_s", 256, 110}, {"iq2_s", 256, 82},  {"iq4_xs", 256, 136},
    {"i8", 1, 1},       {"i16", 1, 2},      {"i32", 1, 4},      {"i64", 1, 8},
    {"f64", 1, 8},      {"iq1_m", 256, 56}, {"bf16", 1, 2},     {"q4_0_4_4", 0, 0},
    {"q4_0_4_8", 0, 0}, {"q4_0_8_8", 0, 0}, {"tq1_0", 256, 54}, {"tq2_0", 256, 66},
    {"iq4_nl_4_4", 0, 0}, {"iq4_nl_4_8", 0, 0}, {"iq4_nl_8_8", 0, 0}, {"mxfp4", 32, 17},
    {"nvfp4", 64, 36},  {"q1_0", 128, 18},  {"q2_0", 64, 18},
}};

/// True for an id below ggml_type_count that is not a removed type.
constexpr bool is_valid_ggml_type(std::uint32_t id) noexcept {
  return id < ggml_type_count && ggml_type_table[id].block_size != 0;
}
constexpr const ggml_type_traits& traits(ggml_type t) noexcept {
  return ggml_type_table[static_cast<std::uint32_t>(t)];
}
constexpr std::string_view type_name(ggml_type t) noexcept { return traits(t).name; }
constexpr std::uint32_t block_size(ggml_type t) noexcept { return traits(t).block_size; }
constexpr std::uint32_t type_size(ggml_type t) noexcept { return traits(t).type_size; }
/// Bytes of a row of n elements (n a multiple of the block size).
constexpr std::uint64_t row_size(ggml_type t, std::uint64_t n) noexcept {
  return n / block_size(t) * type_size(t);
}
constexpr bool is_quantized(ggml_type t) noexcept { return block_size(t) > 1; }

/// Case-insensitive lookup by ggml name ("q4_K", "Q4_K", "iq4_xs", "F16", ...).
constexpr std::optional<ggml_type> ggml_type_from_name(std::string_view s) noexcept {
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  for (std::uint32_t i = 0; i < ggml_type_count; ++i) {
    const auto& t = ggml_type_table[i];
    if (t.block_size == 0 || t.name.size() != s.size()) continue;
    bool eq = true;
    for (std::size_t k = 0; k < s.size() && eq; ++k) eq = lower(s[k]) == lower(t.name[k]);
    if (eq) return static_cast<ggml_type>(i);
  }
  return std::nullopt;
}

/// llama_ftype ids (general.file_type), the ones sbgq produces or reads.
enum class llama_ftype : std::uint32_t {
  all_f32 = 0, mostly_f16 = 1, mostly_q8_0 = 7, mostly_q2_k = 10, mostly_q3_k_s = 11,
  mostly_q3_k_m = 12, mostly_q3_k_l = 13, mostly_q4_k_s = 14, mostly_q4_k_m = 15,
  mostly_q5_k_s = 16, mostly_q5_k_m = 17, mostly_q6_k = 18, mostly_iq4_nl = 25,
  mostly_iq4_xs = 30, mostly_bf16 = 32,
};

SBGQ_END_NAMESPACE
