// Byte-level BPE tokenizer of Qwen3.5, loaded from a Hugging Face tokenizer.json, that
// produces the same token ids as llama.cpp's llama_tokenize on the GGUF a converter
// writes from that tokenizer.json (tokenizer.ggml.model "gpt2", pre "qwen35";
// qwen35-gguf.md section 8).
//
// The pipeline, as llama.cpp runs it:
//   1. Special and added tokens are cut out of the text first (tokenizer_st_partition):
//      the tokens are tried longest first, and every occurrence of one in the remaining
//      raw fragments, left to right, becomes that token. Control tokens are looked for
//      only when parse_special is true; user-defined (added, not special) tokens always.
//   2. Each raw fragment is decoded leniently (detail::unicode::decode_one_lenient) and
//      split into pre-tokens by the Qwen3.5 rules (detail::unicode::split_qwen35).
//   3. Each pre-token is re-encoded as UTF-8 and spelled with the GPT-2 byte-level map;
//      BPE then merges adjacent symbols, always the pair of lowest merge rank, the
//      leftmost on ties, until no ranked pair is left.
//   4. Each final symbol is looked up in the vocabulary; one that is missing (a merge
//      whose result is not a token) falls back to its single bytes that are tokens.
//
// Design goals:
//   - Equal ids to llama.cpp, including its quirks: invalid UTF-8 becomes U+FFFD per
//     byte, overlong forms are decoded (C0 AF is '/'), encoded surrogates pass through,
//     and a 4-byte sequence above U+10FFFF is an error, as it is in llama.cpp
//     ("invalid codepoint"). HF's NFC normalizer is NOT applied: llama.cpp does not.
//   - Validate tokenizer.json with clear errors, component "tokenizer".
//   - Fast enough for corpora: a per-call cache of the BPE result of each distinct
//     pre-token (the eval text has a few thousand distinct words).
// Non-goals: other pre-tokenizers (qwen2, llama3, ...), HF's lstrip/rstrip/single_word
// flags on added tokens (llama.cpp ignores them for this model), SentencePiece models.
//
// Thread safety: a tokenizer is immutable after loading; encode() and decode() may run
// concurrently on one instance.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "../core/base.hpp"
#include "detail/unicode.hpp"
#include "../core/error.hpp"
#include "../core/mapped_file.hpp"

SBGQ_BEGIN_NAMESPACE

/// A token id (llama_token).
using token_id = std::int32_t;

/// Token type as written to tokenizer.ggml.token_type (llama_token_type values).
enum class token_type : std::int32_t {
  normal = 1,        ///< a vocabulary entry, spelled in the byte-level alphabet
  unknown = 2,       ///< not produced from tokenizer.json
  control = 3,       ///< an added token marked special, or one that looks like <|...|>
  user_defined = 4,  ///< an added token not marked special; matched in raw text always
  unused = 5,        ///< a gap in the id range, written as "[PAD<id>]"
  byte = 6,          ///< not produced from tokenizer.json
};

namespace detail::tok {
/// Hash for heterogeneous string lookups (std::string keys, std::string_view probes).
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;
}  // namespace detail::tok

/// The Qwen3.5 split regex as tokenizer.json writes it, and as llama.cpp writes it.
inline constexpr std::string_view qwen35_split_regex_hf =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view qwen35_split_regex_llama =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// Byte-level BPE tokenizer with the Qwen3.5 pre-tokenizer.
class tokenizer {
 public:
  /// Largest accepted token id + 1 (Qwen3.5 has 248320 ids).
  static constexpr std::size_t max_tokens = std::size_t{1} << 24;

  tokenizer() = default;

  /// Parses the text of a tokenizer.json. vocab_size, if larger than the largest id + 1,
  /// pads the id range with "[PAD<id>]" unused tokens (as the converter does up to
  /// config.json's vocab_size). Errors (component "tokenizer"): bad_json (syntax or a
  /// field of the wrong JSON type), not_found (model, vocab or merges missing),
  /// unsupported (not BPE, or not the Qwen3.5 split regex), bad_value (negative or huge
  /// id, empty token text, malformed merge), duplicate (two texts for one id).
  static result<tokenizer> from_json(std::string_view json, std::size_t vocab_size = 0);

