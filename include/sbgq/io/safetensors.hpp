// safetensors: open, validate, look up and view tensors; write new files.
//
// The format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 N,
// then N bytes of UTF-8 JSON, then the data section, which starts at byte 8 + N:
//
//   {"__metadata__": {"format": "pt"},                        optional, string -> string
//    "lm_head.weight": {"dtype": "BF16", "shape": [8192, 256],
//                       "data_offsets": [0, 4194304]}, ...}   [begin, end) in the data section
//
// The header may be padded with trailing spaces (writers pad 8 + N to a multiple of 8).
// Tensors are stored row-major, little-endian, with no padding between elements.
// A sharded checkpoint adds model.safetensors.index.json: {"metadata": {...},
// "weight_map": {"tensor name": "model-00001-of-00002.safetensors", ...}}.
//
// Design goals:
//   - Validate everything once, at open, before any byte is trusted: header length
//     (>= 2, inside the file, at most max_header_bytes), JSON syntax (simdjson DOM, on a
//     padded copy of the header), every entry's exact fields and their JSON types, known
//     dtypes, non-negative integer shapes of rank <= 8, shape x dtype size == end - begin
//     (overflow-checked), begin <= end <= data section size, ranges covering the data
//     section exactly (no overlap, no hole, no trailing byte), unique
//     names (simdjson keeps duplicate keys; we reject them), metadata values strings. After
//     that every tensor_view handed out is in bounds.
//   - Errors say where: "[sbgq.safetensors.<code>] '<file>': tensor '<name>': <expected>,
//     found <found> (byte <header offset of the tensor's name>)".
//   - Data is used in place through mmap: opening a 2 GB shard costs its header only.
//   - The writer streams: tensors are declared first (the header needs every offset), then
//     their bytes are written one after another, so no shard is ever held in memory; the
//     output is atomic (output_file: temp file, then rename).
// Non-goals: big-endian hosts; sub-byte dtypes (F4, F6_*); complex dtypes; writing
//     sharded checkpoints in one call (write one file per shard plus the index JSON).
//
// Like the Hugging Face reader, the data section must be covered exactly: the ranges,
// sorted by begin, are contiguous from 0 to the end of the file, with no hole between two
// tensors and no byte after the last one (a file with extra bytes would otherwise be read
// shifted by a writer that assumed another layout). Lenient on one point: JSON whitespace
// before the '{' is allowed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "../core/base.hpp"
#include "../core/detail/checked.hpp"
#include "../core/error.hpp"
#include "../core/json.hpp"
#include "../core/mapped_file.hpp"
#include "../core/output_file.hpp"
#include "../core/tensor_view.hpp"

SBGQ_BEGIN_NAMESPACE

/// One "__metadata__" entry.
struct metadata_entry {
  std::string key;
  std::string value;
};

/// A validated header entry. begin/end are relative to the data section.
struct tensor_info {
  std::string name;
  dtype type = dtype::u8;
  tensor_shape shape;
  std::uint64_t begin = 0, end = 0;   ///< data_offsets
  std::uint64_t header_offset = 0;    ///< file byte of the '"' that opens the name in the header
  std::uint64_t size_bytes() const noexcept { return end - begin; }
};

/// Iteration order for views().
enum class tensor_order : std::uint8_t {
  file,  ///< by data offset (ties, only possible between empty tensors, by name)
  name,  ///< by name, bytewise
};

namespace detail {

/// A name from a file, made safe for a message: printable ASCII kept, other bytes as
/// \xNN, cut after `max` bytes.
inline std::string printable(std::string_view s, std::size_t max = 160) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

inline const char* json_type_name(simdjson::dom::element_type t) noexcept {
  using et = simdjson::dom::element_type;
  switch (t) {
    case et::ARRAY: return "an array";
    case et::OBJECT: return "an object";
    case et::INT64: case et::UINT64: return "an integer";
    case et::DOUBLE: return "a floating-point number";
    case et::STRING: return "a string";
    case et::BOOL: return "a boolean";
    case et::NULL_VALUE: return "null";
  }
  return "an unknown value";
}

/// Byte positions (relative to `json`) of the '"' opening each key of the top-level
/// object, in document order, which is simdjson DOM's iteration order. Precondition:
/// `json` is valid JSON whose root is an object (checked by the DOM parse first).
inline std::vector<std::size_t> top_level_key_positions(std::string_view json) {
  std::vector<std::size_t> out;
  int depth = 0;
  bool expect_key = false;
  for (std::size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') {
      if (depth == 1 && expect_key) {
        out.push_back(i);
        expect_key = false;
      }
      for (++i; i < json.size() && json[i] != '"'; ++i)
        if (json[i] == '\\') ++i;  // skip the escaped character
    } else if (c == '{' || c == '[') {
      ++depth;
      if (depth == 1) expect_key = true;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == ',' && depth == 1) {
      expect_key = true;
    }
  }
  return out;
}

/// A JSON integer that must be >= 0. Sets `why` (bad_json: not an integer; bad_value:
/// negative) and returns false otherwise. UINT64 (>= 2^63) is returned as is.
inline bool json_u64(simdjson::dom::element e, std::uint64_t& out, error_code& code, std::string& why) {
  using et = simdjson::dom::element_type;
  switch (e.type()) {
    case et::INT64: {
      const std::int64_t v = e.get_int64().value_unsafe();
      if (v < 0) {
        code = error_code::bad_value;
        why = "a non-negative integer, found " + std::to_string(v);
        return false;
      }
      out = static_cast<std::uint64_t>(v);
      return true;
    }
    case et::UINT64: out = e.get_uint64().value_unsafe(); return true;
    default:
      code = error_code::bad_json;
      why = std::string("a non-negative integer, found ") + json_type_name(e.type());
      return false;
  }
}

/// A shard name from an index must be a plain file name in the index's directory.
inline bool is_plain_file_name(std::string_view s) noexcept {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (c == '/' || c == '\\' || c == ':' || c == '\0') return false;
  return true;
}

}  // namespace detail

