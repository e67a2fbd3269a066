// A user pattern matched against tensor names: the regular expressions of
// `sbgq quantize --tensor-type PATTERN=TYPE` and of a recipe's rules, with llama.cpp's
// meaning -- std::regex(pattern) (ECMAScript grammar) then std::regex_search(name, re):
// "does the pattern match anywhere in the name" -- but with a bounded engine.
//
// Why not std::regex: it parses and matches by recursion and backtracking, so a pattern of
// 20,000 nested parentheses overflows the stack (SIGSEGV) and `(a*)*b` against a long name
// runs for ever. Patterns come from the command line and from recipe files: untrusted
// input must give a clear error, never a crash or a hang.
//
// Design goals:
//   - Same answer as std::regex_search for every pattern it accepts (tests/test_name_pattern.cpp
//     compares the two on thousands of generated patterns and names).
//   - Bounded work: the pattern is at most max_length bytes, parentheses and stacked
//     quantifiers nest at most max_depth deep (the parser recurses at most that deep), and
//     the compiled program has at most max_program instructions (so `a{1000}{1000}` is an
//     error, not a million instructions).
//   - Linear-time matching: search() simulates the NFA over all its states at once
//     (Thompson; the "Pike VM" without capture slots). Each name position visits each
//     instruction at most once, so a search costs O(len(name) x program size), whatever
//     the pattern; there is no backtracking to go exponential. The only allocations are
//     three buffers per search() call, reused for every character.
//   - Anything outside the subset is rejected by compile() with error_code::invalid_argument,
//     naming the pattern and the byte position, never silently read another way.
// Non-goals: capture groups and match positions (only yes/no is needed), backreferences,
// lookarounds, case-insensitive or multiline modes, Unicode classes (names are bytes;
// \w \d \s are the C locale's ASCII classes, as std::regex's default traits use).
//
// Supported grammar (ECMAScript subset):
//   | construct                  | meaning                                              |
//   |----------------------------|------------------------------------------------------|
//   | x (any other byte)         | the byte itself; `]` and `}` alone are literals too  |
//   | .                          | any byte but \n and \r                               |
//   | \d \D \w \W \s \S          | [0-9], [A-Za-z0-9_], [ \t\n\v\f\r] and complements   |
//   | \f \n \r \t \v             | control characters                                   |
//   | \ + non-alphanumeric       | that character (\. \\ \( \* \- ...)                  |
//   | \b \B                      | word boundary / not a word boundary                  |
//   | [abc] [a-z0-9_] [^...]     | bracket classes; escapes inside ([\]\-\d]; \b = 0x08);|
//   |                            | `-` first or last is literal; [] never matches       |
//   | ( )  (?: )                 | groups (nothing is captured)                         |
//   | a|b                        | alternation                                          |
//   | * + ? {n} {n,} {n,m}       | repetition, n and m <= max_count; a trailing `?`     |
//   |                            | (lazy) is accepted and means the same for a search   |
//   | ^ $                        | start / end of the name                              |
// Rejected with an error: backreferences and digit escapes (\1, \0), lookarounds (?= (?!
// (?<, other (? groups, \c \x \u and other letter escapes, POSIX [[:alpha:]] classes,
// ranges with a class escape or reversed ends ([\d-z], [z-a]), a quantifier with nothing
// to repeat (*a, a|+b, ^*), unbalanced ( ) [ ] { }, and the size limits above.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base.hpp"
#include "error.hpp"

SBGQ_BEGIN_NAMESPACE