  /// A tokenizer from GGUF vocabulary arrays (tokenizer.ggml.tokens, token_type, merges),
  /// for models that come as GGUF files. Errors: size_mismatch (tokens and types differ
  /// in length), bad_value (empty vocabulary, an unknown token type, an empty token).
  static result<tokenizer> from_vocab(std::vector<std::string> texts, std::vector<token_type> types,
                                      std::vector<std::string> merges);

  /// Reads and parses a tokenizer.json file (see from_json).
  static result<tokenizer> load(const std::string& path, std::size_t vocab_size = 0);

  /// Token ids of text, equal to llama_tokenize(text, add_special = false,
  /// parse_special). Errors: bad_value if the text holds a 4-byte UTF-8 sequence above
  /// U+10FFFF outside special tokens (llama.cpp throws "invalid codepoint" there);
  /// not_found, naming the text byte and the character, if the vocabulary has no token
  /// for a byte-level character the text needs (llama.cpp would silently drop it).
  /// Complexity: O(n log n) in the text length.
  result<std::vector<token_id>> encode(std::string_view text, bool parse_special = true) const;

  /// The bytes of ids, equal to concatenating llama_token_to_piece(id, lstrip = 0,
  /// special = render_special): normal tokens are byte-level decoded, user-defined
  /// tokens are their text, control tokens their text only when render_special, unused
  /// tokens nothing. Errors: invalid_argument for an id outside [0, size()).
  result<std::string> decode(std::span<const token_id> ids, bool render_special = true) const;

  /// Appends the bytes of one token to out (see decode). Precondition: valid id.
  void append_piece(token_id id, bool render_special, std::string& out) const;

  /// Number of ids (largest id + 1, or the vocab_size given at load if larger).
  std::size_t size() const noexcept { return texts_.size(); }
  /// Token text as in tokenizer.ggml.tokens (byte-level spelling for normal tokens, raw
  /// text for added tokens, "[PAD<id>]" for gaps). Precondition: id < size().
  const std::string& text(token_id id) const noexcept { return texts_[static_cast<std::size_t>(id)]; }
  /// Token type as in tokenizer.ggml.token_type. Precondition: id < size().
  token_type type(token_id id) const noexcept { return types_[static_cast<std::size_t>(id)]; }
  /// All token texts and types, indexed by id (for the GGUF writer).
  std::span<const std::string> texts() const noexcept { return texts_; }
  std::span<const token_type> types() const noexcept { return types_; }
  /// The merges in rank order, each "left right" as in tokenizer.ggml.merges (the
  /// [left, right] array form is joined with one space, spaces inside a part spelled
  /// U+0120, as gguf-py does).
  std::span<const std::string> merges() const noexcept { return merges_; }
  /// The id whose text is exactly text (the last id wins if texts repeat, as in
  /// llama.cpp), if any.
  std::optional<token_id> find(std::string_view text) const {
    const auto it = text_to_id_.find(text);
    if (it == text_to_id_.end()) return std::nullopt;
    return it->second;
  }

 private:
  struct bigram {
    int rank;
    int left, right;                // symbol indices
    std::uint32_t left_n, right_n;  // symbol lengths when pushed: stale if they changed
  };
  struct bigram_order {  // a min-heap on (rank, left)
    bool operator()(const bigram& a, const bigram& b) const noexcept {
      return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
    }
  };
  struct symbol {
    std::uint32_t begin, n;  // byte range in the byte-level word; n == 0 once merged away
    int prev, next;
  };
  struct scratch;  // per-call buffers

  result<void> finish_load();
  /// BPE of one byte-level word; returns the word byte offset of the first character
  /// that cannot be encoded (not a token and not merged into one), or npos.
  std::size_t bpe_word(const std::string& word, scratch& s, std::vector<token_id>& out) const;
  result<void> encode_raw(std::string_view text, std::size_t base, scratch& s, std::vector<token_id>& out) const;

