// GGUF v3 files as llama.cpp reads them (../shared/spec/gguf-format.md): metadata values,
// tensor infos, a validating zero-copy reader and a streaming writer.
//
//   header (24 B) | n_kv key/value records | n_tensors tensor infos | pad to ALIGN |
//   data: each tensor's bytes, in tensor-info order, each padded to ALIGN
//
// Design goals:
//   - Files we write load in llama.cpp: the writer enforces every rule of the spec's
//     section 7 checklist (unique non-empty keys, u32 power-of-two general.alignment,
//     names <= 63 bytes, ne[0] a multiple of the block size, sequential aligned offsets,
//     padding after the infos and after every tensor) and refuses misuse with a message.
//   - Untrusted files in, clear errors out: the reader applies llama.cpp's checks
//     (gguf.cpp's gguf_init_from_reader) plus the model loader's "data inside the file"
//     check, validates every count against the bytes remaining and a hard cap before it
//     allocates, and uses overflow-checked arithmetic. Errors are
//     "[sbgq.gguf.<code>] <what, expected, found> (byte N)".
//   - Zero copy: tensor data are spans into the memory map; only metadata is copied.
//   - Bounded memory when writing: metadata and tensor infos are kept in memory, tensor
//     data are streamed (whole or in chunks) through an atomic output_file.
// Non-goals: big-endian files (rejected, like llama.cpp), split files, editing in place,
// GGUF v1.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/base.hpp"
#include "../core/detail/byte_reader.hpp"
#include "../core/detail/checked.hpp"
#include "detail/gguf_metadata.hpp"
#include "../core/error.hpp"
#include "ggml_types.hpp"
#include "../core/mapped_file.hpp"

SBGQ_BEGIN_NAMESPACE

// ---- format constants (gguf-format.md sections 1-4) ------------------------------------
inline constexpr std::uint32_t gguf_magic = 0x46554747u;  ///< "GGUF" read as a LE u32
inline constexpr std::uint32_t gguf_version = 3;          ///< what the writer writes
inline constexpr std::uint32_t gguf_default_alignment = 32;
inline constexpr std::uint64_t gguf_max_string_length = std::uint64_t{1} << 30;  ///< llama.cpp's cap
inline constexpr std::uint64_t gguf_max_array_elements = std::uint64_t{1} << 30;  ///< llama.cpp's cap
inline constexpr std::size_t gguf_max_name_length = 63;  ///< GGML_MAX_NAME - 1
inline constexpr std::uint32_t gguf_max_dims = 4;        ///< GGML_MAX_DIMS
/// Our hard caps on the record counts: far above any model (Qwen3.5 has ~60 keys and
/// ~1,000 tensors), low enough that a lying header cannot make us allocate much.
inline constexpr std::uint64_t gguf_max_tensors = std::uint64_t{1} << 20;
inline constexpr std::uint64_t gguf_max_kv = std::uint64_t{1} << 20;
inline constexpr std::string_view gguf_key_alignment = "general.alignment";

/// One tensor-info record (section 3): the tensor's description plus where its bytes are.
struct gguf_tensor_info : tensor_desc {
  std::uint64_t offset = 0;  ///< from the start of the data section
  std::uint64_t nbytes = 0;  ///< (ne[0]/block) * type_size * ne[1] * ne[2] * ne[3], unpadded
};

