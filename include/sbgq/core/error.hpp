// Errors at the boundary of the library: error codes, an error value that names the
// place in the file, and result<T>, shaped like std::expected so that C++23 code can
// swap it in.
//
// Design goals:
//   - Every failure that comes from input (a file, a config, a user option) is a value,
//     never undefined behaviour and never an abort.
//   - Messages name the place, what was expected and what was found, with a stable id:
//       [sbgq.safetensors.bad_range] tensor 'x': data_offsets [a, b) end past ... (byte 1234)
//     Tests assert on them, so they are part of the contract.
//   - Works with -fno-exceptions: value() on an error is then a debug assertion.
// Non-goals: error chaining, localisation.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <stdexcept>
#include <variant>

#include "base.hpp"

SBGQ_BEGIN_NAMESPACE

/// What went wrong, in categories a caller can act on.
enum class error_code : std::uint8_t {
  success = 0,       ///< no error
  io_error,          ///< open/read/write/rename/mmap failed (errno text in the context)
  truncated,         ///< the file ends before a structure it announces
  bad_magic,         ///< not the expected file type
  bad_version,       ///< a format version we do not read
  bad_json,          ///< JSON syntax error or wrong JSON type for a field
  bad_value,         ///< a field is present but its value is invalid (negative, zero, NaN...)
  bad_dtype,         ///< unknown or unsupported element type
  bad_shape,         ///< shape inconsistent with the data or the model
  bad_range,         ///< a byte range outside the file or overlapping another one
  overflow,          ///< a size computation overflows 64 bits or passes a hard cap
  duplicate,         ///< a name that must be unique appears twice
  not_found,         ///< a tensor, key or file that must exist is missing
  size_mismatch,     ///< caller passed buffers of inconsistent sizes
  not_finite,        ///< input contains NaN or infinity where finite values are required
  unsupported,       ///< valid input that this library does not handle
  invalid_argument,  ///< a caller or command-line option is invalid
  internal,          ///< a bug in sbgq: please report it
};

/// Stable short name of an error code, used as the message id ("safetensors.bad_range").
constexpr std::string_view error_code_name(error_code c) noexcept {
  switch (c) {
    case error_code::success: return "success";
    case error_code::io_error: return "io_error";
    case error_code::truncated: return "truncated";
    case error_code::bad_magic: return "bad_magic";
    case error_code::bad_version: return "bad_version";
    case error_code::bad_json: return "bad_json";
    case error_code::bad_value: return "bad_value";
    case error_code::bad_dtype: return "bad_dtype";
    case error_code::bad_shape: return "bad_shape";
    case error_code::bad_range: return "bad_range";
    case error_code::overflow: return "overflow";
    case error_code::duplicate: return "duplicate";
    case error_code::not_found: return "not_found";
    case error_code::size_mismatch: return "size_mismatch";
    case error_code::not_finite: return "not_finite";
    case error_code::unsupported: return "unsupported";
    case error_code::invalid_argument: return "invalid_argument";
    case error_code::internal: return "internal";
  }
  return "unknown";
}

/// An error with its place: the component ("safetensors", "gguf", ...), a byte offset
/// into the file (npos when not about a file position) and a sentence of context.
struct error {
  static constexpr std::uint64_t npos = std::numeric_limits<std::uint64_t>::max();

  error_code code = error_code::internal;
  std::string component;  ///< "safetensors", "gguf", "config", ...
  std::string context;    ///< what was expected and what was found, with names
  std::uint64_t offset = npos;

  error() = default;
  error(error_code c) : code(c) {}  // NOLINT: implicit, so `return error_code::x;` works
  error(error_code c, std::string comp, std::string ctx, std::uint64_t off = npos)
      : code(c), component(std::move(comp)), context(std::move(ctx)), offset(off) {}

  /// "[sbgq.<component>.<code>] <context> (byte <offset>)".
  std::string message() const {
    std::string m = "[sbgq.";
    if (!component.empty()) {
      m += component;
      m += '.';
    }
    m += error_code_name(code);
    m += ']';
    if (!context.empty()) {
      m += ' ';
      m += context;
    }
    if (offset != npos) {
      m += " (byte ";
      m += std::to_string(offset);
      m += ')';
    }
    return m;
  }
};