  std::vector<std::string> texts_;
  std::vector<token_type> types_;
  std::vector<std::string> merges_;
  detail::tok::string_map<token_id> text_to_id_;
  detail::tok::string_map<int> ranks_;        // "left right" -> rank (first occurrence wins)
  std::vector<token_id> specials_;       // control + user-defined, longest text first
  std::string byte_spelling_[256];       // byte -> UTF-8 of its byte-level code point
};

// =============================================================================================
// implementation

namespace detail::tok {

inline error tokenizer_error(error_code c, std::string msg) { return error(c, "tokenizer", std::move(msg)); }

/// True for added-token texts that the converter marks CONTROL even when not special.
inline bool looks_special(std::string_view t) noexcept {
  return t.size() >= 4 && t.substr(0, 2) == "<|" && t.substr(t.size() - 2) == "|>";
}

/// Short printable excerpt of a JSON string for error messages.
inline std::string quote_excerpt(std::string_view s) {
  std::string q = "'";
  q.append(s.substr(0, 40));
  if (s.size() > 40) q += "...";
  q += "'";
  return q;
}

/// "0x110000"-style hex of a code point value.
inline std::string hex_code_point(std::uint32_t v) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string h;
  do {
    h.insert(h.begin(), digits[v & 15u]);
    v >>= 4;
  } while (v != 0);
  return "0x" + h;
}

}  // namespace detail::tok

inline result<tokenizer> tokenizer::load(const std::string& path, std::size_t vocab_size) {
  auto file = mapped_file::open(path);
  if (!file) {
    error e = file.error();
    e.component = "tokenizer";
    return e;
  }
  const auto bytes = file->bytes();
  return from_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), vocab_size);
}

