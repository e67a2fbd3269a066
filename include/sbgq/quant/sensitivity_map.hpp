// A picture of what the automatic recipe measured: one cell per tensor, layers across and
// tensor roles (attn_qkv, ssm_out, ffn_down, ...) down, the colour the tensor's cost at a
// common reference type (log scale), the text the type it got. token_embd, output and the
// other tensors outside the decoder layers sit in a first column of their own. SVG 1.1,
// self-contained (no scripts, no external fonts), one <title> tooltip per cell listing
// every candidate's cost.
//
//   const std::string svg = sbgq::sensitivity_svg(report.measured, report.measure_unit);
//
// Non-goals: interactivity, any other chart.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/base.hpp"
#include "../io/ggml_types.hpp"
#include "recipe.hpp"

SBGQ_BEGIN_NAMESPACE

namespace detail::smap {

/// "blk.12.ffn_down.weight" -> {12, "ffn_down"}; anything else -> {-1, name without ".weight"}.
inline std::pair<int, std::string> layer_and_role(std::string_view name) {
  std::string_view n = name;
  if (n.size() > 7 && n.substr(n.size() - 7) == ".weight") n.remove_suffix(7);
  if (n.rfind("blk.", 0) == 0) {
    const std::size_t dot = n.find('.', 4);
    if (dot != std::string_view::npos && dot > 4) {
      int l = 0;
      bool digits = true;
      for (char c : n.substr(4, dot - 4)) {
        if (c < '0' || c > '9' || l > 100000) {
          digits = false;
          break;
        }
        l = l * 10 + (c - '0');
      }
      if (digits) return {l, std::string(n.substr(dot + 1))};
    }
  }
  return {-1, std::string(n)};
}

/// Text for XML character data and attribute values.
inline std::string xml_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

inline std::string num(double x, const char* fmt = "%.3g") {
  char b[48];
  std::snprintf(b, sizeof b, fmt, x);
  return b;
}

/// The type whose cost colours the cells: the most common candidate among the tensors
/// (ties: the cheaper, as types are listed cheapest first), so most cells compare alike.
inline std::optional<ggml_type> reference_type(std::span<const tensor_measurement> m) {
  std::vector<std::pair<ggml_type, int>> n;
  for (const auto& t : m)
    for (ggml_type ty : t.types) {
      auto it = std::find_if(n.begin(), n.end(), [&](const auto& p) { return p.first == ty; });
      if (it == n.end()) n.push_back({ty, 1});
      else ++it->second;
    }
  if (n.empty()) return std::nullopt;
  return std::max_element(n.begin(), n.end(), [](const auto& a, const auto& b) { return a.second < b.second; })->first;
}

/// White (lo) to dark red (hi), t in [0, 1].
inline std::string heat(double t) {
  t = std::clamp(t, 0.0, 1.0);
  const int r = static_cast<int>(std::lround(255 - 75 * t));
  const int g = static_cast<int>(std::lround(245 * (1 - t)));
  const int b = static_cast<int>(std::lround(235 * (1 - t)));
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
  return buf;
}

}  // namespace detail::smap

