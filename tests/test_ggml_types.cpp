// Our ggml type table against libggml-base's for every id.
#include <doctest/doctest.h>

#include <sbgq/io/ggml_types.hpp>
#include <string>

#include "support/oracle.hpp"

TEST_CASE("ggml type table equals the oracle's for every valid id") {
  auto& o = sbgq::test::oracle();
  int checked = 0;
  for (std::uint32_t id = 0; id < sbgq::ggml_type_count; ++id) {
    CAPTURE(id);
    if (!sbgq::is_valid_ggml_type(id)) {
      CHECK(o.ggml_blck_size(static_cast<int>(id)) == 0);
      continue;
    }
    const auto t = static_cast<sbgq::ggml_type>(id);
    CHECK(std::string(sbgq::type_name(t)) == o.ggml_type_name(static_cast<int>(id)));
    CHECK(static_cast<std::int64_t>(sbgq::block_size(t)) == o.ggml_blck_size(static_cast<int>(id)));
    CHECK(sbgq::type_size(t) == o.ggml_type_size(static_cast<int>(id)));
    CHECK(sbgq::row_size(t, 4096) == o.ggml_row_size(static_cast<int>(id), 4096));
    ++checked;
  }
  CHECK(checked == 35);  // 43 ids less the 8 removed ones
  CHECK(sbgq::ggml_type_from_name("Q4_K") == sbgq::ggml_type::q4_k);
  CHECK(sbgq::ggml_type_from_name("IQ4_XS") == sbgq::ggml_type::iq4_xs);
  CHECK_FALSE(sbgq::ggml_type_from_name("q4_2").has_value());
}
