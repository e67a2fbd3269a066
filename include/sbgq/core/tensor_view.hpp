// Element types of tensor files, shapes, and non-owning views of tensor bytes.
//
// A tensor_view is what the file readers (safetensors, later GGUF) hand out: a name, an
// element type, a shape and a span of bytes that usually lives in a memory-mapped file.
// It owns nothing; it stays valid as long as the file object that produced it.
//
// Design goals:
//   - Light: no Eigen, no simdjson, so every concept header can take tensor_view.
//   - The shape keeps the file's order (outermost dimension first, as in PyTorch and
//     safetensors): dims()[rank - 1] is the contiguous one, ggml's ne[0]. A "row" is
//     one run of dims()[rank - 1] contiguous elements (rows() of them in the tensor).
//   - Typed access is checked: as<T>() fails (it does not assert) on a dtype mismatch or
//     on bytes that are not aligned for T, since both come from files.
//   - to_f32() converts any row range of any dtype to f32 with dtype.hpp's bit-exact
//     conversions, reading unaligned bytes safely.
// Non-goals: strides and non-contiguous views; owning tensors; arithmetic.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "base.hpp"
#include "detail/checked.hpp"
#include "dtype.hpp"
#include "error.hpp"

SBGQ_BEGIN_NAMESPACE

/// Element types of safetensors files, named like the wire strings in lower case.
enum class dtype : std::uint8_t {
  boolean,  ///< "BOOL": one byte, 0 or 1
  u8,       ///< "U8"
  i8,       ///< "I8"
  u16,      ///< "U16"
  i16,      ///< "I16"
  f16,      ///< "F16": IEEE binary16
  bf16,     ///< "BF16": bfloat16
  u32,      ///< "U32"
  i32,      ///< "I32"
  f32,      ///< "F32"
  f64,      ///< "F64"
  u64,      ///< "U64"
  i64,      ///< "I64"
  f8_e4m3,  ///< "F8_E4M3": 1 sign, 4 exponent (bias 7), 3 mantissa bits; no inf, S.1111.111 is NaN
  f8_e5m2,  ///< "F8_E5M2": the upper byte of an f16
  f8_e8m0,  ///< "F8_E8M0": an unsigned power of two 2^(e-127); 0xFF is NaN (MX block scales)
};

/// Number of dtype values (for loops over every dtype).
inline constexpr std::size_t dtype_count = 16;

/// Bytes per element.
constexpr std::size_t dtype_size(dtype t) noexcept {
  switch (t) {
    case dtype::boolean: case dtype::u8: case dtype::i8:
    case dtype::f8_e4m3: case dtype::f8_e5m2: case dtype::f8_e8m0: return 1;
    case dtype::u16: case dtype::i16: case dtype::f16: case dtype::bf16: return 2;
    case dtype::u32: case dtype::i32: case dtype::f32: return 4;
    case dtype::f64: case dtype::u64: case dtype::i64: return 8;
  }
  return 0;
}

/// The safetensors wire name ("BF16", "F8_E4M3", ...).
constexpr std::string_view dtype_name(dtype t) noexcept {
  switch (t) {
    case dtype::boolean: return "BOOL";
    case dtype::u8: return "U8";
    case dtype::i8: return "I8";
    case dtype::u16: return "U16";
    case dtype::i16: return "I16";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::u32: return "U32";
    case dtype::i32: return "I32";
    case dtype::f32: return "F32";
    case dtype::f64: return "F64";
    case dtype::u64: return "U64";
    case dtype::i64: return "I64";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::f8_e5m2: return "F8_E5M2";
    case dtype::f8_e8m0: return "F8_E8M0";
  }
  return "?";
}

/// Parses a wire name (case-sensitive, as the format requires); nullopt if unknown.
constexpr std::optional<dtype> dtype_from_name(std::string_view s) noexcept {
  for (std::size_t i = 0; i < dtype_count; ++i) {
    const auto t = static_cast<dtype>(i);
    if (dtype_name(t) == s) return t;
  }
  return std::nullopt;
}

