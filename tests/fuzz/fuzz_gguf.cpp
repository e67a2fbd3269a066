// libFuzzer target: GGUF parsing must never crash, leak or trip a sanitizer, whatever the
// bytes. An accepted file must be internally consistent: every tensor's data span lies
// inside the input, offsets are the running sum of the padded sizes, and the metadata
// getters work on every record.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sbgq/io/gguf.hpp>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // An exact-size heap copy, so ASan sees any read past the end.
  std::vector<std::byte> buf(size);
  for (std::size_t i = 0; i < size; ++i) buf[i] = static_cast<std::byte>(data[i]);
  auto r = sbgq::gguf_file::parse(std::span<const std::byte>(buf.data(), buf.size()));
  if (!r) {
    (void)r.error().message();
    return 0;
  }
  const sbgq::gguf_file& f = *r;
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& t = f.tensors()[i];
    if (t.offset != expected) std::abort();
    const auto d = f.tensor_data(i);
    if (d.size() != t.nbytes) std::abort();
    if (d.size() && (d.data() < buf.data() || d.data() + d.size() > buf.data() + buf.size())) std::abort();
    volatile std::byte sink = d.empty() ? std::byte{0} : d[d.size() - 1];
    (void)sink;
    expected = sbgq::detail::align_up(expected + t.nbytes, f.alignment());
    if (f.tensor_index(t.name) != i) std::abort();
  }
  for (const auto& kv : f.metadata()) {
    if (f.metadata().index_of(kv.key) == sbgq::gguf_metadata::npos) std::abort();
    (void)f.metadata().get<std::uint32_t>(kv.key);
    (void)f.metadata().get_string(kv.key);
    if (const auto* a = kv.value.get_array_if()) {
      if (a->holds<std::int32_t>()) (void)a->to_vector<std::int32_t>();
      if (a->holds<bool>()) (void)a->to_vector<bool>();
      if (a->holds<std::string>()) (void)a->to_vector<std::string>();
    }
  }
  return 0;
}
