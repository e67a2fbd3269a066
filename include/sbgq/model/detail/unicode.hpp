// Unicode helpers of the tokenizer: code point categories, the lenient UTF-8 decoder that
// llama.cpp uses, UTF-8 encoding, the GPT-2 byte <-> code point map, and the Qwen3.5
// pre-tokenizer split.
//
// Everything here reproduces llama.cpp's behaviour (the oracle), not the Unicode or
// regex standards where the two differ:
//   - Categories and White_Space come from unicode_tables.hpp, generated to equal
//     llama.cpp's tables (Unicode 15.1) code point by code point.
//   - decode_utf8_lenient() accepts overlong forms and UTF-16 surrogates as code points,
//     and turns each byte that does not start a complete sequence into U+FFFD, consuming
//     one byte. 4-byte leads F5..F7 yield values above U+10FFFF, which llama.cpp rejects
//     later ("invalid codepoint") when it re-encodes the pre-token.
//   - split_qwen35() is the hand-written form of the Qwen3.5 split regex (see there).
// Internal: included by tokenizer.hpp only.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../../core/base.hpp"
#include "unicode_tables.hpp"

SBGQ_BEGIN_NAMESPACE
namespace detail::unicode {

/// Major general category. Codes equal the bit index of llama.cpp's unicode_cpt_flags
/// (number = bit 1, letter = bit 2, ...), so tests can compare flag words directly.
enum class category : std::uint8_t {
  undefined = 0,  ///< Cn, and every value above U+10FFFF
  number = 1,     ///< \p{N}
  letter = 2,     ///< \p{L}
  separator = 3,  ///< \p{Z}
  mark = 4,       ///< \p{M}
  punctuation = 5,///< \p{P}
  symbol = 6,     ///< \p{S}
  control = 7,    ///< \p{C} other than Cn (Cc, Cf, Cs, Co)
};

inline constexpr std::uint32_t max_code_point = 0x10FFFF;
inline constexpr std::uint32_t replacement_char = 0xFFFD;

/// General category class of a code point: binary search over the range table
/// (2272 ranges, 12 probes), with a direct answer for ASCII.
inline category category_of(std::uint32_t cp) noexcept {
  using detail::unicode_data::category_ranges;
  if (cp > max_code_point) return category::undefined;
  // Entries are (first << 3) | code; the last entry whose first <= cp holds the answer.
  const std::uint32_t key = (cp << 3) | 7u;
  const std::uint32_t* end = category_ranges + std::size(category_ranges);
  const std::uint32_t* it = std::upper_bound(category_ranges, end, key);
  SBGQ_DASSERT(it != category_ranges);  // entry 0 starts at U+0000
  return static_cast<category>(it[-1] & 7u);
}

/// The White_Space property (\s of the split regex): 25 code points in 10 ranges.
inline bool is_whitespace(std::uint32_t cp) noexcept {
  for (const auto& r : detail::unicode_data::whitespace_ranges) {
    if (cp < r[0]) return false;
    if (cp <= r[1]) return true;
  }
  return false;
}

/// Decodes one code point at text[i] the way llama.cpp's unicode_cpt_from_utf8 does and
/// advances i. A byte that does not start a complete sequence gives U+FFFD and advances
/// by one. Overlong forms and surrogates are not rejected; F5..F7 leads can give values
/// up to 0x1FFFFF.
inline std::uint32_t decode_one_lenient(std::string_view text, std::size_t& i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
  const auto cont = [&](std::size_t k) { return k < text.size() && (byte(k) & 0xC0u) == 0x80u; };
  const std::uint8_t b0 = byte(i);
  if (b0 < 0x80u) {
    i += 1;
    return b0;
  }
  if (b0 >= 0xC0u && b0 < 0xE0u && cont(i + 1)) {
    const std::uint32_t cp = ((b0 & 0x1Fu) << 6) | (byte(i + 1) & 0x3Fu);
    i += 2;
    return cp;
  }
  if (b0 >= 0xE0u && b0 < 0xF0u && cont(i + 1) && cont(i + 2)) {
    const std::uint32_t cp = ((b0 & 0x0Fu) << 12) | ((byte(i + 1) & 0x3Fu) << 6) | (byte(i + 2) & 0x3Fu);
    i += 3;
    return cp;
  }
  if (b0 >= 0xF0u && b0 < 0xF8u && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
    const std::uint32_t cp = ((b0 & 0x07u) << 18) | ((byte(i + 1) & 0x3Fu) << 12) |
                             ((byte(i + 2) & 0x3Fu) << 6) | (byte(i + 3) & 0x3Fu);
    i += 4;
    return cp;
  }
  // Continuation byte, F8..FF, or a sequence cut short: one replacement per byte.
  i += 1;
  return replacement_char;
}

/// Decodes a whole string with decode_one_lenient(); never fails.
inline void decode_utf8_lenient(std::string_view text, std::vector<std::uint32_t>& out) {
  out.clear();
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) out.push_back(decode_one_lenient(text, i));
}