/// The dtype whose elements a C++ type holds (for tensor_view::as<T>()). Only types that
/// can hold every bit pattern of the element are mapped: BOOL and the F8 types have no
/// mapping (read them with bytes() or to_f32()).
template <class T> struct dtype_of;
template <> struct dtype_of<std::uint8_t> { static constexpr dtype value = dtype::u8; };
template <> struct dtype_of<std::int8_t> { static constexpr dtype value = dtype::i8; };
template <> struct dtype_of<std::uint16_t> { static constexpr dtype value = dtype::u16; };
template <> struct dtype_of<std::int16_t> { static constexpr dtype value = dtype::i16; };
template <> struct dtype_of<f16> { static constexpr dtype value = dtype::f16; };
template <> struct dtype_of<bf16> { static constexpr dtype value = dtype::bf16; };
template <> struct dtype_of<std::uint32_t> { static constexpr dtype value = dtype::u32; };
template <> struct dtype_of<std::int32_t> { static constexpr dtype value = dtype::i32; };
template <> struct dtype_of<float> { static constexpr dtype value = dtype::f32; };
template <> struct dtype_of<double> { static constexpr dtype value = dtype::f64; };
template <> struct dtype_of<std::uint64_t> { static constexpr dtype value = dtype::u64; };
template <> struct dtype_of<std::int64_t> { static constexpr dtype value = dtype::i64; };
template <class T> inline constexpr dtype dtype_of_v = dtype_of<T>::value;

/// A tensor shape of up to 8 dimensions, outermost first (file order). Rank 0 is a
/// scalar with one element. Dimensions are non-negative int64 (a zero dimension gives
/// an empty tensor).
class tensor_shape {
 public:
  static constexpr std::size_t max_rank = 8;

  constexpr tensor_shape() noexcept = default;
  /// Precondition (SBGQ_DASSERT): at most max_rank entries, all >= 0. For untrusted
  /// dimensions use make().
  constexpr tensor_shape(std::initializer_list<std::int64_t> dims) noexcept {
    SBGQ_DASSERT(dims.size() <= max_rank);
    for (std::int64_t d : dims) {
      if (rank_ == max_rank) break;
      SBGQ_DASSERT(d >= 0);
      dims_[rank_++] = d;
    }
  }
  /// Checked construction. Errors: invalid_argument (component "shape") if the rank passes
  /// max_rank or a dimension is negative.
  static result<tensor_shape> make(std::span<const std::int64_t> dims) {
    if (dims.size() > max_rank)
      return error(error_code::invalid_argument, "shape",
                   "rank " + std::to_string(dims.size()) + " passes the maximum of " + std::to_string(max_rank));
    tensor_shape s;
    for (std::int64_t d : dims) {
      if (d < 0) return error(error_code::invalid_argument, "shape", "negative dimension " + std::to_string(d));
      s.dims_[s.rank_++] = d;
    }
    return s;
  }

  constexpr std::size_t rank() const noexcept { return rank_; }
  constexpr std::int64_t operator[](std::size_t i) const noexcept {
    SBGQ_DASSERT(i < rank_);
    return dims_[i];
  }
  constexpr std::span<const std::int64_t> dims() const noexcept { return {dims_.data(), rank_}; }

  /// Product of the dimensions into `out`; false on 64-bit overflow.
  constexpr bool checked_elements(std::uint64_t& out) const noexcept {
    std::uint64_t n = 1;
    for (std::size_t i = 0; i < rank_; ++i)
      if (!detail::checked_mul(n, static_cast<std::uint64_t>(dims_[i]), n)) return false;
    out = n;
    return true;
  }
  /// Number of elements. Precondition: it fits in 64 bits (always true for the shapes of
  /// a validated file, whose byte size is bounded by the file size).
  constexpr std::uint64_t elements() const noexcept {
    std::uint64_t n = 0;
    const bool ok = checked_elements(n);
    SBGQ_DASSERT(ok);
    (void)ok;
    return n;
  }
  /// Length of one row: the innermost dimension (1 for a scalar).
  constexpr std::uint64_t row_size() const noexcept {
    return rank_ == 0 ? 1 : static_cast<std::uint64_t>(dims_[rank_ - 1]);
  }
  /// Number of rows: the product of all but the innermost dimension (1 for rank <= 1).
  constexpr std::uint64_t rows() const noexcept {
    std::uint64_t n = 1;
    for (std::size_t i = 0; i + 1 < rank_; ++i) n *= static_cast<std::uint64_t>(dims_[i]);
    return n;
  }

  /// "[8192, 256]"; "[]" for a scalar.
  std::string to_string() const {
    std::string s = "[";
    for (std::size_t i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[i]);
    }
    return s + "]";
  }

  friend constexpr bool operator==(const tensor_shape& a, const tensor_shape& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (std::size_t i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }

 private:
  std::array<std::int64_t, max_rank> dims_{};
  std::size_t rank_ = 0;
};

