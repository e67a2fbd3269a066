// A bounds-checked little-endian cursor over a byte span, for parsing untrusted files.
//
// Every read checks the bytes remaining first and reports the absolute file offset of a
// failure, so parsers can turn it into "[sbgq.gguf.truncated] ... (byte N)".
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

#include "../base.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail {

static_assert(std::endian::native == std::endian::little, "sbgq reads and writes little-endian files and supports little-endian hosts only");

class byte_reader {
 public:
  /// `base` is the absolute offset of data[0] in the file (for messages).
  explicit byte_reader(std::span<const std::byte> data, std::uint64_t base = 0) noexcept
      : data_(data), base_(base) {}

  std::uint64_t offset() const noexcept { return base_ + pos_; }   ///< absolute
  std::size_t position() const noexcept { return pos_; }            ///< relative
  std::size_t remaining() const noexcept { return data_.size() - pos_; }
  bool can_read(std::uint64_t n) const noexcept { return n <= remaining(); }

  /// Reads a trivially copyable little-endian value; false (and no move) if too short.
  template <class T>
  bool read(T& out) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!can_read(sizeof(T))) return false;
    std::memcpy(&out, data_.data() + pos_, sizeof(T));  // x86-64 and AArch64 are LE
    pos_ += sizeof(T);
    return true;
  }
  /// A view of the next n bytes; false if too short.
  bool read_bytes(std::uint64_t n, std::span<const std::byte>& out) noexcept {
    if (!can_read(n)) return false;
    out = data_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  bool read_string(std::uint64_t n, std::string_view& out) noexcept {
    std::span<const std::byte> b;
    if (!read_bytes(n, b)) return false;
    out = std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
    return true;
  }
  bool skip(std::uint64_t n) noexcept {
    if (!can_read(n)) return false;
    pos_ += static_cast<std::size_t>(n);
    return true;
  }

 private:
  std::span<const std::byte> data_;
  std::uint64_t base_ = 0;
  std::size_t pos_ = 0;
};

}  // namespace detail
SBGQ_END_NAMESPACE
