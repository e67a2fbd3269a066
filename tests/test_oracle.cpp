// The oracle itself: the pinned llama.cpp libraries load, their struct layouts match
// (checked inside oracle()), and their type table agrees with gguf-format.md section 5.
#include <doctest/doctest.h>

#include <string>

#include "support/oracle.hpp"

using sbgq::test::oracle;

TEST_CASE("oracle loads and reports the ggml type table of the spec") {
  auto& o = oracle();
  MESSAGE("oracle: " << o.bins_dir);
  struct row { int id; const char* name; long block; unsigned long bytes; };
  const row table[] = {{0, "f32", 1, 4},     {1, "f16", 1, 2},      {8, "q8_0", 32, 34},  {10, "q2_K", 256, 84},
                       {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176},
                       {14, "q6_K", 256, 210}, {20, "iq4_nl", 32, 18}, {23, "iq4_xs", 256, 136},
                       {30, "bf16", 1, 2}};
  for (const auto& r : table) {
    CAPTURE(r.id);
    CHECK(std::string(o.ggml_type_name(r.id)) == r.name);
    CHECK(o.ggml_blck_size(r.id) == r.block);
    CHECK(o.ggml_type_size(r.id) == r.bytes);
  }
}