/// One safetensors file, validated, with its tensors viewable in place.
///
/// Thread-safe: every const member may be called concurrently. Views stay valid while
/// this object (or the object it was moved into) lives.
class safetensors_file {
 public:
  /// Hard cap on the JSON header (the Hugging Face reader uses the same 100 MB), checked
  /// before anything is allocated.
  static constexpr std::uint64_t max_header_bytes = 100ull << 20;

  safetensors_file() = default;

  /// Maps `path` and validates it (see the file comment for the full list).
  /// Errors: io_error (cannot open/map), and every error of parse().
  static result<safetensors_file> open(const std::string& path) {
    auto m = mapped_file::open(path);
    if (!m) {
      auto e = std::move(m).error();
      e.component = "safetensors";
      return e;
    }
    auto f = parse(m->bytes(), path);
    if (!f) return f;
    f->map_ = std::move(*m);  // moving a mapping keeps its address, so the views stay valid
    return f;
  }

  /// Validates an in-memory image of a whole file. The bytes are borrowed: they must
  /// outlive the returned object. `source` names the image in messages.
  /// Errors (component "safetensors"; offsets are file bytes):
  ///   truncated   fewer than 8 bytes; header length past the end of the file
  ///   overflow    header length above max_header_bytes; shape product x dtype size
  ///               overflows 64 bits; a shape entry >= 2^63
  ///   bad_value   header length < 2; a negative shape entry or data offset
  ///   bad_json    JSON syntax; root, entry, __metadata__ or field of the wrong JSON type;
  ///               missing or unexpected field; data_offsets not exactly two integers;
  ///               non-integer shape entry
  ///   bad_dtype   unknown dtype string
  ///   unsupported shape rank above tensor_shape::max_rank
  ///   bad_shape   shape x dtype size != end - begin
  ///   bad_range   begin > end; end past the data section; two ranges overlap; a hole
  ///               between ranges (or before the first); bytes after the last range
  ///   duplicate   a tensor name, metadata key, field or "__metadata__" twice
  static result<safetensors_file> parse(std::span<const std::byte> image, std::string source = "<memory>") {
    safetensors_file f;
    f.source_ = std::move(source);
    f.image_ = image;
    SBGQ_TRY_VOID(f.parse_header());
    return f;
  }

  /// The path (or the `source` given to parse()).
  const std::string& path() const noexcept { return source_; }
  /// The whole file.
  std::span<const std::byte> bytes() const noexcept { return image_; }
  /// N, the JSON header's length (without the 8-byte prefix).
  std::uint64_t header_size() const noexcept { return header_size_; }
  /// File byte where the data section starts (8 + N).
  std::uint64_t data_offset() const noexcept { return 8 + header_size_; }

  /// Number of tensors.
  std::size_t size() const noexcept { return tensors_.size(); }
  /// Headers of all tensors in file order (by data offset).
  std::span<const tensor_info> tensors() const noexcept { return tensors_; }

  /// The view of one tensor of this file.
  tensor_view view(const tensor_info& t) const noexcept {
    const std::uint64_t at = data_offset() + t.begin;
    return tensor_view{t.name, t.type, t.shape,
                       image_.subspan(static_cast<std::size_t>(at), static_cast<std::size_t>(t.end - t.begin)), at};
  }
  /// The view of the i-th tensor in file order. Precondition: i < size().
  tensor_view view(std::size_t i) const noexcept {
    SBGQ_DASSERT(i < tensors_.size());
    return view(tensors_[i]);
  }
  /// Views of all tensors, in file or name order.
  std::vector<tensor_view> views(tensor_order order = tensor_order::file) const {
    std::vector<tensor_view> out;
    out.reserve(tensors_.size());
    if (order == tensor_order::file)
      for (const auto& t : tensors_) out.push_back(view(t));
    else
      for (std::uint32_t i : by_name_) out.push_back(view(tensors_[i]));
    return out;
  }

