// name_pattern (the --tensor-type / recipe-rule matcher) against std::regex_search, the
// meaning llama-quantize gives the same patterns:
//   - differential: thousands of generated patterns of the supported grammar (short and
//     shallow, so std::regex stays fast) x generated names over a small alphabet; both
//     must agree on every pair. A second run feeds raw strings of metacharacters: what
//     name_pattern accepts, std::regex must accept too, with the same answers;
//   - the patterns people write for tensor names, on real tensor names;
//   - the inputs that crash or hang std::regex: 20,000 nested parentheses, very long
//     patterns, a{1000}{1000} (errors), and (a*)*b, (a|aa)*c on a 10,000-byte name (a
//     prompt `false`; ctest's timeout is the guard, no timing assertion);
//   - every unsupported construct: an invalid_argument error naming the pattern and the
//     position.
#include <doctest/doctest.h>

#include <cstddef>
#include <regex>
#include <sbgq/core/name_pattern.hpp>
#include <string>
#include <vector>

#include "support/rng.hpp"

using sbgq::error_code;
using sbgq::name_pattern;

namespace {

/// Random patterns of the supported grammar: at most `depth` groups deep.
class pattern_gen {
 public:
  explicit pattern_gen(std::uint64_t seed) : r_(seed) {}

  std::string pattern() { return alt(2); }

  /// A name over the alphabet the patterns use, plus bytes they never name.
  std::string name() {
    static constexpr char alphabet[] = {'a', 'b', 'c', '1', '.', '-', '_', ' ', '\n', '\r', 'Z'};
    std::string s;
    const std::size_t n = pick(9);
    for (std::size_t i = 0; i < n; ++i) s += alphabet[pick(sizeof alphabet)];
    return s;
  }

 private:
  sbgq::test::rng r_;
  std::size_t pick(std::size_t n) { return static_cast<std::size_t>(r_.next_u64() % n); }

  std::string alt(int depth) {
    std::string s = concat(depth);
    while (pick(5) == 0) s += "|" + concat(depth);
    return s;
  }
  std::string concat(int depth) {
    std::string s;
    const std::size_t n = pick(4);
    for (std::size_t i = 0; i < n; ++i) s += term(depth);
    return s;
  }
  std::string term(int depth) {
    switch (pick(12)) {  // assertions take no quantifier
      case 0: return "^";
      case 1: return "$";
      case 2: return pick(2) ? "\\b" : "\\B";
      default: break;
    }
    std::string a = atom(depth);
    static const char* const quants[] = {"*", "+", "?", "{2}", "{0,2}", "{1,}", "{0}", "*?", "+?", "??", "{1,2}?"};
    if (pick(3) == 0) a += quants[pick(std::size(quants))];
    if (pick(20) == 0) a += quants[pick(std::size(quants))];  // stacked, as std::regex allows
    return a;
  }
  std::string atom(int depth) {
    static const char* const leaves[] = {"a",   "b",    "c",    "1",     "\\.",   "\\-",  ".",     "\\d",
                                         "\\w", "\\s",  "\\D",  "\\W",   "\\S",   "_",    "-",     "[ab]",
                                         "[^a]", "[a-c]", "[\\d_]", "[-a]", "[a-]", "[^\\w.]", "[.]", "[]",
                                         "[^]", "]",    "}",    "\\n",   "[\\s1]", "[\\-b]", "[a-c-]", "\\\\"};
    if (depth > 0 && pick(4) == 0) return (pick(3) == 0 ? "(?:" : "(") + alt(depth - 1) + ")";
    return leaves[pick(std::size(leaves))];
  }
};

bool std_search(const std::string& pattern, const std::string& name) {
  return std::regex_search(name, std::regex(pattern));
}

/// The error of compiling `p`, which must fail with invalid_argument.
std::string compile_error(const std::string& p) {
  auto r = name_pattern::compile(p);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == error_code::invalid_argument);
  return r.error().message();
}

}  // namespace

