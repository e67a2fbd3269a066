// Writing JSON: the one writer the library uses for reports, safetensors headers and
// indexes (reading is simdjson's job).
//
//   json_writer j;
//   j.begin_object().key("recipe").value("q4_k_m").key("bits").value(4.85);
//   j.key("tensors").begin_array(json_layout::lines);
//   ...
//   j.end_array().end_object();
//   std::string text = std::move(j).str();
//
// Design goals:
//   - Always valid output: strings escaped (", \, control characters as \u00XX), commas and
//     colons placed by the writer, non-finite numbers written as null.
//   - Readable: a container is either inline ({"a": 1, "b": 2}) or one member per line,
//     indented, chosen per container.
//   - Numbers round-trip: doubles with %.9g (f32 exactly), integers exactly.
// Non-goals: parsing, streaming to a file (texts here are small), checking key uniqueness.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "base.hpp"

SBGQ_BEGIN_NAMESPACE

/// Appends `s` as a JSON string literal, quotes included.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
  out += '"';
}

/// How a container's members are laid out.
enum class json_layout : std::uint8_t { inline_, lines };

/// Builds a JSON text; see the file comment.
class json_writer {
 public:
  json_writer& begin_object(json_layout l = json_layout::lines) { return open('{', l); }
  json_writer& end_object() { return close('}'); }
  json_writer& begin_array(json_layout l = json_layout::inline_) { return open('[', l); }
  json_writer& end_array() { return close(']'); }

  /// The next member's key (inside an object).
  json_writer& key(std::string_view k) {
    separate();
    append_json_string(out_, k);
    out_ += ": ";
    after_key_ = true;
    return *this;
  }
  json_writer& value(std::string_view s) {
    separate();
    append_json_string(out_, s);
    return *this;
  }
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  json_writer& value(const std::string& s) { return value(std::string_view(s)); }
  json_writer& value(bool b) { return raw(b ? "true" : "false"); }
  json_writer& value(double x) {
    if (!std::isfinite(x)) return raw("null");
    char b[40];
    std::snprintf(b, sizeof b, "%.9g", x);
    return raw(b);
  }
  json_writer& value(std::int64_t x) { return raw(std::to_string(x)); }
  json_writer& value(std::uint64_t x) { return raw(std::to_string(x)); }
  json_writer& value(int x) { return value(static_cast<std::int64_t>(x)); }
  json_writer& null() { return raw("null"); }
  /// A value already in JSON (a number formatted by the caller, a nested text).
  json_writer& raw(std::string_view json) {
    separate();
    out_ += json;
    return *this;
  }

  /// The text so far (complete once every container is closed), with a final newline.
  std::string str() && {
    out_ += '\n';
    return std::move(out_);
  }

 private:
  struct level {
    json_layout layout;
    bool empty = true;
  };
  json_writer& open(char c, json_layout l) {
    separate();
    out_ += c;
    stack_.push_back({l});
    return *this;
  }
  json_writer& close(char c) {
    const level top = stack_.back();
    stack_.pop_back();
    if (top.layout == json_layout::lines && !top.empty) newline();
    out_ += c;
    return *this;
  }
  /// Before a key or a value: the comma and the line break its container needs.
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (stack_.empty()) return;
    level& top = stack_.back();
    if (!top.empty) out_ += top.layout == json_layout::lines ? "," : ", ";
    if (top.layout == json_layout::lines) newline();
    top.empty = false;
  }
  void newline() {
    out_ += '\n';
    out_.append(2 * stack_.size(), ' ');
  }
  std::string out_;
  std::vector<level> stack_;
  bool after_key_ = false;
};

SBGQ_END_NAMESPACE