inline result<tokenizer> tokenizer::from_json(std::string_view json, std::size_t vocab_size) {
  using detail::tok::tokenizer_error;
  namespace sj = simdjson;
  if (vocab_size > max_tokens)
    return tokenizer_error(error_code::invalid_argument,
                           "vocab_size " + std::to_string(vocab_size) + " exceeds the cap of " + std::to_string(max_tokens));
  sj::dom::parser parser;
  const sj::padded_string padded(json);
  sj::dom::element root;
  if (auto err = parser.parse(padded).get(root); err != sj::SUCCESS)
    return tokenizer_error(error_code::bad_json, std::string("tokenizer.json is not valid JSON: ") + sj::error_message(err));
  sj::dom::object root_obj;
  if (root.get_object().get(root_obj) != sj::SUCCESS)
    return tokenizer_error(error_code::bad_json, "tokenizer.json: expected a JSON object at the top level");

  // ---- model: type, vocab, merges ----
  sj::dom::object model;
  {
    sj::dom::element m;
    if (root_obj["model"].get(m) != sj::SUCCESS) return tokenizer_error(error_code::not_found, "tokenizer.json: no 'model' object");
    if (m.get_object().get(model) != sj::SUCCESS) return tokenizer_error(error_code::bad_json, "tokenizer.json: 'model' is not an object");
  }
  {
    std::string_view type;
    if (model["type"].get_string().get(type) != sj::SUCCESS)
      return tokenizer_error(error_code::not_found, "model.type: expected the string \"BPE\"");
    if (type != "BPE")
      return tokenizer_error(error_code::unsupported, "model.type: expected \"BPE\", found \"" + std::string(type) + "\"");
  }

  // ---- pre_tokenizer: must be the Qwen3.5 split (otherwise we would tokenize wrongly) ----
  {
    bool found = false;
    std::string seen;
    sj::dom::element pre;
    if (root_obj["pre_tokenizer"].get(pre) == sj::SUCCESS && !pre.is_null()) {
      // Either one Split or a Sequence holding one; look at every "pattern.Regex".
      std::vector<sj::dom::element> stack{pre};
      while (!stack.empty()) {
        sj::dom::element e = stack.back();
        stack.pop_back();
        sj::dom::object o;
        if (e.get_object().get(o) != sj::SUCCESS) continue;
        std::string_view rx;
        if (o.at_pointer("/pattern/Regex").get_string().get(rx) == sj::SUCCESS) {
          if (rx == qwen35_split_regex_hf || rx == qwen35_split_regex_llama) found = true;
          else seen = std::string(rx);
        }
        sj::dom::array subs;
        if (o["pretokenizers"].get_array().get(subs) == sj::SUCCESS)
          for (sj::dom::element s : subs) stack.push_back(s);
      }
    }
    if (!found)
      return tokenizer_error(error_code::unsupported,
                             "pre_tokenizer: expected a Split with the Qwen3.5 regex (with \\p{M}), found " +
                                 (seen.empty() ? std::string("none") : detail::tok::quote_excerpt(seen)));
  }

  sj::dom::object vocab;
  {
    sj::dom::element v;
    if (model["vocab"].get(v) != sj::SUCCESS) return tokenizer_error(error_code::not_found, "model.vocab: missing");
    if (v.get_object().get(vocab) != sj::SUCCESS) return tokenizer_error(error_code::bad_json, "model.vocab: expected an object {text: id}");
  }
  sj::dom::array added;  // a default dom::array is not iterable: guard with has_added
  bool has_added = false;
  {
    sj::dom::element a;
    if (root_obj["added_tokens"].get(a) == sj::SUCCESS && !a.is_null()) {
      if (a.get_array().get(added) != sj::SUCCESS) return tokenizer_error(error_code::bad_json, "added_tokens: expected an array");
      has_added = true;
    }
  }
  // Ids index a dense table, so bound them before allocating: below the hard cap, and
  // (unless the caller pads further) below twice the number of entries plus some slack,
  // which a real vocabulary (dense ids) never reaches.
  const std::size_t n_entries = vocab.size() + (has_added ? added.size() : 0);
  const std::size_t id_limit = std::min(max_tokens, std::max(vocab_size, 2 * n_entries + 4096));

  tokenizer t;
  // id -> text; filled from model.vocab, then added_tokens.
  std::vector<std::string> texts;
  std::vector<token_type> types;
  std::vector<bool> present;
  const auto place = [&](std::int64_t id, std::string_view text, token_type type, bool override_ok,
                         const char* where) -> result<void> {
    if (id < 0 || static_cast<std::uint64_t>(id) >= id_limit)
      return tokenizer_error(error_code::bad_value, std::string(where) + " " + detail::tok::quote_excerpt(text) + ": id " +
                                                        std::to_string(id) + " outside [0, " + std::to_string(id_limit) +
                                                        ") (" + std::to_string(n_entries) + " tokens listed)");
    if (text.empty())
      return tokenizer_error(error_code::bad_value, std::string(where) + ": token id " + std::to_string(id) + " has an empty text");
    const auto i = static_cast<std::size_t>(id);
    if (i >= texts.size()) {
      texts.resize(i + 1);
      types.resize(i + 1, token_type::unused);
      present.resize(i + 1, false);
    }
    if (present[i] && !override_ok)
      return tokenizer_error(error_code::duplicate, std::string(where) + ": id " + std::to_string(id) + " is given to both " +
                                                        detail::tok::quote_excerpt(texts[i]) + " and " + detail::tok::quote_excerpt(text));
    texts[i] = std::string(text);
    types[i] = type;
    present[i] = true;
    return {};
  };

  for (auto field : vocab) {
    std::int64_t id = 0;
    if (field.value.get_int64().get(id) != sj::SUCCESS)
      return tokenizer_error(error_code::bad_json, "model.vocab " + detail::tok::quote_excerpt(field.key) + ": expected an integer id");
    SBGQ_TRY_VOID(place(id, field.key, token_type::normal, false, "model.vocab"));
  }
  std::size_t added_index = 0;
  if (has_added) {
    for (sj::dom::element e : added) {
      const std::string where = "added_tokens[" + std::to_string(added_index++) + "]";
      std::int64_t id = 0;
      std::string_view content;
      bool special = false;
      if (e["id"].get_int64().get(id) != sj::SUCCESS)
        return tokenizer_error(error_code::bad_json, where + ".id: expected an integer");
      if (e["content"].get_string().get(content) != sj::SUCCESS)
        return tokenizer_error(error_code::bad_json, where + ".content: expected a string");
      sj::dom::element sp;
      if (e["special"].get(sp) == sj::SUCCESS && sp.get_bool().get(special) != sj::SUCCESS)
        return tokenizer_error(error_code::bad_json, where + ".special: expected a boolean");
      // An added token may repeat its vocab entry; its content then wins (HF's vocab).
      const token_type ty = special || detail::tok::looks_special(content) ? token_type::control : token_type::user_defined;
      SBGQ_TRY_VOID(place(id, content, ty, true, where.c_str()));
    }
  }
  if (texts.empty()) return tokenizer_error(error_code::bad_value, "model.vocab: no tokens");
  if (vocab_size > texts.size()) {
    texts.resize(vocab_size);
    types.resize(vocab_size, token_type::unused);
    present.resize(vocab_size, false);
  }
  for (std::size_t i = 0; i < texts.size(); ++i)
    if (!present[i]) {
      texts[i] = "[PAD" + std::to_string(i) + "]";
      types[i] = token_type::unused;
    }
  t.texts_ = std::move(texts);
  t.types_ = std::move(types);

  // ---- merges: "a b" strings or [a, b] pairs ----
  {
    sj::dom::element m;
    if (model["merges"].get(m) != sj::SUCCESS) return tokenizer_error(error_code::not_found, "model.merges: missing");
    sj::dom::array merges;
    if (m.get_array().get(merges) != sj::SUCCESS) return tokenizer_error(error_code::bad_json, "model.merges: expected an array");
    std::size_t k = 0;
    for (sj::dom::element e : merges) {
      const std::string where = "model.merges[" + std::to_string(k++) + "]";
      std::string_view s;
      sj::dom::array pair;
      if (e.get_string().get(s) == sj::SUCCESS) {
        // llama.cpp splits at the first space after the first byte.
        if (s.size() < 3 || s.find(' ', 1) == std::string_view::npos || s.find(' ', 1) + 1 == s.size())
          return tokenizer_error(error_code::bad_value, where + ": expected \"left right\", found " + detail::tok::quote_excerpt(s));
        t.merges_.emplace_back(s);
      } else if (e.get_array().get(pair) == sj::SUCCESS) {
        std::string_view parts[2];
        std::size_t n = 0;
        for (sj::dom::element p : pair) {
          if (n == 2 || p.get_string().get(parts[n]) != sj::SUCCESS || parts[n].empty())
            return tokenizer_error(error_code::bad_value, where + ": expected a pair of two non-empty strings");
          ++n;
        }
        if (n != 2) return tokenizer_error(error_code::bad_value, where + ": expected a pair of two non-empty strings");
        std::string joined;
        for (int p = 0; p < 2; ++p) {
          if (p == 1) joined += ' ';
          for (char c : parts[p]) {
            if (c == ' ') joined += "\xC4\xA0";  // U+0120, the byte-level spelling of ' '
            else joined += c;
          }
        }
        t.merges_.push_back(std::move(joined));
      } else {
        return tokenizer_error(error_code::bad_json, where + ": expected a string or a pair of strings");
      }
    }
  }
  SBGQ_TRY_VOID(t.finish_load());
  return t;
}

