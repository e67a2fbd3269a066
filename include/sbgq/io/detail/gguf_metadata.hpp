// GGUF metadata values: the 13 wire types, a value that holds any of them, and the
// ordered key/value list of a GGUF file (gguf-format.md section 2).
//
// Part of gguf.hpp; include that header, not this one.
//
// Design goals:
//   - The value types are exactly the wire types. A gguf_value is built from one exact C++
//     type (std::uint32_t, float, std::string, ...): `gguf_value(5)` does not compile,
//     because llama.cpp checks key types exactly (section 2.1) and an int that silently
//     became an INT32 key would make the model fail to load.
//   - Typed getters check the exact type as llama.cpp does and return an error naming the
//     key, the expected and the found type ("key 'x' has type i32, expected u32").
//   - Insertion order is kept: it is the order written to the file.
// Non-goals: nested arrays (the format forbids them), implicit conversions between types.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "../../core/base.hpp"
#include "../../core/error.hpp"

SBGQ_BEGIN_NAMESPACE

/// GGUF metadata value types with their wire ids (gguf-format.md section 2).
enum class gguf_value_type : std::uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  bool_ = 7,    ///< one byte, 0 = false, 1 = true
  string = 8,   ///< u64 length + UTF-8 bytes
  array = 9,    ///< u32 element type + u64 count + elements (no nesting)
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};
inline constexpr std::uint32_t gguf_value_type_count = 13;

/// True for a wire id in [0, 13).
constexpr bool is_valid_gguf_value_type(std::uint32_t id) noexcept { return id < gguf_value_type_count; }

/// The short name llama.cpp's gguf_type_name prints ("u8", "i32", "f32", "bool", "str",
/// "arr", ...), so our messages read like llama.cpp's.
constexpr std::string_view gguf_value_type_name(gguf_value_type t) noexcept {
  switch (t) {
    case gguf_value_type::uint8: return "u8";
    case gguf_value_type::int8: return "i8";
    case gguf_value_type::uint16: return "u16";
    case gguf_value_type::int16: return "i16";
    case gguf_value_type::uint32: return "u32";
    case gguf_value_type::int32: return "i32";
    case gguf_value_type::float32: return "f32";
    case gguf_value_type::bool_: return "bool";
    case gguf_value_type::string: return "str";
    case gguf_value_type::array: return "arr";
    case gguf_value_type::uint64: return "u64";
    case gguf_value_type::int64: return "i64";
    case gguf_value_type::float64: return "f64";
  }
  return "invalid";
}

/// Bytes of one encoded scalar; 0 for string and array (variable length).
constexpr std::size_t gguf_value_type_size(gguf_value_type t) noexcept {
  switch (t) {
    case gguf_value_type::uint8:
    case gguf_value_type::int8:
    case gguf_value_type::bool_: return 1;
    case gguf_value_type::uint16:
    case gguf_value_type::int16: return 2;
    case gguf_value_type::uint32:
    case gguf_value_type::int32:
    case gguf_value_type::float32: return 4;
    case gguf_value_type::uint64:
    case gguf_value_type::int64:
    case gguf_value_type::float64: return 8;
    case gguf_value_type::string:
    case gguf_value_type::array: return 0;
  }
  return 0;
}

/// The GGUF type of a C++ type: uint8_t..double, bool and std::string. Other types have
/// no GGUF type (the primary template is not defined), which makes misuse a compile error.
template <class T>
struct gguf_type_of;
#define SBGQ_GGUF_TYPE_OF(T, v) \
  template <>                    \
  struct gguf_type_of<T> {       \
    static constexpr gguf_value_type value = gguf_value_type::v; \
  }
SBGQ_GGUF_TYPE_OF(std::uint8_t, uint8);
SBGQ_GGUF_TYPE_OF(std::int8_t, int8);
SBGQ_GGUF_TYPE_OF(std::uint16_t, uint16);
SBGQ_GGUF_TYPE_OF(std::int16_t, int16);
SBGQ_GGUF_TYPE_OF(std::uint32_t, uint32);
SBGQ_GGUF_TYPE_OF(std::int32_t, int32);
SBGQ_GGUF_TYPE_OF(float, float32);
SBGQ_GGUF_TYPE_OF(bool, bool_);
SBGQ_GGUF_TYPE_OF(std::string, string);
SBGQ_GGUF_TYPE_OF(std::uint64_t, uint64);
SBGQ_GGUF_TYPE_OF(std::int64_t, int64);
SBGQ_GGUF_TYPE_OF(double, float64);
#undef SBGQ_GGUF_TYPE_OF

