// libFuzzer target: safetensors_file::parse() on arbitrary bytes, then every accessor on
// whatever it accepts; and safetensors_index::parse() on the same bytes as JSON text.
// Must never crash, leak or read out of bounds (build with -fsanitize=fuzzer,address).
//
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I include \
//       tests/fuzz/fuzz_safetensors.cpp -lsimdjson -o fuzz_safetensors
//   ./fuzz_safetensors -max_total_time=60 [corpus_dir]
//
// A useful seed corpus is any small .safetensors file (e.g. from test_safetensors).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <sbgq/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  if (auto f = sbgq::safetensors_file::parse(bytes, "fuzz")) {
    // Everything accepted must be safe to use: views in bounds, conversions sized right.
    std::vector<float> row;
    for (const auto& v : f->views(sbgq::tensor_order::name)) {
      if (v.bytes.data() < bytes.data() || v.bytes.data() + v.bytes.size() > bytes.data() + bytes.size())
        __builtin_trap();
      if (f->find(v.name)->bytes.data() != v.bytes.data()) __builtin_trap();
      const std::uint64_t n = v.shape.row_size();
      if (v.shape.rows() > 0 && n <= (1u << 16)) {
        row.resize(static_cast<std::size_t>(n));
        if (!sbgq::to_f32(v, 0, 1, row).has_value()) __builtin_trap();
      }
    }
    for (const auto& m : f->metadata())
      if (!f->find_metadata(m.key)) __builtin_trap();
  }
  (void)sbgq::safetensors_index::parse(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  return 0;
}