inline result<tokenizer> tokenizer::from_vocab(std::vector<std::string> texts, std::vector<token_type> types,
                                               std::vector<std::string> merges) {
  if (texts.size() != types.size())
    return detail::tok::tokenizer_error(error_code::size_mismatch, "tokenizer.ggml.tokens has " + std::to_string(texts.size()) +
                                                                     " entries but token_type has " + std::to_string(types.size()));
  if (texts.empty() || texts.size() > max_tokens)
    return detail::tok::tokenizer_error(error_code::bad_value, "vocabulary of " + std::to_string(texts.size()) + " tokens");
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto t = static_cast<std::int32_t>(types[i]);
    if (t < 1 || t > 6)
      return detail::tok::tokenizer_error(error_code::bad_value, "token " + std::to_string(i) + " has unknown type " + std::to_string(t));
    if (texts[i].empty())
      return detail::tok::tokenizer_error(error_code::bad_value, "token " + std::to_string(i) + " has an empty text");
  }
  tokenizer tk;
  tk.texts_ = std::move(texts);
  tk.types_ = std::move(types);
  tk.merges_ = std::move(merges);
  SBGQ_TRY_VOID(tk.finish_load());
  return tk;
}

inline result<void> tokenizer::finish_load() {
  text_to_id_.reserve(texts_.size());
  for (std::size_t i = 0; i < texts_.size(); ++i) text_to_id_[texts_[i]] = static_cast<token_id>(i);  // last wins
  ranks_.reserve(merges_.size());
  for (std::size_t r = 0; r < merges_.size(); ++r) ranks_.emplace(merges_[r], static_cast<int>(r));  // first wins
  for (std::size_t i = 0; i < texts_.size(); ++i)
    if (types_[i] == token_type::control || types_[i] == token_type::user_defined) specials_.push_back(static_cast<token_id>(i));
  // Longest first (llama.cpp sorts by length only; equal lengths here go by id).
  std::stable_sort(specials_.begin(), specials_.end(),
                   [&](token_id a, token_id b) { return text(a).size() > text(b).size(); });
  for (unsigned b = 0; b < 256; ++b) {
    byte_spelling_[b].clear();
    detail::unicode::append_utf8(detail::unicode::byte_to_code_point(static_cast<std::uint8_t>(b)), byte_spelling_[b]);
  }
  return {};
}