/// A non-owning view of one tensor's bytes. Produced by safetensors_file and
/// safetensors_checkpoint, which guarantee bytes.size() == shape.elements() *
/// dtype_size(type); valid while that object lives. Thread-safe: read-only.
struct tensor_view {
  std::string_view name;
  dtype type = dtype::u8;
  tensor_shape shape;
  std::span<const std::byte> bytes;
  std::uint64_t file_offset = error::npos;  ///< absolute file byte of bytes[0] (for messages)

  std::uint64_t elements() const noexcept { return shape.elements(); }

  /// The elements as T. Errors (component "tensor"): bad_dtype if T does not match the
  /// dtype (no conversion is done: use to_f32()); unsupported if the bytes are not
  /// aligned for T (possible in valid files, whose data offsets need no alignment;
  /// to_f32() and bytes work at any alignment).
  template <class T>
  result<std::span<const T>> as() const {
    static_assert(std::is_trivially_copyable_v<T>);
    if (type != dtype_of_v<T>)
      return error(error_code::bad_dtype, "tensor",
                   "tensor '" + std::string(name) + "' has dtype " + std::string(dtype_name(type)) +
                       ", as<T>() asked for " + std::string(dtype_name(dtype_of_v<T>)),
                   file_offset);
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) != 0)
      return error(error_code::unsupported, "tensor",
                   "tensor '" + std::string(name) + "': data is not aligned to " + std::to_string(alignof(T)) +
                       " bytes for " + std::string(dtype_name(type)) + "; use to_f32() or the raw bytes",
                   file_offset);
    return std::span<const T>(reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T));
  }
};

// ---- element conversions to f32 ---------------------------------------------------------

/// F8_E4M3 (the "fn" variant: finite only) -> f32, exact.
/// Layout s.eeee.mmm, bias 7: e = 0 is subnormal m * 2^-9; e = 15, m = 7 is NaN;
/// otherwise (1 + m/8) * 2^(e-7), so the largest value is 448.
constexpr float f8_e4m3_bits_to_f32(std::uint8_t b) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(b & 0x80u) << 24;
  const std::uint32_t e = (b >> 3) & 0xfu;
  const std::uint32_t m = b & 0x7u;
  if (e == 0xf && m == 0x7) return std::bit_cast<float>(sign | 0x7fc00000u);
  if (e == 0) {
    // m * 2^-9 with m < 8 is exact in f32 (a small integer times a power of two).
    const float v = static_cast<float>(m) * 0x1p-9f;
    return sign ? -v : v;
  }
  // Rebias 7 -> 127 and move the 3 mantissa bits to the top of f32's 23.
  return std::bit_cast<float>(sign | ((e + 120u) << 23) | (m << 20));
}

/// F8_E5M2 -> f32, exact: the byte is the upper half of an f16 (same exponent layout).
constexpr float f8_e5m2_bits_to_f32(std::uint8_t b) noexcept {
  return f16_bits_to_f32(static_cast<std::uint16_t>(b << 8));
}

/// F8_E8M0 -> f32, exact: 2^(e-127); e = 0 is 2^-127 (an f32 subnormal); 0xFF is NaN.
constexpr float f8_e8m0_bits_to_f32(std::uint8_t b) noexcept {
  if (b == 0xff) return std::bit_cast<float>(0x7fc00000u);
  if (b == 0) return std::bit_cast<float>(0x00400000u);
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 23);
}

