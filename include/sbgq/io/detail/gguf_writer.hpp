// The streaming GGUF writer (gguf-format.md sections 1-4 and the section 7 checklist).
//
// Part of gguf.hpp; include that header, not this one.
//
// Life of a writer:
//   1. declare: set/add metadata (any order; written in insertion order) and declare
//      tensor infos (name, ggml_type, ne) in the order their data will follow;
//   2. write: the first data write (or finish()) freezes the declarations and writes the
//      header, the records, the tensor infos and the zero padding to ALIGN; then each
//      tensor's bytes are written in declaration order, whole or in chunks, and padded
//      to ALIGN when complete (the last tensor too);
//   3. finish(): checks that every tensor was written, then renames the temporary file
//      to the final name. A writer destroyed before finish() leaves nothing behind.
// Memory: the metadata and tensor infos are held (and the header is encoded) in memory;
// tensor data pass straight through to the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../core/base.hpp"
#include "../../core/error.hpp"
#include "../ggml_types.hpp"
#include "../../core/output_file.hpp"
#include "../../core/detail/checked.hpp"
#include "gguf_metadata.hpp"
#include "../gguf.hpp"  // gguf_tensor_info, limits, detail::gguf_check_tensor

SBGQ_BEGIN_NAMESPACE

namespace detail {

/// Little-endian encoder into a growing byte vector (the header part of a GGUF file).
class gguf_encoder {
 public:
  explicit gguf_encoder(std::vector<std::byte>& out) : out_(out) {}
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const std::size_t n = out_.size();
    out_.resize(n + sizeof(T));
    std::memcpy(out_.data() + n, &v, sizeof(T));
  }
  void put_bytes(std::span<const std::byte> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void put_string(std::string_view s) {
    put(static_cast<std::uint64_t>(s.size()));
    put_bytes(std::as_bytes(std::span<const char>(s.data(), s.size())));
  }
  void put_value(const gguf_value& v) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            put_string(x);
          } else if constexpr (std::is_same_v<T, gguf_array>) {
            put(static_cast<std::uint32_t>(x.element_type()));
            put(static_cast<std::uint64_t>(x.size()));
            if (x.element_type() == gguf_value_type::string) {
              for (const auto& s : x.strings()) put_string(s);
            } else {
              put_bytes(x.raw_bytes());
            }
          } else if constexpr (std::is_same_v<T, bool>) {
            put(static_cast<std::uint8_t>(x ? 1 : 0));
          } else {
            put(x);
          }
        },
        v.variant());
  }
  void pad_to(std::uint64_t align) {
    out_.resize(static_cast<std::size_t>(align_up(out_.size(), align)), std::byte{0});
  }

 private:
  std::vector<std::byte>& out_;
};

/// Checks a metadata value against the format's limits (strings <= 2^30 bytes, arrays
/// <= 2^30 elements, general.alignment a u32 power of two).
inline result<void> gguf_check_value(std::string_view key, const gguf_value& v) {
  const std::string who = "key '" + std::string(key) + "'";
  if (key.empty()) return error(error_code::invalid_argument, "gguf", "metadata keys must not be empty");
  if (key.size() > gguf_max_string_length)
    return error(error_code::overflow, "gguf", "a metadata key is over 2^30 bytes long");
  if (key == "general.alignment") {
    const std::uint32_t* a = v.get_if<std::uint32_t>();
    if (!a)
      return error(error_code::bad_dtype, "gguf",
                   "key 'general.alignment' must have type u32, got " + std::string(gguf_value_type_name(v.type())));
    if (*a == 0 || (*a & (*a - 1)) != 0)
      return error(error_code::bad_value, "gguf", "general.alignment must be a power of two, got " + std::to_string(*a));
  }
  if (const std::string* s = v.get_string_if(); s && s->size() > gguf_max_string_length)
    return error(error_code::overflow, "gguf", who + ": string value over 2^30 bytes");
  if (const gguf_array* a = v.get_array_if()) {
    if (a->size() > gguf_max_array_elements)
      return error(error_code::overflow, "gguf", who + ": array of " + std::to_string(a->size()) + " elements, over 2^30");
    for (const auto& s : a->strings())
      if (s.size() > gguf_max_string_length)
        return error(error_code::overflow, "gguf", who + ": array string over 2^30 bytes");
  }
  return {};
}

}  // namespace detail