struct tokenizer::scratch {
  std::vector<std::uint32_t> cps;
  std::vector<std::uint8_t> cls;
  std::vector<std::size_t> ends;
  std::vector<std::size_t> cp_offsets;  // byte offset of each code point (for errors)
  std::vector<symbol> symbols;
  std::vector<bigram> heap;
  std::string key, word, piece;
  std::unordered_map<std::string, std::vector<token_id>> cache;  // byte-level word -> ids
};

inline std::size_t tokenizer::bpe_word(const std::string& word, scratch& s, std::vector<token_id>& out) const {
  // One symbol per byte-level character (each stands for one byte of the pre-token).
  auto& syms = s.symbols;
  syms.clear();
  for (std::uint32_t i = 0; i < word.size();) {
    const auto b0 = static_cast<std::uint8_t>(word[i]);
    const std::uint32_t len = std::min<std::uint32_t>(b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4,
                                                      static_cast<std::uint32_t>(word.size()) - i);
    const int idx = static_cast<int>(syms.size());
    syms.push_back({i, len, idx - 1, i + len == word.size() ? -1 : idx + 1});
    i += len;
  }
  auto& heap = s.heap;
  heap.clear();
  const auto try_pair = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const symbol& a = syms[static_cast<std::size_t>(l)];
    const symbol& b = syms[static_cast<std::size_t>(r)];
    s.key.assign(word, a.begin, a.n);
    s.key += ' ';
    s.key.append(word, b.begin, b.n);
    const auto it = ranks_.find(std::string_view(s.key));
    if (it == ranks_.end()) return;
    heap.push_back({it->second, l, r, a.n, b.n});
    std::push_heap(heap.begin(), heap.end(), bigram_order{});
  };
  for (int i = 1; i < static_cast<int>(syms.size()); ++i) try_pair(i - 1, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), bigram_order{});
    const bigram bg = heap.back();
    heap.pop_back();
    symbol& a = syms[static_cast<std::size_t>(bg.left)];
    symbol& b = syms[static_cast<std::size_t>(bg.right)];
    // Stale: one side was merged into another symbol or grew since the pair was pushed.
    if (a.n == 0 || b.n == 0 || a.n != bg.left_n || b.n != bg.right_n) continue;
    a.n += b.n;
    b.n = 0;
    a.next = b.next;
    if (b.next >= 0) syms[static_cast<std::size_t>(b.next)].prev = bg.left;
    try_pair(a.prev, bg.left);
    try_pair(bg.left, a.next);
  }
  for (const symbol& sym : syms) {
    if (sym.n == 0) continue;
    const std::string_view txt(word.data() + sym.begin, sym.n);
    if (const auto it = text_to_id_.find(txt); it != text_to_id_.end()) {
      out.push_back(it->second);
      continue;
    }
    // Not a token: llama.cpp emits the tokens of its single bytes, skipping the others.
    // We do the same while each byte-level character of the symbol is itself a token (a
    // complete byte-level vocabulary: the ids stay llama.cpp's, including its quirk of
    // dropping a multi-byte spelling such as U+0120 here). A character that is not a
    // token cannot be encoded at all by this vocabulary (no byte-level token for it):
    // that is an error, not silently lost text.
    for (std::size_t i = 0; i < txt.size();) {
      const auto b0 = static_cast<std::uint8_t>(txt[i]);
      const std::size_t len = std::min<std::size_t>(b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4, txt.size() - i);
      if (text_to_id_.find(txt.substr(i, len)) == text_to_id_.end()) return sym.begin + i;
      for (std::size_t k = i; k < i + len; ++k)
        if (const auto it1 = text_to_id_.find(txt.substr(k, 1)); it1 != text_to_id_.end()) out.push_back(it1->second);
      i += len;
    }
  }
  return std::string::npos;
}