namespace detail::np {

/// A set of bytes (256 bits).
struct byte_set {
  std::array<std::uint64_t, 4> bits{};
  void add(unsigned char c) noexcept { bits[c >> 6] |= std::uint64_t{1} << (c & 63); }
  void add_range(unsigned char lo, unsigned char hi) noexcept {
    for (unsigned c = lo; c <= hi; ++c) add(static_cast<unsigned char>(c));
  }
  void add(const byte_set& o) noexcept {
    for (int i = 0; i < 4; ++i) bits[i] |= o.bits[i];
  }
  void invert() noexcept {
    for (auto& w : bits) w = ~w;
  }
  bool has(unsigned char c) const noexcept { return (bits[c >> 6] >> (c & 63)) & 1u; }
};

inline bool is_word_byte(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/// The class of \d \D \w \W \s \S (letter `e`), as std::regex's C-locale traits define it.
inline byte_set class_escape(char e) {
  byte_set s;
  switch (e | 0x20) {  // lower case
    case 'd': s.add_range('0', '9'); break;
    case 'w':
      for (unsigned c = 0; c < 256; ++c)
        if (is_word_byte(static_cast<unsigned char>(c))) s.add(static_cast<unsigned char>(c));
      break;
    default:  // 's'
      for (char c : {' ', '\t', '\n', '\v', '\f', '\r'}) s.add(static_cast<unsigned char>(c));
      break;
  }
  if (e >= 'A' && e <= 'Z') s.invert();
  return s;
}

/// The control character of \f \n \r \t \v (and \b inside a class), or -1.
inline int control_escape(char e, bool in_class) noexcept {
  switch (e) {
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'v': return '\v';
    case 'b': return in_class ? '\b' : -1;
    default: return -1;
  }
}

/// `s` for an error message: at most `n` bytes, then "..." (a 40,000-byte pattern is
/// not worth repeating in full).
inline std::string excerpt(std::string_view s, std::size_t n = 80) {
  return s.size() <= n ? std::string(s) : std::string(s.substr(0, n)) + "...";
}

// ---- the program: a Thompson NFA as instructions ------------------------------------
// Each instruction is one NFA state. `ab|c*` compiles to
//   0 split 1, 4    1 byte 'a'    2 byte 'b'    3 jmp 7
//   4 split 5, 7    5 byte 'c'    6 jmp 4       7 match
// Only `byte` and `set` consume input; the others are epsilon moves that search() follows
// at once (its "closure"). Jump targets are absolute instruction indices.
enum class op : std::uint8_t {
  byte,       ///< consume the byte x
  set,        ///< consume a byte of sets[x]
  split,      ///< continue at x and at y
  jmp,        ///< continue at x
  assert_op,  ///< continue at pc + 1 if assertion x holds here
  match,      ///< the pattern matched
};
enum assertion : std::uint32_t { begin_of_name, end_of_name, word_boundary, not_word_boundary };

struct inst {
  op code = op::match;
  std::uint32_t x = 0;
  std::uint32_t y = 0;
};

// ---- the parse tree -----------------------------------------------------------------
// The parser builds a tree first and knows each node's compiled size from its children
// (see compiler::repeat), so an oversized pattern is refused before anything is emitted.
// Groups are not nodes: `(x)` is x itself, as nothing is captured.
enum class kind : std::uint8_t { empty, byte, set, assert_node, concat, alt, repeat };
inline constexpr std::uint32_t unbounded = 0xffffffffu;

struct node {
  kind k = kind::empty;
  std::uint32_t x = 0;               ///< byte value, set index or assertion
  std::uint32_t min = 0, max = 0;    ///< repeat bounds (max may be `unbounded`)
  std::vector<std::uint32_t> kids;   ///< concat / alt parts, repeat body
  std::uint64_t size = 0;            ///< instructions it compiles to (saturated)
};

class compiler;

}  // namespace detail::np

/// A compiled tensor-name pattern (see the file comment). Copyable, immutable once
/// compiled; search() is const and safe to call from several threads at once.
class name_pattern {
 public:
  static constexpr std::size_t max_length = 1024;   ///< pattern bytes
  static constexpr std::size_t max_depth = 64;      ///< nested groups + stacked quantifiers
  static constexpr std::size_t max_program = 10000; ///< compiled instructions
  static constexpr std::uint32_t max_count = 1000;  ///< n, m of {n,m}

