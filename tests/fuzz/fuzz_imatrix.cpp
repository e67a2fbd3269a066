// libFuzzer target: imatrix parsing, both formats, must never crash, leak or trip a
// sanitizer, whatever the bytes. Input starting with "GGUF" goes through the GGUF reader
// and read_imatrix_gguf, anything else through the legacy parser (as read_imatrix
// chooses). An accepted imatrix must be internally consistent: each entry's sum2 holds
// n_in values per count, and weights() works on every entry.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sbgq/io/gguf.hpp>
#include <sbgq/io/imatrix.hpp>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // An exact-size heap copy, so ASan sees any read past the end.
  std::vector<std::byte> buf(size);
  if (size) std::memcpy(buf.data(), data, size);
  const std::span<const std::byte> bytes(buf.data(), buf.size());
  sbgq::result<sbgq::imatrix> im = sbgq::error_code::internal;
  if (size >= 4 && std::memcmp(data, "GGUF", 4) == 0) {
    auto f = sbgq::gguf_file::parse(bytes);
    if (!f) {
      (void)f.error().message();
      return 0;
    }
    im = sbgq::read_imatrix_gguf(*f);
  } else {
    im = sbgq::parse_imatrix_dat(bytes);
  }
  if (!im) {
    (void)im.error().message();
    return 0;
  }
  for (const auto& [name, e] : im->entries) {
    if (e.n_in <= 0 && !e.sum2.empty()) std::abort();
    if (e.n_in > 0 && e.sum2.size() != static_cast<std::size_t>(e.n_in) * e.counts.size()) std::abort();
    (void)im->weights(name);
  }
  return 0;
}