/// Appends the UTF-8 form of cp (surrogates included, as 3 bytes). Precondition:
/// cp <= 0x10FFFF.
inline void append_utf8(std::uint32_t cp, std::string& out) {
  SBGQ_DASSERT(cp <= max_code_point);
  if (cp < 0x80u) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800u) {
    out += static_cast<char>(0xC0u | (cp >> 6));
    out += static_cast<char>(0x80u | (cp & 0x3Fu));
  } else if (cp < 0x10000u) {
    out += static_cast<char>(0xE0u | (cp >> 12));
    out += static_cast<char>(0x80u | ((cp >> 6) & 0x3Fu));
    out += static_cast<char>(0x80u | (cp & 0x3Fu));
  } else {
    out += static_cast<char>(0xF0u | (cp >> 18));
    out += static_cast<char>(0x80u | ((cp >> 12) & 0x3Fu));
    out += static_cast<char>(0x80u | ((cp >> 6) & 0x3Fu));
    out += static_cast<char>(0x80u | (cp & 0x3Fu));
  }
}

// ---- GPT-2 byte-level map ---------------------------------------------------------------
// Byte-level BPE spells every byte as a printable code point so that token texts are
// valid, visible UTF-8: the 188 printable bytes 0x21..0x7E, 0xA1..0xAC and 0xAE..0xFF
// stand for themselves, and the other 68 bytes (0x00..0x20, 0x7F..0xA0, 0xAD) take
// U+0100, U+0101, ... in increasing byte order. So ' ' (0x20) is U+0120 'G-dot' and
// '\n' (0x0A) is U+010A.

/// The code point that stands for a byte.
constexpr std::uint32_t byte_to_code_point(std::uint8_t b) noexcept {
  const auto printable = [](unsigned v) { return (v >= 0x21 && v <= 0x7E) || (v >= 0xA1 && v <= 0xAC) || v >= 0xAE; };
  if (printable(b)) return b;
  std::uint32_t n = 0;  // how many non-printable bytes come before b
  for (unsigned v = 0; v < b; ++v) n += printable(v) ? 0u : 1u;
  return 0x100u + n;
}

/// cp -> byte for U+0000..U+0143, -1 where cp stands for no byte.
inline constexpr auto code_point_byte_table = [] {
  std::array<std::int16_t, 0x144> t{};
  for (auto& v : t) v = -1;
  for (unsigned b = 0; b < 256; ++b) t[byte_to_code_point(static_cast<std::uint8_t>(b))] = static_cast<std::int16_t>(b);
  return t;
}();

/// The byte a code point stands for, or -1 if it stands for none.
constexpr int code_point_to_byte(std::uint32_t cp) noexcept {
  return cp < code_point_byte_table.size() ? code_point_byte_table[cp] : -1;
}

// ---- the Qwen3.5 split ----------------------------------------------------------------------
// llama.cpp pre-type "qwen35" splits with
//   (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])   1 contractions
//   |[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+                             2 a letter run, one lead char
//   |\p{N}                                                       3 ONE digit per piece
//   | ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*                              4 a punctuation/symbol run
//   |\s*[\r\n]+                                                  5 whitespace up to a newline
//   |\s+(?!\S)                                                   6 whitespace but the last
//   |\s+                                                         7 any other whitespace
// scanned left to right, first alternative that matches wins (ordered, not longest).
// Because every alternative is either fixed-length or a greedy run whose tail can match
// empty, the backtracking reduces to the simple tests below:
//   2: a lead char that is not \r, \n or a number, followed by letters/marks; or a
//      letter/mark itself (then the "lead" is just the first of the run);
//   4: one optional ' ' then a maximal run of code points that are not whitespace,
//      letter, mark or number, then a maximal run of \r/\n;
//   5: ends right after the LAST \r or \n of the maximal whitespace run;
//   6: the maximal whitespace run less its last code point, when the run is longer than
//      one and is followed by a non-space (that last space then leads the next piece);
//   7: otherwise the whole run.
// Contractions are ASCII-only ([sS] ...; no code point outside ASCII lower-cases to one of
// these letters in llama.cpp either, checked by the tests).