  /// Parses and compiles `pattern`. Errors (component "name_pattern"): invalid_argument,
  /// "pattern '<p>': <what> at position <byte>".
  static result<name_pattern> compile(std::string_view pattern);

  /// True if the pattern matches somewhere in `name` (std::regex_search). O(len(name) x
  /// program_size()) time, O(program_size()) memory.
  bool search(std::string_view name) const;

  /// The pattern as given to compile().
  const std::string& source() const noexcept { return source_; }
  /// Number of compiled instructions (<= max_program + 1).
  std::size_t program_size() const noexcept { return prog_.size(); }

 private:
  name_pattern() = default;
  friend class detail::np::compiler;

  std::string source_;
  std::vector<detail::np::inst> prog_;
  std::vector<detail::np::byte_set> sets_;
};

namespace detail::np {

/// Recursive-descent parser and code generator. The parser recurses once per group level
/// (at most max_depth); the generator as deep as the tree, which the pattern length bounds.
class compiler {
 public:
  explicit compiler(std::string_view p) : p_(p) {}

  result<name_pattern> run() {
    if (p_.size() > name_pattern::max_length)
      return fail(name_pattern::max_length, "longer than " + std::to_string(name_pattern::max_length) + " bytes (" +
                                                std::to_string(p_.size()) + ")");
    const std::uint32_t root = parse_alt(0);
    if (bad_) return std::move(err_);
    if (pos_ < p_.size())  // parse_alt stops only at the end or at a ')' it does not own
      return fail(pos_, "unmatched ')'");
    name_pattern out;
    out.source_ = std::string(p_);
    out.prog_.reserve(static_cast<std::size_t>(nodes_[root].size) + 1);
    emit(root, out.prog_);
    out.prog_.push_back({op::match, 0, 0});
    out.sets_ = std::move(sets_);
    return out;
  }

 private:
  static constexpr std::uint32_t none = 0xffffffffu;

  std::string_view p_;
  std::size_t pos_ = 0;
  std::vector<node> nodes_;
  std::vector<detail::np::byte_set> sets_;
  bool bad_ = false;
  error err_;

  // -- errors ----------------------------------------------------------------------------
  error fail(std::size_t at, const std::string& what) {
    return error(error_code::invalid_argument, "name_pattern",
                 "pattern '" + excerpt(p_) + "': " + what + " at position " + std::to_string(at));
  }
  std::uint32_t bad(std::size_t at, const std::string& what) {
    if (!bad_) {
      bad_ = true;
      err_ = fail(at, what);
    }
    return none;
  }

  // -- tree building (sizes are checked as nodes are made, so nothing big is emitted) ----
  std::uint32_t make(node n, std::size_t at) {
    if (n.size > name_pattern::max_program)
      return bad(at, "compiles to more than " + std::to_string(name_pattern::max_program) +
                         " instructions (repetition counts multiply)");
    nodes_.push_back(std::move(n));
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }
  static std::uint64_t clamp(std::uint64_t v) {
    return v > name_pattern::max_program ? name_pattern::max_program + 1 : v;
  }
  std::uint32_t leaf(kind k, std::uint32_t x, std::size_t at) {
    node n;
    n.k = k;
    n.x = x;
    n.size = k == kind::empty ? 0 : 1;
    return make(std::move(n), at);
  }
  std::uint32_t set_leaf(const byte_set& s, std::size_t at) {
    sets_.push_back(s);
    return leaf(kind::set, static_cast<std::uint32_t>(sets_.size() - 1), at);
  }
  /// concat or alt of `kids` (one kid: itself; none: empty).
  std::uint32_t group(kind k, std::vector<std::uint32_t> kids, std::size_t at) {
    if (kids.empty()) return leaf(kind::empty, 0, at);
    if (kids.size() == 1) return kids[0];
    node n;
    n.k = k;
    std::uint64_t s = 0;
    for (std::uint32_t c : kids) s = clamp(s + nodes_[c].size);
    if (k == kind::alt) s = clamp(s + 2 * (kids.size() - 1));  // a split and a jmp per extra branch
    n.size = s;
    n.kids = std::move(kids);
    return make(std::move(n), at);
  }
  std::uint32_t repeat(std::uint32_t body, std::uint32_t min, std::uint32_t max, std::size_t at) {
    node n;
    n.k = kind::repeat;
    n.min = min;
    n.max = max;
    n.kids = {body};
    const std::uint64_t b = nodes_[body].size;  // <= max_program
    if (max == unbounded)            // x{n,}: n-1 copies, then x + a split back (x*: split x jmp)
      n.size = min == 0 ? clamp(b + 2) : clamp(min * b + 1);
    else  // x{n,m}: n copies, then m-n copies of (split x)
      n.size = clamp(min * b + (std::uint64_t{max} - min) * (b + 1));
    return make(std::move(n), at);
  }