  /// The header of `name`, or nullptr. O(log n).
  const tensor_info* find_info(std::string_view name) const noexcept {
    auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                               [&](std::uint32_t i, std::string_view n) { return tensors_[i].name < n; });
    if (it == by_name_.end() || tensors_[*it].name != name) return nullptr;
    return &tensors_[*it];
  }
  /// The view of `name`, or nullopt. O(log n).
  std::optional<tensor_view> find(std::string_view name) const noexcept {
    const tensor_info* t = find_info(name);
    if (!t) return std::nullopt;
    return view(*t);
  }
  /// The view of `name`. Errors: not_found.
  result<tensor_view> get(std::string_view name) const {
    if (auto v = find(name)) return *v;
    return error(error_code::not_found, "safetensors",
                 "'" + source_ + "': no tensor '" + detail::printable(name) + "'");
  }
  bool contains(std::string_view name) const noexcept { return find_info(name) != nullptr; }

  /// The "__metadata__" entries, sorted by key (empty if the header has none).
  std::span<const metadata_entry> metadata() const noexcept { return metadata_; }
  /// One metadata value, or nullopt.
  std::optional<std::string_view> find_metadata(std::string_view key) const noexcept {
    auto it = std::lower_bound(metadata_.begin(), metadata_.end(), key,
                               [](const metadata_entry& m, std::string_view k) { return m.key < k; });
    if (it == metadata_.end() || it->key != key) return std::nullopt;
    return std::string_view(it->value);
  }

 private:
  error fail(error_code c, std::string what, std::uint64_t offset = error::npos) const {
    return error(c, "safetensors", "'" + source_ + "': " + what, offset);
  }
  error fail_tensor(error_code c, std::string_view name, const std::string& what, std::uint64_t offset) const {
    return fail(c, "tensor '" + detail::printable(name) + "': " + what, offset);
  }

  result<void> parse_header() {
    namespace dom = simdjson::dom;
    if (image_.size() < 8)
      return fail(error_code::truncated,
                  "file of " + std::to_string(image_.size()) + " bytes is shorter than the 8-byte header length", 0);
    std::uint64_t n = 0;
    std::memcpy(&n, image_.data(), 8);  // little-endian host (byte_reader.hpp asserts it)
    if (n > max_header_bytes)
      return fail(error_code::overflow,
                  "header length " + std::to_string(n) + " passes the cap of " + std::to_string(max_header_bytes) +
                      " bytes",
                  0);
    if (n > image_.size() - 8)
      return fail(error_code::truncated,
                  "header of " + std::to_string(n) + " bytes runs past the end of the file of " +
                      std::to_string(image_.size()) + " bytes",
                  0);
    if (n < 2)
      return fail(error_code::bad_value,
                  "header length " + std::to_string(n) + " is too small for a JSON object (at least 2 bytes)", 0);
    header_size_ = n;
    const std::uint64_t data_size = image_.size() - 8 - n;

    // simdjson reads up to SIMDJSON_PADDING bytes past the end of its input: parse a
    // padded copy, never the mapping itself.
    const simdjson::padded_string json(reinterpret_cast<const char*>(image_.data()) + 8, static_cast<std::size_t>(n));
    if (json.data() == nullptr) return fail(error_code::io_error, "cannot allocate a copy of the header");
    dom::parser parser;
    dom::element root;
    if (auto err = parser.parse(json).get(root))
      return fail(error_code::bad_json, std::string("header is not valid JSON: ") + simdjson::error_message(err), 8);
    dom::object obj;
    if (root.get_object().get(obj))
      return fail(error_code::bad_json,
                  std::string("header must be a JSON object, found ") + detail::json_type_name(root.type()), 8);

    const auto key_pos = detail::top_level_key_positions(std::string_view(json.data(), json.size()));
    std::size_t k = 0;
    bool have_metadata = false;
    for (dom::key_value_pair kv : obj) {
      const std::uint64_t off = k < key_pos.size() ? 8 + key_pos[k] : error::npos;
      ++k;
      if (kv.key == "__metadata__") {
        if (have_metadata) return fail(error_code::duplicate, "'__metadata__' appears twice", off);
        have_metadata = true;
        SBGQ_TRY_VOID(parse_metadata(kv.value, off));
        continue;
      }
      tensor_info t;
      t.name = std::string(kv.key);
      t.header_offset = off;
      SBGQ_TRY_VOID(parse_entry(kv.value, data_size, t));
      tensors_.push_back(std::move(t));
    }
    if (k != key_pos.size())
      return fail(error_code::internal, "header key scan found " + std::to_string(key_pos.size()) +
                                            " keys, the JSON parser " + std::to_string(k));

    // Unique names (simdjson keeps duplicate keys, so we check).
    by_name_.resize(tensors_.size());
    for (std::uint32_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
    std::sort(by_name_.begin(), by_name_.end(), [&](std::uint32_t a, std::uint32_t b) {
      return tensors_[a].name != tensors_[b].name ? tensors_[a].name < tensors_[b].name
                                                  : tensors_[a].header_offset < tensors_[b].header_offset;
    });
    for (std::size_t i = 1; i < by_name_.size(); ++i) {
      const auto& a = tensors_[by_name_[i - 1]];
      const auto& b = tensors_[by_name_[i]];
      if (a.name == b.name)
        return fail_tensor(error_code::duplicate, b.name,
                           "name appears twice (first at header byte " + std::to_string(a.header_offset) + ")",
                           b.header_offset);
    }

    // File order, then exact coverage (as the reference reader): sorted by begin, each
    // range starts where the previous one ends, the first at 0, and the last ends at the
    // end of the file. A range starting before that point overlaps the previous one; one
    // starting after it leaves a hole whose bytes no tensor owns.
    std::sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
      if (a.begin != b.begin) return a.begin < b.begin;
      if (a.end != b.end) return a.end < b.end;
      return a.name < b.name;
    });
    const tensor_info* prev = nullptr;  // the tensor whose end is `covered`
    std::uint64_t covered = 0;
    for (const auto& t : tensors_) {
      if (t.begin < covered)
        return fail_tensor(error_code::bad_range, t.name,
                           "data_offsets " + range_str(t) + " overlap tensor '" + detail::printable(prev->name) +
                               "' " + range_str(*prev),
                           t.header_offset);
      if (t.begin > covered) {
        std::string what = "data_offsets " + range_str(t) + " leave a hole: data section bytes [" +
                           std::to_string(covered) + ", " + std::to_string(t.begin) + ") (file bytes [" +
                           std::to_string(8 + n + covered) + ", " + std::to_string(8 + n + t.begin) +
                           ")) belong to no tensor, ";
        what += prev ? "the previous tensor '" + detail::printable(prev->name) + "' " + range_str(*prev) + " ends at " +
                           std::to_string(covered)
                     : std::string("the first tensor must start at 0");
        return fail_tensor(error_code::bad_range, t.name, what, t.header_offset);
      }
      covered = t.end;
      prev = &t;
    }
    if (covered != data_size) {
      std::string what = "data section of " + std::to_string(data_size) + " bytes has " +
                         std::to_string(data_size - covered) + " trailing bytes that belong to no tensor: file bytes [" +
                         std::to_string(8 + n + covered) + ", " + std::to_string(image_.size()) + ")";
      what += prev ? ", after the last tensor '" + detail::printable(prev->name) + "' " + range_str(*prev)
                   : std::string(", and the header lists no tensor");
      return fail(error_code::bad_range, what, 8 + n + covered);
    }
    for (std::uint32_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
    std::sort(by_name_.begin(), by_name_.end(),
              [&](std::uint32_t a, std::uint32_t b) { return tensors_[a].name < tensors_[b].name; });
    return {};
  }

  static std::string range_str(const tensor_info& t) {
    std::string s = "[";  // appends, not operator+ chains: GCC 12 warns falsely on those (-Wrestrict)
    s += std::to_string(t.begin);
    s += ", ";
    s += std::to_string(t.end);
    s += ')';
    return s;
  }

  result<void> parse_metadata(simdjson::dom::element v, std::uint64_t off) {
    namespace dom = simdjson::dom;
    dom::object obj;
    if (v.get_object().get(obj))
      return fail(error_code::bad_json,
                  std::string("'__metadata__' must be an object, found ") + detail::json_type_name(v.type()), off);
    for (dom::key_value_pair kv : obj) {
      std::string_view s;
      if (kv.value.get_string().get(s))
        return fail(error_code::bad_json,
                    "'__metadata__' value of '" + detail::printable(kv.key) + "' must be a string, found " +
                        detail::json_type_name(kv.value.type()),
                    off);
      metadata_.push_back({std::string(kv.key), std::string(s)});
    }
    std::sort(metadata_.begin(), metadata_.end(),
              [](const metadata_entry& a, const metadata_entry& b) { return a.key < b.key; });
    for (std::size_t i = 1; i < metadata_.size(); ++i)
      if (metadata_[i - 1].key == metadata_[i].key)
        return fail(error_code::duplicate, "'__metadata__' key '" + detail::printable(metadata_[i].key) + "' appears twice",
                    off);
    return {};
  }

  result<void> parse_entry(simdjson::dom::element v, std::uint64_t data_size, tensor_info& t) const {
    namespace dom = simdjson::dom;
    const std::uint64_t off = t.header_offset;
    dom::object obj;
    if (v.get_object().get(obj))
      return fail_tensor(error_code::bad_json, t.name,
                         std::string("expected an object {dtype, shape, data_offsets}, found ") +
                             detail::json_type_name(v.type()),
                         off);
    bool have_dtype = false, have_shape = false, have_offsets = false;
    error_code code = error_code::bad_json;
    std::string why;
    for (dom::key_value_pair kv : obj) {
      bool* seen = kv.key == "dtype" ? &have_dtype
                   : kv.key == "shape" ? &have_shape
                   : kv.key == "data_offsets" ? &have_offsets
                                                : nullptr;
      if (!seen)
        return fail_tensor(error_code::bad_json, t.name,
                           "unexpected field '" + detail::printable(kv.key) +
                               "' (expected exactly dtype, shape, data_offsets)",
                           off);
      if (*seen) return fail_tensor(error_code::duplicate, t.name, "field '" + std::string(kv.key) + "' appears twice", off);
      *seen = true;
      if (seen == &have_dtype) {
        std::string_view s;
        if (kv.value.get_string().get(s))
          return fail_tensor(error_code::bad_json, t.name,
                             std::string("dtype must be a string, found ") + detail::json_type_name(kv.value.type()), off);
        const auto d = dtype_from_name(s);
        if (!d) return fail_tensor(error_code::bad_dtype, t.name, "unknown dtype '" + detail::printable(s) + "'", off);
        t.type = *d;
      } else if (seen == &have_shape) {
        dom::array arr;
        if (kv.value.get_array().get(arr))
          return fail_tensor(error_code::bad_json, t.name,
                             std::string("shape must be an array, found ") + detail::json_type_name(kv.value.type()), off);
        std::array<std::int64_t, tensor_shape::max_rank> dims{};
        std::size_t rank = 0;
        for (dom::element d : arr) {
          if (rank == tensor_shape::max_rank)
            return fail_tensor(error_code::unsupported, t.name,
                               "shape has more than " + std::to_string(tensor_shape::max_rank) + " dimensions", off);
          std::uint64_t u = 0;
          if (!detail::json_u64(d, u, code, why))
            return fail_tensor(code, t.name, "shape entry " + std::to_string(rank) + ": expected " + why, off);
          if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return fail_tensor(error_code::overflow, t.name,
                               "shape entry " + std::to_string(rank) + " = " + std::to_string(u) + " passes 2^63 - 1",
                               off);
          dims[rank++] = static_cast<std::int64_t>(u);
        }
        auto s = tensor_shape::make(std::span<const std::int64_t>(dims.data(), rank));
        if (!s) return fail_tensor(error_code::internal, t.name, s.error().context, off);
        t.shape = *s;
      } else {
        dom::array arr;
        if (kv.value.get_array().get(arr))
          return fail_tensor(error_code::bad_json, t.name,
                             std::string("data_offsets must be an array [begin, end], found ") +
                                 detail::json_type_name(kv.value.type()),
                             off);
        std::uint64_t be[2] = {0, 0};
        std::size_t count = 0;
        for (dom::element d : arr) {
          if (count == 2) break;
          if (!detail::json_u64(d, be[count], code, why))
            return fail_tensor(code, t.name, "data_offsets[" + std::to_string(count) + "]: expected " + why, off);
          ++count;
        }
        if (count != 2 || arr.size() != 2)
          return fail_tensor(error_code::bad_json, t.name,
                             "data_offsets must hold exactly 2 integers [begin, end], found " +
                                 std::to_string(arr.size()) + " elements",
                             off);
        t.begin = be[0];
        t.end = be[1];
      }
    }
    if (!have_dtype || !have_shape || !have_offsets)
      return fail_tensor(error_code::bad_json, t.name,
                         std::string("missing field '") +
                             (!have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets") + "'",
                         off);

    std::uint64_t elements = 0, nbytes = 0;
    if (!t.shape.checked_elements(elements) || !detail::checked_mul(elements, dtype_size(t.type), nbytes))
      return fail_tensor(error_code::overflow, t.name,
                         "shape " + t.shape.to_string() + " x " + std::to_string(dtype_size(t.type)) +
                             " bytes overflows 64 bits",
                         off);
    if (t.begin > t.end)
      return fail_tensor(error_code::bad_range, t.name, "data_offsets " + range_str(t) + " begin after end", off);
    if (t.end > data_size)
      return fail_tensor(error_code::bad_range, t.name,
                         "data_offsets " + range_str(t) + " end past the data section of " +
                             std::to_string(data_size) + " bytes",
                         off);
    if (t.end - t.begin != nbytes)
      return fail_tensor(error_code::bad_shape, t.name,
                         "shape " + t.shape.to_string() + " of " + std::string(dtype_name(t.type)) + " needs " +
                             std::to_string(nbytes) + " bytes, data_offsets " + range_str(t) + " hold " +
                             std::to_string(t.end - t.begin),
                         off);
    return {};
  }

  std::string source_;
  mapped_file map_;                      // empty for parse()d images
  std::span<const std::byte> image_;
  std::uint64_t header_size_ = 0;
  std::vector<tensor_info> tensors_;     // file order
  std::vector<std::uint32_t> by_name_;   // indices into tensors_, sorted by name
  std::vector<metadata_entry> metadata_; // sorted by key
};

