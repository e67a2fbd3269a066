// libFuzzer target: a rules recipe's JSON (the file given to --recipe) must never crash or
// trip a sanitizer, whatever the bytes. An accepted recipe has a rule per JSON rule entry,
// each with a non-empty type name.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sbgq/quant/recipe.hpp>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto r = sbgq::parse_recipe_json(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
  if (!r) {
    (void)r.error().message();
    return 0;
  }
  if (r->kind != sbgq::recipe_kind::rules) std::abort();
  if (sbgq::type_name(r->default_type).empty()) std::abort();
  for (const auto& rule : r->rules)
    if (sbgq::type_name(rule.type).empty()) std::abort();
  return 0;
}