inline result<void> tokenizer::encode_raw(std::string_view text, std::size_t base, scratch& s,
                                          std::vector<token_id>& out) const {
  namespace uc = detail::unicode;
  s.cps.clear();
  s.cls.clear();
  s.cp_offsets.clear();
  for (std::size_t i = 0; i < text.size();) {
    s.cp_offsets.push_back(i);
    const std::uint32_t cp = uc::decode_one_lenient(text, i);
    s.cps.push_back(cp);
    s.cls.push_back(uc::split_class(cp));
  }
  uc::split_qwen35(s.cps, s.cls, s.ends);
  std::size_t begin = 0;
  for (const std::size_t end : s.ends) {
    // Re-encode the pre-token (this is where U+FFFD replaces invalid bytes and overlong
    // forms become canonical), then spell it byte-level.
    s.piece.clear();
    for (std::size_t k = begin; k < end; ++k) {
      if (s.cps[k] > uc::max_code_point)
        return detail::tok::tokenizer_error(error_code::bad_value,
                                       "invalid codepoint " + detail::tok::hex_code_point(s.cps[k]) +
                                           " (a 4-byte UTF-8 sequence above U+10FFFF) at text byte " +
                                           std::to_string(base + s.cp_offsets[k]));
      uc::append_utf8(s.cps[k], s.piece);
    }
    s.word.clear();
    for (char c : s.piece) s.word += byte_spelling_[static_cast<std::uint8_t>(c)];
    auto it = s.cache.find(s.word);
    if (it == s.cache.end()) {
      std::vector<token_id> ids;
      const std::size_t bad = bpe_word(s.word, s, ids);
      if (bad != std::string::npos) {
        // Word offset -> byte of the piece -> code point of the pre-token -> text byte.
        std::size_t j = 0;
        for (std::size_t w = 0; j + 1 < s.piece.size(); ++j) {
          w += byte_spelling_[static_cast<std::uint8_t>(s.piece[j])].size();
          if (w > bad) break;
        }
        std::size_t k = begin;
        for (std::size_t pb = 0; k + 1 < end; ++k) {
          pb += s.cps[k] < 0x80 ? 1 : s.cps[k] < 0x800 ? 2 : s.cps[k] < 0x10000 ? 3 : 4;
          if (pb > j) break;
        }
        const std::uint32_t cp = s.cps[k];
        std::string shown;
        if (cp >= 0x20 && cp != 0x7F && !(cp >= 0x80 && cp < 0xA0)) {
          shown = " '";
          uc::append_utf8(cp, shown);
          shown += '\'';
        }
        const auto byte = static_cast<std::uint8_t>(s.piece[j]);
        std::string u = detail::tok::hex_code_point(cp).substr(2);
        if (u.size() < 4) u.insert(0, 4 - u.size(), '0');
        return detail::tok::tokenizer_error(
            error_code::not_found,
            "text byte " + std::to_string(base + s.cp_offsets[k]) + ": character U+" + u + shown + " cannot be encoded: its UTF-8 byte " +
                detail::tok::hex_code_point(byte) + " (byte-level '" + byte_spelling_[byte] +
                "') is not a token of the vocabulary and no merge covers it (a vocabulary without byte-level tokens)");
      }
      it = s.cache.emplace(s.word, std::move(ids)).first;
    }
    begin = end;
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
  return {};
}

inline result<std::vector<token_id>> tokenizer::encode(std::string_view text, bool parse_special) const {
  // 1. Partition: fragments are either a special token or a raw byte range of text.
  struct fragment {
    token_id id;  // -1 for raw text
    std::size_t begin, end;
  };
  std::vector<fragment> frags{{-1, 0, text.size()}};
  if (text.empty()) frags.clear();
  for (const token_id sid : specials_) {
    if (!parse_special && type(sid) == token_type::control) continue;
    const std::string_view st = this->text(sid);
    std::vector<fragment> next;
    next.reserve(frags.size());
    bool any = false;
    for (const fragment& f : frags) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      std::size_t pos = f.begin;
      while (true) {
        const std::size_t hit = text.substr(0, f.end).find(st, pos);
        if (hit == std::string_view::npos) break;
        any = true;
        if (hit > pos) next.push_back({-1, pos, hit});
        next.push_back({sid, hit, hit + st.size()});
        pos = hit + st.size();
      }
      if (pos < f.end) next.push_back({-1, pos, f.end});
    }
    if (any) frags = std::move(next);
  }
  // 2-4. Pre-tokenize and BPE each raw fragment.
  std::vector<token_id> out;
  out.reserve(text.size() / 3 + 8);
  scratch s;
  for (const fragment& f : frags) {
    if (f.id >= 0) {
      out.push_back(f.id);
      continue;
    }
    SBGQ_TRY_VOID(encode_raw(text.substr(f.begin, f.end - f.begin), f.begin, s, out));
  }
  return out;
}