/// The parsed model.safetensors.index.json of a sharded checkpoint.
struct safetensors_index {
  struct entry {
    std::string tensor;
    std::string shard;  ///< a plain file name, in the index's directory
  };
  std::vector<entry> weight_map;           ///< sorted by tensor name
  std::optional<std::uint64_t> total_size; ///< "metadata": {"total_size": n}, when an integer >= 0

  /// Parses and validates an index's JSON text. `source` names it in messages.
  /// Errors (component "safetensors"): bad_json (syntax; root or "metadata" not an
  /// object; "weight_map" missing, not an object, or with a non-string value); duplicate
  /// (a tensor listed twice); bad_value (a shard that is not a plain file name: empty,
  /// ".", "..", or holding '/', '\', ':' or NUL).
  static result<safetensors_index> parse(std::string_view json_text, const std::string& source = "<memory>") {
    namespace dom = simdjson::dom;
    auto fail = [&](error_code c, const std::string& what) {
      return error(c, "safetensors", "index '" + source + "': " + what);
    };
    if (json_text.size() > safetensors_file::max_header_bytes)
      return fail(error_code::overflow, "index of " + std::to_string(json_text.size()) + " bytes passes the cap of " +
                                            std::to_string(safetensors_file::max_header_bytes));
    const simdjson::padded_string json(json_text.data(), json_text.size());
    dom::parser parser;
    dom::element root;
    if (auto err = parser.parse(json).get(root))
      return fail(error_code::bad_json, std::string("not valid JSON: ") + simdjson::error_message(err));
    dom::object obj;
    if (root.get_object().get(obj))
      return fail(error_code::bad_json, std::string("root must be an object, found ") + detail::json_type_name(root.type()));
    safetensors_index idx;
    bool have_map = false;
    for (dom::key_value_pair kv : obj) {
      if (kv.key == "metadata") {
        dom::object meta;
        if (kv.value.get_object().get(meta))
          return fail(error_code::bad_json,
                      std::string("'metadata' must be an object, found ") + detail::json_type_name(kv.value.type()));
        for (dom::key_value_pair m : meta) {
          std::uint64_t u = 0;
          error_code c{};
          std::string why;
          if (m.key == "total_size" && detail::json_u64(m.value, u, c, why)) idx.total_size = u;
        }
      } else if (kv.key == "weight_map") {
        if (have_map) return fail(error_code::duplicate, "'weight_map' appears twice");
        have_map = true;
        dom::object wm;
        if (kv.value.get_object().get(wm))
          return fail(error_code::bad_json,
                      std::string("'weight_map' must be an object, found ") + detail::json_type_name(kv.value.type()));
        for (dom::key_value_pair e : wm) {
          std::string_view shard;
          if (e.value.get_string().get(shard))
            return fail(error_code::bad_json, "weight_map['" + detail::printable(e.key) +
                                                  "'] must be a shard file name string, found " +
                                                  detail::json_type_name(e.value.type()));
          if (!detail::is_plain_file_name(shard))
            return fail(error_code::bad_value, "weight_map['" + detail::printable(e.key) + "'] = '" +
                                                   detail::printable(shard) +
                                                   "' is not a plain file name in the index's directory");
          idx.weight_map.push_back({std::string(e.key), std::string(shard)});
        }
      }
    }
    if (!have_map) return fail(error_code::bad_json, "missing 'weight_map'");
    std::sort(idx.weight_map.begin(), idx.weight_map.end(),
              [](const entry& a, const entry& b) { return a.tensor < b.tensor; });
    for (std::size_t i = 1; i < idx.weight_map.size(); ++i)
      if (idx.weight_map[i - 1].tensor == idx.weight_map[i].tensor)
        return fail(error_code::duplicate, "weight_map lists tensor '" + detail::printable(idx.weight_map[i].tensor) +
                                               "' twice ('" + detail::printable(idx.weight_map[i - 1].shard) + "', '" +
                                               detail::printable(idx.weight_map[i].shard) + "')");
    return idx;
  }
};