/// Class bits used by the splitter.
enum : std::uint8_t {
  cls_letter_or_mark = 1,
  cls_number = 2,
  cls_space = 4,
};

inline std::uint8_t split_class(std::uint32_t cp) noexcept {
  if (cp < 0x80u) {
    if ((cp | 0x20u) >= 'a' && (cp | 0x20u) <= 'z') return cls_letter_or_mark;
    if (cp >= '0' && cp <= '9') return cls_number;
    if (cp == ' ' || (cp >= 0x09u && cp <= 0x0Du)) return cls_space;
    return 0;
  }
  std::uint8_t c = is_whitespace(cp) ? cls_space : 0;
  switch (category_of(cp)) {
    case category::letter:
    case category::mark: c |= cls_letter_or_mark; break;
    case category::number: c |= cls_number; break;
    default: break;
  }
  return c;
}

/// Splits cps into pre-tokens by the qwen35 rules above. Writes the end index (exclusive)
/// of each piece to ends; pieces are contiguous and cover all of cps. cls must hold
/// split_class() of each code point.
inline void split_qwen35(std::span<const std::uint32_t> cps, std::span<const std::uint8_t> cls,
                         std::vector<std::size_t>& ends) {
  SBGQ_DASSERT(cps.size() == cls.size());
  ends.clear();
  const std::size_t n = cps.size();
  const auto is_nl = [&](std::size_t k) { return cps[k] == '\r' || cps[k] == '\n'; };
  const auto lower = [&](std::size_t k) { return cps[k] < 0x80u ? (cps[k] | 0x20u) : cps[k]; };
  const auto other = [&](std::size_t k) { return cls[k] == 0; };  // not \s, L, M or N
  std::size_t i = 0;
  while (i < n) {
    std::size_t end = i + 1;
    const std::uint32_t c = cps[i];
    // 1: contractions 's 't 'm 'd, then 're 've 'll.
    if (c == '\'' && i + 1 < n) {
      const std::uint32_t c1 = lower(i + 1);
      const std::uint32_t c2 = i + 2 < n ? lower(i + 2) : 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        ends.push_back(i = i + 2);
        continue;
      }
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
        ends.push_back(i = i + 3);
        continue;
      }
    }
    // 2: optional lead, then letters/marks.
    if (c != '\r' && c != '\n' && !(cls[i] & cls_number) &&
        ((cls[i] & cls_letter_or_mark) || (i + 1 < n && (cls[i + 1] & cls_letter_or_mark)))) {
      while (end < n && (cls[end] & cls_letter_or_mark)) ++end;
      ends.push_back(i = end);
      continue;
    }
    // 3: a single number.
    if (cls[i] & cls_number) {
      ends.push_back(i = end);
      continue;
    }
    // 4: optional space, a run of "other" code points, trailing newlines.
    {
      const std::size_t k = c == ' ' ? i + 1 : i;
      if (k < n && other(k)) {
        end = k + 1;
        while (end < n && other(end)) ++end;
        while (end < n && is_nl(end)) ++end;
        ends.push_back(i = end);
        continue;
      }
    }
    // 5-7: whitespace.
    std::size_t run = i, after_last_nl = 0;
    while (run < n && (cls[run] & cls_space)) {
      if (is_nl(run)) after_last_nl = run + 1;
      ++run;
    }
    if (after_last_nl != 0) {
      end = after_last_nl;                     // 5
    } else if (run - i > 1 && run < n) {
      end = run - 1;                           // 6
    } else if (run > i) {
      end = run;                               // 7
    }                                          // else: no alternative matches, one code point
    ends.push_back(i = end);
  }
}

}  // namespace detail::unicode
SBGQ_END_NAMESPACE