/// Writes a GGUF v3 file: metadata and tensor infos first, then tensor data streamed in
/// declaration order. See the file comment for the life cycle.
///
/// Errors (component "gguf"): invalid_argument (misuse: empty/overlong name, wrong
/// order, calls after finish, finish before all data), duplicate (key or tensor name),
/// size_mismatch (byte count differs from the declared size), bad_dtype / bad_value /
/// bad_shape / overflow (invalid declarations), io_error. A failed call changes nothing
/// except io_error, after which the writer is unusable.
/// Not thread-safe.
class gguf_writer {
 public:
  /// Creates the temporary output beside `path`. Errors: io_error.
  static result<gguf_writer> create(const std::string& path) {
    SBGQ_TRY(output_file f, output_file::create(path));
    gguf_writer w;
    w.out_ = std::move(f);
    return w;
  }

  gguf_writer(gguf_writer&&) noexcept = default;
  gguf_writer& operator=(gguf_writer&&) noexcept = default;
  gguf_writer(const gguf_writer&) = delete;
  gguf_writer& operator=(const gguf_writer&) = delete;
  ~gguf_writer() = default;  // output_file's destructor removes an unfinished file

  // ---- declarations (before the first data write) ----------------------------------

  /// Appends a metadata record. Errors: duplicate, invalid_argument, and the limits of
  /// detail::gguf_check_value (general.alignment must be a u32 power of two).
  result<void> add(std::string key, gguf_value value) {
    SBGQ_TRY_VOID(check_declaring("add metadata"));
    SBGQ_TRY_VOID(detail::gguf_check_value(key, value));
    return metadata_.add(std::move(key), std::move(value));
  }
  /// Sets a metadata record: replaces the value in place if the key exists, else appends.
  result<void> set(std::string key, gguf_value value) {
    SBGQ_TRY_VOID(check_declaring("set metadata"));
    SBGQ_TRY_VOID(detail::gguf_check_value(key, value));
    return metadata_.set(std::move(key), std::move(value));
  }
  /// Appends every record of `m` (e.g. copied from an input file). Errors: as add().
  result<void> add_all(const gguf_metadata& m) {
    for (const gguf_kv& kv : m) SBGQ_TRY_VOID(add(kv.key, kv.value));
    return {};
  }
  const gguf_metadata& metadata() const noexcept { return metadata_; }

  /// Declares the next tensor; returns its index. `ne` has 1..4 dims, ne[0] first.
  /// Errors: invalid_argument (empty name, name over 63 bytes or with a NUL byte, 0 or > 4 dims),
  /// duplicate, bad_shape (ne < 0, ne[0] not a multiple of the block size),
  /// bad_dtype (removed type), overflow.
  result<std::size_t> add_tensor(std::string name, ggml_type type, std::span<const std::int64_t> ne) {
    SBGQ_TRY_VOID(check_declaring("declare a tensor"));
    if (name.empty()) return fail(error_code::invalid_argument, "tensor names must not be empty");
    if (name.size() > gguf_max_name_length)
      return fail(error_code::invalid_argument,
                  "tensor name '" + name + "' is " + std::to_string(name.size()) + " bytes long; the limit is 63");
    if (name.find('\0') != std::string::npos)
      return fail(error_code::invalid_argument, "tensor names must not contain NUL bytes (ggml names are C strings)");
    if (index_.count(name)) return fail(error_code::duplicate, "duplicate tensor name '" + name + "'");
    if (ne.empty() || ne.size() > gguf_max_dims)
      return fail(error_code::invalid_argument,
                  "tensor '" + name + "' has " + std::to_string(ne.size()) + " dimensions; need 1 to 4");
    if (tensors_.size() >= gguf_max_tensors) return fail(error_code::overflow, "too many tensors");
    gguf_tensor_info t;
    t.name = std::move(name);
    t.type = type;
    t.n_dims = static_cast<std::uint32_t>(ne.size());
    for (std::size_t j = 0; j < ne.size(); ++j) t.ne[j] = ne[j];
    SBGQ_TRY(t.nbytes, detail::gguf_check_tensor(t.name, static_cast<std::uint32_t>(type), t.ne));
    index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
    return tensors_.size() - 1;
  }
  result<std::size_t> add_tensor(std::string name, ggml_type type, std::initializer_list<std::int64_t> ne) {
    return add_tensor(std::move(name), type, std::span<const std::int64_t>(ne.begin(), ne.size()));
  }
  /// The declared tensors; offsets are final once the header is written.
  std::span<const gguf_tensor_info> tensors() const noexcept { return tensors_; }
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::size_t tensor_index(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? npos : it->second;
  }

  /// Freezes the declarations and writes everything before the data section. Called by
  /// the first data write or finish(); explicit calls are optional.
  result<void> write_header() {
    SBGQ_TRY_VOID(check_declaring("write the header"));
    alignment_ = metadata_alignment();
    std::uint64_t off = 0;
    for (auto& t : tensors_) {
      t.offset = off;
      std::uint64_t padded = 0;
      if (!detail::checked_align_up(t.nbytes, alignment_, padded) || !detail::checked_add(off, padded, off))
        return fail(error_code::overflow, "the data section size overflows 64 bits");
    }
    std::vector<std::byte> h;
    encode_header(h, std::span<const gguf_tensor_info>(tensors_));
    data_offset_ = h.size();
    state_ = state::writing;
    return io(out_.write(h));
  }