/// A model's tensors, from one safetensors file or from shards listed by
/// model.safetensors.index.json, with one lookup across all shards.
///
/// Thread-safe: every const member may be called concurrently. Each shard is mapped once.
class safetensors_checkpoint {
 public:
  static constexpr std::string_view index_file_name = "model.safetensors.index.json";
  static constexpr std::string_view single_file_name = "model.safetensors";

  safetensors_checkpoint() = default;

  /// Opens `path`: a directory (its model.safetensors.index.json, else its
  /// model.safetensors), an index file (name ending in ".json") or a single safetensors
  /// file. For an index, every shard must exist next to it, and the shards' tensors must
  /// be exactly the weight_map: each listed tensor in the shard named for it, and no tensor
  /// in a second shard or in none of the listed ones.
  /// Errors (component "safetensors"): not_found (no checkpoint in a directory, missing
  /// shard, listed tensor absent from its shard); duplicate (a tensor in two shards);
  /// bad_value (a shard holds a tensor the weight_map does not list); io_error; and the
  /// errors of safetensors_index::parse() and safetensors_file::open().
  static result<safetensors_checkpoint> open(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path p(path);
    if (fs::is_directory(p, ec)) {
      if (fs::exists(p / index_file_name, ec)) return open_index((p / index_file_name).string());
      if (fs::exists(p / single_file_name, ec)) return open_single((p / single_file_name).string());
      return error(error_code::not_found, "safetensors",
                   "directory '" + path + "' holds neither " + std::string(index_file_name) + " nor " +
                       std::string(single_file_name));
    }
    if (p.extension() == ".json") return open_index(path);
    return open_single(path);
  }