TEST_SUITE("name_pattern") {

TEST_CASE("differential: generated patterns and names agree with std::regex_search") {
  pattern_gen g(20240611);
  std::size_t pairs = 0, matches = 0;
  for (int i = 0; i < 4000; ++i) {
    const std::string p = g.pattern();
    CAPTURE(p);
    auto np = name_pattern::compile(p);
    REQUIRE_MESSAGE(np.has_value(), np.error().message());
    CHECK(np->source() == p);
    const std::regex re(p);  // the generator writes only what std::regex accepts
    for (int j = 0; j < 16; ++j) {
      const std::string name = g.name();
      CAPTURE(name);
      const bool want = std::regex_search(name, re);
      CHECK(np->search(name) == want);
      ++pairs;
      matches += want;
    }
  }
  // Both answers are well represented, so agreement is not vacuous.
  CHECK(matches > pairs / 5);
  CHECK(matches < pairs * 4 / 5);
}

TEST_CASE("differential: raw metacharacter strings: accepted means std::regex accepts and agrees") {
  static constexpr char alphabet[] = {'a', 'b', '(', ')', '[', ']', '{', '}', '|', '*', '+', '?', '.',
                                      '^', '$', '\\', '-', ',', '1', '2', ':', '=', 'd', 'w'};
  sbgq::test::rng r(7);
  pattern_gen names(8);
  std::size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string p;
    const std::size_t n = 1 + r.next_u64() % 7;
    for (std::size_t k = 0; k < n; ++k) p += alphabet[r.next_u64() % sizeof alphabet];
    CAPTURE(p);
    auto np = name_pattern::compile(p);
    if (!np) continue;
    ++accepted;
    std::regex re;
    bool std_ok = true;
    try {
      re = std::regex(p);
    } catch (const std::regex_error&) {
      std_ok = false;
    }
    REQUIRE(std_ok);
    for (int j = 0; j < 8; ++j) {
      const std::string name = names.name() + (j % 2 ? "ab1" : "");
      CAPTURE(name);
      CHECK(np->search(name) == std::regex_search(name, re));
    }
  }
  CHECK(accepted > 2000);
}

TEST_CASE("tensor-name patterns people write") {
  const std::vector<std::string> names = {"token_embd.weight",       "output.weight",         "output_norm.weight",
                                          "blk.0.attn_v.weight",     "blk.12.attn_v.weight",  "blk.3.attn_qkv.weight",
                                          "blk.7.ffn_up.weight",     "blk.7.ffn_gate.weight", "blk.7.ffn_down.weight",
                                          "blk.31.ssm_out.weight",   "blk.2.attn_v.bias",     "mtp.0.attn_v.weight"};
  for (const char* p : {R"(blk\.[0-9]+\.attn_v\.weight$)", "ffn_(up|gate)", R"(^output\.weight$)", "token_embd",
                        R"(blk\.(3|7)\.ffn_down)", R"(blk\.[12]\.ffn_down)", R"(\.(attn_v|ssm_out)\.weight$)",
                        R"(^blk\.\d{2}\.)", R"(attn_(?:q|k|v)\w*\.weight)", "ffn_.*", R"(\battn)"}) {
    CAPTURE(p);
    auto np = name_pattern::compile(p);
    REQUIRE(np.has_value());
    for (const std::string& n : names) {
      CAPTURE(n);
      CHECK(np->search(n) == std_search(p, n));
    }
  }
  // The answers themselves, for the common ones.
  auto v = name_pattern::compile(R"(blk\.[0-9]+\.attn_v\.weight$)").value();
  CHECK(v.search("blk.12.attn_v.weight"));
  CHECK_FALSE(v.search("blk.12.attn_v.weight.x"));
  CHECK_FALSE(v.search("blk.x.attn_v.weight"));
  auto ffn = name_pattern::compile("ffn_(up|gate)").value();
  CHECK(ffn.search("blk.7.ffn_gate.weight"));
  CHECK_FALSE(ffn.search("blk.7.ffn_down.weight"));
  auto out = name_pattern::compile(R"(^output\.weight$)").value();
  CHECK(out.search("output.weight"));
  CHECK_FALSE(out.search("output_norm.weight"));
  CHECK_FALSE(out.search("xoutput.weight"));
  CHECK(name_pattern::compile("token_embd").value().search("token_embd.weight"));
  CHECK(name_pattern::compile("").value().search("anything"));  // empty pattern: matches everywhere
}