namespace detail {

inline std::string gguf_shape_string(const std::array<std::int64_t, 4>& ne) {
  return "[" + std::to_string(ne[0]) + ", " + std::to_string(ne[1]) + ", " + std::to_string(ne[2]) + ", " +
         std::to_string(ne[3]) + "]";
}

/// The reader's and writer's shared tensor checks (section 3), in llama.cpp's order:
/// ne >= 0, element count representable, type valid, ne[0] % block == 0, byte size
/// representable. Returns nbytes. Messages name the tensor.
inline result<std::uint64_t> gguf_check_tensor(std::string_view name, std::uint32_t type_id,
                                               const std::array<std::int64_t, 4>& ne) {
  const std::string who = "tensor '" + std::string(name) + "'";
  for (std::size_t j = 0; j < 4; ++j)
    if (ne[j] < 0)
      return error(error_code::bad_shape, "gguf",
                   who + " dimension " + std::to_string(j) + " has " + std::to_string(ne[j]) + " elements, must be >= 0");
  // llama.cpp's rule: ne[0]*...*ne[j-1] < INT64_MAX / ne[j] for j = 1..3 (so the
  // element count stays below INT64_MAX). Checked in this order nothing can overflow.
  // (llama.cpp skips its check when the wrapped product is <= 0; we never do.)
  if (ne[0] != 0 && ne[1] != 0 && ne[2] != 0 && ne[3] != 0) {
    constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t n = static_cast<std::uint64_t>(ne[0]);
    for (std::size_t j = 1; j < 4; ++j) {
      const auto d = static_cast<std::uint64_t>(ne[j]);
      if (n >= max / d)
        return error(error_code::overflow, "gguf",
                     who + " shape " + gguf_shape_string(ne) + " has 2^63-1 or more elements");
      n *= d;
    }
  }
  if (!is_valid_ggml_type(type_id)) {
    if (type_id < ggml_type_count)
      return error(error_code::bad_dtype, "gguf",
                   who + " has ggml type " + std::to_string(type_id) + " (" +
                       std::string(ggml_type_table[type_id].name) + "), which was removed from ggml");
    return error(error_code::bad_dtype, "gguf",
                 who + " has unknown ggml type " + std::to_string(type_id) + " (valid ids are below " +
                     std::to_string(ggml_type_count) + ")");
  }
  const auto t = static_cast<ggml_type>(type_id);
  const std::uint64_t blck = block_size(t);
  if (static_cast<std::uint64_t>(ne[0]) % blck != 0)
    return error(error_code::bad_shape, "gguf",
                 who + " of type " + std::string(type_name(t)) + " has ne[0] = " + std::to_string(ne[0]) +
                     ", not a multiple of the block size " + std::to_string(blck));
  std::uint64_t bytes = static_cast<std::uint64_t>(ne[0]) / blck;
  if (!checked_mul(bytes, type_size(t), bytes) || !checked_mul(bytes, static_cast<std::uint64_t>(ne[1]), bytes) ||
      !checked_mul(bytes, static_cast<std::uint64_t>(ne[2]), bytes) ||
      !checked_mul(bytes, static_cast<std::uint64_t>(ne[3]), bytes))
    return error(error_code::overflow, "gguf", who + " shape " + gguf_shape_string(ne) + " has a byte size over 2^64");
  return bytes;
}

inline std::string gguf_printable(std::string_view s, std::size_t max = 80) {
  std::string out;
  static constexpr char hex[] = "0123456789abcdef";
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

/// The parser behind gguf_file::parse: one pass over the bytes, every read bounds-checked.
class gguf_parser {
 public:
  explicit gguf_parser(std::span<const std::byte> bytes) : bytes_(bytes), r_(bytes) {}

  struct parsed {
    std::uint32_t version = 0;
    std::uint64_t alignment = gguf_default_alignment;
    std::uint64_t data_offset = 0;
    gguf_metadata metadata;
    std::vector<gguf_tensor_info> tensors;
  };

  result<parsed> run() {
    parsed p;
    // -- header (section 1.1)
    std::uint32_t magic = 0;
    if (!r_.read(magic))
      return fail(error_code::truncated, "file of " + std::to_string(bytes_.size()) + " bytes ends inside the magic", 0);
    if (magic != gguf_magic)
      return fail(error_code::bad_magic,
                  "expected magic 'GGUF', found '" +
                      gguf_printable(std::string_view(reinterpret_cast<const char*>(bytes_.data()), 4)) + "'",
                  0);
    SBGQ_TRY_VOID(read(p.version, "the version"));
    if (p.version == 0) return fail(error_code::bad_version, "version 0 is not a GGUF version", 4);
    if ((p.version & 0xFFFFu) == 0)
      return fail(error_code::bad_version,
                  "version " + std::to_string(p.version) +
                      " has its low 16 bits zero: the file is big-endian or byte-swapped; only little-endian "
                      "GGUF is supported",
                  4);
    if (p.version == 1) return fail(error_code::bad_version, "GGUF version 1 is no longer supported (need 2 or 3)", 4);
    if (p.version > gguf_version)
      return fail(error_code::bad_version,
                  "GGUF version " + std::to_string(p.version) + " is newer than the newest supported (3)", 4);
    std::int64_t n_tensors = 0, n_kv = 0;
    SBGQ_TRY_VOID(read(n_tensors, "n_tensors"));
    SBGQ_TRY_VOID(check_count(n_tensors, "n_tensors", gguf_max_tensors, 8));
    SBGQ_TRY_VOID(read(n_kv, "n_kv"));
    SBGQ_TRY_VOID(check_count(n_kv, "n_kv", gguf_max_kv, 16));
    // Each tensor info takes at least 24 bytes (empty name, 0 dims), each record at least 14
    // (1-byte key, u8 value): check the claims against the file before reserving anything.
    const auto nt = static_cast<std::uint64_t>(n_tensors), nk = static_cast<std::uint64_t>(n_kv);
    if (nt * 24 + nk * 14 > r_.remaining())
      return fail(error_code::truncated,
                  "header announces " + std::to_string(nk) + " key/value records and " + std::to_string(nt) +
                      " tensor infos (at least " + std::to_string(nt * 24 + nk * 14) + " bytes), but only " +
                      std::to_string(r_.remaining()) + " bytes follow",
                  8);

    // -- key/value records (section 2)
    p.metadata.reserve(static_cast<std::size_t>(nk));
    std::uint64_t alignment_record = error::npos;
    for (std::uint64_t i = 0; i < nk; ++i) {
      const std::uint64_t rec = r_.offset();
      const std::string what = "key of record " + std::to_string(i);
      std::string_view key;
      SBGQ_TRY_VOID(read_string(key, what));
      if (key.empty()) return fail(error_code::bad_value, what + " is empty", rec);
      const std::size_t prev = p.metadata.index_of(key);
      if (prev != gguf_metadata::npos)
        return fail(error_code::duplicate,
                    "duplicate key '" + gguf_printable(key) + "' (records " + std::to_string(prev) + " and " +
                        std::to_string(i) + ")",
                    rec);
      const std::string who = "key '" + gguf_printable(key) + "'";
      const std::uint64_t type_at = r_.offset();
      std::uint32_t type_id = 0;
      SBGQ_TRY_VOID(read(type_id, "the value type of " + who));
      if (!is_valid_gguf_value_type(type_id))
        return fail(error_code::bad_dtype,
                    who + " has invalid value type " + std::to_string(type_id) + " (valid ids are 0..12)", type_at);
      gguf_value value;
      if (static_cast<gguf_value_type>(type_id) == gguf_value_type::array) {
        SBGQ_TRY(value, read_array(who));
      } else {
        SBGQ_TRY(value, read_scalar(static_cast<gguf_value_type>(type_id), who));
      }
      if (key == gguf_key_alignment) alignment_record = rec;
      auto added = p.metadata.add(std::string(key), std::move(value));
      if (!added) return fail(error_code::internal, added.error().context, rec);
    }

    // -- general.alignment (section 2.2): u32, a power of two
    if (const gguf_value* a = p.metadata.find(gguf_key_alignment)) {
      const std::uint32_t* v = a->get_if<std::uint32_t>();
      if (!v)
        return fail(error_code::bad_dtype,
                    "key 'general.alignment' must have type u32, found " + std::string(gguf_value_type_name(a->type())),
                    alignment_record);
      if (*v == 0 || (*v & (*v - 1)) != 0)
        return fail(error_code::bad_value, "general.alignment is " + std::to_string(*v) + ", not a power of two",
                    alignment_record);
      p.alignment = *v;
    }

    // -- tensor infos (section 3)
    p.tensors.reserve(static_cast<std::size_t>(nt));
    std::unordered_map<std::string_view, std::size_t> names;  // views into the file bytes
    names.reserve(static_cast<std::size_t>(nt));
    std::vector<std::uint64_t> offset_fields(static_cast<std::size_t>(nt));
    for (std::uint64_t i = 0; i < nt; ++i) {
      const std::uint64_t rec = r_.offset();
      gguf_tensor_info info;
      std::string_view name;
      SBGQ_TRY_VOID(read_string(name, "name of tensor " + std::to_string(i)));
      if (name.size() > gguf_max_name_length)
        return fail(error_code::bad_value,
                    "tensor " + std::to_string(i) + " name '" + gguf_printable(name) + "' is " +
                        std::to_string(name.size()) + " bytes long; the limit is 63",
                    rec);
      if (name.find('\0') != std::string_view::npos)
        return fail(error_code::bad_value,
                    "tensor " + std::to_string(i) + " name '" + gguf_printable(name) +
                        "' contains a NUL byte (ggml names are C strings)",
                    rec);
      if (const auto it = names.find(name); it != names.end())
        return fail(error_code::duplicate,
                    "duplicate tensor name '" + gguf_printable(name) + "' (tensors " + std::to_string(it->second) +
                        " and " + std::to_string(i) + ")",
                    rec);
      names.emplace(name, static_cast<std::size_t>(i));
      info.name.assign(name);
      const std::string who = "tensor '" + gguf_printable(name) + "'";
      const std::uint64_t dims_at = r_.offset();
      SBGQ_TRY_VOID(read(info.n_dims, "n_dims of " + who));
      if (info.n_dims > gguf_max_dims)
        return fail(error_code::bad_shape, who + " has " + std::to_string(info.n_dims) + " dimensions; at most 4", dims_at);
      for (std::uint32_t j = 0; j < info.n_dims; ++j)
        SBGQ_TRY_VOID(read(info.ne[j], "ne[" + std::to_string(j) + "] of " + who));
      const std::uint64_t type_at = r_.offset();
      std::uint32_t type_id = 0;
      SBGQ_TRY_VOID(read(type_id, "the type of " + who));
      auto nbytes = gguf_check_tensor(name, type_id, info.ne);
      if (!nbytes) {
        const error_code c = nbytes.error().code;
        return fail(c, nbytes.error().context, c == error_code::bad_dtype ? type_at : dims_at);
      }
      info.type = static_cast<ggml_type>(type_id);
      info.nbytes = *nbytes;
      offset_fields[static_cast<std::size_t>(i)] = r_.offset();
      SBGQ_TRY_VOID(read(info.offset, "the offset of " + who));
      p.tensors.push_back(std::move(info));
    }

    // -- data section (section 4): starts at the aligned end of the infos; offsets are the
    // running sum of the padded sizes; every tensor lies inside the file.
    const std::uint64_t infos_end = r_.offset();
    p.data_offset = infos_end;
    if (nt > 0) {
      if (!checked_align_up(infos_end, p.alignment, p.data_offset) || p.data_offset > bytes_.size())
        return fail(error_code::truncated,
                    "the data section starts at byte " + std::to_string(detail::align_up(infos_end, p.alignment)) +
                        " (end of the tensor infos padded to " + std::to_string(p.alignment) +
                        "), past the end of the file (" + std::to_string(bytes_.size()) + " bytes)",
                    infos_end);
    }
    std::uint64_t expected = 0;
    for (std::size_t i = 0; i < p.tensors.size(); ++i) {
      const gguf_tensor_info& t = p.tensors[i];
      const std::string who = "tensor '" + gguf_printable(t.name) + "'";
      if (t.offset != expected)
        return fail(error_code::bad_range,
                    who + " has offset " + std::to_string(t.offset) + ", expected " + std::to_string(expected) +
                        " (tensor data must follow tensor-info order, each padded to " + std::to_string(p.alignment) +
                        ")",
                    offset_fields[i]);
      std::uint64_t begin = 0, end = 0, padded = 0;
      if (!checked_add(p.data_offset, t.offset, begin) || !checked_add(begin, t.nbytes, end) || end > bytes_.size())
        return fail(error_code::truncated,
                    who + " data [" + std::to_string(p.data_offset) + " + " + std::to_string(t.offset) + ", +" +
                        std::to_string(t.nbytes) + " bytes) ends past the end of the file (" +
                        std::to_string(bytes_.size()) + " bytes)",
                    offset_fields[i]);
      if (!checked_align_up(t.nbytes, p.alignment, padded) || !checked_add(expected, padded, expected))
        return fail(error_code::overflow, who + ": the data section size overflows", offset_fields[i]);
    }
    return p;
  }

 private:
  static error fail(error_code c, std::string ctx, std::uint64_t off) {
    return error(c, "gguf", std::move(ctx), off);
  }
  template <class T>
  result<void> read(T& out, const std::string& what) {
    const std::uint64_t at = r_.offset();
    if (!r_.read(out))
      return fail(error_code::truncated,
                  "file ends inside " + what + " (" + std::to_string(sizeof(T)) + " bytes needed, " +
                      std::to_string(r_.remaining()) + " left)",
                  at);
    return {};
  }
  result<void> check_count(std::int64_t n, const char* what, std::uint64_t cap, std::uint64_t at) {
    if (n < 0) return fail(error_code::bad_value, std::string(what) + " is " + std::to_string(n) + ", must be >= 0", at);
    if (static_cast<std::uint64_t>(n) > cap)
      return fail(error_code::overflow,
                  std::string(what) + " is " + std::to_string(n) + ", over the limit of " + std::to_string(cap), at);
    return {};
  }
  /// A GGUF string (section 1.2): u64 length <= 2^30 and within the file.
  result<void> read_string(std::string_view& out, const std::string& what) {
    const std::uint64_t at = r_.offset();
    std::uint64_t n = 0;
    SBGQ_TRY_VOID(read(n, "the length of the " + what));
    if (n > gguf_max_string_length)
      return fail(error_code::overflow, what + " has length " + std::to_string(n) + ", over the 2^30 limit", at);
    if (!r_.read_string(n, out))
      return fail(error_code::truncated,
                  what + " has length " + std::to_string(n) + " but only " + std::to_string(r_.remaining()) +
                      " bytes remain",
                  at);
    return {};
  }
  result<gguf_value> read_scalar(gguf_value_type t, const std::string& who) {
    const std::uint64_t at = r_.offset();
    if (t == gguf_value_type::string) {
      std::string_view s;
      SBGQ_TRY_VOID(read_string(s, "string value of " + who));
      return gguf_value(std::string(s));
    }
    const std::size_t sz = gguf_value_type_size(t);
    std::span<const std::byte> b;
    if (!r_.read_bytes(sz, b))
      return fail(error_code::truncated,
                  "file ends inside the " + std::string(gguf_value_type_name(t)) + " value of " + who, at);
    auto load = [&](auto v) {
      std::memcpy(&v, b.data(), sizeof(v));
      return gguf_value(v);
    };
    switch (t) {
      case gguf_value_type::uint8: return load(std::uint8_t{});
      case gguf_value_type::int8: return load(std::int8_t{});
      case gguf_value_type::uint16: return load(std::uint16_t{});
      case gguf_value_type::int16: return load(std::int16_t{});
      case gguf_value_type::uint32: return load(std::uint32_t{});
      case gguf_value_type::int32: return load(std::int32_t{});
      case gguf_value_type::float32: return load(float{});
      case gguf_value_type::bool_: return gguf_value(b[0] != std::byte{0});  // llama.cpp: any nonzero is true
      case gguf_value_type::uint64: return load(std::uint64_t{});
      case gguf_value_type::int64: return load(std::int64_t{});
      case gguf_value_type::float64: return load(double{});
      default: return fail(error_code::internal, "unexpected scalar type", at);
    }
  }
  result<gguf_value> read_array(const std::string& who) {
    const std::uint64_t at = r_.offset();
    std::uint32_t et = 0;
    std::uint64_t n = 0;
    SBGQ_TRY_VOID(read(et, "the array element type of " + who));
    if (et == static_cast<std::uint32_t>(gguf_value_type::array))
      return fail(error_code::bad_dtype, who + " is an array of arrays; GGUF forbids nesting", at);
    if (!is_valid_gguf_value_type(et))
      return fail(error_code::bad_dtype,
                  who + " is an array of invalid element type " + std::to_string(et) + " (valid ids are 0..12)", at);
    const auto t = static_cast<gguf_value_type>(et);
    const std::uint64_t count_at = r_.offset();
    SBGQ_TRY_VOID(read(n, "the array length of " + who));
    if (n > gguf_max_array_elements)
      return fail(error_code::overflow, who + " is an array of " + std::to_string(n) + " elements, over the 2^30 limit",
                  count_at);
    // Strings take at least their 8-byte length each: check before allocating.
    const std::uint64_t elem = t == gguf_value_type::string ? 8 : gguf_value_type_size(t);
    if (n * elem > r_.remaining())  // n <= 2^30 and elem <= 8: no overflow
      return fail(error_code::truncated,
                  who + " is an array of " + std::to_string(n) + " " + std::string(gguf_value_type_name(t)) +
                      " (at least " + std::to_string(n * elem) + " bytes) but only " + std::to_string(r_.remaining()) +
                      " bytes remain",
                  count_at);
    if (t == gguf_value_type::string) {
      std::vector<std::string> v;
      v.reserve(static_cast<std::size_t>(n));
      for (std::uint64_t i = 0; i < n; ++i) {
        std::string_view s;
        SBGQ_TRY_VOID(read_string(s, "string " + std::to_string(i) + " of " + who));
        v.emplace_back(s);
      }
      return gguf_value(gguf_array::of(std::move(v)));
    }
    std::span<const std::byte> b;
    r_.read_bytes(n * elem, b);  // cannot fail: checked above
    return gguf_value(gguf_array::from_raw(t, b));
  }

  std::span<const std::byte> bytes_;
  byte_reader r_;
};

}  // namespace detail

/// A parsed, validated GGUF file. Tensor data are zero-copy spans into the file's bytes
/// (the memory map for open(), the caller's buffer for parse()).
///
/// Thread-safe for concurrent const use. Moving keeps every span valid.
class gguf_file {
 public:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  /// Maps `path` and parses it. Errors: io_error, and every error of parse(); the context
  /// then starts with the path.
  static result<gguf_file> open(const std::string& path) {
    SBGQ_TRY(mapped_file m, mapped_file::open(path));
    auto f = parse(m.bytes());
    if (!f) {
      error e = std::move(f).error();
      e.context = "'" + path + "': " + e.context;
      return e;
    }
    gguf_file out = std::move(*f);
    out.map_ = std::move(m);  // the mapping's address does not change on move
    return out;
  }