  // -- scanning --------------------------------------------------------------------------
  bool at_end() const { return pos_ >= p_.size(); }
  char peek(std::size_t ahead = 0) const { return pos_ + ahead < p_.size() ? p_[pos_ + ahead] : '\0'; }
  bool has(std::size_t ahead) const { return pos_ + ahead < p_.size(); }

  // alternation := concat ('|' concat)*
  std::uint32_t parse_alt(std::size_t depth) {
    const std::size_t at = pos_;
    std::vector<std::uint32_t> alts;
    for (;;) {
      const std::uint32_t c = parse_concat(depth);
      if (c == none) return none;
      alts.push_back(c);
      if (at_end() || peek() != '|') break;
      ++pos_;
    }
    return group(kind::alt, std::move(alts), at);
  }

  // concat := term*   (up to '|', ')' or the end)
  std::uint32_t parse_concat(std::size_t depth) {
    const std::size_t at = pos_;
    std::vector<std::uint32_t> terms;
    while (!at_end() && peek() != '|' && peek() != ')') {
      const std::uint32_t t = parse_term(depth);
      if (t == none) return none;
      terms.push_back(t);
    }
    return group(kind::concat, std::move(terms), at);
  }

  static bool is_quantifier(char c) { return c == '*' || c == '+' || c == '?' || c == '{'; }

  // term := assertion | atom quantifier*   (std::regex, too, accepts stacked quantifiers)
  std::uint32_t parse_term(std::size_t depth) {
    bool assertion = false;
    std::uint32_t t = parse_atom(depth, assertion);
    if (t == none) return none;
    std::size_t stacked = 0;
    while (!at_end() && is_quantifier(peek())) {
      const std::size_t qat = pos_;
      if (assertion) return bad(qat, "quantifier '" + std::string(1, peek()) + "' after an assertion (nothing to repeat)");
      if (depth + ++stacked > name_pattern::max_depth)
        return bad(qat, "groups and quantifiers nested more than " + std::to_string(name_pattern::max_depth) + " deep");
      std::uint32_t min = 0, max = unbounded;
      const char q = p_[pos_++];
      if (q == '+') min = 1;
      else if (q == '?') max = 1;
      else if (q == '{') {
        if (!parse_count(min, qat)) return none;
        max = min;
        if (!at_end() && peek() == ',') {
          ++pos_;
          max = unbounded;
          if (!at_end() && peek() != '}' && !parse_count(max, qat)) return none;
        }
        if (at_end() || peek() != '}') return bad(qat, "'{' without a closing '}' (expected {n}, {n,} or {n,m})");
        ++pos_;
        if (max < min) return bad(qat, "repetition {" + std::to_string(min) + "," + std::to_string(max) + "} has max < min");
      }
      if (!at_end() && peek() == '?') ++pos_;  // lazy: the same yes/no answer
      t = repeat(t, min, max, qat);
      if (t == none) return none;
    }
    return t;
  }

