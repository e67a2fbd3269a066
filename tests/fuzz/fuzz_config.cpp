// libFuzzer target: config.json parsing must never crash, whatever the bytes.
#include <cstddef>
#include <cstdint>
#include <sbgq/model/model_config.hpp>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto r = sbgq::parse_qwen35_config(std::string_view(reinterpret_cast<const char*>(data), size));
  if (r) {
    // Derived sizes of an accepted config must be usable without overflow traps.
    (void)r->linear_conv_dim();
    (void)r->q_proj_rows();
    (void)r->rope_dims();
  } else {
    (void)r.error().message();
  }
  return 0;
}
