// libFuzzer target: loading a tokenizer.json and encoding text with it must never crash,
// hang or trip a sanitizer, whatever the bytes. The input is the tokenizer.json text, a
// NUL byte, then the text to encode (no NUL: the whole input is the JSON and the text is
// empty). An accepted vocabulary must decode every id it produced.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sbgq/model/tokenizer.hpp>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = in.find('\0');
  const std::string_view json = in.substr(0, nul);
  const std::string_view text = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  auto tok = sbgq::tokenizer::from_json(json);
  if (!tok) {
    (void)tok.error().message();
    return 0;
  }
  for (const bool special : {true, false}) {
    auto ids = tok->encode(text, special);
    if (!ids) {
      (void)ids.error().message();
      continue;
    }
    for (const auto id : *ids)
      if (id < 0 || static_cast<std::size_t>(id) >= tok->size()) std::abort();
    auto back = tok->decode(*ids, true);
    if (!back) std::abort();  // every id encode() returns is valid
  }
  return 0;
}