TEST_CASE("inputs that crash std::regex are errors: deep nesting, long patterns, huge repetitions") {
  const std::size_t deep = 20000;
  std::string nested = std::string(deep, '(') + "a" + std::string(deep, ')');
  std::string m = compile_error(nested);  // refused for its length before it is parsed
  CHECK(m.find("longer than 1024 bytes (40001) at position 1024") != std::string::npos);
  CHECK(m.find("...") != std::string::npos);  // the pattern is shown shortened
  CHECK(m.size() < 400);

  // Within the length limit: 65 groups, or 65 stacked quantifiers.
  m = compile_error(std::string(65, '(') + std::string(65, ')'));
  CHECK(m.find("nested more than 64 deep at position 64") != std::string::npos);
  CHECK(name_pattern::compile(std::string(64, '(') + "a" + std::string(64, ')')).has_value());
  m = compile_error("(?:" + std::string(100, '(') + ")");
  CHECK(m.find("nested more than 64") != std::string::npos);
  m = compile_error("a" + std::string(100, '*'));
  CHECK(m.find("nested more than 64 deep at position 65") != std::string::npos);

  m = compile_error(std::string(name_pattern::max_length + 1, 'a'));
  CHECK(m.find("longer than 1024 bytes (1025)") != std::string::npos);
  CHECK(name_pattern::compile(std::string(name_pattern::max_length, 'a')).has_value());

  m = compile_error("a{1000}{1000}");
  CHECK(m.find("pattern 'a{1000}{1000}': compiles to more than 10000 instructions") != std::string::npos);
  CHECK(m.find("at position 7") != std::string::npos);
  CHECK(compile_error("(ab){1000}{6}").find("more than 10000 instructions") != std::string::npos);
  CHECK(compile_error("a{1001}").find("repetition count above 1000") != std::string::npos);
  CHECK(compile_error("a{99999999999999999999}").find("repetition count above 1000") != std::string::npos);
  // Just under the program limit: 1,000 instructions.
  auto big = name_pattern::compile("((a{10}){10}){10}");
  REQUIRE(big.has_value());
  CHECK(big->program_size() == 1001);
  CHECK(big->search(std::string(1000, 'a')));
  CHECK_FALSE(big->search(std::string(999, 'a')));
}

TEST_CASE("catastrophic-backtracking patterns finish on a 10,000-byte name") {
  // std::regex takes exponential time on these; the state-set simulation visits each
  // instruction once per byte.
  const std::string as(10000, 'a');
  CHECK_FALSE(name_pattern::compile("(a*)*b").value().search(as));
  CHECK_FALSE(name_pattern::compile("(a|aa)*c").value().search(as));
  CHECK_FALSE(name_pattern::compile("^(a+)+$").value().search(as + "b"));
  CHECK_FALSE(name_pattern::compile("(.*a){20}b").value().search(as));
  CHECK(name_pattern::compile("(a|aa)*$").value().search(as));
  CHECK(name_pattern::compile("(a*)*b").value().search(as + "b"));
  CHECK(name_pattern::compile("(x?){0,1000}a{1000}$").value().search(as));
}

TEST_CASE("unsupported constructs and syntax errors: invalid_argument with the position") {
  struct bad_case {
    const char* pattern;
    const char* what;
    std::size_t position;
  };
  const bad_case cases[] = {
      {R"(a(b)\1)", "escape '\\1' (a backreference", 4},
      {R"(\0)", "escape '\\0'", 0},
      {"x(?=a)", "lookahead '(?=' is not supported", 1},
      {"(?!a)", "lookahead '(?!' is not supported", 0},
      {"(?<=a)b", "lookbehind or named group", 0},
      {"(?i)a", "unknown group syntax", 0},
      {R"(\x41)", "escape '\\x' is not supported", 0},
      {R"(\cA)", "escape '\\c' is not supported", 0},
      {R"(\a)", "escape '\\a' is not supported", 0},
      {R"([\B])", "escape '\\B' is not supported", 1},
      {"[[:alpha:]]", "POSIX bracket syntax '[:'", 1},
      {"(ab", "'(' without a closing ')'", 0},
      {"ab)", "unmatched ')'", 2},
      {"a[bc", "'[' without a closing ']'", 1},
      {"[z-a]", "range 'z-a' is reversed", 1},
      {R"([\d-z])", "a class escape", 1},
      {R"([a-\w])", "a class escape", 1},
      {"*a", "quantifier '*' with nothing to repeat", 0},
      {"a|+b", "quantifier '+' with nothing to repeat", 2},
      {"(?b)", "unknown group syntax", 0},
      {"{2}", "quantifier '{' with nothing to repeat", 0},
      {"^*", "after an assertion", 1},
      {R"(\b+)", "after an assertion", 2},
      {"a{", "'{' must be followed by a count", 1},
      {"a{,3}", "'{' must be followed by a count", 1},
      {"a{2", "'{' without a closing '}'", 1},
      {"a{2,3", "'{' without a closing '}'", 1},
      {"a{3,2}", "repetition {3,2} has max < min", 1},
      {"ab\\", "'\\' at the end of the pattern", 2},
  };
  for (const bad_case& c : cases) {
    CAPTURE(c.pattern);
    const std::string m = compile_error(c.pattern);
    CHECK(m.find("[sbgq.name_pattern.invalid_argument] pattern '" + std::string(c.pattern) + "': ") == 0);
    CHECK(m.find(c.what) != std::string::npos);
    CHECK(m.find("at position " + std::to_string(c.position)) != std::string::npos);
  }
}

}  // TEST_SUITE