  /// Number of tensors over all shards.
  std::size_t size() const noexcept { return by_name_.size(); }
  /// The shards, in shard file name order (one for a single file).
  std::span<const safetensors_file> shards() const noexcept { return shards_; }
  /// The index path, or empty for a single file.
  const std::string& index_path() const noexcept { return index_path_; }
  /// The index's "metadata": {"total_size": n}, if present.
  std::optional<std::uint64_t> total_size() const noexcept { return total_size_; }

  /// The view of `name`, or nullopt. O(log n).
  std::optional<tensor_view> find(std::string_view name) const noexcept {
    const auto* r = find_ref(name);
    if (!r) return std::nullopt;
    return shards_[r->shard].view(r->tensor);
  }
  /// The view of `name`. Errors: not_found.
  result<tensor_view> get(std::string_view name) const {
    if (auto v = find(name)) return *v;
    return error(error_code::not_found, "safetensors", "checkpoint has no tensor '" + detail::printable(name) + "'");
  }
  bool contains(std::string_view name) const noexcept { return find_ref(name) != nullptr; }
  /// The shard holding `name`, or nullptr.
  const safetensors_file* shard_of(std::string_view name) const noexcept {
    const auto* r = find_ref(name);
    return r ? &shards_[r->shard] : nullptr;
  }
  /// Views of all tensors, sorted by name.
  std::vector<tensor_view> views() const {
    std::vector<tensor_view> out;
    out.reserve(by_name_.size());
    for (const auto& r : by_name_) out.push_back(shards_[r.shard].view(r.tensor));
    return out;
  }

 private:
  struct ref {
    std::uint32_t shard;
    std::uint32_t tensor;  // index in file order
  };
  const std::string& name_of(const ref& r) const noexcept { return shards_[r.shard].tensors()[r.tensor].name; }
  const ref* find_ref(std::string_view name) const noexcept {
    auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                               [&](const ref& r, std::string_view n) { return name_of(r) < n; });
    if (it == by_name_.end() || name_of(*it) != name) return nullptr;
    return &*it;
  }
  void build_lookup() {
    by_name_.clear();
    for (std::uint32_t s = 0; s < shards_.size(); ++s)
      for (std::uint32_t i = 0; i < shards_[s].size(); ++i) by_name_.push_back({s, i});
    std::sort(by_name_.begin(), by_name_.end(), [&](const ref& a, const ref& b) { return name_of(a) < name_of(b); });
  }

  static result<safetensors_checkpoint> open_single(const std::string& path) {
    safetensors_checkpoint c;
    SBGQ_TRY(auto f, safetensors_file::open(path));
    c.shards_.push_back(std::move(f));
    c.build_lookup();
    return c;
  }

  static result<safetensors_checkpoint> open_index(const std::string& path) {
    namespace fs = std::filesystem;
    auto fail = [&](error_code c, const std::string& what) {
      return error(c, "safetensors", "index '" + path + "': " + what);
    };
    auto m = mapped_file::open(path);
    if (!m) {
      auto e = std::move(m).error();
      e.component = "safetensors";
      return e;
    }
    SBGQ_TRY(safetensors_index idx,
             safetensors_index::parse(std::string_view(reinterpret_cast<const char*>(m->data()), m->size()), path));
    const fs::path dir = fs::path(path).parent_path();

    safetensors_checkpoint c;
    c.index_path_ = path;
    c.total_size_ = idx.total_size;
    std::vector<std::string> shard_names;
    for (const auto& e : idx.weight_map) shard_names.push_back(e.shard);
    std::sort(shard_names.begin(), shard_names.end());
    shard_names.erase(std::unique(shard_names.begin(), shard_names.end()), shard_names.end());
    for (const auto& name : shard_names) {
      const fs::path sp = dir / name;
      std::error_code ec;
      if (!fs::is_regular_file(sp, ec)) {
        const auto it = std::find_if(idx.weight_map.begin(), idx.weight_map.end(),
                                     [&](const auto& e) { return e.shard == name; });
        return fail(error_code::not_found, "tensor '" + detail::printable(it->tensor) + "' maps to shard '" +
                                               detail::printable(name) + "', which is not a file in '" +
                                               dir.string() + "'");
      }
      SBGQ_TRY(auto f, safetensors_file::open(sp.string()));
      c.shards_.push_back(std::move(f));
    }

    // Every listed tensor is in the shard named for it.
    for (const auto& e : idx.weight_map) {
      const auto s = static_cast<std::size_t>(
          std::lower_bound(shard_names.begin(), shard_names.end(), e.shard) - shard_names.begin());
      if (!c.shards_[s].contains(e.tensor)) {
        std::string elsewhere;
        for (const auto& f : c.shards_)
          if (f.contains(e.tensor)) elsewhere = " (it is in '" + detail::printable(f.path()) + "')";
        return fail(error_code::not_found, "tensor '" + detail::printable(e.tensor) + "' is not in its shard '" +
                                               detail::printable(e.shard) + "'" + elsewhere);
      }
    }
    // Every shard tensor is listed, for that shard: no tensor in two shards, none unlisted.
    for (const auto& f : c.shards_) {
      for (const auto& t : f.tensors()) {
        auto it = std::lower_bound(idx.weight_map.begin(), idx.weight_map.end(), t.name,
                                   [](const safetensors_index::entry& e, const std::string& n) { return e.tensor < n; });
        if (it == idx.weight_map.end() || it->tensor != t.name)
          return fail(error_code::bad_value, "shard '" + detail::printable(f.path()) + "' holds tensor '" +
                                                 detail::printable(t.name) + "', which the weight_map does not list");
        if ((dir / it->shard).string() != f.path())
          return fail(error_code::duplicate, "tensor '" + detail::printable(t.name) + "' is in shard '" +
                                                 detail::printable(it->shard) + "' and also in '" +
                                                 detail::printable(f.path()) + "'");
      }
    }
    c.build_lookup();
    return c;
  }

  std::vector<safetensors_file> shards_;
  std::vector<ref> by_name_;
  std::string index_path_;
  std::optional<std::uint64_t> total_size_;
};