/// An array value: an element type and its elements. Numeric and bool elements are kept
/// as their little-endian wire bytes (bools as 0/1), strings as std::string. Elements are
/// read by copy (at<T>, to_vector<T>), which checks the element type exactly.
class gguf_array {
 public:
  gguf_array() = default;  ///< an empty UINT8 array

  /// An array of numbers or bools, copied from `values`.
  template <class T>
    requires(!std::is_same_v<T, std::string>)
  static gguf_array of(std::span<const T> values) {
    gguf_array a;
    a.type_ = gguf_type_of<T>::value;
    a.size_ = values.size();
    a.raw_.resize(values.size() * sizeof(T));
    if constexpr (std::is_same_v<T, bool>) {
      for (std::size_t i = 0; i < values.size(); ++i) a.raw_[i] = std::byte{values[i] ? std::uint8_t{1} : std::uint8_t{0}};
    } else if (!values.empty()) {
      std::memcpy(a.raw_.data(), values.data(), a.raw_.size());
    }
    return a;
  }
  template <class T>
    requires(!std::is_same_v<T, std::string>)
  static gguf_array of(const std::vector<T>& values) {
    if constexpr (std::is_same_v<T, bool>) {  // vector<bool> has no contiguous storage
      std::vector<std::uint8_t> b(values.begin(), values.end());
      gguf_array a = of(std::span<const std::uint8_t>(b));
      a.type_ = gguf_value_type::bool_;
      for (auto& x : a.raw_) x = x != std::byte{0} ? std::byte{1} : std::byte{0};
      return a;
    } else {
      return of(std::span<const T>(values));
    }
  }
  template <class T>
    requires(!std::is_same_v<T, std::string>)
  static gguf_array of(std::initializer_list<T> values) {
    return of(std::span<const T>(values.begin(), values.size()));
  }
  /// An array of strings.
  static gguf_array of(std::vector<std::string> values) {
    gguf_array a;
    a.type_ = gguf_value_type::string;
    a.size_ = values.size();
    a.strings_ = std::move(values);
    return a;
  }
  static gguf_array of(std::span<const std::string_view> values) {
    return of(std::vector<std::string>(values.begin(), values.end()));
  }
  /// An empty array of a given element type (any type but array).
  static gguf_array empty(gguf_value_type element_type) {
    SBGQ_DASSERT(element_type != gguf_value_type::array && is_valid_gguf_value_type(static_cast<std::uint32_t>(element_type)));
    gguf_array a;
    a.type_ = element_type;
    return a;
  }
  /// From wire bytes: `raw` holds count elements of `element_type` (not string, not array).
  /// Bools are normalised to 0/1 (llama.cpp reads any nonzero byte as true).
  static gguf_array from_raw(gguf_value_type element_type, std::span<const std::byte> raw) {
    const std::size_t sz = gguf_value_type_size(element_type);
    SBGQ_DASSERT(sz != 0 && raw.size() % sz == 0);
    gguf_array a;
    a.type_ = element_type;
    a.size_ = raw.size() / sz;
    a.raw_.assign(raw.begin(), raw.end());
    if (element_type == gguf_value_type::bool_)
      for (auto& x : a.raw_) x = x != std::byte{0} ? std::byte{1} : std::byte{0};
    return a;
  }