/// The SVG text (see the file comment). `unit` names the cost ("kld": mean KL-divergence of
/// the tensor alone; "weights": importance-weighted squared error). Empty measurements
/// give a picture that says so. Deterministic: the same input gives the same bytes.
inline std::string sensitivity_svg(std::span<const tensor_measurement> measured, std::string_view unit) {
  namespace sm = detail::smap;
  // Grid: roles down (in order of first appearance), column 0 for tensors outside the layers.
  std::vector<std::string> roles;
  int n_layers = 0;
  struct cell {
    int row, col;
    const tensor_measurement* m;
  };
  std::vector<cell> cells;
  for (const auto& m : measured) {
    const auto [layer, role] = sm::layer_and_role(m.name);
    auto it = std::find(roles.begin(), roles.end(), role);
    if (it == roles.end()) it = roles.insert(roles.end(), role);
    cells.push_back({static_cast<int>(it - roles.begin()), layer + 1, &m});
    n_layers = std::max(n_layers, layer + 1);
  }
  const std::optional<ggml_type> ref = sm::reference_type(measured);
  auto value_of = [&](const tensor_measurement& m) -> std::optional<double> {
    for (std::size_t k = 0; k < m.types.size() && k < m.cost.size(); ++k)
      if (ref && m.types[k] == *ref && m.cost[k] > 0 && std::isfinite(m.cost[k])) return m.cost[k];
    return std::nullopt;
  };
  double lo = 0, hi = 0;
  bool any = false;
  for (const auto& c : cells)
    if (const auto v = value_of(*c.m)) {
      const double l = std::log10(*v);
      lo = any ? std::min(lo, l) : l;
      hi = any ? std::max(hi, l) : l;
      any = true;
    }
  const int cw = 44, ch = 22, left = 110, top = 64;
  const int n_cols = n_layers + 1;
  const int width = left + n_cols * cw + 20, height = top + static_cast<int>(roles.size()) * ch + 70;
  std::string s;
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
       std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"10\">\n";
  const std::string what = unit == "kld" ? "mean KL-divergence of the tensor alone" : "importance-weighted squared error";
  s += "<text x=\"8\" y=\"18\" font-size=\"13\">What auto measured: " + sm::xml_escape(what) +
       (ref ? " at " + std::string(type_name(*ref)) : std::string()) + " (colour, log scale)</text>\n";
  s += "<text x=\"8\" y=\"34\">Text: the type chosen. Columns: tensors outside the layers, then layer 0.." +
       std::to_string(std::max(0, n_layers - 1)) + ". Hover a cell for every candidate's cost.</text>\n";
  if (measured.empty()) s += "<text x=\"8\" y=\"54\">Nothing was measured (not an auto recipe).</text>\n";
  for (int c = 0; c < n_cols; ++c)
    s += "<text x=\"" + std::to_string(left + c * cw + cw / 2) + "\" y=\"" + std::to_string(top - 6) +
         "\" text-anchor=\"middle\">" + (c == 0 ? std::string("glob") : std::to_string(c - 1)) + "</text>\n";
  for (std::size_t r = 0; r < roles.size(); ++r)
    s += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + std::to_string(top + static_cast<int>(r) * ch + ch / 2 + 4) +
         "\" text-anchor=\"end\">" + sm::xml_escape(roles[r]) + "</text>\n";
  for (const auto& c : cells) {
    const auto v = value_of(*c.m);
    const double t = v && hi > lo ? (std::log10(*v) - lo) / (hi - lo) : 0.0;
    const int x = left + c.col * cw, y = top + c.row * ch;
    std::string tip = c.m->name + ": chose " + std::string(type_name(c.m->chosen));
    for (std::size_t k = 0; k < c.m->types.size() && k < c.m->cost.size(); ++k)
      tip += "; " + std::string(type_name(c.m->types[k])) + " " + sm::num(c.m->cost[k]);
    s += "<g><title>" + sm::xml_escape(tip) + "</title><rect x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(y) +
         "\" width=\"" + std::to_string(cw - 1) + "\" height=\"" + std::to_string(ch - 1) + "\" fill=\"" +
         (v ? sm::heat(t) : std::string("#dddddd")) + "\"/><text x=\"" + std::to_string(x + cw / 2) + "\" y=\"" +
         std::to_string(y + ch / 2 + 4) + "\" text-anchor=\"middle\"" + (t > 0.6 ? " fill=\"#ffffff\"" : "") + ">" +
         sm::xml_escape(type_name(c.m->chosen)) + "</text></g>\n";
  }
  if (any) {  // legend: the colour scale's ends
    const int y = top + static_cast<int>(roles.size()) * ch + 24;
    for (int k = 0; k <= 10; ++k)
      s += "<rect x=\"" + std::to_string(left + k * 16) + "\" y=\"" + std::to_string(y) +
           "\" width=\"16\" height=\"12\" fill=\"" + sm::heat(k / 10.0) + "\"/>\n";
    s += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + std::to_string(y + 10) + "\" text-anchor=\"end\">" +
         sm::num(std::pow(10.0, lo)) + "</text>\n";
    s += "<text x=\"" + std::to_string(left + 11 * 16 + 6) + "\" y=\"" + std::to_string(y + 10) + "\">" +
         sm::num(std::pow(10.0, hi)) + "</text>\n";
  }
  s += "</svg>\n";
  return s;
}

SBGQ_END_NAMESPACE