/// Writes one safetensors file, streaming: the header (which needs every offset) first,
/// then each tensor's bytes in declaration order, so memory use does not grow with the
/// file. Data offsets are contiguous in declaration order; the header is padded with
/// spaces so the data section starts at a multiple of 8. The output is atomic: nothing
/// appears under the final name until finish() succeeds, and an abandoned or failed
/// writer leaves neither the file nor its temporary.
///
/// Two ways to use it:
///   - add() tensors with their bytes (borrowed until write_file() returns) or with a
///     producer callback that streams them through write(); then write_file(path).
///   - declare() tensors, begin(path), write() all data bytes in declaration order (any
///     chunking), finish().
///
/// Errors (component "safetensors"): invalid_argument (a name that is not UTF-8 or is
/// "__metadata__", a call out of sequence, data missing for write_file()); duplicate (a
/// name or metadata key twice); overflow (sizes passing 64 bits or a header passing
/// safetensors_file::max_header_bytes); size_mismatch (bytes not matching the shape, a
/// producer writing the wrong count, write() past the data, finish() before all data);
/// io_error. After an error in begin()/write()/finish() the writer is abandoned.
/// Not thread-safe.
class safetensors_writer {
 public:
  /// Streams one tensor's bytes by calling w.write() (any number of times).
  using producer = std::function<result<void>(safetensors_writer& w)>;

  safetensors_writer() = default;
  safetensors_writer(safetensors_writer&&) = default;
  safetensors_writer& operator=(safetensors_writer&&) = default;

  /// Adds a "__metadata__" entry. Before begin().
  result<void> add_metadata(std::string key, std::string value) {
    if (state_ != state::declaring) return sequence_error("add_metadata");
    if (!simdjson::validate_utf8(key) || !simdjson::validate_utf8(value))
      return fail(error_code::invalid_argument, "metadata key '" + detail::printable(key) + "': not valid UTF-8");
    for (const auto& m : metadata_)
      if (m.key == key) return fail(error_code::duplicate, "metadata key '" + detail::printable(key) + "' added twice");
    metadata_.push_back({std::move(key), std::move(value)});
    return {};
  }

  /// Declares a tensor whose bytes will be streamed with begin()/write()/finish().
  result<void> declare(std::string name, dtype type, tensor_shape shape) {
    return add_decl(std::move(name), type, shape, {}, {});
  }
  /// Adds a tensor with its bytes; they are borrowed until write_file() returns.
  result<void> add(std::string name, dtype type, tensor_shape shape, std::span<const std::byte> data) {
    return add_decl(std::move(name), type, shape, data, {}, true);
  }
  /// Adds a tensor whose bytes `fill` streams through write() during write_file().
  result<void> add(std::string name, dtype type, tensor_shape shape, producer fill) {
    if (!fill) return fail(error_code::invalid_argument, "tensor '" + detail::printable(name) + "': empty producer");
    return add_decl(std::move(name), type, shape, {}, std::move(fill));
  }

  /// Creates the temporary file for `path` and writes the header.
  result<void> begin(const std::string& path) {
    if (state_ != state::declaring) return sequence_error("begin");
    std::string header = "{";
    if (!metadata_.empty()) {
      header += "\"__metadata__\":{";
      for (std::size_t i = 0; i < metadata_.size(); ++i) {
        if (i) header += ',';
        append_json_string(header, metadata_[i].key);
        header += ':';
        append_json_string(header, metadata_[i].value);
      }
      header += '}';
    }
    for (std::size_t i = 0; i < decls_.size(); ++i) {
      const auto& d = decls_[i];
      if (i || !metadata_.empty()) header += ',';
      append_json_string(header, d.name);
      header += ":{\"dtype\":\"";
      header += dtype_name(d.type);
      header += "\",\"shape\":[";
      for (std::size_t j = 0; j < d.shape.rank(); ++j) {
        if (j) header += ',';
        header += std::to_string(d.shape[j]);
      }
      header += "],\"data_offsets\":[" + std::to_string(d.begin) + "," + std::to_string(d.end) + "]}";
    }
    header += '}';
    // Pad with spaces so that 8 + N is a multiple of 8 (the data section starts aligned).
    while (header.size() % 8 != 0) header += ' ';
    if (header.size() > safetensors_file::max_header_bytes)
      return fail(error_code::overflow, "header of " + std::to_string(header.size()) + " bytes passes the cap of " +
                                            std::to_string(safetensors_file::max_header_bytes));
    header_size_ = header.size();

    auto out = output_file::create(path);
    if (!out) return failed(std::move(out).error());
    out_ = std::move(*out);
    state_ = state::writing;
    std::byte len[8];
    const std::uint64_t n = header_size_;
    std::memcpy(len, &n, 8);  // little-endian host
    if (auto r = out_.write(len, 8); !r) return failed(std::move(r).error());
    if (auto r = out_.write(header.data(), header.size()); !r) return failed(std::move(r).error());
    written_ = 0;
    current_ = 0;
    skip_finished();
    return {};
  }

  /// Appends data bytes: the tensors' bytes in declaration order, without gaps.
  result<void> write(std::span<const std::byte> bytes) {
    if (state_ != state::writing) return sequence_error("write");
    if (bytes.size() > data_size_ - written_)
      return failed(error(error_code::size_mismatch, "safetensors",
                          "write of " + std::to_string(bytes.size()) + " bytes passes the declared data size of " +
                              std::to_string(data_size_) + " bytes (" + std::to_string(written_) + " written)"));
    if (auto r = out_.write(bytes); !r) return failed(std::move(r).error());
    written_ += bytes.size();
    skip_finished();
    return {};
  }
  result<void> write(const void* p, std::size_t n) {
    return write(std::span<const std::byte>(static_cast<const std::byte*>(p), n));
  }