  /// Decimal count at pos_ (at least one digit, <= max_count; checked digit by digit, so
  /// a 30-digit count cannot overflow).
  bool parse_count(std::uint32_t& v, std::size_t qat) {
    if (at_end() || peek() < '0' || peek() > '9') {
      bad(qat, "'{' must be followed by a count (expected {n}, {n,} or {n,m})");
      return false;
    }
    std::uint64_t n = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      n = n * 10 + static_cast<unsigned>(p_[pos_++] - '0');
      if (n > name_pattern::max_count) {
        bad(qat, "repetition count above " + std::to_string(name_pattern::max_count));
        return false;
      }
    }
    v = static_cast<std::uint32_t>(n);
    return true;
  }

  std::uint32_t parse_atom(std::size_t depth, bool& assertion) {
    const std::size_t at = pos_;
    const char c = p_[pos_++];
    switch (c) {
      case '(': {
        if (depth + 1 > name_pattern::max_depth)
          return bad(at, "groups and quantifiers nested more than " + std::to_string(name_pattern::max_depth) + " deep");
        if (has(0) && peek() == '?') {
          if (has(1) && peek(1) == ':') pos_ += 2;
          else if (has(1) && (peek(1) == '=' || peek(1) == '!'))
            return bad(at, "lookahead '(?" + std::string(1, peek(1)) + "' is not supported");
          else if (has(1) && peek(1) == '<')
            return bad(at, "lookbehind or named group '(?<' is not supported");
          else
            return bad(at, "unknown group syntax '(?' (only '(?:' is supported)");
        }
        const std::uint32_t inner = parse_alt(depth + 1);
        if (inner == none) return none;
        if (at_end()) return bad(at, "'(' without a closing ')'");
        ++pos_;  // ')'
        return inner;
      }
      case '*':
      case '+':
      case '?':
      case '{': return bad(at, "quantifier '" + std::string(1, c) + "' with nothing to repeat");
      case '[': return parse_class(at);
      case '.': {
        byte_set s;
        s.add('\n');
        s.add('\r');
        s.invert();
        return set_leaf(s, at);
      }
      case '^': assertion = true; return leaf(kind::assert_node, begin_of_name, at);
      case '$': assertion = true; return leaf(kind::assert_node, end_of_name, at);
      case '\\': {
        if (at_end()) return bad(at, "'\\' at the end of the pattern");
        const char e = p_[pos_++];
        if (e == 'b' || e == 'B') {
          assertion = true;
          return leaf(kind::assert_node, e == 'b' ? word_boundary : not_word_boundary, at);
        }
        if (std::string_view("dDwWsS").find(e) != std::string_view::npos)
          return set_leaf(class_escape(e), at);
        int b = 0;
        if (!escaped_byte(e, false, at, b)) return none;
        return leaf(kind::byte, static_cast<unsigned char>(b), at);
      }
      default: return leaf(kind::byte, static_cast<unsigned char>(c), at);
    }
  }

  /// The byte of the escape \e (other than the class escapes and \b \B outside a class).
  bool escaped_byte(char e, bool in_class, std::size_t at, int& out) {
    if (const int ctl = control_escape(e, in_class); ctl >= 0) {
      out = ctl;
      return true;
    }
    if (e >= '0' && e <= '9') {
      bad(at, "escape '\\" + std::string(1, e) + "' (a backreference or octal/NUL escape) is not supported");
      return false;
    }
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) {
      bad(at, "escape '\\" + std::string(1, e) + "' is not supported");
      return false;
    }
    out = static_cast<unsigned char>(e);  // \. \\ \- \( ... : the character itself
    return true;
  }

  /// One item of a bracket class at pos_: a byte (returns true, `b` set) or a class
  /// escape (returns true, `cls` set, `is_cls`). False on error.
  bool class_item(int& b, byte_set& cls, bool& is_cls) {
    const std::size_t at = pos_;
    const char c = p_[pos_++];
    is_cls = false;
    if (c == '[' && has(0) && (peek() == ':' || peek() == '=' || peek() == '.')) {
      bad(at, "POSIX bracket syntax '[" + std::string(1, peek()) + "' is not supported");
      return false;
    }
    if (c != '\\') {
      b = static_cast<unsigned char>(c);
      return true;
    }
    if (at_end()) {
      bad(at, "'\\' at the end of the pattern");
      return false;
    }
    const char e = p_[pos_++];
    if (std::string_view("dDwWsS").find(e) != std::string_view::npos) {
      cls = class_escape(e);
      is_cls = true;
      return true;
    }
    return escaped_byte(e, true, at, b);
  }