  gguf_value_type element_type() const noexcept { return type_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// Wire bytes of a numeric or bool array (empty for strings).
  std::span<const std::byte> raw_bytes() const noexcept { return raw_; }
  /// The elements of a string array (empty otherwise).
  std::span<const std::string> strings() const noexcept { return strings_; }

  /// True if the elements have type T exactly.
  template <class T>
  bool holds() const noexcept {
    return type_ == gguf_type_of<T>::value;
  }
  /// Element i as T. Precondition: holds<T>() and i < size().
  template <class T>
  T at(std::size_t i) const {
    SBGQ_DASSERT(holds<T>() && i < size_);
    if constexpr (std::is_same_v<T, std::string>) {
      return strings_[i];
    } else if constexpr (std::is_same_v<T, bool>) {
      return raw_[i] != std::byte{0};
    } else {
      T v;
      std::memcpy(&v, raw_.data() + i * sizeof(T), sizeof(T));
      return v;
    }
  }
  /// All elements as T. Precondition: holds<T>().
  template <class T>
  std::vector<T> to_vector() const {
    SBGQ_DASSERT(holds<T>());
    if constexpr (std::is_same_v<T, std::string>) {
      return strings_;
    } else {
      std::vector<T> v(size_);
      for (std::size_t i = 0; i < size_; ++i) v[i] = at<T>(i);
      return v;
    }
  }

  /// Exact equality: same element type and same element bytes / strings.
  friend bool operator==(const gguf_array& a, const gguf_array& b) {
    return a.type_ == b.type_ && a.size_ == b.size_ && a.raw_ == b.raw_ && a.strings_ == b.strings_;
  }

 private:
  gguf_value_type type_ = gguf_value_type::uint8;
  std::size_t size_ = 0;
  std::vector<std::byte> raw_;
  std::vector<std::string> strings_;
};

/// One metadata value: a scalar of one of the 12 scalar types, a string, or an array.
/// The variant index is the wire id, so type() is free.
class gguf_value {
 public:
  using storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t,
                               std::int32_t, float, bool, std::string, gguf_array, std::uint64_t,
                               std::int64_t, double>;

  gguf_value() = default;  ///< UINT8 0
  // One constructor per exact type: gguf_value(5) is ambiguous and does not compile.
  gguf_value(std::uint8_t v) : v_(std::in_place_index<0>, v) {}    // NOLINT: implicit on purpose
  gguf_value(std::int8_t v) : v_(std::in_place_index<1>, v) {}     // NOLINT
  gguf_value(std::uint16_t v) : v_(std::in_place_index<2>, v) {}   // NOLINT
  gguf_value(std::int16_t v) : v_(std::in_place_index<3>, v) {}    // NOLINT
  gguf_value(std::uint32_t v) : v_(std::in_place_index<4>, v) {}   // NOLINT
  gguf_value(std::int32_t v) : v_(std::in_place_index<5>, v) {}    // NOLINT
  gguf_value(float v) : v_(std::in_place_index<6>, v) {}           // NOLINT
  gguf_value(bool v) : v_(std::in_place_index<7>, v) {}            // NOLINT
  gguf_value(std::string v) : v_(std::in_place_index<8>, std::move(v)) {}  // NOLINT
  gguf_value(std::string_view v) : v_(std::in_place_index<8>, std::string(v)) {}  // NOLINT
  gguf_value(const char* v) : v_(std::in_place_index<8>, std::string(v)) {}  // NOLINT
  gguf_value(gguf_array v) : v_(std::in_place_index<9>, std::move(v)) {}   // NOLINT
  gguf_value(std::uint64_t v) : v_(std::in_place_index<10>, v) {}  // NOLINT
  gguf_value(std::int64_t v) : v_(std::in_place_index<11>, v) {}   // NOLINT
  gguf_value(double v) : v_(std::in_place_index<12>, v) {}         // NOLINT

  gguf_value_type type() const noexcept { return static_cast<gguf_value_type>(v_.index()); }
  bool is_array() const noexcept { return type() == gguf_value_type::array; }

  /// True if the value is a scalar of type T exactly (T = uint8_t..double, bool,
  /// std::string).
  template <class T>
  bool holds() const noexcept {
    return type() == gguf_type_of<T>::value;
  }
  /// Pointer to the scalar of type T, or nullptr if the type differs.
  template <class T>
  const T* get_if() const noexcept {
    return std::get_if<static_cast<std::size_t>(gguf_type_of<T>::value)>(&v_);
  }
  const std::string* get_string_if() const noexcept { return std::get_if<8>(&v_); }
  const gguf_array* get_array_if() const noexcept { return std::get_if<9>(&v_); }