  /// Checks that all data was written, then flushes and renames into place.
  result<void> finish() {
    if (state_ != state::writing) return sequence_error("finish");
    if (written_ != data_size_) {
      const auto& d = decls_[current_];
      return failed(error(error_code::size_mismatch, "safetensors",
                          "finish() with tensor '" + detail::printable(d.name) + "' at " +
                              std::to_string(written_ - d.begin) + " of " + std::to_string(d.end - d.begin) +
                              " bytes (" + std::to_string(written_) + " of " + std::to_string(data_size_) +
                              " data bytes written)"));
    }
    if (auto r = out_.commit(); !r) return failed(std::move(r).error());
    state_ = state::done;
    return {};
  }

  /// begin(path), then every tensor's bytes or producer, then finish().
  result<void> write_file(const std::string& path) {
    if (state_ != state::declaring) return sequence_error("write_file");
    for (const auto& d : decls_)
      if (!d.has_bytes && !d.fill)
        return fail(error_code::invalid_argument, "tensor '" + detail::printable(d.name) +
                                                      "' was declared without data; use begin()/write()/finish()");
    SBGQ_TRY_VOID(begin(path));
    for (auto& d : decls_) {
      if (d.has_bytes) {
        SBGQ_TRY_VOID(write(d.bytes));
      } else {
        auto r = d.fill(*this);
        if (!r) return failed(std::move(r).error());
        if (state_ != state::writing) return sequence_error("producer");
      }
      if (written_ != d.end)
        return failed(error(error_code::size_mismatch, "safetensors",
                            "producer of tensor '" + detail::printable(d.name) + "' wrote " +
                                std::to_string(written_ - d.begin) + " bytes, its shape needs " +
                                std::to_string(d.end - d.begin)));
    }
    return finish();
  }

  /// Drops the temporary file; the writer can no longer be used.
  void abandon() noexcept {
    out_.abandon();
    state_ = state::failed;
  }

  /// Number of declared tensors.
  std::size_t size() const noexcept { return decls_.size(); }
  /// Total data bytes declared so far.
  std::uint64_t data_size() const noexcept { return data_size_; }
  /// N of the written header (after begin()).
  std::uint64_t header_size() const noexcept { return header_size_; }
  /// Data bytes written so far.
  std::uint64_t bytes_written() const noexcept { return written_; }
  /// Index of the tensor the next write() goes to (size() when all are complete).
  std::size_t current_tensor() const noexcept { return current_; }

 private:
  enum class state : std::uint8_t { declaring, writing, done, failed };
  struct decl {
    std::string name;
    dtype type;
    tensor_shape shape;
    std::uint64_t begin, end;
    std::span<const std::byte> bytes;
    bool has_bytes = false;
    producer fill;
  };

  static error fail(error_code c, std::string what) { return error(c, "safetensors", std::move(what)); }
  error sequence_error(const char* call) const {
    static constexpr const char* names[] = {"declaring", "writing", "done", "failed"};
    return fail(error_code::invalid_argument,
                std::string(call) + "() called in state '" + names[static_cast<int>(state_)] + "'");
  }
  error failed(error e) {
    abandon();
    e.component = "safetensors";
    return e;
  }
  void skip_finished() noexcept {
    // Ends never decrease in declaration order; an empty tensor is complete once reached.
    while (current_ < decls_.size() && written_ >= decls_[current_].end) ++current_;
  }

  result<void> add_decl(std::string name, dtype type, tensor_shape shape, std::span<const std::byte> data,
                        producer fill, bool has_bytes = false) {
    if (state_ != state::declaring) return sequence_error("declare");
    const std::string pname = detail::printable(name);
    if (!simdjson::validate_utf8(name)) return fail(error_code::invalid_argument, "tensor '" + pname + "': name is not valid UTF-8");
    if (name == "__metadata__") return fail(error_code::invalid_argument, "'__metadata__' is reserved, not a tensor name");
    if (static_cast<std::size_t>(type) >= dtype_count)
      return fail(error_code::invalid_argument, "tensor '" + pname + "': invalid dtype value");
    for (std::int64_t d : shape.dims())
      if (d < 0) return fail(error_code::invalid_argument, "tensor '" + pname + "': negative dimension in " + shape.to_string());
    std::uint64_t elements = 0, nbytes = 0, end = 0;
    if (!shape.checked_elements(elements) || !detail::checked_mul(elements, dtype_size(type), nbytes) ||
        !detail::checked_add(data_size_, nbytes, end))
      return fail(error_code::overflow, "tensor '" + pname + "': size of shape " + shape.to_string() + " overflows");
    if (has_bytes && data.size() != nbytes)
      return fail(error_code::size_mismatch, "tensor '" + pname + "': " + std::to_string(data.size()) +
                                                 " bytes given, shape " + shape.to_string() + " of " +
                                                 std::string(dtype_name(type)) + " needs " + std::to_string(nbytes));
    if (!names_.insert(name).second) return fail(error_code::duplicate, "tensor '" + pname + "' added twice");
    decls_.push_back(decl{std::move(name), type, shape, data_size_, end, data, has_bytes, std::move(fill)});
    data_size_ = end;
    return {};
  }

  std::vector<decl> decls_;
  std::set<std::string> names_;
  std::vector<metadata_entry> metadata_;
  output_file out_;
  state state_ = state::declaring;
  std::uint64_t data_size_ = 0, header_size_ = 0, written_ = 0;
  std::size_t current_ = 0;
};

/// The text of model.safetensors.index.json: the total tensor bytes and, per tensor in
/// file order, the shard that holds it.
inline std::string safetensors_index_json(std::uint64_t total_size,
                                          const std::vector<std::pair<std::string, std::string>>& weight_map) {
  json_writer j;
  j.begin_object().key("metadata").begin_object(json_layout::inline_).key("total_size").value(total_size).end_object();
  j.key("weight_map").begin_object();
  for (const auto& [tensor, shard] : weight_map) j.key(tensor).value(shard);
  j.end_object().end_object();
  return std::move(j).str();
}

SBGQ_END_NAMESPACE