  /// The size the header will have (magic to the padded start of the data section) with
  /// the metadata added so far and `tensors` declared: their names and dimension counts
  /// set it, their types and sizes do not, so a planner can learn it before it chooses
  /// the types (a size budget for the whole file).
  std::uint64_t header_bytes(std::span<const tensor_desc> tensors) const {
    std::vector<std::byte> h;
    encode_header(h, tensors);
    return h.size();
  }
  /// The data alignment the header will declare (general.alignment, or the default).
  std::uint64_t metadata_alignment() const {
    if (const auto* a = metadata_.find("general.alignment")) return *a->get_if<std::uint32_t>();
    return gguf_default_alignment;
  }

  // ---- tensor data, in declaration order ------------------------------------------

  /// Writes all bytes of tensor `index`, which must be the next one (next_tensor()) and
  /// not partly written. Errors: invalid_argument (order), size_mismatch, io_error.
  result<void> write_tensor_data(std::size_t index, std::span<const std::byte> bytes) {
    SBGQ_TRY_VOID(check_next(index, "write_tensor_data"));
    const gguf_tensor_info& t = tensors_[index];
    if (written_ != 0)
      return fail(error_code::invalid_argument,
                  "tensor '" + t.name + "' already has " + std::to_string(written_) +
                      " bytes written in chunks; continue with write_tensor_chunk");
    if (bytes.size() != t.nbytes)
      return fail(error_code::size_mismatch, "tensor '" + t.name + "' " + describe(t) + " is " +
                                                 std::to_string(t.nbytes) + " bytes, got " + std::to_string(bytes.size()));
    return append(bytes);
  }
  result<void> write_tensor_data(std::string_view name, std::span<const std::byte> bytes) {
    SBGQ_TRY(std::size_t i, lookup(name));
    return write_tensor_data(i, bytes);
  }
  /// Typed convenience: the bytes of a span of trivially copyable elements.
  template <class T>
    requires(std::is_trivially_copyable_v<T> && !std::is_same_v<T, std::byte>)
  result<void> write_tensor_data(std::size_t index, std::span<const T> values) {
    return write_tensor_data(index, std::as_bytes(values));
  }

  /// Appends a chunk to tensor `index`, which must be the next one; the tensor is
  /// complete (and padded) when its declared size is reached. Lets a big tensor be
  /// produced piece by piece. Errors: invalid_argument (order), size_mismatch (more
  /// bytes than remain in the tensor), io_error.
  result<void> write_tensor_chunk(std::size_t index, std::span<const std::byte> chunk) {
    SBGQ_TRY_VOID(check_next(index, "write_tensor_chunk"));
    const gguf_tensor_info& t = tensors_[index];
    if (chunk.size() > t.nbytes - written_)
      return fail(error_code::size_mismatch, "tensor '" + t.name + "' " + describe(t) + " has " +
                                                 std::to_string(t.nbytes - written_) + " of " +
                                                 std::to_string(t.nbytes) + " bytes left, got a chunk of " +
                                                 std::to_string(chunk.size()));
    return append(chunk);
  }
  result<void> write_tensor_chunk(std::string_view name, std::span<const std::byte> chunk) {
    SBGQ_TRY(std::size_t i, lookup(name));
    return write_tensor_chunk(i, chunk);
  }

  /// Index of the tensor the next data write must target (== tensors().size() when all
  /// are written).
  std::size_t next_tensor() const noexcept { return current_; }
  /// Bytes of the current tensor written so far (chunked writes).
  std::uint64_t bytes_written_in_tensor() const noexcept { return written_; }
  /// Absolute file offset of the data section (valid after write_header()).
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  /// The alignment in use (valid after write_header()).
  std::uint64_t alignment() const noexcept { return alignment_; }
  /// Final path of the output.
  const std::string& path() const noexcept { return out_.path(); }

  /// Writes the header if not done yet, checks every tensor was written, and atomically
  /// renames the file into place. Errors: invalid_argument (tensors missing), io_error.
  result<void> finish() {
    if (state_ == state::declaring) SBGQ_TRY_VOID(write_header());
    if (state_ != state::writing) return fail(error_code::invalid_argument, "finish() on a " + state_name() + " writer");
    if (current_ < tensors_.size()) {
      const gguf_tensor_info& t = tensors_[current_];
      return fail(error_code::invalid_argument,
                  "finish() before all tensor data was written: tensor '" + t.name + "' (" +
                      std::to_string(current_) + " of " + std::to_string(tensors_.size()) + ") has " +
                      std::to_string(written_) + " of " + std::to_string(t.nbytes) + " bytes");
    }
    SBGQ_TRY_VOID(io(out_.commit()));
    state_ = state::finished;
    return {};
  }