  const storage& variant() const noexcept { return v_; }

  /// Exact equality (same type and value; floats compare by value, so NaN != NaN).
  friend bool operator==(const gguf_value& a, const gguf_value& b) { return a.v_ == b.v_; }

 private:
  storage v_;
};

/// A short human-readable rendering for tools and logs: numbers in decimal (floats with
/// enough digits to round-trip), strings quoted as-is, arrays as "[a, b, ...]" with at
/// most `max_elements` elements followed by "... (N total)".
inline std::string to_string(const gguf_value& v, std::size_t max_elements = 8) {
  auto scalar = [](const auto& x) -> std::string {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_same_v<T, std::string>) {
      return "\"" + x + "\"";
    } else if constexpr (std::is_same_v<T, bool>) {
      return x ? "true" : "false";
    } else if constexpr (std::is_floating_point_v<T>) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.*g", std::is_same_v<T, float> ? 9 : 17, static_cast<double>(x));
      return buf;
    } else if constexpr (std::is_integral_v<T>) {
      return std::to_string(static_cast<std::conditional_t<std::is_signed_v<T>, long long, unsigned long long>>(x));
    } else {
      return std::string();
    }
  };
  if (const gguf_array* a = v.get_array_if()) {
    std::string out = "[";
    const std::size_t n = a->size() < max_elements ? a->size() : max_elements;
    for (std::size_t i = 0; i < n; ++i) {
      if (i) out += ", ";
      switch (a->element_type()) {
        case gguf_value_type::uint8: out += scalar(a->at<std::uint8_t>(i)); break;
        case gguf_value_type::int8: out += scalar(a->at<std::int8_t>(i)); break;
        case gguf_value_type::uint16: out += scalar(a->at<std::uint16_t>(i)); break;
        case gguf_value_type::int16: out += scalar(a->at<std::int16_t>(i)); break;
        case gguf_value_type::uint32: out += scalar(a->at<std::uint32_t>(i)); break;
        case gguf_value_type::int32: out += scalar(a->at<std::int32_t>(i)); break;
        case gguf_value_type::float32: out += scalar(a->at<float>(i)); break;
        case gguf_value_type::bool_: out += scalar(a->at<bool>(i)); break;
        case gguf_value_type::string: out += scalar(a->strings()[i]); break;
        case gguf_value_type::uint64: out += scalar(a->at<std::uint64_t>(i)); break;
        case gguf_value_type::int64: out += scalar(a->at<std::int64_t>(i)); break;
        case gguf_value_type::float64: out += scalar(a->at<double>(i)); break;
        case gguf_value_type::array: break;
      }
    }
    if (a->size() > n) out += (n ? ", ... (" : "... (") + std::to_string(a->size()) + " total)";
    return out + "]";
  }
  return std::visit(scalar, v.variant());
}

/// One key/value record.
struct gguf_kv {
  std::string key;
  gguf_value value;
};

/// The ordered key/value list of a GGUF file, with lookup by key and typed getters that
/// check types exactly (gguf-format.md section 2.1).
///
/// Keys are non-empty and unique: add() rejects duplicates, set() replaces a value in
/// place (keeping its position). Thread-safe for concurrent const use.
class gguf_metadata {
 public:
  std::size_t size() const noexcept { return kvs_.size(); }
  bool empty() const noexcept { return kvs_.empty(); }
  const gguf_kv& operator[](std::size_t i) const noexcept { return kvs_[i]; }
  auto begin() const noexcept { return kvs_.begin(); }
  auto end() const noexcept { return kvs_.end(); }

  /// Index of `key`, or npos.
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::size_t index_of(std::string_view key) const {
    const auto it = index_.find(std::string(key));
    return it == index_.end() ? npos : it->second;
  }
  bool contains(std::string_view key) const { return index_of(key) != npos; }
  /// The value of `key`, or nullptr.
  const gguf_value* find(std::string_view key) const {
    const std::size_t i = index_of(key);
    return i == npos ? nullptr : &kvs_[i].value;
  }