#if SBGQ_EXCEPTIONS
/// Thrown by result<T>::value() on an error.
class exception : public std::runtime_error {
 public:
  explicit exception(sbgq::error e) : std::runtime_error(e.message()), error_(std::move(e)) {}
  const sbgq::error& error() const noexcept { return error_; }

 private:
  sbgq::error error_;
};
#endif

namespace detail {
[[noreturn]] inline void throw_error(const error& e) {
#if SBGQ_EXCEPTIONS
  throw exception(e);
#else
  std::fprintf(stderr, "%s\n", e.message().c_str());
  std::abort();
#endif
}
}  // namespace detail

/// A value or an error. Like std::expected<T, error>: has_value(), operator*, error(),
/// and value(), which throws sbgq::exception (or aborts under -fno-exceptions).
template <class T>
class [[nodiscard]] result {
 public:
  result(T v) : v_(std::in_place_index<0>, std::move(v)) {}  // NOLINT: implicit like expected
  result(sbgq::error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT
  result(error_code c) : v_(std::in_place_index<1>, sbgq::error(c)) {}  // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& operator*() & { SBGQ_DASSERT(has_value()); return std::get<0>(v_); }
  const T& operator*() const& { SBGQ_DASSERT(has_value()); return std::get<0>(v_); }
  T&& operator*() && { SBGQ_DASSERT(has_value()); return std::get<0>(std::move(v_)); }
  T* operator->() { SBGQ_DASSERT(has_value()); return &std::get<0>(v_); }
  const T* operator->() const { SBGQ_DASSERT(has_value()); return &std::get<0>(v_); }

  T& value() & { check(); return std::get<0>(v_); }
  const T& value() const& { check(); return std::get<0>(v_); }
  T&& value() && { check(); return std::get<0>(std::move(v_)); }

  const sbgq::error& error() const& { SBGQ_DASSERT(!has_value()); return std::get<1>(v_); }
  sbgq::error&& error() && { SBGQ_DASSERT(!has_value()); return std::get<1>(std::move(v_)); }

 private:
  void check() const {
    if (!has_value()) detail::throw_error(std::get<1>(v_));
  }
  std::variant<T, sbgq::error> v_;
};

/// result<void>: success or an error.
template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(sbgq::error e) : e_(std::move(e)), ok_(false) {}  // NOLINT
  result(error_code c) : e_(c), ok_(c == error_code::success) {}  // NOLINT

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {
    if (!ok_) detail::throw_error(e_);
  }
  const sbgq::error& error() const& { SBGQ_DASSERT(!ok_); return e_; }
  sbgq::error&& error() && { SBGQ_DASSERT(!ok_); return std::move(e_); }

 private:
  sbgq::error e_{error_code::success};
  bool ok_ = true;
};

/// `r` with `where` put before its error's context ("tensor 'blk.0.attn_norm.weight': row 3
/// column 17 of the input is nan"), for callers that know the place a lower layer does not.
template <class T>
result<T> in_context(result<T> r, std::string_view where) {
  if (r.has_value()) return r;
  sbgq::error e = std::move(r).error();
  e.context = std::string(where) + (e.context.empty() ? "" : ": ") + e.context;
  return e;
}

/// Propagate an error: `SBGQ_TRY(auto x, parse(...));` or `SBGQ_TRY_VOID(check(...));`.
#define SBGQ_CONCAT_IMPL(a, b) a##b
#define SBGQ_CONCAT(a, b) SBGQ_CONCAT_IMPL(a, b)
#define SBGQ_TRY_VOID(expr)                                    \
  do {                                                         \
    auto&& sbgq_try_r_ = (expr);                               \
    if (!sbgq_try_r_.has_value()) return std::move(sbgq_try_r_).error(); \
  } while (0)
#define SBGQ_TRY_IMPL(tmp, decl, expr)              \
  auto tmp = (expr);                                \
  if (!tmp.has_value()) return std::move(tmp).error(); \
  decl = std::move(*tmp)
// SBGQ_TRY expands to several statements: brace it under an if. The temporary's name
// comes from __COUNTER__, so two SBGQ_TRY on one line do not collide.
#define SBGQ_TRY_NAMED(n, decl, expr) SBGQ_TRY_IMPL(SBGQ_CONCAT(sbgq_try_, n), decl, expr)
#define SBGQ_TRY(decl, expr) SBGQ_TRY_NAMED(__COUNTER__, decl, expr)

SBGQ_END_NAMESPACE