  // class := '[' '^'? (item | item '-' item)* ']'
  // As in ECMAScript: `]` right after `[` closes an empty class, a '-' first, last or
  // right after a range is literal ([a-c-e] is a..c, '-', e), and a negated class also
  // matches \n and bytes >= 0x80.
  std::uint32_t parse_class(std::size_t open) {
    byte_set s;
    bool negate = false;
    if (!at_end() && peek() == '^') {
      negate = true;
      ++pos_;
    }
    for (;;) {
      if (at_end()) return bad(open, "'[' without a closing ']'");
      if (peek() == ']') {
        ++pos_;
        break;
      }
      const std::size_t item_at = pos_;
      int lo = 0;
      byte_set cls;
      bool lo_cls = false;
      if (!class_item(lo, cls, lo_cls)) return none;
      if (has(1) && peek() == '-' && peek(1) != ']') {  // a range (a '-' before ']' is literal)
        ++pos_;
        int hi = 0;
        byte_set cls2;
        bool hi_cls = false;
        if (!class_item(hi, cls2, hi_cls)) return none;
        if (lo_cls || hi_cls) return bad(item_at, "a class escape (\\d \\w \\s ...) cannot be a range end");
        if (hi < lo)
          return bad(item_at, "range '" + std::string(p_.substr(item_at, pos_ - item_at)) + "' is reversed");
        s.add_range(static_cast<unsigned char>(lo), static_cast<unsigned char>(hi));
      } else if (lo_cls) {
        s.add(cls);
      } else {
        s.add(static_cast<unsigned char>(lo));
      }
    }
    if (negate) s.invert();
    return set_leaf(s, open);
  }

  // -- code generation: recursion as deep as the tree (bounded by max_depth levels) -----
  void emit(std::uint32_t id, std::vector<detail::np::inst>& prog) const {
    const node& n = nodes_[id];
    auto here = [&] { return static_cast<std::uint32_t>(prog.size()); };
    // A repeated body is emitted once per copy (walking the tree again), which is why
    // sizes are checked while parsing: the total here is at most max_program.
    switch (n.k) {
      case kind::empty: break;
      case kind::byte: prog.push_back({op::byte, n.x, 0}); break;
      case kind::set: prog.push_back({op::set, n.x, 0}); break;
      case kind::assert_node: prog.push_back({op::assert_op, n.x, 0}); break;
      case kind::concat:
        for (std::uint32_t k : n.kids) emit(k, prog);
        break;
      case kind::alt: {
        // split L1, next; L1: a1; jmp end; next: split L2, next2; ... ; ak; end:
        std::vector<std::size_t> jumps;
        for (std::size_t i = 0; i < n.kids.size(); ++i) {
          std::size_t split = 0;
          const bool last = i + 1 == n.kids.size();
          if (!last) {
            split = prog.size();
            prog.push_back({op::split, here() + 1, 0});
          }
          emit(n.kids[i], prog);
          if (!last) {
            jumps.push_back(prog.size());
            prog.push_back({op::jmp, 0, 0});
            prog[split].y = here();
          }
        }
        for (std::size_t j : jumps) prog[j].x = here();
        break;
      }
      case kind::repeat: {
        const std::uint32_t body = n.kids[0];
        if (n.max == unbounded) {
          if (n.min == 0) {  // L: split L+1, end; x; jmp L; end:
            const std::uint32_t loop = here();
            prog.push_back({op::split, loop + 1, 0});
            emit(body, prog);
            prog.push_back({op::jmp, loop, 0});
            prog[loop].y = here();
          } else {  // x{min-1} L: x; split L, end
            for (std::uint32_t i = 0; i + 1 < n.min; ++i) emit(body, prog);
            const std::uint32_t loop = here();
            emit(body, prog);
            prog.push_back({op::split, loop, here() + 1});
          }
        } else {  // x{min} then (split a, b; a: x; b:){max-min}
          for (std::uint32_t i = 0; i < n.min; ++i) emit(body, prog);
          for (std::uint32_t i = n.min; i < n.max; ++i) {
            const std::size_t split = prog.size();
            prog.push_back({op::split, here() + 1, 0});
            emit(body, prog);
            prog[split].y = here();
          }
        }
        break;
      }
    }
  }
};

}  // namespace detail::np