  /// Parses GGUF bytes held by the caller, who keeps them alive as long as the result.
  /// Errors (component "gguf", with the byte offset of the offending field):
  ///   truncated   the file ends inside a structure, or a count/length/tensor exceeds what is left
  ///   bad_magic   not "GGUF";  bad_version  0, 1, > 3, or big-endian
  ///   bad_value   negative count, empty key, tensor name > 63 bytes or with a NUL byte,
  ///               alignment not a power of two
  ///   bad_dtype   invalid value type, nested array, general.alignment not u32, unknown/removed ggml type
  ///   bad_shape   n_dims > 4, ne < 0, ne[0] not a multiple of the block size
  ///   overflow    string > 2^30, array > 2^30 elements, counts over gguf_max_*, element or byte count overflow
  ///   duplicate   a key or tensor name appears twice
  ///   bad_range   a tensor offset is not the running sum of the padded sizes (section 4.3)
  static result<gguf_file> parse(std::span<const std::byte> bytes) {
    detail::gguf_parser parser(bytes);
    SBGQ_TRY(auto p, parser.run());
    gguf_file f;
    f.bytes_ = bytes;
    f.version_ = p.version;
    f.alignment_ = p.alignment;
    f.data_offset_ = p.data_offset;
    f.metadata_ = std::move(p.metadata);
    f.tensors_ = std::move(p.tensors);
    f.index_.reserve(f.tensors_.size());
    for (std::size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
    return f;
  }

  std::uint32_t version() const noexcept { return version_; }
  /// general.alignment, or 32.
  std::uint64_t alignment() const noexcept { return alignment_; }
  /// Absolute offset of the data section (as gguf_get_data_offset reports it: the end of
  /// the tensor infos, unpadded, when there are no tensors).
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  std::uint64_t file_size() const noexcept { return bytes_.size(); }
  std::span<const std::byte> bytes() const noexcept { return bytes_; }

  const gguf_metadata& metadata() const noexcept { return metadata_; }
  std::span<const gguf_tensor_info> tensors() const noexcept { return tensors_; }
  /// The tensors' descriptions (name, type, shape), as the type rules take them.
  std::vector<tensor_desc> descriptions() const {
    return std::vector<tensor_desc>(tensors_.begin(), tensors_.end());
  }

  /// Index of the tensor `name`, or npos.
  std::size_t tensor_index(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? npos : it->second;
  }
  const gguf_tensor_info* find_tensor(std::string_view name) const {
    const std::size_t i = tensor_index(name);
    return i == npos ? nullptr : &tensors_[i];
  }
  /// The bytes of tensor i (unpadded), inside the file. Precondition: i < tensors().size().
  std::span<const std::byte> tensor_data(std::size_t i) const noexcept {
    SBGQ_DASSERT(i < tensors_.size());
    const gguf_tensor_info& t = tensors_[i];
    return bytes_.subspan(static_cast<std::size_t>(data_offset_ + t.offset), static_cast<std::size_t>(t.nbytes));
  }
  /// The bytes of the tensor `name`. Errors: not_found.
  result<std::span<const std::byte>> tensor_data(std::string_view name) const {
    const std::size_t i = tensor_index(name);
    if (i == npos) return error(error_code::not_found, "gguf", "tensor '" + std::string(name) + "' not found");
    return tensor_data(i);
  }
  /// The memory map (empty for files made by parse()).
  const mapped_file& mapping() const noexcept { return map_; }

 private:
  gguf_file() = default;

  mapped_file map_;
  std::span<const std::byte> bytes_;
  std::uint32_t version_ = gguf_version;
  std::uint64_t alignment_ = gguf_default_alignment;
  std::uint64_t data_offset_ = 0;
  gguf_metadata metadata_;
  std::vector<gguf_tensor_info> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
};

SBGQ_END_NAMESPACE

#include "detail/gguf_writer.hpp"