namespace detail {
template <class T>
inline T load_unaligned(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
// One loop per source type keeps each loop simple enough for the compiler to vectorise.
template <class T, class F>
inline void convert_run(const std::byte* src, std::span<float> out, F f) noexcept {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = f(load_unaligned<T>(src + i * sizeof(T)));
}
}  // namespace detail

/// Converts rows [row_begin, row_end) of `v` to f32 into `out`, where a row is
/// v.shape.row_size() contiguous elements (a 1-D tensor is one row; a scalar is one row of
/// one element). F32, F16, BF16, F8 and F64 -> f32 follow IEEE (F64 rounds to nearest
/// even; F16, BF16 and F8 are exact, bit-identical to ggml for F16/BF16); integers convert
/// with static_cast (exact up to 2^24); BOOL gives 0 or 1 (any non-zero byte is 1).
/// Errors (component "tensor"): invalid_argument if row_begin > row_end or row_end passes
/// v.shape.rows(); size_mismatch if out.size() != (row_end - row_begin) * row_size, or if
/// v.bytes does not hold the shape's bytes. Thread-safe; O(out.size()).
inline result<void> to_f32(const tensor_view& v, std::uint64_t row_begin, std::uint64_t row_end,
                           std::span<float> out) {
  const std::uint64_t rows = v.shape.rows(), row = v.shape.row_size();
  if (row_begin > row_end || row_end > rows)
    return error(error_code::invalid_argument, "tensor",
                 "tensor '" + std::string(v.name) + "': rows [" + std::to_string(row_begin) + ", " +
                     std::to_string(row_end) + ") outside its " + std::to_string(rows) + " rows");
  std::uint64_t n_elements = 0, n_bytes = 0;
  const std::size_t es = dtype_size(v.type);
  if (!v.shape.checked_elements(n_elements) || !detail::checked_mul(n_elements, es, n_bytes) ||
      n_bytes != v.bytes.size())
    return error(error_code::size_mismatch, "tensor",
                 "tensor '" + std::string(v.name) + "': " + std::to_string(v.bytes.size()) +
                     " bytes do not hold shape " + v.shape.to_string() + " of " + std::string(dtype_name(v.type)));
  // (row_end - row_begin) * row <= n_elements, which fits, so no overflow below.
  const std::uint64_t count = (row_end - row_begin) * row;
  if (out.size() != count)
    return error(error_code::size_mismatch, "tensor",
                 "tensor '" + std::string(v.name) + "': output holds " + std::to_string(out.size()) +
                     " floats, rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ") need " +
                     std::to_string(count));
  const std::byte* src = v.bytes.data() + row_begin * row * es;
  switch (v.type) {
    case dtype::f32: if (count) std::memcpy(out.data(), src, count * 4); break;
    case dtype::f16: detail::convert_run<std::uint16_t>(src, out, [](std::uint16_t h) { return f16_bits_to_f32(h); }); break;
    case dtype::bf16: detail::convert_run<std::uint16_t>(src, out, [](std::uint16_t h) { return bf16_bits_to_f32(h); }); break;
    case dtype::f64: detail::convert_run<double>(src, out, [](double d) { return static_cast<float>(d); }); break;
    case dtype::f8_e4m3: detail::convert_run<std::uint8_t>(src, out, f8_e4m3_bits_to_f32); break;
    case dtype::f8_e5m2: detail::convert_run<std::uint8_t>(src, out, f8_e5m2_bits_to_f32); break;
    case dtype::f8_e8m0: detail::convert_run<std::uint8_t>(src, out, f8_e8m0_bits_to_f32); break;
    case dtype::boolean: detail::convert_run<std::uint8_t>(src, out, [](std::uint8_t b) { return b ? 1.0f : 0.0f; }); break;
    case dtype::u8: detail::convert_run<std::uint8_t>(src, out, [](std::uint8_t x) { return static_cast<float>(x); }); break;
    case dtype::i8: detail::convert_run<std::int8_t>(src, out, [](std::int8_t x) { return static_cast<float>(x); }); break;
    case dtype::u16: detail::convert_run<std::uint16_t>(src, out, [](std::uint16_t x) { return static_cast<float>(x); }); break;
    case dtype::i16: detail::convert_run<std::int16_t>(src, out, [](std::int16_t x) { return static_cast<float>(x); }); break;
    case dtype::u32: detail::convert_run<std::uint32_t>(src, out, [](std::uint32_t x) { return static_cast<float>(x); }); break;
    case dtype::i32: detail::convert_run<std::int32_t>(src, out, [](std::int32_t x) { return static_cast<float>(x); }); break;
    case dtype::u64: detail::convert_run<std::uint64_t>(src, out, [](std::uint64_t x) { return static_cast<float>(x); }); break;
    case dtype::i64: detail::convert_run<std::int64_t>(src, out, [](std::int64_t x) { return static_cast<float>(x); }); break;
  }
  return {};
}

/// Converts the whole tensor (all rows) to f32; out.size() must equal v.elements().
inline result<void> to_f32(const tensor_view& v, std::span<float> out) {
  return to_f32(v, 0, v.shape.rows(), out);
}

SBGQ_END_NAMESPACE