inline result<name_pattern> name_pattern::compile(std::string_view pattern) {
  return detail::np::compiler(pattern).run();
}

inline bool name_pattern::search(std::string_view name) const {
  using namespace detail::np;
  // Thread lists: the program counters alive before the byte at position `pos`. `mark[pc]
  // == gen` says pc is already in the list being built, so an instruction is visited
  // once per position (this is what bounds the work, and what ends empty loops).
  const std::size_t n = prog_.size();
  std::vector<std::uint32_t> cur, next, stack;
  std::vector<std::size_t> mark(n, 0);
  cur.reserve(n);
  next.reserve(n);
  stack.reserve(2 * n + 2);
  std::size_t gen = 0;

  auto holds = [&](std::uint32_t a, std::size_t pos) {
    switch (a) {
      case begin_of_name: return pos == 0;
      case end_of_name: return pos == name.size();
      default: {
        const bool before = pos > 0 && is_word_byte(static_cast<unsigned char>(name[pos - 1]));
        const bool after = pos < name.size() && is_word_byte(static_cast<unsigned char>(name[pos]));
        return (before != after) == (a == word_boundary);
      }
    }
  };
  // Adds pc and everything reachable from it without consuming a byte (the epsilon
  // closure) to `list`; true when that reaches `match`. Iterative: no recursion on the
  // jump chains of long programs.
  auto add = [&](std::vector<std::uint32_t>& list, std::uint32_t start, std::size_t pos) {
    stack.clear();
    stack.push_back(start);
    while (!stack.empty()) {
      const std::uint32_t pc = stack.back();
      stack.pop_back();
      if (mark[pc] == gen) continue;
      mark[pc] = gen;
      const inst& in = prog_[pc];
      switch (in.code) {
        case op::byte:
        case op::set: list.push_back(pc); break;
        case op::match: return true;
        case op::jmp: stack.push_back(in.x); break;
        case op::split:
          stack.push_back(in.y);
          stack.push_back(in.x);
          break;
        case op::assert_op:
          if (holds(in.x, pos)) stack.push_back(pc + 1);
          break;
      }
    }
    return false;
  };

  // Why this is linear: for each position every instruction enters the list at most once
  // (the mark) and does O(1) work there (at most two pushes), so one position costs
  // O(program size) and the whole search O(len(name) x program size). A backtracking
  // matcher instead retries each way of splitting the name between the loops of, e.g.,
  // (a|aa)*c -- exponentially many. Lazy and greedy quantifiers only order those ways,
  // which does not change whether one of them matches.
  ++gen;
  if (add(cur, 0, 0)) return true;
  for (std::size_t pos = 0; pos < name.size(); ++pos) {
    const auto c = static_cast<unsigned char>(name[pos]);
    ++gen;
    next.clear();
    for (std::uint32_t pc : cur) {
      const inst& in = prog_[pc];
      const bool ok = in.code == op::byte ? in.x == c : sets_[in.x].has(c);
      if (ok && add(next, pc + 1, pos + 1)) return true;
    }
    if (add(next, 0, pos + 1)) return true;  // a match may also start at pos + 1
    std::swap(cur, next);
  }
  return false;
}

SBGQ_END_NAMESPACE
