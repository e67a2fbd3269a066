// Overflow-checked size arithmetic for sizes read from untrusted files.
#pragma once

#include <cstdint>
#include <limits>

#include "../base.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail {

/// out = a + b; false on unsigned 64-bit overflow.
constexpr bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a > std::numeric_limits<std::uint64_t>::max() - b) return false;
  out = a + b;
  return true;
}

/// out = a * b; false on unsigned 64-bit overflow.
constexpr bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

/// Rounds n up to a multiple of align (a power of two); false on overflow.
constexpr bool checked_align_up(std::uint64_t n, std::uint64_t align, std::uint64_t& out) noexcept {
  SBGQ_DASSERT(align != 0 && (align & (align - 1)) == 0);
  std::uint64_t t = 0;
  if (!checked_add(n, align - 1, t)) return false;
  out = t & ~(align - 1);
  return true;
}

constexpr std::uint64_t align_up(std::uint64_t n, std::uint64_t align) noexcept {
  return (n + align - 1) & ~(align - 1);
}

}  // namespace detail
SBGQ_END_NAMESPACE