  /// Appends a record. Errors: invalid_argument (empty key), duplicate (key present).
  result<void> add(std::string key, gguf_value value) {
    if (key.empty()) return error(error_code::invalid_argument, "gguf", "metadata keys must not be empty");
    if (contains(key)) return error(error_code::duplicate, "gguf", "duplicate metadata key '" + key + "'");
    index_.emplace(key, kvs_.size());
    kvs_.push_back(gguf_kv{std::move(key), std::move(value)});
    return {};
  }
  /// Sets `key`: replaces the value in place if present, else appends.
  /// Errors: invalid_argument (empty key).
  result<void> set(std::string key, gguf_value value) {
    if (key.empty()) return error(error_code::invalid_argument, "gguf", "metadata keys must not be empty");
    const std::size_t i = index_of(key);
    if (i != npos) {
      kvs_[i].value = std::move(value);
      return {};
    }
    return add(std::move(key), std::move(value));
  }
  /// Removes `key` (later records move up one place). Returns false if it was absent.
  bool remove(std::string_view key) {
    const std::size_t i = index_of(key);
    if (i == npos) return false;
    kvs_.erase(kvs_.begin() + static_cast<std::ptrdiff_t>(i));
    index_.clear();
    for (std::size_t j = 0; j < kvs_.size(); ++j) index_.emplace(kvs_[j].key, j);
    return true;
  }
  void reserve(std::size_t n) {
    kvs_.reserve(n);
    index_.reserve(n);
  }

  /// The scalar of `key`, of type T exactly (T = uint8_t..double or bool).
  /// Errors: not_found, bad_dtype ("key 'x' has type i32, expected u32").
  template <class T>
    requires(!std::is_same_v<T, std::string>)
  result<T> get(std::string_view key) const {
    SBGQ_TRY(const gguf_value* v, lookup(key, gguf_type_of<T>::value));
    return *v->get_if<T>();
  }
  /// The string of `key` (a view into this metadata). Errors: not_found, bad_dtype.
  result<std::string_view> get_string(std::string_view key) const {
    SBGQ_TRY(const gguf_value* v, lookup(key, gguf_value_type::string));
    return std::string_view(*v->get_string_if());
  }
  /// The array of `key`, any element type. Errors: not_found, bad_dtype (not an array).
  result<const gguf_array*> get_array(std::string_view key) const {
    SBGQ_TRY(const gguf_value* v, lookup(key, gguf_value_type::array));
    return v->get_array_if();
  }
  /// The elements of the array `key`, whose element type must be T exactly.
  /// Errors: not_found, bad_dtype ("key 'x' is an array of i32, expected an array of u32").
  template <class T>
  result<std::vector<T>> get_array_of(std::string_view key) const {
    SBGQ_TRY(const gguf_array* a, get_array(key));
    if (!a->holds<T>())
      return error(error_code::bad_dtype, "gguf",
                   "key '" + std::string(key) + "' is an array of " + std::string(gguf_value_type_name(a->element_type())) +
                       ", expected an array of " + std::string(gguf_value_type_name(gguf_type_of<T>::value)));
    return a->to_vector<T>();
  }
  /// Like get<T>, but a missing key is std::nullopt instead of an error.
  template <class T>
    requires(!std::is_same_v<T, std::string>)
  result<std::optional<T>> get_optional(std::string_view key) const {
    if (!contains(key)) return std::optional<T>{};
    SBGQ_TRY(T v, get<T>(key));
    return std::optional<T>(v);
  }

 private:
  result<const gguf_value*> lookup(std::string_view key, gguf_value_type want) const {
    const gguf_value* v = find(key);
    if (!v) return error(error_code::not_found, "gguf", "key '" + std::string(key) + "' not found");
    if (v->type() != want)
      return error(error_code::bad_dtype, "gguf",
                   "key '" + std::string(key) + "' has type " + std::string(gguf_value_type_name(v->type())) +
                       ", expected " + std::string(gguf_value_type_name(want)));
    return v;
  }

  std::vector<gguf_kv> kvs_;
  std::unordered_map<std::string, std::size_t> index_;
};

SBGQ_END_NAMESPACE
