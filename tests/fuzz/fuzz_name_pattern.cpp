// libFuzzer target: name_pattern (--tensor-type / recipe-rule patterns) must never crash
// or hang, whatever the pattern and the name; for short ASCII inputs it must also agree
// with std::regex_search, the meaning llama-quantize gives the same pattern (only where
// std::regex itself is quick: see easy_for_std_regex).
//
// Input: byte 0 = pattern length k (mod the remaining size), then k pattern bytes, then
// the name.
#include <cstddef>
#include <cstdint>
#include <regex>
#include <sbgq/core/name_pattern.hpp>
#include <string>
#include <string_view>

namespace {

bool ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;  // std::regex compares signed chars in ranges
  return true;
}

/// True if std::regex's backtracking stays quick on a short name: at most one * + ? and no
/// {n,m}. Stacked or nested loops over bodies that can match empty are exponential there
/// ((a*)++b takes ~50 s on "aaaaaa"), which is the very reason for name_pattern.
bool easy_for_std_regex(std::string_view p) {
  int quantifiers = 0;
  for (char c : p) {
    if (c == '{') return false;
    quantifiers += c == '*' || c == '+' || c == '?';
  }
  return quantifiers <= 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t k = in.empty() ? 0 : data[0] % (in.size() + 1);
  const std::string_view pattern = in.substr(0, k), name = in.substr(k);

  auto r = sbgq::name_pattern::compile(pattern);
  if (!r) {
    (void)r.error().message();
    return 0;
  }
  if (r->program_size() > sbgq::name_pattern::max_program + 1) __builtin_trap();
  const bool found = r->search(name);

  // Differential: small enough that std::regex's backtracking stays quick.
  if (pattern.size() <= 12 && name.size() <= 8 && ascii(pattern) && ascii(name) && easy_for_std_regex(pattern)) {
    std::regex re;
    try {
      re = std::regex(std::string(pattern));
    } catch (const std::regex_error&) {
      __builtin_trap();  // name_pattern accepted a pattern std::regex refuses
    }
    bool want = false;
    try {
      want = std::regex_search(std::string(name), re);
    } catch (const std::regex_error&) {
      return 0;  // std::regex's own complexity limit
    }
    if (want != found) __builtin_trap();
  }
  return 0;
}