  /// Drops the output (also done by the destructor when finish() was not reached).
  void abandon() noexcept {
    out_.abandon();
    state_ = state::failed;
  }

 private:
  enum class state { declaring, writing, finished, failed };
  gguf_writer() = default;

  static error fail(error_code c, std::string ctx) { return error(c, "gguf", std::move(ctx)); }
  /// The header's bytes: magic, counts, metadata records, tensor infos (the offsets of
  /// gguf_tensor_info; 0 for a bare tensor_desc, whose size is the same), padding.
  template <class Tensor>
  void encode_header(std::vector<std::byte>& h, std::span<const Tensor> tensors) const {
    detail::gguf_encoder enc(h);
    enc.put(gguf_magic);
    enc.put(gguf_version);
    enc.put(static_cast<std::int64_t>(tensors.size()));
    enc.put(static_cast<std::int64_t>(metadata_.size()));
    for (const gguf_kv& kv : metadata_) {
      enc.put_string(kv.key);
      enc.put(static_cast<std::uint32_t>(kv.value.type()));
      enc.put_value(kv.value);
    }
    for (const Tensor& t : tensors) {
      enc.put_string(t.name);
      enc.put(t.n_dims);
      for (std::uint32_t j = 0; j < t.n_dims; ++j) enc.put(t.ne[j]);
      enc.put(static_cast<std::uint32_t>(t.type));
      if constexpr (requires { t.offset; }) enc.put(t.offset);
      else enc.put(std::uint64_t{0});
    }
    enc.pad_to(metadata_alignment());  // ggml pads even without tensors; so do we
  }
  std::string state_name() const {
    switch (state_) {
      case state::declaring: return "declaring";
      case state::writing: return "writing";
      case state::finished: return "finished";
      case state::failed: return "failed";
    }
    return "?";
  }
  static std::string describe(const gguf_tensor_info& t) {
    std::string s = "(" + std::string(type_name(t.type)) + " [";
    for (std::uint32_t j = 0; j < t.n_dims; ++j) s += (j ? ", " : "") + std::to_string(t.ne[j]);
    return s + "])";
  }
  result<void> check_declaring(const char* what) const {
    if (state_ != state::declaring)
      return fail(error_code::invalid_argument,
                  std::string("cannot ") + what + " after the header was written (writer is " + state_name() + ")");
    return {};
  }
  result<std::size_t> lookup(std::string_view name) const {
    const std::size_t i = tensor_index(name);
    if (i == npos) return fail(error_code::invalid_argument, "no tensor named '" + std::string(name) + "' was declared");
    return i;
  }
  result<void> check_next(std::size_t index, const char* what) {
    if (state_ == state::declaring) SBGQ_TRY_VOID(write_header());
    if (state_ != state::writing)
      return fail(error_code::invalid_argument, std::string(what) + " on a " + state_name() + " writer");
    if (index >= tensors_.size())
      return fail(error_code::invalid_argument, std::string(what) + ": tensor index " + std::to_string(index) +
                                                    " out of range (" + std::to_string(tensors_.size()) + " declared)");
    if (index < current_)
      return fail(error_code::invalid_argument, "tensor '" + tensors_[index].name + "' was already written");
    if (index > current_)
      return fail(error_code::invalid_argument,
                  "tensor '" + tensors_[index].name + "' (index " + std::to_string(index) +
                      ") written before tensor '" + tensors_[current_].name + "' (index " + std::to_string(current_) +
                      "): tensor data must follow declaration order");
    return {};
  }
  result<void> append(std::span<const std::byte> bytes) {
    SBGQ_TRY_VOID(io(out_.write(bytes)));
    written_ += bytes.size();
    const gguf_tensor_info& t = tensors_[current_];
    if (written_ == t.nbytes) {
      SBGQ_TRY_VOID(io(out_.write_zeros(static_cast<std::size_t>(detail::align_up(t.nbytes, alignment_) - t.nbytes))));
      ++current_;
      written_ = 0;
    }
    return {};
  }
  result<void> io(result<void> r) {
    if (!r) {
      state_ = state::failed;
      out_.abandon();
    }
    return r;
  }

  output_file out_;
  gguf_metadata metadata_;
  std::vector<gguf_tensor_info> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  state state_ = state::declaring;
  std::uint64_t alignment_ = gguf_default_alignment;
  std::uint64_t data_offset_ = 0;
  std::size_t current_ = 0;
  std::uint64_t written_ = 0;
};

SBGQ_END_NAMESPACE