inline void tokenizer::append_piece(token_id id, bool render_special, std::string& out) const {
  SBGQ_DASSERT(id >= 0 && static_cast<std::size_t>(id) < size());
  const std::string& t = text(id);
  switch (type(id)) {
    case token_type::user_defined: out += t; return;
    case token_type::control:
    case token_type::unknown:
      if (render_special) out += t;
      return;
    case token_type::normal: break;
    default: return;  // unused, byte: llama.cpp renders nothing for BPE vocabularies
  }
  // Byte-level decoding: each code point stands for one byte.
  for (std::size_t i = 0; i < t.size();) {
    const std::uint32_t cp = detail::unicode::decode_one_lenient(t, i);
    const int b = detail::unicode::code_point_to_byte(cp);
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      // llama.cpp's llama_decode_text marks characters outside the byte alphabet (token
      // texts come from JSON, so cp is a valid code point here).
      std::string utf8;
      detail::unicode::append_utf8(std::min(cp, detail::unicode::max_code_point), utf8);
      out += "[UNK_BYTE_0x";
      static constexpr char hex[] = "0123456789abcdef";
      for (char c : utf8) {
        out += hex[static_cast<std::uint8_t>(c) >> 4];
        out += hex[static_cast<std::uint8_t>(c) & 15];
      }
      out += t;
      out += ']';
    }
  }
}

inline result<std::string> tokenizer::decode(std::span<const token_id> ids, bool render_special) const {
  std::string out;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    const token_id id = ids[k];
    if (id < 0 || static_cast<std::size_t>(id) >= size())
      return detail::tok::tokenizer_error(error_code::invalid_argument, "decode: token id " + std::to_string(id) + " at position " +
                                                                       std::to_string(k) + " outside [0, " +
                                                                       std::to_string(size()) + ")");
    append_piece(id, render_special, out);
  }
  return out;
}

SBGQ_END_NAMESPACE
